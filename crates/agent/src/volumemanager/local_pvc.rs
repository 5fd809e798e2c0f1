//! persistentVolumeClaim on the node side: the claim must be Bound; its PersistentVolume
//! must be node-local (`hostPath` or `local`), whose directory the container mounts
//! directly. Provisioning and binding are the control plane's (issue 5).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource,
};
use kube::Api;

use super::host_path;

/// Volumes this provisioner made get world-writable directories.
const LOCAL_PATH_PROVISIONER: &str = "flotilla.io/local-path";

/// Why a claim cannot be used yet or at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimProblem {
    /// Not found or not bound yet: the pod waits and retries.
    NotReady(String),
    /// Bound to a volume this node cannot mount.
    Unusable(String),
}

pub async fn resolve(
    client: &kube::Client,
    ns: &str,
    src: &PersistentVolumeClaimVolumeSource,
) -> Result<(PathBuf, bool), ClaimProblem> {
    let name = &src.claim_name;
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| ClaimProblem::NotReady(e.to_string()))?
        .ok_or_else(|| {
            ClaimProblem::NotReady(format!("persistentvolumeclaim \"{name}\" not found"))
        })?;
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let Some(volume_name) = volume_name.filter(|_| phase == "Bound") else {
        return Err(ClaimProblem::NotReady(format!(
            "persistentvolumeclaim \"{name}\" is not bound (phase {phase})"
        )));
    };
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&volume_name)
        .await
        .map_err(|e| ClaimProblem::NotReady(e.to_string()))?
        .ok_or_else(|| {
            ClaimProblem::NotReady(format!("persistentvolume \"{volume_name}\" not found"))
        })?;
    let local_path = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"))
        .is_some_and(|p| p == LOCAL_PATH_PROVISIONER);
    let spec = pv.spec.unwrap_or_default();
    if let Some(claim) = &spec.claim_ref {
        let claim_ns = claim.namespace.as_deref().unwrap_or(ns);
        if claim.name.as_deref() != Some(name.as_str()) || claim_ns != ns {
            return Err(ClaimProblem::Unusable(format!(
                "persistentvolume \"{volume_name}\" is bound to another claim"
            )));
        }
    }
    let read_only = src.read_only.unwrap_or(false);
    if let Some(hp) = &spec.host_path {
        let as_source = k8s_openapi::api::core::v1::HostPathVolumeSource {
            path: hp.path.clone(),
            type_: hp.type_.clone(),
        };
        let created = std::fs::symlink_metadata(&hp.path).is_err();
        host_path::check(&as_source).map_err(ClaimProblem::Unusable)?;
        if created && local_path {
            // As the local-path provisioner makes its directories: writable by whatever
            // user the pod runs as (the volume belongs to the claim, not to root).
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&hp.path, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| ClaimProblem::Unusable(format!("chmod {}: {e}", hp.path)))?;
        }
        return Ok((PathBuf::from(&hp.path), read_only));
    }
    if let Some(local) = &spec.local {
        let path = PathBuf::from(&local.path);
        if !path.exists() {
            return Err(ClaimProblem::Unusable(format!(
                "path \"{}\" does not exist",
                local.path
            )));
        }
        return Ok((path, read_only));
    }
    Err(ClaimProblem::Unusable(format!(
        "persistentvolume \"{volume_name}\" has no hostPath or local source this node can mount"
    )))
}
