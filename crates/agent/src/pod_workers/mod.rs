//! Pod workers: one task per pod bound to this node, driving the runtime towards the pod's
//! spec and reporting its status (the kubelet's pod_workers and kuberuntime manager).
//!
//! - [`worker`]: the per-pod task and its Syncing → Terminating → Terminated states.
//! - [`actions`]: what a sync must do (computePodActions), free of side effects.
//! - [`sync`]: carrying the actions out, and the status report.
//! - [`container_spec`], [`sandbox_config`], [`qos`]: the spec → runtime config mapping.
//! - [`status`]: the API status (phase, conditions, container statuses).
//! - [`pull`], [`backoff`], [`termination`], [`housekeeping`], [`pleg`].
//!
//! One select loop feeds the workers: the pod watch (spec.nodeName=<node>), the runtime
//! relist, probe results and periodic housekeeping.

pub mod actions;
pub mod backoff;
pub mod container_spec;
pub mod housekeeping;
pub mod pleg;
pub mod pull;
pub mod qos;
pub mod quantity;
pub mod sandbox_config;
pub mod status;
pub mod sync;
pub mod termination;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::events::EventRecorder;
use crate::prober::{ProbeManager, ProbeUpdate};
use crate::volumemanager::VolumeManager;

#[derive(Debug, thiserror::Error)]
pub enum PodWorkerError {
    #[error("{0}")]
    Other(String),
    #[error("runtime: {0}")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("API: {0}")]
    Api(#[source] kube::Error),
    #[error("volumes: {0}")]
    Volume(String),
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
    /// DATA_DIR/pod-logs: `<ns>_<pod>_<uid>/<container>/<restartCount>.log`.
    pub pod_logs_dir: PathBuf,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    /// Pod cgroups live at `<cgroup_root>/<qos>/pod<uid>`.
    pub cgroup_root: String,
}

/// What every worker shares.
pub struct Ctx {
    pub deps: PodWorkerDeps,
    /// The node's resolv.conf, for dnsPolicy Default.
    pub host_resolv_conf: String,
}

/// How often the runtime is relisted for container state changes.
const RELIST: Duration = Duration::from_secs(1);
/// How often orphans are looked for after the first full list.
const HOUSEKEEPING: Duration = Duration::from_secs(30);

pub struct PodWorkers {
    ctx: Arc<Ctx>,
    probe_updates: Option<mpsc::Receiver<ProbeUpdate>>,
}

struct Handle {
    tx: watch::Sender<worker::Input>,
}

impl PodWorkers {
    pub fn new(deps: PodWorkerDeps) -> Self {
        let host_resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        PodWorkers {
            ctx: Arc::new(Ctx {
                deps,
                host_resolv_conf,
            }),
            probe_updates: None,
        }
    }

    /// The receiving end of the ProbeManager's updates: each result wakes its pod's worker
    /// at once instead of at the next resync.
    pub fn with_probe_updates(mut self, rx: mpsc::Receiver<ProbeUpdate>) -> Self {
        self.probe_updates = Some(rx);
        self
    }

    /// Watches pods with spec.nodeName=<node>, runs one worker task per pod, relists the
    /// runtime and does housekeeping, until `shutdown`. Shutting down leaves pods running.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), PodWorkerError> {
        let ctx = self.ctx;
        let mut probe_rx = self.probe_updates;
        let api: Api<Pod> = Api::all(ctx.deps.client.clone());
        let cfg =
            watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.deps.node_name));
        let mut events = watcher::watcher(api, cfg).default_backoff().boxed();
        let mut d = Dispatcher {
            ctx: ctx.clone(),
            workers: HashMap::new(),
            pods: HashMap::new(),
            tasks: JoinSet::new(),
        };
        let mut listing: Option<HashSet<String>> = None;
        let mut synced = false;
        let mut pleg = pleg::Pleg::default();
        let mut relist = tokio::time::interval(RELIST);
        relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                ev = events.next() => match ev {
                    Some(Ok(Event::Apply(p))) => d.update(p),
                    Some(Ok(Event::InitApply(p))) => {
                        if let (Some(l), Some(uid)) = (listing.as_mut(), p.metadata.uid.clone()) {
                            l.insert(uid);
                        }
                        d.update(p);
                    }
                    Some(Ok(Event::Delete(p))) => d.gone(p.metadata.uid.as_deref().unwrap_or_default()),
                    Some(Ok(Event::Init)) => listing = Some(HashSet::new()),
                    Some(Ok(Event::InitDone)) => {
                        let listed = listing.take().unwrap_or_default();
                        let missing: Vec<String> = d.pods.keys().filter(|u| !listed.contains(*u)).cloned().collect();
                        for uid in missing {
                            d.gone(&uid);
                        }
                        if !synced {
                            synced = true;
                            // Pods deleted while the agent was down: clean up at once.
                            d.housekeeping().await;
                            housekeeping.reset();
                        }
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "pod watch"),
                    None => return Err(PodWorkerError::Other("the pod watch ended".into())),
                },
                Some(u) = recv(&mut probe_rx) => d.wake(&u.pod_uid),
                _ = relist.tick() => match ctx.deps.containers.list_containers().await {
                    Ok(list) => {
                        for uid in pleg.diff(&list) {
                            d.wake(&uid);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "relisting containers"),
                },
                _ = housekeeping.tick(), if synced => d.housekeeping().await,
                Some(done) = d.tasks.join_next(), if !d.tasks.is_empty() => {
                    match done {
                        Ok(uid) => {
                            d.workers.remove(&uid);
                        }
                        Err(_) => d.workers.retain(|_, h| !h.tx.is_closed()),
                    }
                }
            }
        }
        // Workers stop here; the containers they started keep running.
        d.tasks.abort_all();
        Ok(())
    }
}

async fn recv(rx: &mut Option<mpsc::Receiver<ProbeUpdate>>) -> Option<ProbeUpdate> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

struct Dispatcher {
    ctx: Arc<Ctx>,
    workers: HashMap<String, Handle>,
    /// The pods the watch currently reports.
    pods: HashMap<String, Arc<Pod>>,
    tasks: JoinSet<String>,
}

impl Dispatcher {
    fn update(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let pod = Arc::new(pod);
        self.pods.insert(uid.clone(), pod.clone());
        match self.workers.get(&uid) {
            Some(h) => h.tx.send_modify(|i| {
                i.pod = pod;
                i.gone = false;
            }),
            None => self.spawn(uid, pod, false),
        }
    }

    fn gone(&mut self, uid: &str) {
        let Some(pod) = self.pods.remove(uid) else {
            return;
        };
        match self.workers.get(uid) {
            Some(h) => h.tx.send_modify(|i| i.gone = true),
            // Never worked on here, yet maybe left over from before a restart.
            None => self.spawn(uid.to_string(), pod, true),
        }
    }

    fn wake(&self, uid: &str) {
        if let Some(h) = self.workers.get(uid) {
            h.tx.send_modify(|i| i.wake = i.wake.wrapping_add(1));
        }
    }

    fn spawn(&mut self, uid: String, pod: Arc<Pod>, gone: bool) {
        let (tx, rx) = watch::channel(worker::Input { pod, gone, wake: 0 });
        let ctx = self.ctx.clone();
        let id = uid.clone();
        let _abort = self.tasks.spawn(async move {
            worker::run(ctx, rx).await;
            id
        });
        self.workers.insert(uid, Handle { tx });
    }

    async fn housekeeping(&mut self) {
        let known: HashSet<String> = self
            .pods
            .keys()
            .chain(self.workers.keys())
            .cloned()
            .collect();
        if let Err(e) = housekeeping::cleanup_orphans(&self.ctx, &known).await {
            tracing::warn!(error = %e, "housekeeping");
        }
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
