//! Node registration: the Node object built from the machine, created on first start and
//! reconciled (labels, addresses, capacity, endpoint) after a restart, as the kubelet's
//! `registerWithAPIServer` does.
//!
//! Allocatable is capacity minus the hard eviction thresholds (by default the kubelet's
//! `memory.available<100Mi`, `nodefs.available<10%`): what a kubelet with no system/kube
//! reservations reports. CPU and pods are not reduced.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::eviction::EvictionThresholds;
use super::machine::{self, SystemInfo};
use super::NodeError;

/// The kubelet version this agent reports (`kubectl get nodes` VERSION column).
pub const KUBELET_VERSION: &str = "v1.33.0-flotilla";

/// A Node's capacity or allocatable.
pub type ResourceList = BTreeMap<String, Quantity>;

/// What the agent knows about its node that does not change while it runs.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub name: String,
    pub ip: IpAddr,
    /// The node server's actual port.
    pub port: u16,
    pub pod_cidr: Option<String>,
    pub max_pods: u32,
    pub labels: BTreeMap<String, String>,
    pub control_plane: bool,
    pub data_dir: PathBuf,
    pub runtime_binary: PathBuf,
    pub cni_bin_dir: PathBuf,
    /// `runc://1.1.5`.
    pub runtime_version: String,
    pub system: SystemInfo,
    pub eviction: EvictionThresholds,
}

/// Capacity and allocatable, measured now.
pub fn resources(facts: &NodeFacts) -> Result<(ResourceList, ResourceList), NodeError> {
    let cpus = machine::cpu_count();
    let mem = machine::meminfo()?;
    let fs = machine::fs_usage(&facts.data_dir)?;
    Ok(resource_lists(
        cpus,
        mem.total_bytes,
        fs.capacity_bytes,
        facts.max_pods,
        &facts.eviction,
    ))
}

fn resource_lists(
    cpus: u32,
    memory: u64,
    storage: u64,
    pods: u32,
    eviction: &EvictionThresholds,
) -> (ResourceList, ResourceList) {
    let q = |s: String| Quantity(s);
    // The kubelet reports memory in Ki and storage in bytes.
    let capacity = BTreeMap::from([
        ("cpu".to_string(), q(cpus.to_string())),
        ("memory".to_string(), q(format!("{}Ki", memory / 1024))),
        ("ephemeral-storage".to_string(), q(storage.to_string())),
        ("pods".to_string(), q(pods.to_string())),
    ]);
    let alloc_memory = memory - eviction.reserved_memory(memory);
    let alloc_storage = storage - eviction.reserved_storage(storage);
    let allocatable = BTreeMap::from([
        ("cpu".to_string(), q(cpus.to_string())),
        (
            "memory".to_string(),
            q(format!("{}Ki", alloc_memory / 1024)),
        ),
        (
            "ephemeral-storage".to_string(),
            q(alloc_storage.to_string()),
        ),
        ("pods".to_string(), q(pods.to_string())),
    ]);
    (capacity, allocatable)
}

/// The labels the kubelet puts on its Node, plus the configured ones.
pub fn labels(facts: &NodeFacts) -> BTreeMap<String, String> {
    let os = facts.system.operating_system.clone();
    let arch = facts.system.architecture.clone();
    let mut l = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), facts.name.clone()),
        ("kubernetes.io/os".to_string(), os.clone()),
        ("kubernetes.io/arch".to_string(), arch.clone()),
        ("beta.kubernetes.io/os".to_string(), os),
        ("beta.kubernetes.io/arch".to_string(), arch),
    ]);
    if facts.control_plane {
        // k3s writes "true"; kubeadm writes "". Either makes ROLES say control-plane.
        l.insert(
            "node-role.kubernetes.io/control-plane".to_string(),
            "true".to_string(),
        );
    }
    l.extend(facts.labels.clone());
    l
}

pub fn addresses(facts: &NodeFacts) -> Vec<NodeAddress> {
    vec![
        NodeAddress {
            type_: "InternalIP".into(),
            address: facts.ip.to_string(),
        },
        NodeAddress {
            type_: "Hostname".into(),
            address: facts.name.clone(),
        },
    ]
}

pub fn node_info(facts: &NodeFacts) -> NodeSystemInfo {
    let s = &facts.system;
    NodeSystemInfo {
        machine_id: s.machine_id.clone(),
        system_uuid: s.system_uuid.clone(),
        boot_id: s.boot_id.clone(),
        kernel_version: s.kernel_version.clone(),
        os_image: s.os_image.clone(),
        container_runtime_version: facts.runtime_version.clone(),
        kubelet_version: KUBELET_VERSION.into(),
        kube_proxy_version: KUBELET_VERSION.into(),
        operating_system: s.operating_system.clone(),
        architecture: s.architecture.clone(),
        ..Default::default()
    }
}

pub fn daemon_endpoints(facts: &NodeFacts) -> NodeDaemonEndpoints {
    NodeDaemonEndpoints {
        kubelet_endpoint: Some(DaemonEndpoint {
            port: i32::from(facts.port),
        }),
    }
}

/// Where the local-path provisioner puts this node's volumes: under the agent's own data
/// dir, so that every node (and every test's agent) has its own.
pub fn local_path_dir_annotation(facts: &NodeFacts) -> (String, String) {
    use crate::volumemanager::local_path;
    (
        local_path::NODE_DIR_ANNOTATION.to_string(),
        local_path::root_for(&facts.data_dir)
            .to_string_lossy()
            .into_owned(),
    )
}

/// Why a node without a pod subnet is not Ready (it has no pod network yet).
pub const WAITING_FOR_POD_CIDR: &str =
    "network not ready: waiting for node IPAM to assign the podCIDR";

/// The node's observations as registration reports them: a node that has no pod subnet yet
/// (it waits for node IPAM) cannot run pods, so it must not show Ready even for the moment
/// between registering and the first status report.
fn registration_observations(facts: &NodeFacts, has_pod_cidr: bool) -> super::status::Observations {
    let mut observed = super::status::observe(facts);
    if !has_pod_cidr && observed.runtime_problem.is_none() {
        observed.runtime_problem = Some(WAITING_FOR_POD_CIDR.into());
    }
    observed
}

/// The Node as this agent would create it, conditions included.
pub fn desired_node(facts: &NodeFacts) -> Result<Node, NodeError> {
    let (capacity, allocatable) = resources(facts)?;
    let now = jiff::Timestamp::now();
    let conditions = super::status::conditions(
        &[],
        &registration_observations(facts, facts.pod_cidr.is_some()),
        now,
    );
    Ok(Node {
        metadata: ObjectMeta {
            name: Some(facts.name.clone()),
            labels: Some(labels(facts)),
            annotations: Some(BTreeMap::from([
                ("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string()),
                local_path_dir_annotation(facts),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: facts.pod_cidr.clone(),
            pod_cidrs: facts.pod_cidr.clone().map(|c| vec![c]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(capacity),
            allocatable: Some(allocatable),
            addresses: Some(addresses(facts)),
            node_info: Some(node_info(facts)),
            daemon_endpoints: Some(daemon_endpoints(facts)),
            conditions: Some(conditions),
            ..Default::default()
        }),
    })
}

/// Creates the Node, or, when it exists (an agent restart, or a Node registered by an
/// earlier incarnation), brings its labels, podCIDR and status facts up to date while
/// keeping its conditions' transition times.
pub async fn register(client: &kube::Client, facts: &NodeFacts) -> Result<Node, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let desired = desired_node(facts)?;
    match api.create(&PostParams::default(), &desired).await {
        Ok(node) => {
            tracing::info!(node = %facts.name, "registered the node");
            return Ok(node);
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let existing = api.get(&facts.name).await?;
    let (dir_key, dir) = local_path_dir_annotation(facts);
    let mut meta_patch = serde_json::json!({"metadata": {
        "labels": labels(facts),
        "annotations": {dir_key: dir},
    }});
    // podCIDR may only be set once; a node whose CIDR was assigned keeps it.
    let has_cidr = existing
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty());
    if let (false, Some(cidr)) = (has_cidr, &facts.pod_cidr) {
        meta_patch["spec"] = serde_json::json!({"podCIDR": cidr, "podCIDRs": [cidr]});
        // Only over the Node read: if node IPAM assigned a CIDR since, this conflicts
        // and the retry keeps IPAM's (podCIDR is immutable once set).
        if let Some(rv) = &existing.metadata.resource_version {
            meta_patch["metadata"]["resourceVersion"] = serde_json::json!(rv);
        }
    }
    api.patch(
        &facts.name,
        &PatchParams::default(),
        &Patch::Merge(&meta_patch),
    )
    .await?;
    let prev = existing
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut status = desired.status.unwrap_or_default();
    status.conditions = Some(super::status::conditions(
        &prev,
        &registration_observations(facts, has_cidr || facts.pod_cidr.is_some()),
        jiff::Timestamp::now(),
    ));
    let node = api
        .patch_status(
            &facts.name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "status": status })),
        )
        .await?;
    tracing::info!(node = %facts.name, "the node was registered before; reconciled it");
    Ok(node)
}

/// [`register`] until it succeeds: an agent that starts before its API server (or while
/// it restarts) waits for it, as the kubelet does.
pub async fn register_with_retry(
    client: &kube::Client,
    facts: &NodeFacts,
) -> Result<Node, NodeError> {
    let mut pause = Duration::from_millis(200);
    loop {
        match register(client, facts).await {
            Ok(node) => return Ok(node),
            // The machine cannot be read: retrying will not help.
            Err(e @ (NodeError::Machine(_) | NodeError::Io { .. })) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?pause, "registering the node failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(7));
            }
        }
    }
}

/// How often an agent without `--pod-cidr` looks for the podCIDR node IPAM assigned.
const POD_CIDR_POLL: Duration = Duration::from_millis(500);
/// How often it says it is still waiting.
const POD_CIDR_NAG: Duration = Duration::from_secs(30);

/// Registers the Node (without a podCIDR) and waits until node IPAM has assigned it one,
/// as a kubelet without `--pod-cidr` waits for `spec.podCIDR` before it configures the pod
/// network. A Node registered earlier keeps the CIDR it already has.
pub async fn await_pod_cidr(client: &kube::Client, facts: &NodeFacts) -> Result<String, NodeError> {
    let node = register_with_retry(client, facts).await?;
    if let Some(cidr) = pod_cidr(&node) {
        tracing::info!(node = %facts.name, %cidr, "using the node's podCIDR");
        return Ok(cidr);
    }
    tracing::info!(
        node = %facts.name,
        "waiting for node IPAM (the controller manager) to assign the node's podCIDR; \
         pass --pod-cidr to choose one instead"
    );
    let api: Api<Node> = Api::all(client.clone());
    // Without a subnet there is no pod network: NotReady (as a kubelet whose network
    // plugin is not ready), so nothing is scheduled here until the agent can run it.
    let mut observed = super::status::observe(facts);
    observed.runtime_problem = Some(WAITING_FOR_POD_CIDR.into());
    let prev = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let conditions = super::status::conditions(&prev, &observed, jiff::Timestamp::now());
    if let Err(e) = api
        .patch_status(
            &facts.name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"status": {"conditions": conditions}})),
        )
        .await
    {
        tracing::warn!(error = %e, "marking the node not ready while it waits failed");
    }
    let started = tokio::time::Instant::now();
    let mut nagged = started;
    loop {
        tokio::time::sleep(POD_CIDR_POLL).await;
        match api.get_opt(&facts.name).await {
            Ok(Some(node)) => {
                if let Some(cidr) = pod_cidr(&node) {
                    tracing::info!(node = %facts.name, %cidr, "node IPAM assigned the podCIDR");
                    return Ok(cidr);
                }
            }
            // Deleted while waiting (a node controller, an admin): register it again.
            Ok(None) => {
                register_with_retry(client, facts).await?;
            }
            Err(e) => tracing::warn!(error = %e, "reading the node for its podCIDR failed"),
        }
        if nagged.elapsed() >= POD_CIDR_NAG {
            nagged = tokio::time::Instant::now();
            tracing::warn!(
                node = %facts.name,
                waited = ?started.elapsed(),
                "still waiting for a podCIDR: is the controller manager running with a \
                 --cluster-cidr that has room?"
            );
        }
    }
}

fn pod_cidr(node: &Node) -> Option<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.clone())
        .filter(|c| !c.is_empty())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn facts() -> NodeFacts {
        NodeFacts {
            name: "node-a".into(),
            ip: "192.0.2.5".parse().unwrap(),
            port: 10250,
            pod_cidr: Some("10.42.0.0/24".into()),
            max_pods: 110,
            labels: BTreeMap::from([("team".to_string(), "x".to_string())]),
            control_plane: true,
            data_dir: std::env::temp_dir(),
            runtime_binary: "/usr/sbin/runc".into(),
            cni_bin_dir: "/usr/lib/cni".into(),
            runtime_version: "runc://1.1.5".into(),
            system: machine::system_info(),
            eviction: EvictionThresholds::default(),
        }
    }

    #[test]
    fn allocatable_is_capacity_minus_the_eviction_thresholds() {
        let defaults = EvictionThresholds::default();
        let (cap, alloc) = resource_lists(4, 8 << 30, 1000 << 20, 110, &defaults);
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, format!("{}Ki", (8u64 << 30) / 1024));
        assert_eq!(
            alloc["memory"].0,
            format!("{}Ki", ((8u64 << 30) - (100 << 20)) / 1024)
        );
        assert_eq!(cap["ephemeral-storage"].0, (1000u64 << 20).to_string());
        assert_eq!(alloc["ephemeral-storage"].0, (900u64 << 20).to_string());
        assert_eq!(alloc["pods"].0, "110");
        // A tiny machine does not underflow.
        let (_, alloc) = resource_lists(1, 50 << 20, 0, 1, &defaults);
        assert_eq!(alloc["memory"].0, "0Ki");
        // Other thresholds, other allocatable; none at all, all of it.
        let custom =
            EvictionThresholds::parse("memory.available<1Gi,nodefs.available<25%").unwrap();
        let (_, alloc) = resource_lists(4, 8 << 30, 1000 << 20, 110, &custom);
        assert_eq!(alloc["memory"].0, format!("{}Ki", (7u64 << 30) / 1024));
        assert_eq!(alloc["ephemeral-storage"].0, (750u64 << 20).to_string());
        let none = EvictionThresholds::parse("").unwrap();
        let (cap, alloc) = resource_lists(4, 8 << 30, 1000 << 20, 110, &none);
        assert_eq!(cap, alloc);
    }

    #[test]
    fn the_node_carries_the_kubelet_labels_addresses_and_endpoint() {
        let f = facts();
        let node = desired_node(&f).unwrap();
        let l = node.metadata.labels.unwrap();
        assert_eq!(l["kubernetes.io/hostname"], "node-a");
        assert_eq!(l["kubernetes.io/os"], "linux");
        assert_eq!(l["node-role.kubernetes.io/control-plane"], "true");
        assert_eq!(l["team"], "x");
        let spec = node.spec.unwrap();
        assert_eq!(spec.pod_cidrs.unwrap(), ["10.42.0.0/24"]);
        let st = node.status.unwrap();
        let addrs = st.addresses.unwrap();
        assert_eq!(addrs[0].type_, "InternalIP");
        assert_eq!(addrs[0].address, "192.0.2.5");
        assert_eq!(addrs[1].type_, "Hostname");
        assert_eq!(
            st.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
            10250
        );
        let info = st.node_info.unwrap();
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
        assert_eq!(info.container_runtime_version, "runc://1.1.5");
        let types: Vec<_> = st
            .conditions
            .unwrap()
            .into_iter()
            .map(|c| c.type_)
            .collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
    }

    #[test]
    fn a_node_waiting_for_its_pod_cidr_registers_not_ready() {
        let mut f = facts();
        f.pod_cidr = None;
        let node = desired_node(&f).unwrap();
        assert!(node.spec.unwrap().pod_cidr.is_none());
        let ready = node
            .status
            .unwrap()
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.message.as_deref(), Some(WAITING_FOR_POD_CIDR));
    }

    #[test]
    fn a_worker_is_not_labelled_control_plane() {
        let mut f = facts();
        f.control_plane = false;
        assert!(!labels(&f).contains_key("node-role.kubernetes.io/control-plane"));
    }
}
