//! A container's environment, resolved as the kubelet does.
//!
//! SEAM: the signature is the contract with the pod workers; the body is being written.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, Pod};

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{0}")]
    Other(String),
}

pub struct EnvContext {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub pod_ip: Option<IpAddr>,
    pub pod_ips: Vec<IpAddr>,
    pub service_account: Option<String>,
}

pub async fn container_env(
    _client: &kube::Client,
    _pod: &Pod,
    _container: &Container,
    _ctx: &EnvContext,
) -> Result<Vec<String>, EnvError> {
    Err(EnvError::Other(
        "env resolution is not implemented yet".into(),
    ))
}
