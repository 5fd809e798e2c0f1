//! PodTopologySpread: `whenUnsatisfiable: DoNotSchedule` constraints filter (skew within
//! maxSkew, minDomains honoured); `ScheduleAnyway` constraints score.
//!
//! Only nodes that pass the pod's node affinity/selector and carry every constraint's
//! topology key count as domains (nodeAffinityPolicy Honor, nodeTaintsPolicy Ignore — the
//! defaults).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;

use super::node_affinity::{normalize_to_max, required_matches};
use super::selectors::label_selector_matches;
use crate::framework::{
    Code, CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreFilterPlugin, ScorePlugin, Status,
};

#[derive(Debug, Default)]
struct Counted {
    constraint: TopologySpreadConstraint,
    /// Domain value → matching pods.
    counts: HashMap<String, i64>,
    /// The smallest count over the domains (0 when there are fewer than minDomains).
    global_min: i64,
}

#[derive(Debug, Default)]
pub struct PreFilterState {
    constraints: Vec<Counted>,
}

#[derive(Debug, Default)]
pub struct PreScoreState {
    constraints: Vec<Counted>,
}

fn constraints(pod: &PodInfo, hard: bool) -> Vec<TopologySpreadConstraint> {
    pod.spec()
        .and_then(|s| s.topology_spread_constraints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| (c.when_unsatisfiable == "DoNotSchedule") == hard)
        .collect()
}

/// The constraint's selector, narrowed by matchLabelKeys with the pod's own values.
fn selects(c: &TopologySpreadConstraint, pod: &PodInfo, candidate: &PodInfo) -> bool {
    if candidate.namespace != pod.namespace
        || candidate.pod.metadata.deletion_timestamp.is_some()
        || !label_selector_matches(c.label_selector.as_ref(), &candidate.labels)
    {
        return false;
    }
    c.match_label_keys
        .iter()
        .flatten()
        .all(|k| pod.labels.get(k) == candidate.labels.get(k))
}

fn count(pod: &PodInfo, nodes: &[&NodeInfo], list: Vec<TopologySpreadConstraint>) -> Vec<Counted> {
    let eligible: Vec<&&NodeInfo> = nodes
        .iter()
        .filter(|n| {
            required_matches(pod, n) && list.iter().all(|c| n.labels.contains_key(&c.topology_key))
        })
        .collect();
    list.into_iter()
        .map(|c| {
            let mut counts: HashMap<String, i64> = HashMap::new();
            for n in &eligible {
                let Some(value) = n.labels.get(&c.topology_key) else {
                    continue;
                };
                let matching = n.pods.iter().filter(|p| selects(&c, pod, p)).count() as i64;
                *counts.entry(value.clone()).or_default() += matching;
            }
            let min_domains = c.min_domains.unwrap_or(1).max(1) as usize;
            let global_min = if counts.len() < min_domains {
                0
            } else {
                counts.values().copied().min().unwrap_or(0)
            };
            Counted {
                constraint: c,
                counts,
                global_min,
            }
        })
        .collect()
}

pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[NodeInfo]) -> Status {
        let hard = constraints(pod, true);
        if hard.is_empty() {
            return Status::skip();
        }
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        state.topology_spread = Some(PreFilterState {
            constraints: count(pod, &refs, hard),
        });
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = &state.topology_spread else {
            return Status::success();
        };
        for c in &s.constraints {
            let Some(value) = node.labels.get(&c.constraint.topology_key) else {
                return Status::unresolvable(
                    "node(s) didn't match pod topology spread constraints (missing required label)",
                );
            };
            let self_match = i64::from(selects(&c.constraint, pod, pod));
            let matching = c.counts.get(value).copied().unwrap_or(0) + self_match;
            if matching - c.global_min > i64::from(c.constraint.max_skew) {
                return Status {
                    code: Code::Unschedulable,
                    reasons: vec!["node(s) didn't match pod topology spread constraints".into()],
                };
            }
        }
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[&NodeInfo]) {
        let soft = constraints(pod, false);
        state.topology_spread_score = Some(PreScoreState {
            constraints: if soft.is_empty() {
                Vec::new()
            } else {
                count(pod, nodes, soft)
            },
        });
    }

    /// The matching pods in the node's domains, each constraint weighted by how many
    /// domains it has (as Kubernetes does): fewer is better.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = &state.topology_spread_score else {
            return 0;
        };
        let mut total = 0f64;
        for c in &s.constraints {
            let weight = ((c.counts.len() + 2) as f64).ln();
            let value = node.labels.get(&c.constraint.topology_key);
            let n = value.and_then(|v| c.counts.get(v)).copied().unwrap_or(0);
            total += n as f64 * weight;
        }
        (total * 100.0) as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        let min = scores.iter().copied().min().unwrap_or(0);
        for s in scores.iter_mut() {
            *s -= min;
        }
        normalize_to_max(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::types::testing::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::sync::Arc;

    fn zoned(name: &str, zone: Option<&str>) -> NodeInfo {
        let mut n = node(name, "8", "8Gi");
        if let Some(z) = zone {
            n.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("zone".into(), z.into());
        }
        node_info(n)
    }

    fn web(name: &str, hard: bool) -> k8s_openapi::api::core::v1::Pod {
        let mut p = pod(name, "1m", "1");
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        p.spec.as_mut().unwrap().topology_spread_constraints =
            Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "zone".into(),
                when_unsatisfiable: if hard {
                    "DoNotSchedule"
                } else {
                    "ScheduleAnyway"
                }
                .into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        p
    }

    #[test]
    fn skew_beyond_max_is_refused_and_unlabelled_nodes_are_unresolvable() {
        let mut a = zoned("a", Some("z1"));
        a.add_pod(Arc::new(info(web("w1", true))));
        let nodes = vec![a, zoned("b", Some("z2")), zoned("c", None)];
        let p = info(web("w2", true));
        let mut state = CycleState::default();
        assert!(PodTopologySpread
            .pre_filter(&mut state, &p, &nodes)
            .is_success());
        let r: Vec<Status> = nodes
            .iter()
            .map(|n| PodTopologySpread.filter(&state, &p, n))
            .collect();
        assert_eq!(
            r[0].reasons,
            ["node(s) didn't match pod topology spread constraints"]
        );
        assert!(r[1].is_success());
        assert_eq!(r[2].code, Code::UnschedulableAndUnresolvable);
    }

    #[test]
    fn soft_constraints_prefer_the_emptier_domain() {
        let mut a = zoned("a", Some("z1"));
        a.add_pod(Arc::new(info(web("w1", false))));
        let b = zoned("b", Some("z2"));
        let p = info(web("w2", false));
        let mut state = CycleState::default();
        PodTopologySpread.pre_score(&mut state, &p, &[&a, &b]);
        let mut scores = vec![
            PodTopologySpread.score(&state, &p, &a),
            PodTopologySpread.score(&state, &p, &b),
        ];
        PodTopologySpread.normalize(&mut scores);
        assert!(scores[1] > scores[0], "{scores:?}");
    }
}
