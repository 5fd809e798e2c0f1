//! HTTP routes of the Kubernetes API: discovery and the resource paths under /api and /apis.

use std::sync::Arc;

use axum::Router;

use crate::state::ApiState;

pub fn router(_state: Arc<ApiState>) -> Router {
    Router::new()
}
