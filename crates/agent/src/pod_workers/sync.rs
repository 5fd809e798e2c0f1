//! One sync of one pod (the kubelet's SyncPod): carry out the computed actions against the
//! runtime, then report the pod's status if it changed.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use kube::api::{Api, Patch, PatchParams};
use runtime::cri::{ContainerState, PodSandbox};

use super::actions::{self, PodActions, RuntimePod, Start, Waiting};
use super::backoff::Backoff;
use super::container_spec::{self, ContainerInputs};
use super::pull::{self, PullBackoff, PullContext};
use super::sandbox_config::{self, NodeDns};
use super::termination;
use super::{Ctx, PodWorkerError};
use crate::envvars::{self, EnvContext};
use crate::events::EventType;

/// The resync period: configMap/secret volumes refresh and statuses are re-checked.
pub const RESYNC: Duration = Duration::from_secs(10);
/// Containers kept per name: the current one and the last dead one (`logs --previous`).
const KEEP_PER_NAME: usize = 2;

/// What a worker remembers about its pod between syncs.
pub struct PodState {
    pub backoff: Backoff,
    pub sandbox_backoff: Backoff,
    pub sandbox_failed_at: Option<SystemTime>,
    pub pull: PullBackoff,
    /// Why containers could not be started, by name, until they start.
    pub waiting: BTreeMap<String, Waiting>,
    pub image_ids: HashMap<String, String>,
    pub last_status: Option<PodStatus>,
    pub start_time: SystemTime,
    pub init_failed: bool,
    /// Why the pod was evicted (an emptyDir over its sizeLimit): it fails for good.
    pub evicted: Option<String>,
}

impl Default for PodState {
    fn default() -> Self {
        Self::new()
    }
}

impl PodState {
    pub fn new() -> Self {
        PodState {
            backoff: Backoff::default(),
            sandbox_backoff: Backoff::default(),
            sandbox_failed_at: None,
            pull: PullBackoff::default(),
            waiting: BTreeMap::new(),
            image_ids: HashMap::new(),
            last_status: None,
            start_time: SystemTime::now(),
            init_failed: false,
            evicted: None,
        }
    }
}

pub enum SyncOutcome {
    /// Sync again after this long (or sooner on a change).
    Requeue(Duration),
    /// Every container has finished for good (or an init container failed under Never).
    Finished,
}

pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

pub async fn runtime_pod(ctx: &Ctx, uid: &str) -> Result<RuntimePod, PodWorkerError> {
    let sandboxes = ctx.deps.sandboxes.list_pod_sandboxes().await?;
    let containers = ctx.deps.containers.list_containers().await?;
    Ok(RuntimePod::from_lists(uid, &sandboxes, &containers))
}

pub async fn sync_pod(
    ctx: &Ctx,
    st: &mut PodState,
    pod: &Pod,
) -> Result<SyncOutcome, PodWorkerError> {
    let uid = uid(pod).to_string();
    let rt = runtime_pod(ctx, &uid).await?;
    let probes = ctx.deps.probes.clone();
    let liveness = |id: &str| probes.liveness_failure(&uid, id);
    let now = SystemTime::now();
    let acts = actions::compute(&actions::Inputs {
        pod,
        runtime: &rt,
        backoff: &st.backoff,
        liveness_failure: &liveness,
        now,
    });
    st.init_failed |= acts.init_failed;
    let mut requeue = acts.requeue_after.unwrap_or(RESYNC).min(RESYNC);
    if acts.pod_done || acts.init_failed {
        report_status(ctx, st, pod).await?;
        return Ok(SyncOutcome::Finished);
    }
    if let Some(d) = apply(ctx, st, pod, &rt, &acts).await? {
        requeue = requeue.min(d);
    }
    // The kubelet evicts a pod whose emptyDir outgrew its sizeLimit.
    if let Ok(over) = ctx.deps.volumes.size_limit_violations(pod).await {
        if let Some(v) = over.first() {
            let message = v.message();
            ctx.deps
                .recorder
                .pod_event(pod, None, EventType::Warning, "Evicted", message.clone());
            st.evicted = Some(message);
            report_status(ctx, st, pod).await?;
            return Ok(SyncOutcome::Finished);
        }
    }
    // Probers first, so the status below already has the new containers' readiness.
    let rt = runtime_pod(ctx, &uid).await?;
    let running: Vec<(String, String, SystemTime)> = rt
        .running()
        .map(|c| {
            (
                c.name.clone(),
                c.id.clone(),
                c.started_at.unwrap_or(c.created_at),
            )
        })
        .collect();
    let pod_ip = rt.ready_sandbox().and_then(|s| s.ips.first().copied());
    ctx.deps
        .probes
        .sync_pod(pod, pod_ip.or(Some(ctx.deps.node_ip)), &running);
    report_status_with(ctx, st, pod, rt).await?;
    Ok(SyncOutcome::Requeue(requeue))
}

/// Carries out `acts`; returns a shorter requeue when something must be retried soon.
async fn apply(
    ctx: &Ctx,
    st: &mut PodState,
    pod: &Pod,
    rt: &RuntimePod,
    acts: &PodActions,
) -> Result<Option<Duration>, PodWorkerError> {
    let d = &ctx.deps;
    let mut retry: Option<Duration> = None;
    let wants_start = acts.create_sandbox || acts.start_init.is_some() || !acts.start.is_empty();
    if let Err(e) = d.volumes.setup_pod(pod).await {
        let reason = e.reason();
        d.recorder
            .pod_event(pod, None, EventType::Warning, reason, e.to_string());
        if reason == "CreateContainerConfigError" {
            for c in all_containers(pod) {
                if rt
                    .latest(&c.name)
                    .is_none_or(|s| s.state != ContainerState::Running)
                {
                    st.waiting.insert(
                        c.name.clone(),
                        Waiting {
                            reason: reason.into(),
                            message: e.to_string(),
                        },
                    );
                }
            }
        }
        if wants_start {
            return Ok(Some(RESYNC));
        }
    }
    for (name, w) in &acts.waiting {
        if w.reason == "CrashLoopBackOff" {
            let meta = &pod.metadata;
            d.recorder.pod_event(
                pod,
                field_path(pod, name),
                EventType::Warning,
                "BackOff",
                format!(
                    "Back-off restarting failed container {name} in pod {}_{}({})",
                    meta.name.as_deref().unwrap_or_default(),
                    meta.namespace.as_deref().unwrap_or_default(),
                    uid(pod)
                ),
            );
        }
    }
    for name in &acts.reset_backoff {
        st.backoff.reset(name);
    }
    for k in &acts.kill {
        let spec = find_container(pod, &k.name);
        if let Some(c) = rt.containers.iter().find(|c| c.id == k.id) {
            termination::kill_container(
                ctx,
                pod,
                c,
                spec,
                termination::grace_period(pod),
                &k.message,
            )
            .await;
        }
    }
    if acts.kill_pod {
        // The old sandboxes stay (stopped) with their dead containers until the pod goes:
        // they share the pod cgroup with the new one.
        termination::kill_pod(ctx, pod, rt, termination::grace_period(pod)).await;
        d.recorder.pod_event(
            pod,
            None,
            EventType::Normal,
            "SandboxChanged",
            "Pod sandbox changed, it will be killed and re-created.",
        );
    }
    let sandbox = if acts.create_sandbox {
        let now = SystemTime::now();
        if let Some(failed) = st.sandbox_failed_at {
            if let Some(wait) = st.sandbox_backoff.remaining("sandbox", failed, now) {
                return Ok(Some(wait));
            }
        }
        let dns = NodeDns {
            cluster_dns: &d.cluster_dns,
            cluster_domain: &d.cluster_domain,
            host_resolv_conf: &ctx.host_resolv_conf,
        };
        let cfg = sandbox_config::sandbox_config(pod, &dns, &d.cgroup_root);
        match d.sandboxes.run_pod_sandbox(&cfg).await {
            Ok(s) => {
                st.sandbox_backoff.reset("sandbox");
                st.sandbox_failed_at = None;
                s
            }
            Err(e) => {
                st.sandbox_backoff.next("sandbox", now);
                st.sandbox_failed_at = Some(now);
                d.recorder.pod_event(
                    pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                );
                return Ok(st.sandbox_backoff.delay("sandbox"));
            }
        }
    } else {
        match rt.ready_sandbox() {
            Some(s) => s.clone(),
            None => return Ok(retry),
        }
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    if let Some(s) = &acts.start_init {
        if let Some(c) = inits.get(s.index) {
            let path = format!("spec.initContainers{{{}}}", c.name);
            if let Err(w) = start(ctx, st, pod, &sandbox, c, s, true, path).await {
                st.waiting.insert(c.name.clone(), w);
                retry = Some(Duration::from_secs(1));
            }
        }
    }
    for s in &acts.start {
        if let Some(c) = spec.containers.get(s.index) {
            let path = format!("spec.containers{{{}}}", c.name);
            if let Err(w) = start(ctx, st, pod, &sandbox, c, s, false, path).await {
                st.waiting.insert(c.name.clone(), w);
                retry = Some(Duration::from_secs(1));
            }
        }
    }
    garbage_collect(ctx, rt).await;
    Ok(retry)
}

/// `spec.containers{name}` or `spec.initContainers{name}`: where events point.
pub fn field_path(pod: &Pod, name: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| c.name == name)
    {
        Some(format!("spec.initContainers{{{name}}}"))
    } else {
        Some(format!("spec.containers{{{name}}}"))
    }
}

fn all_containers(pod: &Pod) -> Vec<Container> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        })
        .cloned()
        .collect()
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[allow(clippy::too_many_arguments)]
async fn start(
    ctx: &Ctx,
    st: &mut PodState,
    pod: &Pod,
    sandbox: &PodSandbox,
    c: &Container,
    s: &Start,
    init: bool,
    field_path: String,
) -> Result<(), Waiting> {
    let d = &ctx.deps;
    let event = |t: EventType, reason: &str, msg: String| {
        d.recorder
            .pod_event(pod, Some(field_path.clone()), t, reason, msg)
    };
    let config_error = |msg: String| {
        event(EventType::Warning, "Failed", format!("Error: {msg}"));
        Waiting {
            reason: "CreateContainerConfigError".into(),
            message: msg,
        }
    };
    let auth = pull::pull_secrets(&d.client, pod, &d.recorder).await;
    let image = pull::ensure_image(
        &PullContext {
            images: d.images.as_ref(),
            recorder: &d.recorder,
            pod,
            container: c,
            field_path: field_path.clone(),
            auth: &auth,
        },
        &mut st.pull,
    )
    .await?;
    if let Some(spec_image) = &c.image {
        st.image_ids.insert(
            spec_image.clone(),
            image
                .repo_digest
                .clone()
                .unwrap_or_else(|| image.id.clone()),
        );
    }
    let env_ctx = EnvContext {
        node_name: d.node_name.clone(),
        node_ip: d.node_ip,
        pod_ip: sandbox.ips.first().copied().or(host_ip(pod, d.node_ip)),
        pod_ips: if sandbox.ips.is_empty() {
            host_ip(pod, d.node_ip).into_iter().collect()
        } else {
            sandbox.ips.clone()
        },
        service_account: pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone()),
    };
    let pod_env = envvars::container_env(&d.client, pod, c, &env_ctx)
        .await
        .map_err(|e| config_error(e.to_string()))?;
    let mounts = d
        .volumes
        .container_mounts_with_env(pod, c, &pod_env)
        .map_err(|e| {
            let mut w = config_error(e.to_string());
            w.reason = e.reason().to_string();
            w
        })?;
    let meta = &pod.metadata;
    let log_dir = container_spec::pod_log_dir(
        &d.pod_logs_dir,
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default(),
    );
    if let Err(e) = tokio::fs::create_dir_all(log_dir.join(&c.name)).await {
        return Err(Waiting {
            reason: "CreateContainerError".into(),
            message: format!("creating the log directory: {e}"),
        });
    }
    let cfg = container_spec::container_config(ContainerInputs {
        pod,
        container: c,
        init,
        attempt: s.attempt,
        image,
        pod_env,
        mounts,
        pod_log_dir: &log_dir,
    });
    if s.restart {
        st.backoff.next(&c.name, SystemTime::now());
    }
    let id = d
        .containers
        .create_container(sandbox, &cfg)
        .await
        .map_err(|e| {
            event(EventType::Warning, "Failed", format!("Error: {e}"));
            Waiting {
                reason: "CreateContainerError".into(),
                message: e.to_string(),
            }
        })?;
    event(
        EventType::Normal,
        "Created",
        format!("Created container {}", c.name),
    );
    if let Err(e) = d.containers.start_container(&id).await {
        event(
            EventType::Warning,
            "Failed",
            format!("Error: failed to start container \"{}\": {e}", c.name),
        );
        return Err(Waiting {
            reason: "RunContainerError".into(),
            message: e.to_string(),
        });
    }
    event(
        EventType::Normal,
        "Started",
        format!("Started container {}", c.name),
    );
    st.waiting.remove(&c.name);
    if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
        let ip = sandbox.ips.first().copied().or(host_ip(pod, d.node_ip));
        if let Err(msg) = crate::lifecycle::run_handler(
            d.containers.as_ref(),
            &id,
            ip,
            hook,
            termination::grace_period(pod),
        )
        .await
        {
            event(EventType::Warning, "FailedPostStartHook", msg.clone());
            if let Err(e) = d.containers.stop_container(&id, Duration::ZERO).await {
                tracing::warn!(error = %e, "stopping a container whose postStart hook failed");
            }
            return Err(Waiting {
                reason: "PostStartHookError".into(),
                message: msg,
            });
        }
    }
    Ok(())
}

fn host_ip(pod: &Pod, node_ip: std::net::IpAddr) -> Option<std::net::IpAddr> {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
        .then_some(node_ip)
}

/// Removes dead containers beyond the newest two of each name.
async fn garbage_collect(ctx: &Ctx, rt: &RuntimePod) {
    let mut names: Vec<&str> = rt.containers.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        for old in rt.attempts(name).into_iter().skip(KEEP_PER_NAME) {
            if old.state != ContainerState::Running {
                if let Err(e) = ctx.deps.containers.remove_container(&old.id).await {
                    tracing::warn!(container = %old.id, error = %e, "removing an old container");
                }
            }
        }
    }
}

/// Generates the status from a fresh look at the runtime and PATCHes it when it changed.
pub async fn report_status(
    ctx: &Ctx,
    st: &mut PodState,
    pod: &Pod,
) -> Result<RuntimePod, PodWorkerError> {
    let rt = runtime_pod(ctx, uid(pod)).await?;
    report_status_with(ctx, st, pod, rt).await
}

/// As [`report_status`], from a listing just taken.
async fn report_status_with(
    ctx: &Ctx,
    st: &mut PodState,
    pod: &Pod,
    rt: RuntimePod,
) -> Result<RuntimePod, PodWorkerError> {
    let uid = uid(pod).to_string();
    // A container that runs again no longer waits for anything.
    st.waiting.retain(|name, _| {
        rt.latest(name)
            .is_none_or(|c| c.state != ContainerState::Running)
    });
    let now = SystemTime::now();
    let probes = ctx.deps.probes.clone();
    let crash_waits = actions::compute(&actions::Inputs {
        pod,
        runtime: &rt,
        backoff: &st.backoff,
        liveness_failure: &|_| None,
        now,
    })
    .waiting;
    let mut waiting = st.waiting.clone();
    waiting.extend(crash_waits);
    let images: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .filter_map(|c| c.image.clone())
        .filter(|i| !st.image_ids.contains_key(i))
        .collect();
    for image in images {
        if let Ok(Some(found)) = ctx.deps.images.image_status(&image).await {
            st.image_ids
                .insert(image, found.repo_digest.unwrap_or(found.id));
        }
    }
    let ready = |id: &str| probes.is_ready(&uid, id);
    let started = |id: &str| probes.is_started(&uid, id);
    let status = super::status::generate(
        &super::status::StatusInputs {
            pod,
            runtime: &rt,
            waiting: &waiting,
            is_ready: &ready,
            is_started: &started,
            node_ip: ctx.deps.node_ip,
            image_ids: &st.image_ids,
            start_time: st.start_time,
            now,
        },
        st.init_failed,
    );
    let mut status = status;
    if let Some(message) = &st.evicted {
        status.phase = Some("Failed".into());
        status.reason = Some("Evicted".into());
        status.message = Some(message.clone());
    }
    patch_status(ctx, st, pod, status).await?;
    Ok(rt)
}

/// PATCHes pods/status unless the API already holds exactly this status.
pub async fn patch_status(
    ctx: &Ctx,
    st: &mut PodState,
    pod: &Pod,
    status: PodStatus,
) -> Result<(), PodWorkerError> {
    if st.last_status.as_ref() == Some(&status) || pod.status.as_ref() == Some(&status) {
        st.last_status = Some(status);
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(
        ctx.deps.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let patch = super::status::merge_patch(&status);
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            st.last_status = Some(status);
            Ok(())
        }
        // The pod is gone: its worker is about to hear so from the watch.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(PodWorkerError::Api(e)),
    }
}
