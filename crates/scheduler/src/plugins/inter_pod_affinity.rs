//! InterPodAffinity: required pod affinity and anti-affinity (the incoming pod's, and the
//! anti-affinity of pods already placed) filter; preferred terms score.
//!
//! Pre-filter counts, once per cycle, the matching pods per topology domain, so each node's
//! filter is a few map lookups. A term's namespaces are its `namespaces`, else the pod's
//! own; an empty `namespaceSelector` means every namespace. A non-empty namespaceSelector
//! needs namespace labels the scheduler does not watch yet and is treated as the term's
//! namespaces list only (documented in docs/ARCHITECTURE.md).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::PodAffinityTerm;

use super::node_affinity::normalize_to_max;
use super::selectors::label_selector_matches;
use crate::framework::{
    Code, CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreFilterPlugin, ScorePlugin, Status,
};

/// (topology key, value) → matching pods.
type DomainCounts = HashMap<(String, String), i64>;

#[derive(Debug, Default)]
pub struct PreFilterState {
    /// Per required affinity term of the incoming pod.
    affinity: Vec<DomainCounts>,
    /// Whether any pod anywhere matches each affinity term.
    affinity_any: Vec<bool>,
    /// Per required anti-affinity term of the incoming pod.
    anti_affinity: Vec<DomainCounts>,
    /// Domains where an existing pod's anti-affinity rejects the incoming pod.
    existing_anti: DomainCounts,
}

#[derive(Debug, Default)]
pub struct PreScoreState {
    /// Weighted sum per domain of preferred (anti-)affinity matches.
    scores: DomainCounts,
}

fn term_namespaces_match(term: &PodAffinityTerm, owner_ns: &str, candidate_ns: &str) -> bool {
    if let Some(list) = term.namespaces.as_ref().filter(|l| !l.is_empty()) {
        return list.iter().any(|n| n == candidate_ns);
    }
    if let Some(sel) = &term.namespace_selector {
        if sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        {
            return true;
        }
    }
    owner_ns == candidate_ns
}

/// Whether `candidate` is selected by a term that `owner` declared.
fn term_matches(term: &PodAffinityTerm, owner_ns: &str, candidate: &PodInfo) -> bool {
    term_namespaces_match(term, owner_ns, &candidate.namespace)
        && label_selector_matches(term.label_selector.as_ref(), &candidate.labels)
}

fn required_terms(pod: &PodInfo, anti: bool) -> Vec<PodAffinityTerm> {
    let aff = pod.spec().and_then(|s| s.affinity.as_ref());
    let terms = if anti {
        aff.and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            })
    } else {
        aff.and_then(|a| a.pod_affinity.as_ref()).and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .clone()
        })
    };
    terms.unwrap_or_default()
}

fn domain(node: &NodeInfo, key: &str) -> Option<(String, String)> {
    node.labels.get(key).map(|v| (key.to_string(), v.clone()))
}

pub struct InterPodAffinity;

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[NodeInfo]) -> Status {
        let affinity = required_terms(pod, false);
        let anti = required_terms(pod, true);
        let mut s = PreFilterState {
            affinity: vec![DomainCounts::new(); affinity.len()],
            affinity_any: vec![false; affinity.len()],
            anti_affinity: vec![DomainCounts::new(); anti.len()],
            existing_anti: DomainCounts::new(),
        };
        // Without terms of its own, only pods with anti-affinity can matter: skip the rest.
        let own_terms = !affinity.is_empty() || !anti.is_empty();
        for node in nodes {
            if !own_terms && node.pods_with_required_anti_affinity == 0 {
                continue;
            }
            for existing in &node.pods {
                if !own_terms && !existing.has_required_anti_affinity {
                    continue;
                }
                for (i, t) in affinity.iter().enumerate() {
                    if term_matches(t, &pod.namespace, existing) {
                        s.affinity_any[i] = true;
                        if let Some(d) = domain(node, &t.topology_key) {
                            *s.affinity[i].entry(d).or_default() += 1;
                        }
                    }
                }
                for (i, t) in anti.iter().enumerate() {
                    if term_matches(t, &pod.namespace, existing) {
                        if let Some(d) = domain(node, &t.topology_key) {
                            *s.anti_affinity[i].entry(d).or_default() += 1;
                        }
                    }
                }
                if !existing.has_required_anti_affinity {
                    continue;
                }
                for t in required_terms(existing, true) {
                    if term_matches(&t, &existing.namespace, pod) {
                        if let Some(d) = domain(node, &t.topology_key) {
                            *s.existing_anti.entry(d).or_default() += 1;
                        }
                    }
                }
            }
        }
        state.inter_pod_affinity = Some(s);
        Status::success()
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = &state.inter_pod_affinity else {
            return Status::success();
        };
        let in_domain = |counts: &DomainCounts, key: &str| {
            domain(node, key).is_some_and(|d| counts.get(&d).copied().unwrap_or(0) > 0)
        };
        let affinity = required_terms(pod, false);
        for (i, t) in affinity.iter().enumerate() {
            if in_domain(&s.affinity[i], &t.topology_key) {
                continue;
            }
            // The first pod of a group that selects itself may go anywhere with the key.
            let self_match = !s.affinity_any.iter().any(|&b| b)
                && term_matches(t, &pod.namespace, pod)
                && node.labels.contains_key(&t.topology_key);
            if !self_match {
                return Status::unresolvable("node(s) didn't match pod affinity rules");
            }
        }
        let anti = required_terms(pod, true);
        for (i, t) in anti.iter().enumerate() {
            if in_domain(&s.anti_affinity[i], &t.topology_key) {
                return Status::unschedulable("node(s) didn't match pod anti-affinity rules");
            }
        }
        // Existing pods' anti-affinity, checked last as kube-scheduler does.
        if s.existing_anti
            .keys()
            .any(|(k, v)| node.labels.get(k) == Some(v))
        {
            return Status {
                code: Code::Unschedulable,
                reasons: vec!["node(s) didn't satisfy existing pods anti-affinity rules".into()],
            };
        }
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[&NodeInfo]) {
        let aff = pod.spec().and_then(|s| s.affinity.as_ref());
        let mut weighted: Vec<(PodAffinityTerm, i64)> = Vec::new();
        for t in aff
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .clone()
            })
            .unwrap_or_default()
        {
            weighted.push((t.pod_affinity_term, i64::from(t.weight)));
        }
        for t in aff
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .clone()
            })
            .unwrap_or_default()
        {
            weighted.push((t.pod_affinity_term, -i64::from(t.weight)));
        }
        let mut scores = DomainCounts::new();
        if !weighted.is_empty() {
            for node in nodes {
                for existing in &node.pods {
                    for (t, w) in &weighted {
                        if term_matches(t, &pod.namespace, existing) {
                            if let Some(d) = domain(node, &t.topology_key) {
                                *scores.entry(d).or_default() += w;
                            }
                        }
                    }
                }
            }
        }
        state.inter_pod_affinity_score = Some(PreScoreState { scores });
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = &state.inter_pod_affinity_score else {
            return 0;
        };
        s.scores
            .iter()
            .filter(|((k, v), _)| node.labels.get(k) == Some(v))
            .map(|(_, w)| *w)
            .sum()
    }

    /// Min-max scaling, since anti-affinity makes raw scores negative.
    fn normalize(&self, scores: &mut [i64]) {
        let min = scores.iter().copied().min().unwrap_or(0);
        for s in scores.iter_mut() {
            *s -= min;
        }
        normalize_to_max(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::types::testing::*;
    use k8s_openapi::api::core::v1::{Affinity, PodAntiAffinity};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::sync::Arc;

    fn labelled_pod(name: &str, app: &str) -> k8s_openapi::api::core::v1::Pod {
        let mut p = pod(name, "1m", "1");
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        p
    }

    fn term(app: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), app.to_string())].into()),
                ..Default::default()
            }),
            topology_key: "kubernetes.io/hostname".into(),
            ..Default::default()
        }
    }

    fn with_anti(
        mut p: k8s_openapi::api::core::v1::Pod,
        app: &str,
    ) -> k8s_openapi::api::core::v1::Pod {
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(app)]),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    fn with_affinity(
        mut p: k8s_openapi::api::core::v1::Pod,
        app: &str,
    ) -> k8s_openapi::api::core::v1::Pod {
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_affinity: Some(k8s_openapi::api::core::v1::PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(app)]),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    fn run(incoming: k8s_openapi::api::core::v1::Pod, nodes: &[NodeInfo]) -> Vec<Status> {
        let p = info(incoming);
        let mut state = CycleState::default();
        assert!(InterPodAffinity
            .pre_filter(&mut state, &p, nodes)
            .is_success());
        nodes
            .iter()
            .map(|n| InterPodAffinity.filter(&state, &p, n))
            .collect()
    }

    fn cluster() -> Vec<NodeInfo> {
        let mut a = node_info(node("a", "4", "4Gi"));
        a.add_pod(Arc::new(info(labelled_pod("web-1", "web"))));
        let b = node_info(node("b", "4", "4Gi"));
        vec![a, b]
    }

    #[test]
    fn anti_affinity_keeps_replicas_apart() {
        let r = run(with_anti(labelled_pod("web-2", "web"), "web"), &cluster());
        assert_eq!(
            r[0].reasons,
            ["node(s) didn't match pod anti-affinity rules"]
        );
        assert!(r[1].is_success());
    }

    #[test]
    fn affinity_follows_the_target() {
        let r = run(
            with_affinity(labelled_pod("cache", "cache"), "web"),
            &cluster(),
        );
        assert!(r[0].is_success());
        assert_eq!(r[1].reasons, ["node(s) didn't match pod affinity rules"]);
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_may_go_anywhere() {
        let nodes = vec![
            node_info(node("a", "4", "4Gi")),
            node_info(node("b", "4", "4Gi")),
        ];
        let r = run(with_affinity(labelled_pod("db-1", "db"), "db"), &nodes);
        assert!(r.iter().all(Status::is_success));
    }

    #[test]
    fn existing_anti_affinity_is_symmetric() {
        let mut a = node_info(node("a", "4", "4Gi"));
        a.add_pod(Arc::new(info(with_anti(
            labelled_pod("loner", "loner"),
            "web",
        ))));
        let nodes = vec![a, node_info(node("b", "4", "4Gi"))];
        let r = run(labelled_pod("web-1", "web"), &nodes);
        assert_eq!(
            r[0].reasons,
            ["node(s) didn't satisfy existing pods anti-affinity rules"]
        );
        assert!(r[1].is_success());
    }
}
