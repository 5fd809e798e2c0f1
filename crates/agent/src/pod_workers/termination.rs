//! Stopping a pod (the kubelet's killPod / killContainer): preStop hooks within the grace
//! period, SIGTERM then SIGKILL, the sandbox's network released; and, once the pod is gone
//! from the API, removal of everything it held on the node.

use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Preconditions};
use runtime::cri::{ContainerState, ContainerStatus};

use super::actions::RuntimePod;
use super::{Ctx, PodWorkerError};
use crate::events::EventType;

const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// What is left for SIGTERM after a preStop hook used the grace period up (the kubelet's
/// minimum).
const MIN_GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

/// deletionGracePeriodSeconds while deleting, else terminationGracePeriodSeconds, else 30 s.
pub fn grace_period(pod: &Pod) -> Duration {
    let secs = pod.metadata.deletion_grace_period_seconds.or_else(|| {
        pod.spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
    });
    match secs {
        Some(s) => Duration::from_secs(s.max(0) as u64),
        None => DEFAULT_GRACE,
    }
}

pub async fn kill_container(
    ctx: &Ctx,
    pod: &Pod,
    c: &ContainerStatus,
    spec: Option<&Container>,
    grace: Duration,
    message: &str,
) {
    let d = &ctx.deps;
    let field = super::sync::field_path(pod, &c.name);
    let message = if message.is_empty() {
        format!("Stopping container {}", c.name)
    } else {
        message.to_string()
    };
    d.recorder
        .pod_event(pod, field.clone(), EventType::Normal, "Killing", message);
    let started = Instant::now();
    let mut remaining = grace;
    if let Some(hook) = spec
        .and_then(|s| s.lifecycle.as_ref())
        .and_then(|l| l.pre_stop.as_ref())
    {
        if c.state == ContainerState::Running && !grace.is_zero() {
            let pod_ip = d
                .sandboxes
                .pod_sandbox_status(&c.sandbox_id)
                .await
                .ok()
                .and_then(|s| s.ips.first().copied())
                .or(Some(d.node_ip));
            if let Err(msg) =
                crate::lifecycle::run_handler(d.containers.as_ref(), &c.id, pod_ip, hook, grace)
                    .await
            {
                d.recorder
                    .pod_event(pod, field, EventType::Warning, "FailedPreStopHook", msg);
            }
            remaining = grace
                .saturating_sub(started.elapsed())
                .max(MIN_GRACE_AFTER_HOOK);
        }
    }
    if let Err(e) = d.containers.stop_container(&c.id, remaining).await {
        tracing::warn!(container = %c.id, error = %e, "stopping a container");
    }
}

/// Stops every running container of the pod in parallel, then the sandboxes' networks.
pub async fn kill_pod(ctx: &Ctx, pod: &Pod, rt: &RuntimePod, grace: Duration) {
    let spec = pod.spec.clone().unwrap_or_default();
    let specs: Vec<Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .cloned()
        .collect();
    let running: Vec<ContainerStatus> = rt.running().cloned().collect();
    let mut kills = Vec::with_capacity(running.len());
    for c in &running {
        let s = specs.iter().find(|s| s.name == c.name);
        kills.push(kill_container(ctx, pod, c, s, grace, ""));
    }
    join_all(kills).await;
    for s in &rt.sandboxes {
        if let Err(e) = ctx.deps.sandboxes.stop_pod_sandbox(&s.id).await {
            tracing::warn!(sandbox = %s.id, error = %e, "stopping a sandbox");
        }
    }
}

/// Removes containers, sandboxes (IPs, netns, cgroups), volumes and logs of a pod.
pub async fn remove_pod_resources(
    ctx: &Ctx,
    uid: &str,
    rt: &RuntimePod,
) -> Result<(), PodWorkerError> {
    let d = &ctx.deps;
    d.probes.remove_pod(uid);
    for c in &rt.containers {
        if c.state == ContainerState::Running {
            d.containers.stop_container(&c.id, Duration::ZERO).await?;
        }
        d.containers.remove_container(&c.id).await?;
    }
    for s in &rt.sandboxes {
        d.sandboxes.remove_pod_sandbox(&s.id).await?;
    }
    d.volumes
        .teardown_pod(uid)
        .await
        .map_err(|e| PodWorkerError::Volume(e.to_string()))?;
    remove_log_dirs(&d.pod_logs_dir, |dir_uid| dir_uid == uid).await;
    Ok(())
}

/// Removes `<ns>_<name>_<uid>` log directories whose uid matches.
pub async fn remove_log_dirs(root: &std::path::Path, matches: impl Fn(&str) -> bool) {
    let Ok(mut dir) = tokio::fs::read_dir(root).await else {
        return;
    };
    while let Ok(Some(entry)) = dir.next_entry().await {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some((_, uid)) = name.rsplit_once('_') else {
            continue;
        };
        if matches(uid) {
            if let Err(e) = tokio::fs::remove_dir_all(entry.path()).await {
                tracing::warn!(dir = %entry.path().display(), error = %e, "removing pod logs");
            }
        }
    }
}

/// What the kubelet does last: delete the object with grace 0, only if it is still the
/// same pod (a UID precondition), so the API forgets it.
pub async fn delete_from_api(ctx: &Ctx, pod: &Pod) -> Result<(), PodWorkerError> {
    let api: Api<Pod> = Api::namespaced(
        ctx.deps.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api
        .delete(pod.metadata.name.as_deref().unwrap_or_default(), &dp)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(PodWorkerError::Api(e)),
    }
}
