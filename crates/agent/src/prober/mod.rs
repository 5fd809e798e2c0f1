//! The prober manager: liveness, readiness and startup probes, one worker per container and
//! kind, as the kubelet's prober does.
//!
//! - [`worker`]: the per-probe task (timing, thresholds, events).
//! - [`probe`]: resolving and running one exec / httpGet / tcpSocket / grpc action; the
//!   lifecycle hooks reuse it.
//! - the results live here, keyed by pod and container; the pod workers read them
//!   ([`ProbeManager::is_ready`] …) and are woken by a [`ProbeUpdate`] whenever one changes.
//!
//! The pod worker calls [`ProbeManager::sync_pod`] with the running containers before it
//! reads results: a container the manager has not been told about is neither started nor
//! ready.

pub mod grpc;
pub mod http;
pub mod probe;
pub mod worker;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};

use crate::events::EventRecorder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// How the kubelet names the probe in events ("Liveness probe failed: …").
    pub fn label(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
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

/// Aborts its task when dropped, so replacing or removing a container's entry stops its
/// workers.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the probes concluded about one container instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ContainerResults {
    has_readiness: bool,
    has_startup: bool,
    ready: bool,
    started: bool,
    /// Liveness or startup failed failureThreshold times: the Killing message.
    failed: Option<String>,
    /// The failed probe's own terminationGracePeriodSeconds.
    kill_grace: Option<Duration>,
}

struct ContainerEntry {
    id: String,
    results: ContainerResults,
    _workers: Vec<AbortOnDrop>,
}

/// pod UID → container name → the current instance's results and workers.
type Table = HashMap<String, HashMap<String, ContainerEntry>>;

/// What the manager and its workers share.
pub(crate) struct Shared {
    runtime: Arc<dyn runtime::ContainerRuntime>,
    recorder: EventRecorder,
    updates: tokio::sync::mpsc::Sender<ProbeUpdate>,
    table: Mutex<Table>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A worker that panicked mid-update leaves plain data behind; keep serving it.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_entry<T>(
        &self,
        pod_uid: &str,
        name: &str,
        id: &str,
        f: impl FnOnce(&mut ContainerResults) -> T,
    ) -> Option<T> {
        let mut table = self.lock();
        let entry = table.get_mut(pod_uid)?.get_mut(name)?;
        (entry.id == id).then(|| f(&mut entry.results))
    }

    /// (has a startup probe, startup passed), or None when this instance is gone.
    fn gate(&self, pod_uid: &str, name: &str, id: &str) -> Option<(bool, bool)> {
        self.with_entry(pod_uid, name, id, |r| (r.has_startup, r.started))
    }

    /// Records a result; true when it changed what the pod worker sees.
    fn set_result(&self, pod_uid: &str, name: &str, id: &str, kind: ProbeKind, ok: bool) -> bool {
        self.with_entry(pod_uid, name, id, |r| {
            let slot = match kind {
                ProbeKind::Readiness => &mut r.ready,
                ProbeKind::Startup => &mut r.started,
                // A passing liveness probe changes nothing: failure is terminal.
                ProbeKind::Liveness => return false,
            };
            let changed = *slot != ok;
            *slot = ok;
            changed
        })
        .unwrap_or(false)
    }

    fn set_failed(
        &self,
        pod_uid: &str,
        name: &str,
        id: &str,
        message: String,
        grace: Option<Duration>,
    ) -> bool {
        self.with_entry(pod_uid, name, id, |r| {
            let changed = r.failed.is_none();
            r.failed = Some(message);
            r.kill_grace = grace;
            changed
        })
        .unwrap_or(false)
    }

    fn find<T>(
        &self,
        pod_uid: &str,
        id: &str,
        f: impl FnOnce(&ContainerResults) -> T,
    ) -> Option<T> {
        let table = self.lock();
        table
            .get(pod_uid)?
            .values()
            .find(|e| e.id == id)
            .map(|e| f(&e.results))
    }
}

pub struct ProbeManager {
    shared: Arc<Shared>,
}

impl ProbeManager {
    /// Updates go to `updates` (the pod workers wake the pod's worker on each one).
    pub fn new(
        runtime: Arc<dyn runtime::ContainerRuntime>,
        recorder: EventRecorder,
        updates: tokio::sync::mpsc::Sender<ProbeUpdate>,
    ) -> Self {
        ProbeManager {
            shared: Arc::new(Shared {
                runtime,
                recorder,
                updates,
                table: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Starts/stops one worker per (container, probe kind) to match the running containers
    /// (`running` = (container name, container id, started_at)); restarts workers when the
    /// container id changes. Must be called from within a tokio runtime.
    pub fn sync_pod(
        &self,
        pod: &Pod,
        pod_ip: Option<IpAddr>,
        running: &[(String, String, SystemTime)],
    ) {
        let Some(pod_uid) = pod.metadata.uid.clone() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::error!("ProbeManager::sync_pod called outside a tokio runtime");
            return;
        };
        let pod_arc = Arc::new(pod.clone());
        let mut table = self.shared.lock();
        let entries = table.entry(pod_uid.clone()).or_default();
        entries.retain(|name, e| running.iter().any(|(n, id, _)| n == name && *id == e.id));
        for (name, id, started_at) in running {
            if entries.contains_key(name) {
                continue;
            }
            let Some((container, field_path)) = find_container(pod, name) else {
                continue;
            };
            let probes = [
                (ProbeKind::Startup, container.startup_probe.as_ref()),
                (ProbeKind::Liveness, container.liveness_probe.as_ref()),
                (ProbeKind::Readiness, container.readiness_probe.as_ref()),
            ];
            let results = ContainerResults {
                has_readiness: container.readiness_probe.is_some(),
                has_startup: container.startup_probe.is_some(),
                started: container.startup_probe.is_none(),
                ..Default::default()
            };
            let workers = probes
                .into_iter()
                .filter_map(|(kind, probe)| Some((kind, probe?)))
                .map(|(kind, probe)| {
                    let w = self.worker(
                        &pod_arc,
                        &pod_uid,
                        container,
                        &field_path,
                        id,
                        *started_at,
                        kind,
                        probe,
                        pod_ip,
                    );
                    AbortOnDrop(handle.spawn(w.run()))
                })
                .collect();
            if results.started {
                // Nothing will report a change for a container without a startup probe:
                // wake the pod worker so it sees the container started (and, with no
                // readiness probe, ready) now rather than at its next resync.
                let _ = self.shared.updates.try_send(ProbeUpdate {
                    pod_uid: pod_uid.clone(),
                    container_name: name.clone(),
                    container_id: id.clone(),
                    kind: ProbeKind::Startup,
                    success: true,
                    message: String::new(),
                });
            }
            entries.insert(
                name.clone(),
                ContainerEntry {
                    id: id.clone(),
                    results,
                    _workers: workers,
                },
            );
        }
        if entries.is_empty() {
            table.remove(&pod_uid);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn worker(
        &self,
        pod: &Arc<Pod>,
        pod_uid: &str,
        container: &Container,
        field_path: &str,
        id: &str,
        started_at: SystemTime,
        kind: ProbeKind,
        probe: &Probe,
        pod_ip: Option<IpAddr>,
    ) -> worker::Worker {
        worker::Worker {
            shared: self.shared.clone(),
            pod: pod.clone(),
            pod_uid: pod_uid.to_string(),
            container: container.clone(),
            field_path: field_path.to_string(),
            container_id: id.to_string(),
            started_at,
            kind,
            probe: probe.clone(),
            action: probe::probe_action(probe, Some(container), pod_ip),
        }
    }

    pub fn remove_pod(&self, pod_uid: &str) {
        self.shared.lock().remove(pod_uid);
    }

    /// Readiness: true if the container has no readiness probe (once started), else the
    /// last result (false until the first success).
    pub fn is_ready(&self, pod_uid: &str, container_id: &str) -> bool {
        self.shared
            .find(pod_uid, container_id, |r| {
                r.started && (!r.has_readiness || r.ready) && r.failed.is_none()
            })
            .unwrap_or(false)
    }

    /// Startup probe passed (true when there is none).
    pub fn is_started(&self, pod_uid: &str, container_id: &str) -> bool {
        self.shared
            .find(pod_uid, container_id, |r| r.started)
            .unwrap_or(false)
    }

    /// Liveness (or startup) has failed failureThreshold times: the container must be
    /// restarted; returns the message for the event/status.
    pub fn liveness_failure(&self, pod_uid: &str, container_id: &str) -> Option<String> {
        self.shared
            .find(pod_uid, container_id, |r| r.failed.clone())
            .flatten()
    }

    /// The failed probe's `terminationGracePeriodSeconds`, which overrides the pod's for
    /// the kill that follows a liveness/startup failure (None: use the pod's).
    pub fn liveness_failure_grace(&self, pod_uid: &str, container_id: &str) -> Option<Duration> {
        self.shared
            .find(pod_uid, container_id, |r| {
                r.failed.as_ref().and(r.kill_grace)
            })
            .flatten()
    }
}

/// The container's spec by name: an app container, or a restartable (sidecar) init
/// container, the only init containers probes apply to.
fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<(&'a Container, String)> {
    let spec = pod.spec.as_ref()?;
    if let Some(c) = spec.containers.iter().find(|c| c.name == name) {
        return Some((c, format!("spec.containers{{{name}}}")));
    }
    spec.init_containers
        .iter()
        .flatten()
        .find(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
        .map(|c| (c, format!("spec.initContainers{{{name}}}")))
}

#[cfg(test)]
pub(crate) mod tests;
