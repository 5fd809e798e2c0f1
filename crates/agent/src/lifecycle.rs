//! Lifecycle hooks: postStart and preStop handlers.
//!
//! SEAM: the signature is the contract with the pod workers; the body is being written.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::LifecycleHandler;

pub async fn run_handler(
    _runtime: &dyn runtime::ContainerRuntime,
    _container_id: &str,
    _pod_ip: Option<IpAddr>,
    _handler: &LifecycleHandler,
    _timeout: Duration,
) -> Result<(), String> {
    Err("lifecycle hooks are not implemented yet".into())
}
