//! Simulated ("hollow") nodes, as kubemark's: each registers a Node with the configured
//! capacity, renews its Lease, and "runs" the pods bound to it by reporting them Running
//! with a pod IP, without starting anything. Scale tests and scheduler/controller
//! benchmarks use them to put thousands of nodes on one machine.
//!
//! A node's heartbeat stops on command: annotate it `flotilla.io/heartbeat=stopped`
//! (`kubectl annotate node sim-3 flotilla.io/heartbeat=stopped`); removing the annotation
//! resumes it. A stopped node also stops reporting its pods, like a machine that went away.

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
use kube::api::{Api, PostParams};
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
    let condition = |type_: &str, status: &str, reason: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(format!("simulated node: {reason}")),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
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
            conditions: Some(vec![
                condition("Ready", "True", "KubeletReady"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID"),
            ]),
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
    let heartbeats = heartbeat_loop(client.clone(), &config, uids, stopped.clone());
    let watch_stops = watch_heartbeat_annotations(client.clone(), stopped.clone(), names.clone());
    let pods = pods::run(client, names, stopped, config.concurrency);
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

async fn watch_heartbeat_annotations(
    client: kube::Client,
    stopped: Arc<Mutex<HashSet<String>>>,
    names: Arc<HashMap<String, usize>>,
) -> Result<(), SimError> {
    let cfg = watcher::Config::default().labels(&format!("{LABEL_SIMULATED}=true"));
    let mut stream = watcher::watcher(Api::<Node>::all(client), cfg)
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
            }
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
}
