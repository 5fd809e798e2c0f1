//! The node's half of the local-path provisioner: removing a deleted volume's directory.
//!
//! The controller manager provisions a local-path PersistentVolume as a hostPath directory
//! under this node's root (`<data dir>/storage`, advertised on the Node as annotation
//! `flotilla.io/local-path-dir`), names the node on the volume and holds it with the
//! finalizer `flotilla.io/local-path-cleanup`. Only the node can reach the directory, so
//! when such a volume is Released (its claim is gone) with reclaimPolicy Delete, or is
//! being deleted, this task removes the directory and then the finalizer, letting the
//! deletion finish. It never removes anything outside the node's root.

use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::json;

/// Node annotation: the directory this node keeps local-path volumes under.
pub const NODE_DIR_ANNOTATION: &str = "flotilla.io/local-path-dir";
/// Volume annotation: the node whose directory backs the volume.
pub const PROVISIONED_NODE_ANNOTATION: &str = "flotilla.io/local-path-node";
pub const CLEANUP_FINALIZER: &str = "flotilla.io/local-path-cleanup";
/// How often volumes whose cleanup failed (a directory still busy) are tried again.
const RETRY: Duration = Duration::from_secs(5);

/// The node's local-path root under the agent's data dir.
pub fn root_for(data_dir: &Path) -> PathBuf {
    data_dir.join("storage")
}

/// The directory to remove for `pv`, if this node should clean it up now.
pub fn cleanup_target(pv: &PersistentVolume, node: &str, root: &Path) -> Option<PathBuf> {
    let held = pv
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == CLEANUP_FINALIZER);
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_NODE_ANNOTATION))
        .is_some_and(|n| n == node);
    let spec = pv.spec.as_ref()?;
    let delete = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let deleting = pv.metadata.deletion_timestamp.is_some();
    if !(held && ours && delete && (released || deleting)) {
        return None;
    }
    let path = PathBuf::from(&spec.host_path.as_ref()?.path);
    is_inside(&path, root).then_some(path)
}

/// `path` is strictly below `root`, lexically (no `..`, no `.` tricks).
pub fn is_inside(path: &Path, root: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && path != root
        && path.starts_with(root)
}

/// Removes the directory (already gone is fine), then the finalizer.
async fn clean(
    api: &Api<PersistentVolume>,
    pv: &PersistentVolume,
    dir: &Path,
) -> Result<(), String> {
    let name = pv.metadata.name.clone().unwrap_or_default();
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {
            tracing::info!(volume = %name, dir = %dir.display(), "removed a local-path volume's directory")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {}: {e}", dir.display())),
    }
    let finalizers: Vec<&String> = pv
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != CLEANUP_FINALIZER)
        .collect();
    // With the resourceVersion read, so that a finalizer added meanwhile is not lost.
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": pv.metadata.resource_version,
    }});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(format!("removing the finalizer of {name}: {e}")),
    }
}

/// Cleans this node's released local-path volumes until `shutdown` fires.
pub async fn run(
    client: kube::Client,
    node: String,
    root: PathBuf,
    shutdown: impl Future<Output = ()>,
) {
    let api: Api<PersistentVolume> = Api::all(client);
    let mut events = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut retry = tokio::time::interval(RETRY);
    let mut failed = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            ev = events.next() => match ev {
                Some(Ok(Event::Apply(pv) | Event::InitApply(pv))) => {
                    if let Some(dir) = cleanup_target(&pv, &node, &root) {
                        if let Err(e) = clean(&api, &pv, &dir).await {
                            tracing::warn!(error = %e, "local-path cleanup; will retry");
                            failed = true;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::debug!(error = %e, "persistent volume watch"),
                None => return,
            },
            _ = retry.tick(), if failed => {
                failed = false;
                match api.list(&ListParams::default()).await {
                    Ok(list) => {
                        for pv in list.items {
                            if let Some(dir) = cleanup_target(&pv, &node, &root) {
                                if let Err(e) = clean(&api, &pv, &dir).await {
                                    tracing::warn!(error = %e, "local-path cleanup; will retry");
                                    failed = true;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "listing persistent volumes");
                        failed = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{
        HostPathVolumeSource, PersistentVolumeSpec, PersistentVolumeStatus,
    };
    use kube::api::ObjectMeta;

    fn volume(node: &str, path: &str, phase: &str, policy: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pvc-1".into()),
                annotations: Some(
                    [(PROVISIONED_NODE_ANNOTATION.to_string(), node.to_string())].into(),
                ),
                finalizers: Some(vec![CLEANUP_FINALIZER.into()]),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                persistent_volume_reclaim_policy: Some(policy.into()),
                host_path: Some(HostPathVolumeSource {
                    path: path.into(),
                    type_: Some("DirectoryOrCreate".into()),
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn only_released_deletable_volumes_of_this_node_inside_its_root() {
        let root = Path::new("/data/n1/storage");
        let dir = "/data/n1/storage/pvc-1_ns_data";
        assert_eq!(
            cleanup_target(&volume("n1", dir, "Released", "Delete"), "n1", root),
            Some(PathBuf::from(dir))
        );
        assert!(cleanup_target(&volume("n2", dir, "Released", "Delete"), "n1", root).is_none());
        assert!(cleanup_target(&volume("n1", dir, "Bound", "Delete"), "n1", root).is_none());
        assert!(cleanup_target(&volume("n1", dir, "Released", "Retain"), "n1", root).is_none());
        let mut deleting = volume("n1", dir, "Bound", "Delete");
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert!(cleanup_target(&deleting, "n1", root).is_some());
        let mut released = volume("n1", dir, "Released", "Delete");
        released.metadata.finalizers = None;
        assert!(
            cleanup_target(&released, "n1", root).is_none(),
            "already cleaned"
        );
        for outside in [
            "/data/n1/storage",
            "/data/n1/storage/../../etc",
            "/data/n1/other/pvc-1",
            "relative/pvc-1",
        ] {
            assert!(
                cleanup_target(&volume("n1", outside, "Released", "Delete"), "n1", root).is_none(),
                "{outside}"
            );
        }
    }

    #[test]
    fn the_root_lives_under_the_data_dir() {
        assert_eq!(
            root_for(Path::new("/var/lib/flotilla")),
            Path::new("/var/lib/flotilla/storage")
        );
    }
}
