//! NodeAffinity: nodeSelector and required node affinity filter; preferred terms score.

use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, ScorePlugin, Status, MAX_NODE_SCORE,
};

use super::selectors::node_term_matches;

pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
}

/// Whether the node satisfies the pod's nodeSelector and required node affinity.
pub fn required_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let Some(spec) = pod.spec() else {
        return true;
    };
    if let Some(sel) = &spec.node_selector {
        if sel.iter().any(|(k, v)| node.labels.get(k) != Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| node_term_matches(t, &node.name, &node.labels)),
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if required_matches(pod, node) {
            Status::success()
        } else {
            Status::unresolvable("node(s) didn't match Pod's node affinity/selector")
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.spec()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|p| node_term_matches(&p.preference, &node.name, &node.labels))
            .map(|p| i64::from(p.weight))
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_to_max(scores, false);
    }
}

/// Scales scores so the best is MAX_NODE_SCORE (or, reversed, so the best is 0 → 100).
pub fn normalize_to_max(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        let scaled = if max > 0 {
            *s * MAX_NODE_SCORE / max
        } else {
            0
        };
        *s = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::types::testing::*;
    use k8s_openapi::api::core::v1::{
        Affinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm,
    };

    fn term(key: &str, value: &str) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: "In".into(),
                values: Some(vec![value.into()]),
            }]),
            match_fields: None,
        }
    }

    fn labelled(name: &str, zone: &str) -> NodeInfo {
        let mut n = node(name, "1", "1Gi");
        n.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("zone".into(), zone.into());
        node_info(n)
    }

    #[test]
    fn selector_and_required_terms() {
        let mut p = pod("p", "1m", "1");
        p.spec.as_mut().unwrap().node_selector =
            Some([("zone".to_string(), "a".to_string())].into());
        let s = CycleState::default();
        assert!(NodeAffinity
            .filter(&s, &info(p.clone()), &labelled("n", "a"))
            .is_success());
        let status = NodeAffinity.filter(&s, &info(p.clone()), &labelled("n", "b"));
        assert_eq!(
            status.reasons,
            ["node(s) didn't match Pod's node affinity/selector"]
        );

        p.spec.as_mut().unwrap().node_selector = None;
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(k8s_openapi::api::core::v1::NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![term("zone", "x"), term("zone", "b")],
                }),
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    PreferredSchedulingTerm {
                        weight: 10,
                        preference: term("zone", "b"),
                    },
                ]),
            }),
            ..Default::default()
        });
        let p = info(p);
        assert!(
            NodeAffinity
                .filter(&s, &p, &labelled("n", "b"))
                .is_success(),
            "terms are ORed"
        );
        assert!(!NodeAffinity
            .filter(&s, &p, &labelled("n", "a"))
            .is_success());
        let mut scores = vec![
            NodeAffinity.score(&s, &p, &labelled("n", "b")),
            NodeAffinity.score(&s, &p, &labelled("m", "c")),
        ];
        NodeAffinity.normalize(&mut scores);
        assert_eq!(scores, [100, 0]);
    }
}
