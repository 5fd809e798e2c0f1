//! TaintToleration: NoSchedule and NoExecute taints keep out pods that do not tolerate them;
//! PreferNoSchedule taints lower the node's score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, ScorePlugin, Status, MAX_NODE_SCORE,
};

/// Kubernetes' toleration matching (an empty key with Exists tolerates everything).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let untolerated = node.taints.iter().find(|taint| {
            (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
                && !pod.tolerations.iter().any(|t| tolerates(t, taint))
        });
        match untolerated {
            None => Status::success(),
            Some(taint) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        node.taints
            .iter()
            .filter(|taint| taint.effect == "PreferNoSchedule")
            .filter(|taint| {
                !pod.tolerations.iter().any(|t| {
                    t.effect
                        .as_deref()
                        .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
                        && tolerates(t, taint)
                })
            })
            .count() as i64
    }

    /// Fewer intolerable taints is better: reverse and scale to 0..=100.
    fn normalize(&self, scores: &mut [i64]) {
        let max = scores.iter().copied().max().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE - *s * MAX_NODE_SCORE / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::types::testing::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Default::default()
        }
    }

    #[test]
    fn matching_rules() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        let tol =
            |key: Option<&str>, op: &str, value: Option<&str>, effect: Option<&str>| Toleration {
                key: key.map(Into::into),
                operator: Some(op.into()),
                value: value.map(Into::into),
                effect: effect.map(Into::into),
                ..Default::default()
            };
        assert!(tolerates(
            &tol(Some("dedicated"), "Equal", Some("gpu"), None),
            &t
        ));
        assert!(!tolerates(
            &tol(Some("dedicated"), "Equal", Some("cpu"), None),
            &t
        ));
        assert!(tolerates(
            &tol(Some("dedicated"), "Exists", None, Some("NoSchedule")),
            &t
        ));
        assert!(!tolerates(
            &tol(Some("dedicated"), "Exists", None, Some("NoExecute")),
            &t
        ));
        assert!(tolerates(&tol(None, "Exists", None, None), &t));
    }

    #[test]
    fn untolerated_taints_are_named_in_the_reason() {
        let mut n = node("a", "1", "1Gi");
        n.spec.as_mut().unwrap().taints = Some(vec![taint("dedicated", "gpu", "NoSchedule")]);
        let status = TaintToleration.filter(
            &CycleState::default(),
            &info(pod("p", "1m", "1")),
            &node_info(n),
        );
        assert_eq!(
            status.reasons,
            ["node(s) had untolerated taint {dedicated: gpu}"]
        );
    }

    #[test]
    fn prefer_no_schedule_lowers_the_score() {
        let mut tainted = node("a", "1", "1Gi");
        tainted.spec.as_mut().unwrap().taints = Some(vec![taint("k", "v", "PreferNoSchedule")]);
        let p = info(pod("p", "1m", "1"));
        let s = CycleState::default();
        let mut scores = vec![
            TaintToleration.score(&s, &p, &node_info(tainted)),
            TaintToleration.score(&s, &p, &node_info(node("b", "1", "1Gi"))),
        ];
        TaintToleration.normalize(&mut scores);
        assert_eq!(scores, [0, 100]);
    }
}
