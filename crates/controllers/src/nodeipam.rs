//! Node IPAM: a pod CIDR per node out of the cluster CIDR, as kube-controller-manager's
//! range allocator does (`--allocate-node-cidrs --cluster-cidr --node-cidr-mask-size`).
//!
//! - A Node without `spec.podCIDR` gets the first free subnet of `node_mask` bits out of
//!   the cluster CIDR, written to `spec.podCIDR` and `spec.podCIDRs` with the
//!   resourceVersion read, so that a concurrent writer (an agent with `--pod-cidr`) wins
//!   cleanly instead of being overwritten. A podCIDR once set is never changed.
//! - The subnets in use are those of the Nodes in the controller's cache, plus the ones it
//!   has just written and not yet seen come back: level-triggered, a deleted Node's subnet
//!   is free as soon as the Node is gone, and a restart rebuilds the same picture. CIDRs
//!   outside the cluster CIDR (set by hand, or a simulated node's) are left alone.
//! - When the cluster CIDR is exhausted the Node gets a `CIDRNotAvailable` event and is
//!   retried every [`EXHAUSTED_RETRY`] (a Node's deletion wakes nothing else here), so it
//!   gets a freed subnet soon after one is freed.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;

use events::{EventRecorder, EventType};

use crate::informers::Informers;
use crate::runner::{drive, RetryBackoff};

const COMPONENT: &str = "node-ipam-controller";
/// The default `--cluster-cidr` (k3s's).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// kube-controller-manager's default `--node-cidr-mask-size` for IPv4.
pub const DEFAULT_NODE_MASK: u8 = 24;
/// How often a Node waits for a subnet to be freed before it looks again (from the cache:
/// a retry costs no API call).
pub const EXHAUSTED_RETRY: Duration = Duration::from_secs(5);
/// While it waits, it repeats its CIDRNotAvailable event once per this many retries.
const EXHAUSTED_EVENT_EVERY: u32 = 12;
/// kube-controller-manager refuses cluster CIDRs with more than 2^16 node subnets.
const MAX_SUBNET_BITS: u8 = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("invalid node IPAM configuration: {0}")]
    Config(String),
    #[error("no CIDR left in the cluster CIDR {0} for node {1}")]
    CidrNotAvailable(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The cluster's pod network, e.g. `10.42.0.0/16`.
    pub cluster_cidr: String,
    /// The prefix length of each node's subnet, e.g. 24.
    pub node_mask: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster_cidr: DEFAULT_CLUSTER_CIDR.into(),
            node_mask: DEFAULT_NODE_MASK,
        }
    }
}

impl Config {
    /// The allocator this configuration describes, or why it is unusable.
    pub fn cidr_set(&self) -> Result<CidrSet, Error> {
        let cluster: IpNet = self
            .cluster_cidr
            .parse()
            .map_err(|e| Error::Config(format!("cluster CIDR {:?}: {e}", self.cluster_cidr)))?;
        CidrSet::new(cluster, self.node_mask)
    }
}

/// The node subnets of one cluster CIDR, numbered 0..len in address order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrSet {
    cluster: IpNet,
    node_mask: u8,
}

impl CidrSet {
    pub fn new(cluster: IpNet, node_mask: u8) -> Result<Self, Error> {
        let cluster = cluster.trunc();
        if node_mask < cluster.prefix_len() || node_mask > cluster.max_prefix_len() {
            return Err(Error::Config(format!(
                "node mask /{node_mask} does not fit in the cluster CIDR {cluster}"
            )));
        }
        if node_mask - cluster.prefix_len() > MAX_SUBNET_BITS {
            return Err(Error::Config(format!(
                "cluster CIDR {cluster} holds more than 2^{MAX_SUBNET_BITS} /{node_mask} subnets"
            )));
        }
        Ok(CidrSet { cluster, node_mask })
    }

    pub fn cluster(&self) -> IpNet {
        self.cluster
    }

    /// How many node subnets there are.
    pub fn len(&self) -> u32 {
        1 << (self.node_mask - self.cluster.prefix_len())
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    fn host_bits(&self) -> u8 {
        self.cluster.max_prefix_len() - self.node_mask
    }

    /// The `index`th subnet.
    pub fn subnet(&self, index: u32) -> Option<IpNet> {
        if index >= self.len() {
            return None;
        }
        let base = addr_bits(self.cluster.network());
        let offset = u128::from(index) << self.host_bits();
        let addr = bits_addr(base + offset, self.cluster.network());
        IpNet::new(addr, self.node_mask).ok()
    }

    /// The indexes of the subnets `cidr` overlaps; empty when it is outside the cluster
    /// CIDR (or another address family).
    pub fn overlapping(&self, cidr: IpNet) -> std::ops::Range<u32> {
        let cidr = cidr.trunc();
        if cidr.network().is_ipv4() != self.cluster.network().is_ipv4() {
            return 0..0;
        }
        let (c_start, c_end) = (
            addr_bits(self.cluster.network()),
            addr_bits(self.cluster.broadcast()),
        );
        let (n_start, n_end) = (addr_bits(cidr.network()), addr_bits(cidr.broadcast()));
        let (start, end) = (c_start.max(n_start), c_end.min(n_end));
        if start > end {
            return 0..0;
        }
        let first = (start - c_start) >> self.host_bits();
        let last = (end - c_start) >> self.host_bits();
        // Both are below len() ≤ 2^16.
        let first = u32::try_from(first).unwrap_or(u32::MAX);
        let last = u32::try_from(last).unwrap_or(u32::MAX);
        first..last.saturating_add(1)
    }

    /// The first subnet none of `used` overlaps.
    pub fn first_free<'a>(&self, used: impl IntoIterator<Item = &'a IpNet>) -> Option<IpNet> {
        let mut taken = BTreeSet::new();
        for cidr in used {
            taken.extend(self.overlapping(*cidr));
        }
        (0..self.len())
            .find(|i| !taken.contains(i))
            .and_then(|i| self.subnet(i))
    }
}

fn addr_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn bits_addr(bits: u128, family: IpAddr) -> IpAddr {
    match family {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(bits).unwrap_or(u32::MAX))),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
    }
}

/// Every CIDR a Node holds (podCIDRs, and podCIDR for a Node written by an old client).
pub fn node_cidrs(node: &Node) -> Vec<IpNet> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    spec.pod_cidrs
        .iter()
        .flatten()
        .chain(spec.pod_cidr.iter())
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// Whether the Node already has its pod CIDR (then it is never touched).
pub fn has_pod_cidr(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty())
}

/// The subnet for `node` given the Nodes known and the subnets handed out but not yet
/// seen on their Nodes: `None` when the cluster CIDR is exhausted.
pub fn allocate<'a>(
    set: &CidrSet,
    nodes: impl IntoIterator<Item = &'a Node>,
    in_flight: impl IntoIterator<Item = &'a IpNet>,
) -> Option<IpNet> {
    let mut used: Vec<IpNet> = nodes.into_iter().flat_map(node_cidrs).collect();
    used.extend(in_flight);
    set.first_free(&used)
}

struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    set: CidrSet,
    nodes: Store<Node>,
    /// Subnets written to a Node that the cache may not show yet, by node name.
    in_flight: Mutex<HashMap<String, IpNet>>,
    backoff: RetryBackoff<Node>,
}

/// Runs the controller with the default cluster CIDR, on the controller manager's
/// `informers`, until `shutdown` completes.
pub async fn run(
    informers: Informers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    run_with(informers, Config::default(), shutdown).await
}

/// Runs the controller over `config`'s cluster CIDR until `shutdown` completes.
pub async fn run_with(
    informers: Informers,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let set = config.cidr_set()?;
    let client = informers.client().clone();
    let nodes = informers.node_store().await;
    let controller = Controller::for_stream(informers.nodes().applied_objects(), nodes.clone());
    let ctx = Arc::new(Context {
        recorder: EventRecorder::for_component(client.clone(), COMPONENT, None),
        client,
        set,
        nodes,
        in_flight: Mutex::new(HashMap::new()),
        backoff: RetryBackoff::new(),
    });
    drive(
        "nodeipam",
        controller,
        shutdown,
        reconcile,
        error_policy,
        ctx,
    )
    .await;
    Ok(())
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = node.name_any();
    if has_pod_cidr(&node) || node.metadata.deletion_timestamp.is_some() {
        ctx.backoff.succeeded(&node);
        return Ok(Action::await_change());
    }
    let cidr = {
        let mut in_flight = ctx.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let known = ctx.nodes.state();
        // A handed-out subnet stops being in flight once its Node shows a podCIDR (its
        // own, or one someone else won the race with) or is gone.
        in_flight.retain(|owner, _| {
            known
                .iter()
                .any(|n| n.name_any() == *owner && !has_pod_cidr(n))
        });
        if let Some(cidr) = in_flight.get(&name) {
            *cidr
        } else {
            let Some(cidr) = allocate(&ctx.set, known.iter().map(|n| &**n), in_flight.values())
            else {
                let retries = ctx.backoff.failures(&node);
                if retries.is_multiple_of(EXHAUSTED_EVENT_EVERY) {
                    ctx.recorder.node_event(
                        &name,
                        EventType::Warning,
                        "CIDRNotAvailable",
                        format!("Node {name} status is now: CIDRNotAvailable"),
                    );
                }
                return Err(Error::CidrNotAvailable(ctx.set.cluster().to_string(), name));
            };
            in_flight.insert(name.clone(), cidr);
            cidr
        }
    };

    // The cached Node and its resourceVersion: if anything wrote it since (an agent
    // setting its own --pod-cidr), the update fails with 409 and the next sync sees it.
    let mut updated = (*node).clone();
    let spec = updated.spec.get_or_insert_with(Default::default);
    spec.pod_cidr = Some(cidr.to_string());
    spec.pod_cidrs = Some(vec![cidr.to_string()]);
    let api: Api<Node> = Api::all(ctx.client.clone());
    match api.replace(&name, &PostParams::default(), &updated).await {
        Ok(_) => {
            tracing::info!(node = %name, %cidr, "allocated the node's pod CIDR");
            ctx.recorder.node_event(
                &name,
                EventType::Normal,
                "CIDRAssignmentSucceeded",
                format!("Node {name} was assigned podCIDR {cidr}"),
            );
            ctx.backoff.succeeded(&node);
            Ok(Action::await_change())
        }
        Err(e) => {
            let mut in_flight = ctx.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            in_flight.remove(&name);
            match e {
                // A newer Node (or none) than the cache had: its next event brings it back.
                kube::Error::Api(s) if s.code == 404 || s.code == 409 => {
                    Ok(Action::requeue(Duration::from_millis(200)))
                }
                e => Err(e.into()),
            }
        }
    }
}

fn error_policy(node: Arc<Node>, err: &Error, ctx: Arc<Context>) -> Action {
    let backoff = ctx.backoff.failed(&node, err);
    match err {
        // Exhaustion lasts until a node goes away; the back-off must not grow past that.
        Error::CidrNotAvailable(..) => Action::requeue(EXHAUSTED_RETRY),
        _ => backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn set(cluster: &str, mask: u8) -> CidrSet {
        CidrSet::new(cluster.parse().unwrap(), mask).unwrap()
    }

    fn node(name: &str, cidr: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(str::to_string),
                pod_cidrs: cidr.map(|c| vec![c.to_string()]),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn subnets_are_numbered_in_address_order() {
        let s = set("10.42.0.0/16", 24);
        assert_eq!(s.len(), 256);
        assert_eq!(s.subnet(0).unwrap().to_string(), "10.42.0.0/24");
        assert_eq!(s.subnet(7).unwrap().to_string(), "10.42.7.0/24");
        assert_eq!(s.subnet(255).unwrap().to_string(), "10.42.255.0/24");
        assert!(s.subnet(256).is_none());
        let s = set("10.0.0.0/8", 20);
        assert_eq!(s.subnet(17).unwrap().to_string(), "10.1.16.0/20");
        let s = set("fd00:42::/48", 64);
        assert_eq!(s.subnet(3).unwrap().to_string(), "fd00:42:0:3::/64");
    }

    #[test]
    fn bad_masks_are_refused() {
        let c: IpNet = "10.42.0.0/16".parse().unwrap();
        assert!(CidrSet::new(c, 15).is_err());
        assert!(CidrSet::new(c, 33).is_err());
        assert!(CidrSet::new("10.0.0.0/8".parse().unwrap(), 25).is_err());
        assert!(CidrSet::new(c, 16).is_ok());
        let cfg = Config {
            cluster_cidr: "nonsense".into(),
            node_mask: 24,
        };
        assert!(matches!(cfg.cidr_set(), Err(Error::Config(_))));
        assert!(Config::default().cidr_set().is_ok());
    }

    #[test]
    fn nodes_get_distinct_subnets_first_free_first() {
        let s = set("10.42.0.0/16", 24);
        let nodes = [
            node("a", Some("10.42.0.0/24")),
            node("b", Some("10.42.2.0/24")),
        ];
        let first = allocate(&s, &nodes, []).unwrap();
        assert_eq!(first.to_string(), "10.42.1.0/24");
        // The one just handed out is in flight: the next node gets another.
        let second = allocate(&s, &nodes, [&first]).unwrap();
        assert_eq!(second.to_string(), "10.42.3.0/24");
    }

    #[test]
    fn cidrs_outside_the_cluster_cidr_are_ignored_and_wide_ones_cover_several() {
        let s = set("10.42.0.0/16", 24);
        // A simulated node's subnet, and a v6 one.
        let outside = [
            node("sim", Some("10.64.0.0/24")),
            node("v6", Some("fd00::/64")),
        ];
        assert_eq!(
            allocate(&s, &outside, []).unwrap().to_string(),
            "10.42.0.0/24"
        );
        assert!(s.overlapping("10.64.0.0/24".parse().unwrap()).is_empty());
        // A /23 set by hand takes two subnets; a /26 takes the /24 it sits in.
        assert_eq!(s.overlapping("10.42.4.0/23".parse().unwrap()), 4..6);
        assert_eq!(s.overlapping("10.42.9.64/26".parse().unwrap()), 9..10);
        // A supernet of the cluster CIDR covers all of it.
        assert_eq!(s.overlapping("10.0.0.0/8".parse().unwrap()), 0..256);
        let wide = [node("x", Some("10.42.0.0/23"))];
        assert_eq!(allocate(&s, &wide, []).unwrap().to_string(), "10.42.2.0/24");
    }

    #[test]
    fn exhaustion_yields_none_and_a_deleted_nodes_subnet_is_reused() {
        let s = set("10.42.0.0/23", 24);
        let mut nodes = vec![
            node("a", Some("10.42.0.0/24")),
            node("b", Some("10.42.1.0/24")),
        ];
        assert_eq!(allocate(&s, &nodes, []), None);
        // Node a is deleted: its subnet is free again.
        nodes.remove(0);
        assert_eq!(
            allocate(&s, &nodes, []).unwrap().to_string(),
            "10.42.0.0/24"
        );
    }

    #[test]
    fn a_node_with_a_pod_cidr_keeps_it() {
        assert!(has_pod_cidr(&node("a", Some("192.168.9.0/24"))));
        assert!(!has_pod_cidr(&node("a", None)));
        let mut empty = node("a", None);
        empty.spec.as_mut().unwrap().pod_cidr = Some(String::new());
        assert!(!has_pod_cidr(&empty));
        let mut old = node("a", None);
        old.spec.as_mut().unwrap().pod_cidr = Some("10.42.5.0/24".into());
        assert_eq!(node_cidrs(&old), ["10.42.5.0/24".parse::<IpNet>().unwrap()]);
    }
}
