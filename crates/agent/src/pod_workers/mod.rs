//! Pod workers: one task per pod bound to this node, driving the runtime towards the pod's
//! spec and reporting its status (the kubelet's pod_workers and kuberuntime manager).
//!
//! SEAM: the signatures are the contract with the agent's wiring; the bodies are being
//! written.

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::events::EventRecorder;
use crate::prober::ProbeManager;
use crate::volumemanager::VolumeManager;

#[derive(Debug, thiserror::Error)]
pub enum PodWorkerError {
    #[error("{0}")]
    Other(String),
}

pub struct PodWorkerDeps {
    pub client: kube::Client,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub images: Arc<dyn runtime::ImageService>,
    pub sandboxes: Arc<dyn runtime::SandboxRuntime>,
    pub containers: Arc<dyn runtime::ContainerRuntime>,
    pub volumes: Arc<VolumeManager>,
    pub probes: Arc<ProbeManager>,
    pub recorder: EventRecorder,
    pub pod_logs_dir: PathBuf,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub cgroup_root: String,
}

pub struct PodWorkers {
    #[allow(dead_code)]
    deps: PodWorkerDeps,
}

impl PodWorkers {
    pub fn new(deps: PodWorkerDeps) -> Self {
        PodWorkers { deps }
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), PodWorkerError> {
        shutdown.await;
        Ok(())
    }
}
