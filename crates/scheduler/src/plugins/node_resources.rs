//! NodeResourcesFit (filter: requests against allocatable) and the two resource scores,
//! LeastAllocated and NodeResourcesBalancedAllocation.

use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Resources, ScorePlugin, Status,
    MAX_NODE_SCORE,
};

/// Scoring counts a pod without requests as this much, as Kubernetes' non-zero defaults
/// do, so that empty pods still spread.
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 << 20;

pub struct NodeResourcesFit;

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
}

/// The reasons a node cannot hold the pod, in Kubernetes' words; empty when it fits.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    let mut reasons = Vec::new();
    if node.pods.len() as i64 + 1 > node.allowed_pods {
        reasons.push("Too many pods".to_string());
    }
    let want = &pod.requests;
    let (alloc, used) = (&node.allocatable, &node.requested);
    if want.milli_cpu > 0 && want.milli_cpu > alloc.milli_cpu - used.milli_cpu {
        reasons.push("Insufficient cpu".to_string());
    }
    if want.memory > 0 && want.memory > alloc.memory - used.memory {
        reasons.push("Insufficient memory".to_string());
    }
    if want.ephemeral_storage > 0
        && want.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
    {
        reasons.push("Insufficient ephemeral-storage".to_string());
    }
    for (name, &n) in &want.scalar {
        if n <= 0 {
            continue;
        }
        let free = alloc.scalar.get(name).copied().unwrap_or(0)
            - used.scalar.get(name).copied().unwrap_or(0);
        if n > free {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let reasons = insufficient(pod, node);
        if reasons.is_empty() {
            Status::success()
        } else {
            Status {
                code: crate::framework::Code::Unschedulable,
                reasons,
            }
        }
    }
}

/// (cpu, memory) requested on the node with the pod added, for scoring.
fn requested_with(pod: &Resources, node: &NodeInfo) -> (i64, i64) {
    let non_zero = |v: i64, d: i64| if v == 0 { d } else { v };
    let mut cpu = 0;
    let mut mem = 0;
    for p in &node.pods {
        cpu += non_zero(p.requests.milli_cpu, DEFAULT_MILLI_CPU);
        mem += non_zero(p.requests.memory, DEFAULT_MEMORY);
    }
    (
        cpu + non_zero(pod.milli_cpu, DEFAULT_MILLI_CPU),
        mem + non_zero(pod.memory, DEFAULT_MEMORY),
    )
}

fn least_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// Prefers nodes with the most room left (the default spreading score).
pub struct LeastAllocated;

impl Plugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesLeastAllocated"
    }
}

impl ScorePlugin for LeastAllocated {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let (cpu, mem) = requested_with(&pod.requests, node);
        (least_allocated(cpu, node.allocatable.milli_cpu)
            + least_allocated(mem, node.allocatable.memory))
            / 2
    }
}

/// Prefers nodes whose CPU and memory would be used in the same proportion.
pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let (cpu, mem) = requested_with(&pod.requests, node);
        let fraction = |r: i64, c: i64| {
            if c <= 0 {
                1.0
            } else {
                (r as f64 / c as f64).min(1.0)
            }
        };
        let (f1, f2) = (
            fraction(cpu, node.allocatable.milli_cpu),
            fraction(mem, node.allocatable.memory),
        );
        // The standard deviation of two values is half their distance.
        let std = (f1 - f2).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::types::testing::*;
    use std::sync::Arc;

    #[test]
    fn insufficient_resources_are_named() {
        let mut n = node_info(node("a", "1", "1Gi"));
        n.add_pod(Arc::new(info(pod("x", "800m", "512Mi"))));
        let s = CycleState::default();
        let status = NodeResourcesFit.filter(&s, &info(pod("p", "300m", "600Mi")), &n);
        assert_eq!(status.reasons, ["Insufficient cpu", "Insufficient memory"]);
        assert!(NodeResourcesFit
            .filter(&s, &info(pod("p", "200m", "512Mi")), &n)
            .is_success());
    }

    #[test]
    fn pod_count_is_a_resource() {
        let mut n = node("a", "10", "10Gi");
        n.status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .insert(
                "pods".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
            );
        let mut n = node_info(n);
        n.add_pod(Arc::new(info(pod("x", "0", "0"))));
        let status = NodeResourcesFit.filter(&CycleState::default(), &info(pod("p", "0", "0")), &n);
        assert_eq!(status.reasons, ["Too many pods"]);
    }

    #[test]
    fn emptier_nodes_score_higher() {
        let empty = node_info(node("a", "2", "4Gi"));
        let mut busy = node_info(node("b", "2", "4Gi"));
        busy.add_pod(Arc::new(info(pod("x", "1", "2Gi"))));
        let p = info(pod("p", "100m", "100Mi"));
        let s = CycleState::default();
        assert!(LeastAllocated.score(&s, &p, &empty) > LeastAllocated.score(&s, &p, &busy));
    }

    #[test]
    fn balance_prefers_even_use() {
        let mut cpu_heavy = node_info(node("a", "2", "4Gi"));
        cpu_heavy.add_pod(Arc::new(info(pod("x", "1800m", "100Mi"))));
        let even = node_info(node("b", "2", "4Gi"));
        let p = info(pod("p", "100m", "200Mi"));
        let s = CycleState::default();
        assert!(
            BalancedAllocation.score(&s, &p, &even) > BalancedAllocation.score(&s, &p, &cpu_heavy)
        );
    }
}
