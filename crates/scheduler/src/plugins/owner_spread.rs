//! Spreads the pods of one owner (ReplicaSet, StatefulSet, Job…) across nodes: the fewer of
//! its siblings a node already runs, the higher it scores (what kube-scheduler's default
//! topology spreading achieves for controller-owned pods).

use super::node_affinity::normalize_to_max;
use crate::framework::{CycleState, NodeInfo, Plugin, PodInfo, ScorePlugin};

pub struct OwnerSpread;

fn controller_uid(pod: &PodInfo) -> Option<&str> {
    pod.pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

impl Plugin for OwnerSpread {
    fn name(&self) -> &'static str {
        "OwnerSpread"
    }
}

impl ScorePlugin for OwnerSpread {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(owner) = controller_uid(pod) else {
            return 0;
        };
        node.pods
            .iter()
            .filter(|p| controller_uid(p) == Some(owner))
            .count() as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_to_max(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::types::testing::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::sync::Arc;

    fn owned(name: &str) -> PodInfo {
        let mut p = pod(name, "1m", "1");
        p.metadata.owner_references = Some(vec![OwnerReference {
            controller: Some(true),
            uid: "rs-1".into(),
            ..Default::default()
        }]);
        info(p)
    }

    #[test]
    fn siblings_push_away() {
        let mut a = node_info(node("a", "1", "1Gi"));
        a.add_pod(Arc::new(owned("x")));
        let b = node_info(node("b", "1", "1Gi"));
        let p = owned("y");
        let s = CycleState::default();
        let mut scores = vec![OwnerSpread.score(&s, &p, &a), OwnerSpread.score(&s, &p, &b)];
        OwnerSpread.normalize(&mut scores);
        assert_eq!(scores, [0, 100]);
    }
}
