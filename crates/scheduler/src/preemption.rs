//! Default preemption (the PostFilter point): when no node fits a pod, find the node where
//! evicting the fewest, least important lower-priority pods makes room, as kube-scheduler's
//! DefaultPreemption does: remove every lower-priority pod, check the fit, then reprieve
//! victims from the most important down while the pod still fits.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::framework::{CycleState, FitError, Framework, NodeInfo, PodInfo, Status};

#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// A candidate, or the "preemption: …" summary that explains why there is none.
pub fn find_candidate(
    framework: &Framework,
    pod: &PodInfo,
    nodes: &[NodeInfo],
    fit: &FitError,
) -> Result<Candidate, String> {
    let never = pod
        .spec()
        .and_then(|s| s.preemption_policy.as_deref())
        .is_some_and(|p| p == "Never");
    let mut per_node: BTreeMap<String, Status> = BTreeMap::new();
    let mut best: Option<(i32, usize, Candidate)> = None;
    for node in nodes {
        let helps = !never
            && fit.pre_filter.is_none()
            && fit
                .node_statuses
                .get(&node.name)
                .is_some_and(Status::preemption_may_help);
        if !helps {
            per_node.insert(node.name.clone(), Status::unresolvable(NOT_HELPFUL));
            continue;
        }
        match victims_on(framework, pod, nodes, node) {
            Some(victims) => {
                let top = victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN);
                let cost = (top, victims.len());
                if best.as_ref().is_none_or(|(p, n, _)| cost < (*p, *n)) {
                    best = Some((
                        cost.0,
                        cost.1,
                        Candidate {
                            node: node.name.clone(),
                            victims,
                        },
                    ));
                }
            }
            None => {
                per_node.insert(node.name.clone(), Status::unschedulable(NO_VICTIMS));
            }
        }
    }
    if let Some((_, _, c)) = best {
        return Ok(c);
    }
    let summary = FitError {
        num_all_nodes: nodes.len(),
        node_statuses: per_node,
        ..Default::default()
    };
    Err(format!("preemption: {}", summary.message()))
}

/// The smallest set of lower-priority pods whose eviction lets `pod` fit on `node`.
fn victims_on(
    framework: &Framework,
    pod: &PodInfo,
    all: &[NodeInfo],
    node: &NodeInfo,
) -> Option<Vec<Arc<PodInfo>>> {
    let mut trial = node.clone();
    let mut candidates: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if candidates.is_empty() {
        return None;
    }
    for v in &candidates {
        trial.remove_pod(&v.key);
    }
    let fits = |n: &NodeInfo| {
        let mut state = CycleState::default();
        for p in &framework.pre_filters {
            if !p.pre_filter(&mut state, pod, all).is_success() {
                return false;
            }
        }
        framework.run_filters(&state, pod, n).is_none()
    };
    if !fits(&trial) {
        return None;
    }
    // Reprieve the most important first; what cannot come back is a victim.
    candidates.sort_by_key(|p| std::cmp::Reverse(p.priority));
    let mut victims = Vec::new();
    for c in candidates {
        trial.add_pod(c.clone());
        if !fits(&trial) {
            trial.remove_pod(&c.key);
            victims.push(c);
        }
    }
    Some(victims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::types::testing::*;

    fn prio(name: &str, cpu: &str, p: i32) -> Arc<PodInfo> {
        let mut pod = pod(name, cpu, "1Mi");
        pod.spec.as_mut().unwrap().priority = Some(p);
        Arc::new(info(pod))
    }

    #[test]
    fn evicts_the_least_important_pods_that_make_room() {
        let fw = Framework::default_profile();
        let mut a = node_info(node("a", "1", "1Gi"));
        a.add_pod(prio("low", "500m", 1));
        a.add_pod(prio("mid", "500m", 5));
        let nodes = vec![a];
        let incoming = prio("vip", "500m", 10);
        let mut cursor = 0;
        let mut rng = 1;
        let fit = fw
            .schedule(&incoming, &nodes, &mut cursor, &mut rng)
            .unwrap_err();
        let c = find_candidate(&fw, &incoming, &nodes, &fit).unwrap();
        assert_eq!(c.node, "a");
        let names: Vec<&str> = c.victims.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(names, ["default/low"]);
    }

    #[test]
    fn explains_when_nothing_helps() {
        let fw = Framework::default_profile();
        let mut a = node_info(node("a", "1", "1Gi"));
        a.add_pod(prio("peer", "900m", 10));
        let nodes = vec![a];
        let incoming = prio("same", "500m", 10);
        let (mut cursor, mut rng) = (0, 1);
        let fit = fw
            .schedule(&incoming, &nodes, &mut cursor, &mut rng)
            .unwrap_err();
        assert_eq!(
            find_candidate(&fw, &incoming, &nodes, &fit).unwrap_err(),
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
    }
}
