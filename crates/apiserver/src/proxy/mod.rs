//! Subresources served by a node's agent: `pods/log`, `pods/exec`, `pods/attach`,
//! `pods/portforward` and `nodes/proxy`. The API server finds the pod's node, checks the
//! request against the pod (errors before any upgrade are Statuses), and forwards it to the
//! agent with its node-client certificate ([`node_client`]); upgrades (SPDY/3.1,
//! WebSocket) are passed through and the bytes spliced both ways ([`upgrade`]).

// `ApiError` is the crate-wide error (a Status); boxing it is status.rs's call.
#![allow(clippy::result_large_err)]

pub mod node_client;
mod pods;
mod upgrade;

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

pub use node_client::NodeClient;

use crate::state::ApiState;
use crate::status::ApiError;

/// The routes; merged into the API router ahead of its generic dispatch.
pub fn router(state: Arc<ApiState>) -> Router {
    let client = match NodeClient::new(state.clone()) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            tracing::warn!(error = %e, "node proxying disabled");
            None
        }
    };
    let shared = Shared { state, client };
    Router::new()
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
        .route("/api/v1/namespaces/{ns}/pods/{name}/exec", any(pod_exec))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/attach",
            any(pod_attach),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/portforward",
            any(pod_portforward),
        )
        .route("/api/v1/nodes/{name}/proxy", any(node_proxy_root))
        .route("/api/v1/nodes/{name}/proxy/{*path}", any(node_proxy))
        .with_state(shared)
}

#[derive(Clone)]
struct Shared {
    state: Arc<ApiState>,
    client: Option<Arc<NodeClient>>,
}

impl Shared {
    fn client(&self) -> Result<&NodeClient, ApiError> {
        self.client
            .as_deref()
            .ok_or_else(|| ApiError::service_unavailable("node proxying is not configured"))
    }
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| {
        tracing::debug!(code = e.code, message = %e.message, "node proxy refused");
        e.into_response()
    })
}

async fn pod_log(
    State(s): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    respond(pods::forward(&s, pods::Kind::Log, &ns, &name, req).await)
}

async fn pod_exec(
    State(s): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    respond(pods::forward(&s, pods::Kind::Exec, &ns, &name, req).await)
}

async fn pod_attach(
    State(s): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    respond(pods::forward(&s, pods::Kind::Attach, &ns, &name, req).await)
}

async fn pod_portforward(
    State(s): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    respond(pods::forward(&s, pods::Kind::PortForward, &ns, &name, req).await)
}

async fn node_proxy_root(
    State(s): State<Shared>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    respond(node_proxy_to(&s, &name, "", req).await)
}

async fn node_proxy(
    State(s): State<Shared>,
    Path((name, path)): Path<(String, String)>,
    req: Request,
) -> Response {
    respond(node_proxy_to(&s, &name, &path, req).await)
}

/// `nodes/<name>/proxy/<path>` → `https://<node>:<port>/<path>`.
async fn node_proxy_to(
    s: &Shared,
    node: &str,
    path: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let target = format!("/{}{query}", path.trim_start_matches('/'));
    upgrade::forward(s.client()?, node, &target, req).await
}
