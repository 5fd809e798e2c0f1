//! The volume manager: a pod's volumes on the node (emptyDir, hostPath, configMap, secret,
//! downwardAPI, projected, persistentVolumeClaim), laid out as the kubelet does.
//!
//! SEAM: the signatures below are the contract with the pod workers; the bodies are being
//! written (issue 4).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Other(String),
}

pub struct VolumeManager {
    #[allow(dead_code)]
    root: PathBuf,
    #[allow(dead_code)]
    client: kube::Client,
}

impl VolumeManager {
    pub fn new(root: PathBuf, client: kube::Client) -> Self {
        VolumeManager { root, client }
    }

    pub async fn setup_pod(&self, _pod: &Pod) -> Result<(), VolumeError> {
        Err(VolumeError::Other("volumes are not implemented yet".into()))
    }

    pub fn container_mounts(
        &self,
        _pod: &Pod,
        _container: &Container,
    ) -> Result<Vec<runtime::cri::Mount>, VolumeError> {
        Err(VolumeError::Other("volumes are not implemented yet".into()))
    }

    pub async fn teardown_pod(&self, _pod_uid: &str) -> Result<(), VolumeError> {
        Ok(())
    }

    pub fn pods_on_disk(&self) -> Vec<String> {
        Vec::new()
    }
}
