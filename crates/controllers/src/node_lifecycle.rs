//! The node lifecycle controller, as Kubernetes' `node-lifecycle-controller` behaves:
//!
//! - It watches each Node's Lease in `kube-node-lease` and the Node's Ready condition. A
//!   node whose heartbeat (the Lease's `renewTime`, or the Ready condition's
//!   `lastHeartbeatTime`) is older than the grace period (40 s by default) gets its Ready,
//!   MemoryPressure, DiskPressure and PIDPressure conditions set to `Unknown` with reason
//!   `NodeStatusUnknown` and message "Kubelet stopped posting node status.".
//! - Taints follow the Ready condition: `Unknown` → `node.kubernetes.io/unreachable`
//!   (NoExecute and NoSchedule), `False` → `node.kubernetes.io/not-ready` (NoExecute and
//!   NoSchedule), `True` → neither. When the kubelet reports Ready again, they go.
//! - NoSchedule taints also follow the other conditions and the cordon, as Kubernetes'
//!   TaintNodesByCondition: MemoryPressure, DiskPressure, PIDPressure or NetworkUnavailable
//!   `True` → `node.kubernetes.io/{memory,disk,pid}-pressure` / `network-unavailable`, and
//!   `spec.unschedulable` → `node.kubernetes.io/unschedulable`.
//! - On a node whose Ready is `Unknown`, its pods' Ready condition is set to False.
//! - Taint-based eviction: a pod on a node with NoExecute taints is deleted at once when it
//!   does not tolerate one of them, after the smallest `tolerationSeconds` of the matching
//!   tolerations (counted from the taint's `timeAdded`) when it does, never when they do not
//!   bound it. The API server's DefaultTolerationSeconds admission gives every pod 300 s
//!   tolerations for `not-ready` and `unreachable`; a pod that somehow lacks one is given
//!   [`Config::default_toleration_seconds`] for those two taints.
//!
//! - Staleness is judged by the controller's own clock from the moment a heartbeat was
//!   seen to change (Kubernetes' `probeTimestamp`), so node clock skew does not matter and
//!   a node first seen (after a controller restart) gets a full grace period.
//! - Disruption: new NoExecute taints are rate-limited per zone (`eviction_rate`; in a
//!   partially disrupted zone `secondary_eviction_rate` when it is large, none when small),
//!   and when every node is unhealthy none are added and the existing ones are lifted
//!   (master disruption mode) — the fault is then likely the control plane's or the
//!   network's. NoSchedule taints are never held back.
//!
//! Eviction deletes the pod gracefully: on an unreachable node it stays Terminating until
//! the node comes back or is deleted, as in Kubernetes; its controller replaces it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

use crate::informers::Informers;
use crate::runner::RetryBackoff;
use events::{EventRecorder, EventType};

/// Where the kubelets' Leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The taint of a node whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a node whose Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// The taint of a cordoned node (`spec.unschedulable`).
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The NoSchedule taint each condition brings while it is True.
const CONDITION_TAINTS: &[(&str, &str)] = &[
    ("MemoryPressure", TAINT_MEMORY_PRESSURE),
    ("DiskPressure", TAINT_DISK_PRESSURE),
    ("PIDPressure", TAINT_PID_PRESSURE),
    ("NetworkUnavailable", TAINT_NETWORK_UNAVAILABLE),
];
/// The reason of the conditions this controller sets to Unknown.
pub const REASON_STATUS_UNKNOWN: &str = "NodeStatusUnknown";
/// Their message.
pub const MESSAGE_STATUS_UNKNOWN: &str = "Kubelet stopped posting node status.";
const REASON_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
const MESSAGE_NEVER_UPDATED: &str = "Kubelet never posted node status.";
/// The conditions the kubelet owns and this controller marks Unknown.
const MONITORED_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
const NO_EXECUTE: &str = "NoExecute";
const NO_SCHEDULE: &str = "NoSchedule";
const FIELD_MANAGER: &str = "node-controller";

#[derive(Debug, Clone)]
pub struct Config {
    /// How long a node may go without a heartbeat before it is Unknown
    /// (kube-controller-manager's `--node-monitor-grace-period`, 40 s).
    pub grace_period: Duration,
    /// The `tolerationSeconds` a pod without a not-ready/unreachable toleration gets for
    /// those taints (DefaultTolerationSeconds' 300 s).
    pub default_toleration_seconds: i64,
    /// How often every node is looked at even when nothing changed (`--node-monitor-period`).
    pub monitor_period: Duration,
    /// Nodes per second given NoExecute taints in a healthy zone
    /// (`--node-eviction-rate`, 0.1).
    pub eviction_rate: f64,
    /// The same in a partially disrupted large zone (`--secondary-node-eviction-rate`, 0.01).
    pub secondary_eviction_rate: f64,
    /// The share of unhealthy nodes (more than 2) that makes a zone partially disrupted
    /// (`--unhealthy-zone-threshold`, 0.55).
    pub unhealthy_zone_threshold: f64,
    /// Zones up to this size stop tainting altogether when partially disrupted
    /// (`--large-cluster-size-threshold`, 50).
    pub large_cluster_threshold: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grace_period: Duration::from_secs(40),
            default_toleration_seconds: 300,
            monitor_period: Duration::from_secs(5),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_threshold: 50,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node lifecycle: {0}")]
    Kube(#[from] kube::Error),
    #[error("node lifecycle: the {0} watch ended")]
    WatchEnded(&'static str),
}

struct Context {
    client: kube::Client,
    config: Config,
    leases: Store<Lease>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    recorder: EventRecorder,
    backoff: RetryBackoff<Node>,
    /// When each node's heartbeat was last seen to change, by this controller's clock.
    probes: Mutex<HashMap<String, Probe>>,
    /// The NoExecute tainting rate limiter of each zone.
    limiters: Mutex<HashMap<String, TokenBucket>>,
    /// The cluster's health, shared by the reconciles of a short while: computing it walks
    /// every node, and doing that in every node's reconcile made a pass over N nodes
    /// O(N²) (a 5,000-node cluster saturated the server).
    health: Mutex<Option<Arc<Health>>>,
}

/// How long a computed [`Health`] serves reconciles before it is computed again; short
/// beside the 5 s monitor period and the 40 s grace period.
const HEALTH_TTL: Duration = Duration::from_millis(200);

/// Which nodes are healthy, overall and per zone, as Kubernetes' node lifecycle controller
/// judges once per monitoring pass.
#[derive(Debug)]
struct Health {
    at: std::time::Instant,
    /// Every node is unhealthy ("master disruption mode").
    disruption: bool,
    /// Zone key → the health of each of its nodes.
    zones: HashMap<String, Vec<bool>>,
}

/// Runs the controller with the default configuration, on the controller manager's
/// `informers`, until `shutdown` resolves.
pub async fn run(
    informers: Informers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    run_with(informers, Config::default(), shutdown).await
}

/// Runs the controller with `config` until `shutdown` resolves.
pub async fn run_with(
    informers: Informers,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let leases_api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);

    let (lease_store, lease_writer) = reflector::store();
    let lease_reflector = reflector::reflector(
        lease_writer,
        watcher::watcher(leases_api.clone(), watcher::Config::default()),
    )
    .default_backoff()
    .for_each(|_| futures::future::ready(()));
    let pod_store = informers.pod_store().await;
    let node_store = informers.node_store().await;
    let node_controller =
        Controller::for_stream(informers.nodes().applied_objects(), node_store.clone());
    let ctx = Arc::new(Context {
        nodes: node_store,
        recorder: EventRecorder::for_component(client.clone(), "node-controller", None),
        client,
        config,
        leases: lease_store.clone(),
        pods: pod_store.clone(),
        backoff: RetryBackoff::with_delay(retry_delay),
        limiters: Mutex::default(),
        probes: Mutex::default(),
        health: Mutex::default(),
    });

    let controller = async move {
        // Judge no node before the Leases and pods are known (the shared pod store is
        // handed out listed): an empty store would make every node look silent.
        let _ = lease_store.wait_until_ready().await;
        tracing::info!("node lifecycle controller started");
        node_controller
            .watches(leases_api, watcher::Config::default(), |lease: Lease| {
                Some(ObjectRef::<Node>::new(&lease.name_any()))
            })
            .watches_stream(informers.pods().touched_objects(), |pod: Pod| {
                pod.spec
                    .and_then(|s| s.node_name)
                    .filter(|n| !n.is_empty())
                    .map(|n| ObjectRef::<Node>::new(&n))
            })
            .run(reconcile, error_policy, ctx)
            .for_each(|r| {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "node lifecycle reconcile");
                }
                futures::future::ready(())
            })
            .await;
    };

    tokio::select! {
        _ = shutdown => Ok(()),
        _ = lease_reflector => Err(Error::WatchEnded("lease")),
        _ = controller => Err(Error::WatchEnded("node")),
    }
}

fn error_policy(node: Arc<Node>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.delay(ctx.backoff.record_failure(&node));
    tracing::warn!(node = %node.name_any(), error = %error, retry_in = ?delay, "node lifecycle");
    Action::requeue(delay)
}

/// Exponential back-off from 100 ms, capped at 30 s.
fn retry_delay(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << failures.saturating_sub(1).min(10));
    Duration::from_millis(ms.min(30_000))
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = node.name_any();
    let now = Timestamp::now();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let lease = ctx
        .leases
        .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
    let grace = ctx.config.grace_period;
    let seen = ctx.probe(&node, lease.as_deref(), now);
    let silent = elapsed(seen, now) > grace;

    let mut node = (*node).clone();
    if silent {
        let conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if let Some(updated) = mark_unknown(&conditions, now) {
            let was_ready = ready_status(&node) == Some("True");
            let patch = json!({"status": {"conditions": updated}});
            node = nodes
                .patch_status(
                    &name,
                    &PatchParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                    &Patch::Merge(&patch),
                )
                .await?;
            tracing::info!(node = %name, "node stopped posting status; marked Unknown");
            if was_ready {
                ctx.recorder.node_event(
                    &name,
                    EventType::Normal,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
            }
        }
    }

    let ready = ready_status(&node).map(str::to_string);
    let existing = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    // With every node unhealthy the fault is more likely the control plane's or the
    // network's than the nodes': no NoExecute taints, hence no evictions (Kubernetes'
    // "master disruption mode").
    let health = ctx.health(now);
    let disruption = health.disruption;
    if disruption {
        tracing::warn!("every node is unhealthy: NoExecute taints are held back");
    }
    let mut no_execute = !disruption;
    let mut limited: Option<Duration> = None;
    if no_execute && adds_no_execute(&existing, ready.as_deref(), now) {
        // New NoExecute taints are rate-limited per zone, by the zone's state.
        let zone = zone_key(&node);
        let zone_health: &[bool] = health.zones.get(&zone).map_or(&[], Vec::as_slice);
        let rate = zone_rate(
            zone_state(zone_health, &ctx.config),
            zone_health.len(),
            &ctx.config,
        );
        let granted = ctx
            .limiters
            .lock()
            .map(|mut l| {
                l.entry(zone.clone())
                    .or_default()
                    .take(rate, std::time::Instant::now())
            })
            .unwrap_or(Ok(()));
        if let Err(wait) = granted {
            tracing::info!(node = %name, zone = %zone, retry_in = ?wait, "NoExecute tainting rate-limited");
            no_execute = false;
            limited = Some(wait);
        }
    }
    let taints = desired_taints(&existing, ready.as_deref(), now, no_execute)
        .unwrap_or_else(|| existing.clone());
    let taints = with_condition_taints(&taints, &condition_taint_keys(&node));
    if taints != existing {
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": taints},
        });
        node = nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tracing::info!(node = %name, ready = ?ready, "node taints updated");
    }

    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let needs_pods =
        ready.as_deref() != Some("True") || taints.iter().any(|t| t.effect == NO_EXECUTE);
    let pods: Vec<Arc<Pod>> = if !needs_pods {
        Vec::new()
    } else {
        ctx.pods.state_filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
        })
    };
    let mut next: Option<Timestamp> = None;
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let pod = if ready.as_deref() != Some("True") {
            match mark_pod_not_ready(&ctx, &pod, now).await? {
                Some(updated) => Arc::new(updated),
                None => pod,
            }
        } else {
            pod
        };
        match eviction(&pod, &taints, now, ctx.config.default_toleration_seconds) {
            Eviction::Never => {}
            Eviction::At(t) => next = Some(next.map_or(t, |n| n.min(t))),
            Eviction::Now => evict(&ctx, &pod, now).await?,
        }
    }

    ctx.backoff.succeeded(&node);
    let mut wait = ctx.config.monitor_period;
    if !silent {
        // Look again just after the heartbeat would go stale.
        let stale_in = grace.saturating_sub(elapsed(seen, now)) + Duration::from_millis(50);
        wait = wait.min(stale_in);
    }
    if let Some(t) = next {
        wait = wait.min(until(now, t) + Duration::from_millis(10));
    }
    if let Some(l) = limited {
        wait = wait.min(l);
    }
    Ok(Action::requeue(wait))
}

/// Sets the pod's Ready condition False, as `MarkPodsNotReady` does; the updated pod when
/// it changed.
async fn mark_pod_not_ready(
    ctx: &Context,
    pod: &Pod,
    now: Timestamp,
) -> Result<Option<Pod>, Error> {
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let Some(updated) = pod_not_ready(&conditions, now) else {
        return Ok(None);
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let patch = json!({"status": {"conditions": updated}});
    match api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(p) => Ok(Some(p)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the pod, recording why: the DisruptionTarget condition and a
/// TaintManagerEviction event.
async fn evict(ctx: &Context, pod: &Pod, now: Timestamp) -> Result<(), Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let patch = json!({"status": {"conditions": with_disruption_target(&conditions, now)}});
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    ctx.recorder.pod_event(
        pod,
        None,
        EventType::Normal,
        "TaintManagerEviction",
        format!("Marking for deletion Pod {ns}/{name}"),
    );
    let params = DeleteParams {
        preconditions: pod.uid().map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), "evicted by a NoExecute taint");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

// ----- decision logic: pure functions -----

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    until(since, now)
}

/// The time from `from` to `to`, zero when `to` is not later.
fn until(from: Timestamp, to: Timestamp) -> Duration {
    let nanos = to.as_nanosecond().saturating_sub(from.as_nanosecond());
    if nanos <= 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The node's status Ready condition's status.
pub fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The latest sign of life: the Lease's renewTime (or acquireTime), the Ready condition's
/// lastHeartbeatTime, or — for a node that never posted one — its creation.
pub fn last_heartbeat(node: &Node, lease: Option<&Lease>) -> Option<Timestamp> {
    let from_lease = lease.and_then(|l| l.spec.as_ref()).and_then(|s| {
        s.renew_time
            .as_ref()
            .or(s.acquire_time.as_ref())
            .map(|t| t.0)
    });
    let from_status = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    match (from_lease, from_status) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a
            .or(b)
            .or_else(|| node.metadata.creation_timestamp.as_ref().map(|t| t.0)),
    }
}

/// Whether the node is alive and Ready: a heartbeat within the grace period and
/// Ready=True.
pub fn healthy(node: &Node, seen: Timestamp, now: Timestamp, grace: Duration) -> bool {
    elapsed(seen, now) <= grace && ready_status(node) == Some("True")
}

/// A node's last heartbeat as the node stamped it, and when this controller saw it change.
/// Staleness is judged by the controller's clock from that moment, as Kubernetes'
/// `probeTimestamp`, so a node's clock skew does not matter and a node first seen (e.g.
/// after a controller restart) gets a full grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub heartbeat: Option<Timestamp>,
    pub seen: Timestamp,
}

/// The probe after observing `heartbeat` at `now`.
pub fn observe(previous: Option<&Probe>, heartbeat: Option<Timestamp>, now: Timestamp) -> Probe {
    match previous {
        Some(p) if p.heartbeat == heartbeat => p.clone(),
        _ => Probe {
            heartbeat,
            seen: now,
        },
    }
}

impl Context {
    /// Records the node's current heartbeat; when it was last seen to change.
    /// The cluster's health, computed again once the last is [`HEALTH_TTL`] old.
    fn health(&self, now: Timestamp) -> Arc<Health> {
        if let Ok(cached) = self.health.lock() {
            if let Some(h) = cached.as_ref().filter(|h| h.at.elapsed() < HEALTH_TTL) {
                return h.clone();
            }
        }
        let grace = self.config.grace_period;
        let mut zones: HashMap<String, Vec<bool>> = HashMap::new();
        for n in self.nodes.state() {
            let lease = self
                .leases
                .get(&ObjectRef::new(&n.name_any()).within(LEASE_NAMESPACE));
            let seen = self.probe(&n, lease.as_deref(), now);
            zones
                .entry(zone_key(&n))
                .or_default()
                .push(healthy(&n, seen, now, grace));
        }
        let health = Arc::new(Health {
            at: std::time::Instant::now(),
            disruption: full_disruption(zones.values().flatten().copied()),
            zones,
        });
        if let Ok(mut cached) = self.health.lock() {
            *cached = Some(health.clone());
        }
        health
    }

    fn probe(&self, node: &Node, lease: Option<&Lease>, now: Timestamp) -> Timestamp {
        let heartbeat = last_heartbeat(node, lease);
        let Ok(mut probes) = self.probes.lock() else {
            return heartbeat.unwrap_or(now);
        };
        let name = node.name_any();
        let probe = observe(probes.get(&name), heartbeat, now);
        let seen = probe.seen;
        probes.insert(name, probe);
        // Forget nodes that are gone.
        if probes.len() > self.nodes.len() + 64 {
            let live: std::collections::HashSet<String> =
                self.nodes.state().iter().map(|n| n.name_any()).collect();
            probes.retain(|n, _| live.contains(n));
        }
        seen
    }
}

/// Whether every node is unhealthy (and there is at least one).
pub fn full_disruption(health: impl IntoIterator<Item = bool>) -> bool {
    let mut any = false;
    for h in health {
        if h {
            return false;
        }
        any = true;
    }
    any
}

/// The conditions with Ready, MemoryPressure, DiskPressure and PIDPressure set to Unknown
/// (added when missing); `None` when they all already are.
pub fn mark_unknown(conditions: &[NodeCondition], now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut out = conditions.to_vec();
    let mut changed = false;
    for type_ in MONITORED_CONDITIONS {
        match out.iter_mut().find(|c| c.type_ == *type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some(REASON_STATUS_UNKNOWN.into());
                c.message = Some(MESSAGE_STATUS_UNKNOWN.into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                out.push(NodeCondition {
                    type_: (*type_).into(),
                    status: "Unknown".into(),
                    reason: Some(REASON_NEVER_UPDATED.into()),
                    message: Some(MESSAGE_NEVER_UPDATED.into()),
                    last_heartbeat_time: Some(Time(now)),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

/// The node's taints with the not-ready/unreachable ones made to match the Ready
/// condition's status; `None` when they already do. Kept taints keep their timeAdded.
/// Without `no_execute` (full disruption) only the NoSchedule ones are kept or added.
pub fn desired_taints(
    existing: &[Taint],
    ready: Option<&str>,
    now: Timestamp,
    no_execute: bool,
) -> Option<Vec<Taint>> {
    let wanted_key = match ready {
        Some("True") => None,
        Some("False") => Some(TAINT_NOT_READY),
        _ => Some(TAINT_UNREACHABLE),
    };
    let managed = |t: &Taint| {
        (t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY)
            && (t.effect == NO_EXECUTE || t.effect == NO_SCHEDULE)
    };
    let wanted =
        |t: &Taint| Some(t.key.as_str()) == wanted_key && (no_execute || t.effect == NO_SCHEDULE);
    let mut out: Vec<Taint> = existing
        .iter()
        .filter(|t| !managed(t) || wanted(t))
        .cloned()
        .collect();
    let effects: &[&str] = if no_execute {
        &[NO_SCHEDULE, NO_EXECUTE]
    } else {
        &[NO_SCHEDULE]
    };
    if let Some(key) = wanted_key {
        for &effect in effects {
            if !out.iter().any(|t| t.key == key && t.effect == effect) {
                out.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    value: None,
                    time_added: (effect == NO_EXECUTE).then_some(Time(now)),
                });
            }
        }
    }
    (out != existing).then_some(out)
}

/// The condition and cordon taint keys the node should carry now.
pub fn condition_taint_keys(node: &Node) -> Vec<&'static str> {
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let mut keys: Vec<&'static str> = CONDITION_TAINTS
        .iter()
        .filter(|(type_, _)| {
            conditions
                .iter()
                .any(|c| c.type_ == *type_ && c.status == "True")
        })
        .map(|&(_, key)| key)
        .collect();
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        keys.push(TAINT_UNSCHEDULABLE);
    }
    keys
}

/// `existing` with exactly the NoSchedule condition taints in `wanted` among the keys this
/// controller manages that way; other taints, and kept ones, are left as they are.
pub fn with_condition_taints(existing: &[Taint], wanted: &[&str]) -> Vec<Taint> {
    let managed =
        |key: &str| key == TAINT_UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|&(_, k)| k == key);
    let mut out: Vec<Taint> = existing
        .iter()
        .filter(|t| {
            !(t.effect == NO_SCHEDULE && managed(&t.key)) || wanted.contains(&t.key.as_str())
        })
        .cloned()
        .collect();
    for &key in wanted {
        if !out.iter().any(|t| t.key == key && t.effect == NO_SCHEDULE) {
            out.push(Taint {
                key: key.into(),
                effect: NO_SCHEDULE.into(),
                value: None,
                time_added: None,
            });
        }
    }
    out
}

/// Whether making the taints match `ready` adds a NoExecute taint to a node that has none
/// of the not-ready/unreachable ones (a swap between them is not rate-limited).
pub fn adds_no_execute(existing: &[Taint], ready: Option<&str>, now: Timestamp) -> bool {
    let had = existing.iter().any(|t| {
        t.effect == NO_EXECUTE && (t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY)
    });
    !had && desired_taints(existing, ready, now, true)
        .is_some_and(|ts| ts.iter().any(|t| t.effect == NO_EXECUTE))
}

/// The zone a node is in: its region and zone labels.
pub fn zone_key(node: &Node) -> String {
    let label = |k: &str| {
        node.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(k).cloned())
            .unwrap_or_default()
    };
    format!(
        "{}:\u{0}:{}",
        label("topology.kubernetes.io/region"),
        label("topology.kubernetes.io/zone")
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Kubernetes' `ComputeZoneState`: no healthy node → full disruption; more than two
/// unhealthy nodes making at least the threshold's share → partial.
pub fn zone_state(health: &[bool], config: &Config) -> ZoneState {
    let unhealthy = health.iter().filter(|h| !**h).count();
    let healthy = health.len() - unhealthy;
    if healthy == 0 && unhealthy > 0 {
        ZoneState::FullDisruption
    } else if unhealthy > 2
        && (unhealthy as f64) / (health.len() as f64) >= config.unhealthy_zone_threshold
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Nodes per second that may be NoExecute-tainted in a zone of `size` nodes.
pub fn zone_rate(state: ZoneState, size: usize, config: &Config) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => config.eviction_rate,
        ZoneState::PartialDisruption if size > config.large_cluster_threshold => {
            config.secondary_eviction_rate
        }
        ZoneState::PartialDisruption => 0.0,
    }
}

/// A token bucket of burst 1, refilled at the rate given at each take.
#[derive(Debug, Default)]
struct TokenBucket {
    /// When the bucket was last looked at, and what it then held.
    last: Option<(std::time::Instant, f64)>,
}

impl TokenBucket {
    /// Takes a token, or says how long until one is there.
    fn take(&mut self, rate: f64, now: std::time::Instant) -> Result<(), Duration> {
        let tokens = match self.last {
            None => 1.0,
            Some((at, held)) => {
                (held + now.saturating_duration_since(at).as_secs_f64() * rate).min(1.0)
            }
        };
        if tokens >= 1.0 {
            self.last = Some((now, tokens - 1.0));
            return Ok(());
        }
        self.last = Some((now, tokens));
        if rate <= 0.0 {
            return Err(Duration::from_secs(5));
        }
        Err(Duration::from_secs_f64(((1.0 - tokens) / rate).min(3600.0)))
    }
}

/// Whether `toleration` tolerates `taint` (Kubernetes' `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => {
            // An empty key with Equal matches nothing but the empty key.
            (!key.is_empty() || taint.key.is_empty())
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// The pod tolerates every NoExecute taint for ever (or there are none).
    Never,
    /// The pod's toleration runs out at this time.
    At(Timestamp),
    /// An untolerated NoExecute taint, or an exhausted toleration.
    Now,
}

/// When the NoExecute taints evict the pod. Every taint must be tolerated; the smallest
/// `tolerationSeconds` among the matching tolerations (none: for ever; ≤ 0: at once) counts
/// from the latest `timeAdded` of the taints (now when unset). A pod lacking a toleration
/// for not-ready/unreachable is treated as having `default_seconds` for them.
pub fn eviction(pod: &Pod, taints: &[Taint], now: Timestamp, default_seconds: i64) -> Eviction {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut min_seconds: Option<i64> = None;
    let mut start: Option<Timestamp> = None;
    let mut any = false;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        any = true;
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let bound: Option<i64> = if matching.is_empty() {
            if taint.key == TAINT_UNREACHABLE || taint.key == TAINT_NOT_READY {
                Some(default_seconds)
            } else {
                return Eviction::Now;
            }
        } else {
            matching.iter().filter_map(|t| t.toleration_seconds).min()
        };
        if let Some(s) = bound {
            min_seconds = Some(min_seconds.map_or(s, |m| m.min(s)));
        }
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        start = Some(start.map_or(added, |s| s.max(added)));
    }
    if !any {
        return Eviction::Never;
    }
    let Some(seconds) = min_seconds else {
        return Eviction::Never;
    };
    if seconds <= 0 {
        return Eviction::Now;
    }
    let start = start.unwrap_or(now);
    let at = start
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or(Timestamp::MAX);
    if at <= now {
        Eviction::Now
    } else {
        Eviction::At(at)
    }
}

/// The pod's conditions with Ready set False; `None` when it already is (or is absent).
pub fn pod_not_ready(conditions: &[PodCondition], now: Timestamp) -> Option<Vec<PodCondition>> {
    let mut out = conditions.to_vec();
    let ready = out.iter_mut().find(|c| c.type_ == "Ready")?;
    if ready.status == "False" {
        return None;
    }
    ready.status = "False".into();
    ready.last_transition_time = Some(Time(now));
    Some(out)
}

/// The pod's conditions with DisruptionTarget=True (reason DeletionByTaintManager).
pub fn with_disruption_target(conditions: &[PodCondition], now: Timestamp) -> Vec<PodCondition> {
    let mut out: Vec<PodCondition> = conditions
        .iter()
        .filter(|c| c.type_ != "DisruptionTarget")
        .cloned()
        .collect();
    out.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    });
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn cond(type_: &str, status: &str, heartbeat: Option<Timestamp>) -> NodeCondition {
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some("KubeletReady".into()),
            last_heartbeat_time: heartbeat.map(Time),
            ..Default::default()
        }
    }

    fn node(conditions: Vec<NodeCondition>) -> Node {
        Node {
            status: Some(NodeStatus {
                conditions: Some(conditions),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, effect: &str, added: Option<i64>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: added.map(|s| Time(ts(s))),
        }
    }

    fn toleration(key: &str, op: &str, effect: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: Some(op.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn heartbeat_is_the_latest_of_lease_and_status() {
        let n = node(vec![cond("Ready", "True", Some(ts(10)))]);
        let lease = Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(ts(30))),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(last_heartbeat(&n, Some(&lease)), Some(ts(30)));
        assert_eq!(last_heartbeat(&n, None), Some(ts(10)));
        let mut bare = node(vec![]);
        assert_eq!(last_heartbeat(&bare, None), None);
        bare.metadata.creation_timestamp = Some(Time(ts(5)));
        assert_eq!(last_heartbeat(&bare, None), Some(ts(5)));
    }

    #[test]
    fn silent_node_conditions_become_unknown() {
        let conds = vec![
            cond("Ready", "True", Some(ts(0))),
            cond("MemoryPressure", "False", Some(ts(0))),
            cond("NetworkUnavailable", "False", None),
        ];
        let out = mark_unknown(&conds, ts(50)).unwrap();
        let ready = out.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(ready.last_transition_time, Some(Time(ts(50))));
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(0))));
        // Missing kubelet conditions are added, others left alone.
        let disk = out.iter().find(|c| c.type_ == "DiskPressure").unwrap();
        assert_eq!(disk.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        let net = out
            .iter()
            .find(|c| c.type_ == "NetworkUnavailable")
            .unwrap();
        assert_eq!(net.status, "False");
        // Idempotent.
        assert!(mark_unknown(&out, ts(60)).is_none());
    }

    #[test]
    fn taints_follow_ready() {
        let other = taint("dedicated", "NoSchedule", None);
        let out =
            desired_taints(std::slice::from_ref(&other), Some("Unknown"), ts(1), true).unwrap();
        assert_eq!(out.len(), 3);
        assert!(out.contains(&other));
        assert!(out.contains(&taint(TAINT_UNREACHABLE, "NoExecute", Some(1))));
        assert!(out.contains(&taint(TAINT_UNREACHABLE, "NoSchedule", None)));
        // Stable: timeAdded is kept.
        assert!(desired_taints(&out, Some("Unknown"), ts(9), true).is_none());
        // Ready=False swaps unreachable for not-ready.
        let nr = desired_taints(&out, Some("False"), ts(9), true).unwrap();
        assert!(nr.contains(&taint(TAINT_NOT_READY, "NoExecute", Some(9))));
        assert!(!nr.iter().any(|t| t.key == TAINT_UNREACHABLE));
        // Recovery removes them, and only them.
        assert_eq!(
            desired_taints(&nr, Some("True"), ts(9), true).unwrap(),
            vec![other.clone()]
        );
        assert!(desired_taints(&[other], Some("True"), ts(9), true).is_none());
    }

    #[test]
    fn no_schedule_taints_follow_conditions_and_the_cordon() {
        let mut n = node(vec![
            cond("Ready", "True", None),
            cond("DiskPressure", "True", None),
            cond("MemoryPressure", "False", None),
            cond("PIDPressure", "Unknown", None),
        ]);
        assert_eq!(condition_taint_keys(&n), [TAINT_DISK_PRESSURE]);
        n.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
        assert_eq!(
            condition_taint_keys(&n),
            [TAINT_DISK_PRESSURE, TAINT_UNSCHEDULABLE]
        );

        let other = taint("dedicated", "NoSchedule", None);
        // A user's NoExecute taint with a managed key is not ours to remove.
        let user = taint(TAINT_DISK_PRESSURE, "NoExecute", None);
        let existing = vec![other.clone(), user.clone()];
        let out = with_condition_taints(&existing, &condition_taint_keys(&n));
        assert_eq!(
            out,
            vec![
                other.clone(),
                user.clone(),
                taint(TAINT_DISK_PRESSURE, "NoSchedule", None),
                taint(TAINT_UNSCHEDULABLE, "NoSchedule", None),
            ]
        );
        // Stable once there.
        assert_eq!(with_condition_taints(&out, &condition_taint_keys(&n)), out);
        // Pressure gone, uncordoned: only those go.
        assert_eq!(with_condition_taints(&out, &[]), existing);
    }

    #[test]
    fn full_disruption_holds_back_no_execute() {
        let other = taint("dedicated", "NoSchedule", None);
        let tainted =
            desired_taints(std::slice::from_ref(&other), Some("Unknown"), ts(1), true).unwrap();
        let held = desired_taints(&tainted, Some("Unknown"), ts(2), false).unwrap();
        assert_eq!(
            held,
            vec![other.clone(), taint(TAINT_UNREACHABLE, "NoSchedule", None)]
        );
        assert!(desired_taints(&held, Some("Unknown"), ts(3), false).is_none());
        assert!(full_disruption([false, false]));
        assert!(!full_disruption([false, true]));
        assert!(!full_disruption([]));
    }

    #[test]
    fn health_needs_a_fresh_heartbeat_and_ready() {
        let grace = Duration::from_secs(40);
        let n = node(vec![cond("Ready", "True", Some(ts(0)))]);
        assert!(healthy(&n, ts(0), ts(40), grace));
        assert!(!healthy(&n, ts(0), ts(41), grace));
        let nr = node(vec![cond("Ready", "False", Some(ts(0)))]);
        assert!(!healthy(&nr, ts(0), ts(1), grace));
    }

    #[test]
    fn probes_use_the_local_clock() {
        // First sight: the node gets a full grace period from now, whatever its clock says.
        let p = observe(None, Some(ts(-1000)), ts(0));
        assert_eq!(p.seen, ts(0));
        // Unchanged heartbeat: still seen at 0.
        let p = observe(Some(&p), Some(ts(-1000)), ts(50));
        assert_eq!(p.seen, ts(0));
        // A renewal, even stamped by a clock far behind, counts from when it was seen.
        let p = observe(Some(&p), Some(ts(-990)), ts(60));
        assert_eq!(p.seen, ts(60));
        assert_eq!(p.heartbeat, Some(ts(-990)));
    }

    #[test]
    fn zones_and_rates() {
        let c = Config::default();
        assert_eq!(zone_state(&[true, true, false], &c), ZoneState::Normal);
        assert_eq!(zone_state(&[false, false], &c), ZoneState::FullDisruption);
        // Two unhealthy of three: not more than two, so Normal.
        assert_eq!(zone_state(&[true, false, false], &c), ZoneState::Normal);
        assert_eq!(
            zone_state(&[true, false, false, false], &c),
            ZoneState::PartialDisruption
        );
        assert_eq!(zone_state(&[], &c), ZoneState::Normal);
        assert_eq!(zone_rate(ZoneState::Normal, 3, &c), 0.1);
        assert_eq!(zone_rate(ZoneState::FullDisruption, 3, &c), 0.1);
        assert_eq!(zone_rate(ZoneState::PartialDisruption, 10, &c), 0.0);
        assert_eq!(zone_rate(ZoneState::PartialDisruption, 100, &c), 0.01);
        let mut n = node(vec![]);
        n.metadata.labels = Some(
            [("topology.kubernetes.io/zone".to_string(), "z1".to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(zone_key(&n), ":\u{0}:z1");
    }

    #[test]
    fn token_bucket_limits_to_the_rate() {
        let t0 = std::time::Instant::now();
        let mut b = TokenBucket::default();
        assert!(b.take(0.5, t0).is_ok());
        assert_eq!(b.take(0.5, t0), Err(Duration::from_secs(2)));
        assert_eq!(
            b.take(0.5, t0 + Duration::from_secs(1)),
            Err(Duration::from_secs(1))
        );
        assert!(b.take(0.5, t0 + Duration::from_secs(2)).is_ok());
        assert!(b.take(0.0, t0 + Duration::from_secs(100)).is_err());
    }

    #[test]
    fn only_a_new_no_execute_taint_is_rate_limited() {
        assert!(adds_no_execute(&[], Some("Unknown"), ts(0)));
        assert!(!adds_no_execute(&[], Some("True"), ts(0)));
        let nr = [taint(TAINT_NOT_READY, "NoExecute", Some(0))];
        assert!(!adds_no_execute(&nr, Some("Unknown"), ts(0)));
    }

    #[test]
    fn toleration_matching() {
        let t = taint(TAINT_UNREACHABLE, "NoExecute", None);
        assert!(tolerates(
            &toleration(TAINT_UNREACHABLE, "Exists", "NoExecute", None),
            &t
        ));
        assert!(tolerates(
            &toleration(TAINT_UNREACHABLE, "Exists", "", None),
            &t
        ));
        assert!(tolerates(&toleration("", "Exists", "", None), &t));
        assert!(!tolerates(
            &toleration(TAINT_UNREACHABLE, "Exists", "NoSchedule", None),
            &t
        ));
        assert!(!tolerates(
            &toleration(TAINT_NOT_READY, "Exists", "", None),
            &t
        ));
        let mut eq = toleration("k", "Equal", "", None);
        eq.value = Some("v".into());
        let mut kv = taint("k", "NoExecute", None);
        kv.value = Some("v".into());
        assert!(tolerates(&eq, &kv));
        kv.value = Some("w".into());
        assert!(!tolerates(&eq, &kv));
    }

    #[test]
    fn eviction_times() {
        let taints = [
            taint(TAINT_UNREACHABLE, "NoExecute", Some(100)),
            taint(TAINT_UNREACHABLE, "NoSchedule", None),
        ];
        // No NoExecute taint: never.
        assert_eq!(
            eviction(&pod(vec![]), &taints[1..], ts(0), 300),
            Eviction::Never
        );
        // The admission default: 300 s after the taint was added.
        let p = pod(vec![toleration(
            TAINT_UNREACHABLE,
            "Exists",
            "NoExecute",
            Some(300),
        )]);
        assert_eq!(eviction(&p, &taints, ts(150), 2), Eviction::At(ts(400)));
        assert_eq!(eviction(&p, &taints, ts(400), 2), Eviction::Now);
        // No toleration at all: the configured default for the node-lifecycle taints.
        assert_eq!(
            eviction(&pod(vec![]), &taints, ts(101), 2),
            Eviction::At(ts(102))
        );
        // Unbounded toleration: never.
        let forever = pod(vec![toleration("", "Exists", "", None)]);
        assert_eq!(eviction(&forever, &taints, ts(10_000), 2), Eviction::Never);
        // The smallest bound wins; zero or less is at once.
        let two = pod(vec![
            toleration(TAINT_UNREACHABLE, "Exists", "NoExecute", Some(60)),
            toleration("", "Exists", "", Some(30)),
        ]);
        assert_eq!(eviction(&two, &taints, ts(101), 2), Eviction::At(ts(130)));
        let zero = pod(vec![toleration(TAINT_UNREACHABLE, "Exists", "", Some(0))]);
        assert_eq!(eviction(&zero, &taints, ts(101), 2), Eviction::Now);
        // Another NoExecute taint not tolerated: at once.
        let mut more = taints.to_vec();
        more.push(taint("maintenance", "NoExecute", Some(100)));
        assert_eq!(eviction(&p, &more, ts(101), 2), Eviction::Now);
    }

    #[test]
    fn pods_marked_not_ready_and_disrupted() {
        let conds = vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }];
        let out = pod_not_ready(&conds, ts(3)).unwrap();
        assert_eq!(out[0].status, "False");
        assert_eq!(out[0].last_transition_time, Some(Time(ts(3))));
        assert!(pod_not_ready(&out, ts(4)).is_none());
        assert!(pod_not_ready(&[], ts(4)).is_none());
        let d = with_disruption_target(&out, ts(5));
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].reason.as_deref(), Some("DeletionByTaintManager"));
    }

    #[test]
    fn retry_backs_off() {
        assert_eq!(retry_delay(1), Duration::from_millis(100));
        assert_eq!(retry_delay(2), Duration::from_millis(200));
        assert_eq!(retry_delay(40), Duration::from_secs(30));
    }
}
