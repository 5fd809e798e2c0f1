//! What plugins look at: a pod and a node digested once (requests summed, ports and
//! tolerations extracted), so that filtering 5,000 nodes never re-parses a quantity.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use api::quantity::{self, Quantity};
use k8s_openapi::api::core::v1::{Container, Node, Pod, Taint, Toleration};

/// Resource amounts in the units plugins compare: millicores, bytes, counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended resources (`example.com/gpu`, `hugepages-2Mi`) in whole units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    fn add_named(&mut self, name: &str, q: Quantity) {
        match name {
            "cpu" => self.milli_cpu += q.milli_value(),
            "memory" => self.memory += q.value(),
            "ephemeral-storage" => self.ephemeral_storage += q.value(),
            "pods" => {}
            other => *self.scalar.entry(other.to_string()).or_default() += q.value(),
        }
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Component-wise maximum (init containers run one at a time).
    fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    pub fn from_list(
        list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    ) -> Self {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            if let Ok(q) = quantity::parse(&q.0) {
                r.add_named(name, q);
            }
        }
        r
    }
}

fn container_requests(c: &Container) -> Resources {
    let res = c.resources.as_ref();
    // A limit without a request defaults the request (Kubernetes' defaulting).
    let mut r = Resources::from_list(res.and_then(|r| r.requests.as_ref()));
    if let Some(limits) = res.and_then(|r| r.limits.as_ref()) {
        let requests = res.and_then(|r| r.requests.as_ref());
        for (name, q) in limits {
            if requests.is_some_and(|req| req.contains_key(name)) {
                continue;
            }
            if let Ok(q) = quantity::parse(&q.0) {
                r.add_named(name, q);
            }
        }
    }
    r
}

/// The pod's effective request: max(sum of app containers + restartable init sidecars,
/// each init container) plus overhead, as the scheduler's resource fit computes it.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::default();
    };
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&container_requests(c));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
        } else {
            let mut with_sidecars = r;
            with_sidecars.add(&sidecars);
            init_max.max_with(&with_sidecars);
        }
    }
    sum.add(&sidecars);
    sum.max_with(&init_max);
    sum.add(&Resources::from_list(spec.overhead.as_ref()));
    sum
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// 0.0.0.0 conflicts with every address on the same port and protocol.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || self.ip == "0.0.0.0" || o.ip == "0.0.0.0")
    }
}

/// A pod digested for scheduling.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub key: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub priority: i32,
    /// The pod declares required pod anti-affinity (other pods must check it).
    pub has_required_anti_affinity: bool,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let key = format!(
            "{}/{}",
            namespace,
            pod.metadata.name.as_deref().unwrap_or("")
        );
        let spec = pod.spec.as_ref();
        let host_ports = spec
            .into_iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|p| *p > 0)?;
                Some(HostPort {
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    ip: p
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    port,
                })
            })
            .collect();
        let has_required_anti_affinity = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty());
        PodInfo {
            has_required_anti_affinity,
            requests: pod_requests(&pod),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            tolerations: spec.and_then(|s| s.tolerations.clone()).unwrap_or_default(),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            host_ports,
            namespace,
            key,
            pod,
        }
    }

    pub fn spec(&self) -> Option<&k8s_openapi::api::core::v1::PodSpec> {
        self.pod.spec.as_ref()
    }
}

/// A node with the pods bound (or assumed) to it and their sums.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    pub node: Arc<Node>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: HashSet<HostPort>,
    pub unschedulable: bool,
    /// How many of `pods` declare required anti-affinity: most nodes have none, and
    /// affinity pre-filtering skips them.
    pub pods_with_required_anti_affinity: usize,
}

/// The taint Kubernetes' node lifecycle controller puts on a node that is not Ready; the
/// scheduler treats a not-Ready node as carrying it even before the controller runs.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> Self {
        let mut info = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            ..Default::default()
        };
        info.set_node(node);
        info
    }

    /// Replaces the node object, keeping the pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let status = node.status.as_ref();
        let alloc = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        self.allocatable = Resources::from_list(alloc);
        self.allowed_pods = alloc
            .and_then(|a| a.get("pods"))
            .and_then(|q| quantity::parse(&q.0).ok())
            .map(|q| q.value())
            .unwrap_or(110);
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let mut taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        if !ready && !taints.iter().any(|t| t.key == TAINT_NOT_READY) {
            taints.push(Taint {
                key: TAINT_NOT_READY.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
        self.taints = taints;
        self.node = node;
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        for p in &pod.host_ports {
            self.used_ports.insert(p.clone());
        }
        if pod.has_required_anti_affinity {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Removes the pod by key; true if it was here.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.key == key) else {
            return false;
        };
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        if pod.has_required_anti_affinity {
            self.pods_with_required_anti_affinity -= 1;
        }
        self.used_ports = self
            .pods
            .iter()
            .flat_map(|p| p.host_ports.iter().cloned())
            .collect();
        true
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for plugin tests.
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeCondition, NodeSpec, NodeStatus, PodSpec, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;

    pub fn node(name: &str, cpu: &str, mem: &str) -> Node {
        let alloc: BTreeMap<String, Q> = [
            ("cpu".to_string(), Q(cpu.into())),
            ("memory".to_string(), Q(mem.into())),
            ("pods".to_string(), Q("110".into())),
        ]
        .into();
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(alloc.clone()),
                capacity: Some(alloc),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    pub fn pod(name: &str, cpu: &str, mem: &str) -> Pod {
        let req: BTreeMap<String, Q> = [
            ("cpu".to_string(), Q(cpu.into())),
            ("memory".to_string(), Q(mem.into())),
        ]
        .into();
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(req),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    pub fn info(p: Pod) -> PodInfo {
        PodInfo::new(Arc::new(p))
    }

    pub fn node_info(n: Node) -> NodeInfo {
        NodeInfo::new(Arc::new(n))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn requests_take_the_larger_of_init_and_app_containers() {
        let mut p = pod("p", "100m", "64Mi");
        let spec = p.spec.as_mut().unwrap();
        let mut init = spec.containers[0].clone();
        init.resources
            .as_mut()
            .unwrap()
            .requests
            .as_mut()
            .unwrap()
            .insert(
                "cpu".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("500m".into()),
            );
        spec.init_containers = Some(vec![init]);
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 500);
        assert_eq!(r.memory, 64 << 20);
    }

    #[test]
    fn a_node_that_is_not_ready_carries_the_not_ready_taint() {
        let mut n = node("n", "2", "4Gi");
        n.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
        let info = node_info(n);
        assert!(info.taints.iter().any(|t| t.key == TAINT_NOT_READY));
        assert_eq!(info.allocatable.milli_cpu, 2000);
        assert_eq!(info.allowed_pods, 110);
    }

    #[test]
    fn adding_and_removing_pods_keeps_sums() {
        let mut n = node_info(node("n", "2", "4Gi"));
        n.add_pod(Arc::new(info(pod("a", "100m", "1Gi"))));
        n.add_pod(Arc::new(info(pod("b", "200m", "1Gi"))));
        assert_eq!(n.requested.milli_cpu, 300);
        assert!(n.remove_pod("default/a"));
        assert_eq!(n.requested.milli_cpu, 200);
        assert!(!n.remove_pod("default/a"));
    }
}
