//! Simulated ("hollow") nodes, as kubemark's: each registers a Node with the configured
//! capacity, renews its Lease, and "runs" the pods bound to it by reporting them Running
//! with a pod IP, without starting anything. Scale tests and scheduler/controller
//! benchmarks use them to put thousands of nodes on one machine.
//!
//! A node's heartbeat stops on command: annotate it `flotilla.io/heartbeat=stopped`
//! (`kubectl annotate node sim-3 flotilla.io/heartbeat=stopped`); removing the annotation
//! resumes it. A stopped node also stops reporting its pods, like a machine that went away.
//! A resumed node acts as a kubelet coming back does: it posts its node status again when
//! the node lifecycle controller had marked it Unknown (Ready=True, no pressure), and
//! catches up on its pods (the `pods` module).

mod pods;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use crate::node::lease::LeaseRenewer;

/// Marks the Nodes this mode created.
pub const LABEL_SIMULATED: &str = "flotilla.io/simulated";
/// `stopped` halts the node's heartbeat.
pub const ANNOTATION_HEARTBEAT: &str = "flotilla.io/heartbeat";

#[derive(Debug, Clone)]
pub struct SimulatedConfig {
    pub count: usize,
    /// Nodes are named `<prefix>-<index>`.
    pub name_prefix: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    /// Nodes are spread round-robin over this many `topology.kubernetes.io/zone` values.
    pub zones: usize,
    pub lease_interval: Duration,
    /// Requests in flight at once (registration, renewals, pod status).
    pub concurrency: usize,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        SimulatedConfig {
            count: 1,
            name_prefix: "sim".into(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            zones: 3,
            lease_interval: Duration::from_secs(10),
            concurrency: 32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulated nodes: {0}")]
    Api(#[from] kube::Error),
    #[error("the pod watch ended")]
    WatchEnded,
}

/// The Node a simulated node registers.
pub fn simulated_node(config: &SimulatedConfig, index: usize) -> Node {
    let name = format!("{}-{index}", config.name_prefix);
    let now = Time(jiff::Timestamp::now());
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", config.cpu.clone()),
        ("memory", config.memory.clone()),
        ("pods", config.pods.to_string()),
        ("ephemeral-storage", "100Gi".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect();
    let zone = format!("zone-{}", index % config.zones.max(1));
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("topology.kubernetes.io/zone".to_string(), zone),
        (LABEL_SIMULATED.to_string(), "true".to_string()),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(pods::node_cidr(index)),
            pod_cidrs: Some(vec![pods::node_cidr(index)]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            addresses: Some(vec![NodeAddress {
                type_: "Hostname".into(),
                address: name,
            }]),
            conditions: Some(healthy_conditions(&[], now.0)),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                operating_system: "linux".into(),
                kubelet_version: crate::node::registration::KUBELET_VERSION.into(),
                container_runtime_version: "simulated://0".into(),
                os_image: "simulated".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The conditions a healthy simulated node posts: Ready, no pressure. Each keeps its
/// transition time from `prev` unless its status changes, as the kubelet's do.
pub fn healthy_conditions(prev: &[NodeCondition], now: jiff::Timestamp) -> Vec<NodeCondition> {
    [
        ("Ready", "True", "KubeletReady"),
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
    ]
    .into_iter()
    .map(|(type_, status, reason)| {
        let transition = prev
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(format!("simulated node: {reason}")),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(transition),
        }
    })
    .collect()
}

/// Whether a running node must post its status: its Ready condition is Unknown, which
/// only the node lifecycle controller writes ("Kubelet stopped posting node status"). A
/// kubelet that is posting again replaces it with its own view; a Ready=False that a
/// kubelet (or a test acting as one) posted stays.
pub fn needs_status_post(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "Unknown")
}

/// Registers the nodes and runs them until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    config: SimulatedConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SimError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut uids: HashMap<String, String> = HashMap::new();
    let created: Vec<Result<Node, kube::Error>> = futures::stream::iter(0..config.count)
        .map(|i| {
            let nodes = nodes.clone();
            let node = simulated_node(&config, i);
            async move {
                match nodes.create(&PostParams::default(), &node).await {
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        nodes.get(node.metadata.name.as_deref().unwrap_or("")).await
                    }
                    other => other,
                }
            }
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    for n in created {
        let n = n?;
        uids.insert(
            n.metadata.name.clone().unwrap_or_default(),
            n.metadata.uid.clone().unwrap_or_default(),
        );
    }
    tracing::info!(count = config.count, "simulated nodes registered");

    let stopped: Arc<Mutex<HashSet<String>>> = Arc::default();
    let names: Arc<HashMap<String, usize>> = Arc::new(
        (0..config.count)
            .map(|i| (format!("{}-{i}", config.name_prefix), i))
            .collect(),
    );
    let (resumed_tx, resumed_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let heartbeats = heartbeat_loop(client.clone(), &config, uids, stopped.clone());
    let watch_stops =
        watch_heartbeat_annotations(client.clone(), stopped.clone(), names.clone(), resumed_tx);
    let pods = pods::run(client, names, stopped, resumed_rx, config.concurrency);
    tokio::select! {
        _ = shutdown => Ok(()),
        r = heartbeats => r,
        r = watch_stops => r,
        r = pods => r,
    }
}

async fn heartbeat_loop(
    client: kube::Client,
    config: &SimulatedConfig,
    uids: HashMap<String, String>,
    stopped: Arc<Mutex<HashSet<String>>>,
) -> Result<(), SimError> {
    let renewers: Vec<(String, LeaseRenewer)> = uids
        .iter()
        .map(|(name, uid)| (name.clone(), LeaseRenewer::new(client.clone(), name, uid)))
        .collect();
    let renewers: Vec<(String, Arc<tokio::sync::Mutex<LeaseRenewer>>)> = renewers
        .into_iter()
        .map(|(n, r)| (n, Arc::new(tokio::sync::Mutex::new(r))))
        .collect();
    let mut tick = tokio::time::interval(config.lease_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let skip: HashSet<String> = stopped.lock().map(|s| s.clone()).unwrap_or_default();
        futures::stream::iter(renewers.iter().filter(|(n, _)| !skip.contains(n)))
            .for_each_concurrent(config.concurrency.max(1), |(name, r)| async move {
                if let Err(e) = r.lock().await.renew().await {
                    tracing::debug!(node = %name, error = %e, "renewing a simulated lease");
                }
            })
            .await;
    }
}

/// Follows the heartbeat annotations, tells the pod task which nodes resumed, and posts
/// the status of running nodes the node lifecycle controller marked Unknown.
async fn watch_heartbeat_annotations(
    client: kube::Client,
    stopped: Arc<Mutex<HashSet<String>>>,
    names: Arc<HashMap<String, usize>>,
    resumed: tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<(), SimError> {
    let nodes: Api<Node> = Api::all(client);
    // Nodes whose status post is in flight: one at a time per node.
    let posting: Arc<Mutex<HashSet<String>>> = Arc::default();
    let cfg = watcher::Config::default().labels(&format!("{LABEL_SIMULATED}=true"));
    let mut stream = watcher::watcher(nodes.clone(), cfg)
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.try_next().await.transpose() {
        let node = match ev {
            Ok(Event::Apply(n)) | Ok(Event::InitApply(n)) => n,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "simulated node watch");
                continue;
            }
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        if !names.contains_key(&name) {
            continue;
        }
        let stop = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_HEARTBEAT))
            .is_some_and(|v| v == "stopped");
        if let Ok(mut s) = stopped.lock() {
            let changed = if stop {
                s.insert(name.clone())
            } else {
                s.remove(&name)
            };
            if changed {
                tracing::info!(node = %name, stopped = stop, "simulated heartbeat toggled");
                if !stop {
                    let _ = resumed.send(name.clone());
                }
            }
        }
        if !stop
            && needs_status_post(&node)
            && posting.lock().is_ok_and(|mut p| p.insert(name.clone()))
        {
            let (nodes, posting) = (nodes.clone(), posting.clone());
            let prev = node.status.and_then(|s| s.conditions).unwrap_or_default();
            tokio::spawn(async move {
                let conditions = healthy_conditions(&prev, jiff::Timestamp::now());
                let patch = serde_json::json!({"status": {"conditions": conditions}});
                match nodes
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => tracing::info!(node = %name, "simulated node posted Ready again"),
                    Err(e) => tracing::debug!(node = %name, error = %e, "posting node status"),
                }
                if let Ok(mut p) = posting.lock() {
                    p.remove(&name);
                }
            });
        }
    }
    Err(SimError::WatchEnded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_capacity_zone_and_a_cidr() {
        let cfg = SimulatedConfig {
            zones: 2,
            ..Default::default()
        };
        let n = simulated_node(&cfg, 3);
        assert_eq!(n.metadata.name.as_deref(), Some("sim-3"));
        let labels = n.metadata.labels.unwrap();
        assert_eq!(labels["topology.kubernetes.io/zone"], "zone-1");
        let status = n.status.unwrap();
        assert_eq!(status.allocatable.unwrap()["cpu"].0, "4");
        assert_eq!(n.spec.unwrap().pod_cidr.as_deref(), Some("10.64.3.0/24"));
        assert!(status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"));
    }

    fn cond(type_: &str, status: &str, at: jiff::Timestamp) -> NodeCondition {
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: Some(Time(at)),
            last_heartbeat_time: Some(Time(at)),
            ..Default::default()
        }
    }

    #[test]
    fn recovery_posts_ready_with_a_new_transition_only_where_status_changed() {
        let then: jiff::Timestamp = "2026-11-28T10:00:00Z".parse().unwrap();
        let now: jiff::Timestamp = "2026-11-28T10:05:00Z".parse().unwrap();
        let prev = vec![
            cond("Ready", "Unknown", then),
            cond("MemoryPressure", "False", then),
        ];
        let out = healthy_conditions(&prev, now);
        let get = |t: &str| out.iter().find(|c| c.type_ == t).unwrap();
        assert_eq!(get("Ready").status, "True");
        assert_eq!(get("Ready").reason.as_deref(), Some("KubeletReady"));
        assert_eq!(get("Ready").last_transition_time, Some(Time(now)));
        assert_eq!(get("MemoryPressure").last_transition_time, Some(Time(then)));
        assert_eq!(get("DiskPressure").last_transition_time, Some(Time(now)));
        assert!(out.iter().all(|c| c.last_heartbeat_time == Some(Time(now))));
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn only_an_unknown_ready_calls_for_a_status_post() {
        let at = jiff::Timestamp::now();
        let node = |status: &str| Node {
            status: Some(NodeStatus {
                conditions: Some(vec![cond("Ready", status, at)]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(needs_status_post(&node("Unknown")));
        // A kubelet's own NotReady stands.
        assert!(!needs_status_post(&node("False")));
        assert!(!needs_status_post(&node("True")));
        assert!(!needs_status_post(&Node::default()));
    }
}
