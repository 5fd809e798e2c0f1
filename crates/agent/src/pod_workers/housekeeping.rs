//! Housekeeping (the kubelet's HandlePodCleanups): whatever the runtime, the volume manager
//! or the log directory holds for a pod that no longer exists is removed — the state a
//! restarted agent finds after pods were deleted while it was down.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use runtime::cri::{self, ContainerState};

use super::termination::remove_log_dirs;
use super::{Ctx, PodWorkerError};

/// Removes everything of pods whose UID is not in `known`. Returns the UIDs cleaned.
pub async fn cleanup_orphans(
    ctx: &Ctx,
    known: &HashSet<String>,
) -> Result<BTreeSet<String>, PodWorkerError> {
    let d = &ctx.deps;
    let mut orphans = BTreeSet::new();
    let is_orphan = |uid: Option<&String>| uid.is_some_and(|u| !u.is_empty() && !known.contains(u));
    for c in d.containers.list_containers().await? {
        let uid = c.labels.get(cri::LABEL_POD_UID);
        if !is_orphan(uid) {
            continue;
        }
        orphans.extend(uid.cloned());
        if c.state == ContainerState::Running {
            d.containers.stop_container(&c.id, Duration::ZERO).await?;
        }
        d.containers.remove_container(&c.id).await?;
    }
    for s in d.sandboxes.list_pod_sandboxes().await? {
        let uid = Some(&s.pod_uid)
            .filter(|u| !u.is_empty())
            .or(s.labels.get(cri::LABEL_POD_UID));
        if !is_orphan(uid) {
            continue;
        }
        orphans.extend(uid.cloned());
        d.sandboxes.remove_pod_sandbox(&s.id).await?;
    }
    for uid in d.volumes.pods_on_disk() {
        if !known.contains(&uid) {
            d.volumes
                .teardown_pod(&uid)
                .await
                .map_err(|e| PodWorkerError::Volume(e.to_string()))?;
            orphans.insert(uid);
        }
    }
    remove_log_dirs(&d.pod_logs_dir, |uid| !known.contains(uid)).await;
    for uid in &orphans {
        d.probes.remove_pod(uid);
        tracing::info!(pod_uid = %uid, "cleaned up an orphaned pod");
    }
    Ok(orphans)
}
