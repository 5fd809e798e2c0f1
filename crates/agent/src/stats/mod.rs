//! Resource usage: the kubelet's Summary API (`/stats/summary`) from cgroup figures.
//!
//! SEAM: the signature is the contract with the node server; the body is being written.

use std::sync::Arc;

pub fn router(
    _containers: Arc<dyn runtime::ContainerRuntime>,
    _sandboxes: Arc<dyn runtime::SandboxRuntime>,
    _node_name: String,
) -> axum::Router {
    axum::Router::new()
}
