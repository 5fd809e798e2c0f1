//! The prober manager: liveness, readiness and startup probes, one worker per container and
//! kind, as the kubelet's prober does.
//!
//! SEAM: the signatures are the contract with the pod workers; the bodies are being written.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Pod;

use crate::events::EventRecorder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

#[derive(Debug, Clone)]
pub struct ProbeUpdate {
    pub pod_uid: String,
    pub container_name: String,
    pub container_id: String,
    pub kind: ProbeKind,
    pub success: bool,
    pub message: String,
}

pub struct ProbeManager {
    #[allow(dead_code)]
    runtime: Arc<dyn runtime::ContainerRuntime>,
    #[allow(dead_code)]
    recorder: EventRecorder,
    #[allow(dead_code)]
    updates: tokio::sync::mpsc::Sender<ProbeUpdate>,
}

impl ProbeManager {
    pub fn new(
        runtime: Arc<dyn runtime::ContainerRuntime>,
        recorder: EventRecorder,
        updates: tokio::sync::mpsc::Sender<ProbeUpdate>,
    ) -> Self {
        ProbeManager {
            runtime,
            recorder,
            updates,
        }
    }

    pub fn sync_pod(
        &self,
        _pod: &Pod,
        _pod_ip: Option<IpAddr>,
        _running: &[(String, String, SystemTime)],
    ) {
    }

    pub fn remove_pod(&self, _pod_uid: &str) {}

    pub fn is_ready(&self, _pod_uid: &str, _container_id: &str) -> bool {
        true
    }

    pub fn is_started(&self, _pod_uid: &str, _container_id: &str) -> bool {
        true
    }

    pub fn liveness_failure(&self, _pod_uid: &str, _container_id: &str) -> Option<String> {
        None
    }
}
