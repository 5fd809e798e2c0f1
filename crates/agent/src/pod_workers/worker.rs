//! One pod's worker (the kubelet's podWorkerLoop): a task that owns all work on its pod,
//! so a pod's syncs are serialised while pods proceed in parallel. Updates coalesce in a
//! watch channel: a worker busy syncing sees only the newest pod when it looks again.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;
use tokio::time::Instant;

use super::sync::{self, PodState, SyncOutcome};
use super::{termination, Ctx};

/// What the dispatcher tells a worker: the newest pod, whether the API forgot it, and a
/// counter bumped to wake the worker (runtime event, probe result).
#[derive(Clone)]
pub struct Input {
    pub pod: Arc<Pod>,
    pub gone: bool,
    pub wake: u64,
}

/// The worker's state machine (pod_workers.go):
/// - `Syncing`: the pod should run; each sync converges the runtime and reports status.
///   → `Terminating` when the pod is being deleted, or all its containers finished for good.
/// - `Terminating`: containers are being stopped (preStop, grace period, SIGKILL) and the
///   sandbox's network released. → `Terminated`.
/// - `Terminated`: nothing runs; the status stays readable. When the pod is deleted its
///   resources are removed, the API object deleted, and the worker ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Syncing,
    Terminating,
    Terminated,
}

const RETRY: Duration = Duration::from_secs(2);

fn is_final_phase(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

pub async fn run(ctx: Arc<Ctx>, mut rx: watch::Receiver<Input>) {
    let mut st = PodState::new();
    if let Some(status) = rx.borrow().pod.status.as_ref() {
        if status.reason.as_deref() == Some("Evicted") {
            st.evicted = Some(status.message.clone().unwrap_or_default());
        }
    }
    let mut state = if is_final_phase(&rx.borrow().pod) {
        // A finished pod never runs again, even after an agent restart.
        WorkerState::Terminating
    } else {
        WorkerState::Syncing
    };
    let mut next = Instant::now();
    loop {
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep_until(next) => {}
        }
        let input = rx.borrow_and_update().clone();
        let pod = input.pod.as_ref();
        let uid = sync::uid(pod).to_string();
        let deleting = input.gone || pod.metadata.deletion_timestamp.is_some();
        let delay = match state {
            WorkerState::Syncing if deleting => {
                state = WorkerState::Terminating;
                Duration::ZERO
            }
            WorkerState::Syncing => match sync::sync_pod(&ctx, &mut st, pod).await {
                Ok(SyncOutcome::Requeue(d)) => d,
                Ok(SyncOutcome::Finished) => {
                    state = WorkerState::Terminating;
                    Duration::ZERO
                }
                Err(e) => {
                    tracing::warn!(pod_uid = %uid, error = %e, "pod sync failed");
                    RETRY
                }
            },
            WorkerState::Terminating => match terminate(&ctx, &mut st, &input).await {
                Ok(()) => {
                    state = WorkerState::Terminated;
                    Duration::ZERO
                }
                Err(e) => {
                    tracing::warn!(pod_uid = %uid, error = %e, "terminating a pod");
                    RETRY
                }
            },
            WorkerState::Terminated if deleting => match finish(&ctx, &input).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(pod_uid = %uid, error = %e, "cleaning up a deleted pod");
                    RETRY
                }
            },
            WorkerState::Terminated => {
                if let Err(e) = sync::report_status(&ctx, &mut st, pod).await {
                    tracing::debug!(pod_uid = %uid, error = %e, "status of a finished pod");
                }
                sync::RESYNC
            }
        };
        next = Instant::now() + delay;
    }
}

async fn terminate(
    ctx: &Ctx,
    st: &mut PodState,
    input: &Input,
) -> Result<(), super::PodWorkerError> {
    let pod = input.pod.as_ref();
    let rt = sync::runtime_pod(ctx, sync::uid(pod)).await?;
    termination::kill_pod(ctx, pod, &rt, termination::grace_period(pod)).await;
    if !input.gone {
        sync::report_status(ctx, st, pod).await?;
    }
    Ok(())
}

async fn finish(ctx: &Ctx, input: &Input) -> Result<(), super::PodWorkerError> {
    let pod = input.pod.as_ref();
    let uid = sync::uid(pod);
    let rt = sync::runtime_pod(ctx, uid).await?;
    termination::remove_pod_resources(ctx, uid, &rt).await?;
    if !input.gone {
        termination::delete_from_api(ctx, pod).await?;
    }
    tracing::info!(pod_uid = %uid, "pod removed from the node");
    Ok(())
}
