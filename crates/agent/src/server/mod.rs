//! The node's HTTPS endpoint (the kubelet's port 10250): logs, exec, attach, port-forward
//! and stats, reached only by the API server's node-client certificate.
//!
//! SEAM: the signatures are the contract with the agent's wiring; the bodies are being
//! written.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Other(String),
}

pub struct NodeServerConfig {
    pub listen: SocketAddr,
    pub client_ca_pem: String,
    pub allowed_client_cn: String,
    pub node_name: String,
    pub pod_logs_dir: PathBuf,
}

pub struct NodeServer {
    addr: SocketAddr,
}

impl NodeServer {
    pub async fn bind(
        config: NodeServerConfig,
        _containers: Arc<dyn runtime::ContainerRuntime>,
        _sandboxes: Arc<dyn runtime::SandboxRuntime>,
        _extra_routes: axum::Router,
    ) -> Result<Self, ServerError> {
        Ok(NodeServer {
            addr: config.listen,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        shutdown.await;
        Ok(())
    }
}
