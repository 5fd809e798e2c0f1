//! The small node filters: NodeName, NodeUnschedulable and NodePorts.

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Status};

use super::taint_toleration::tolerates;
use crate::framework::types::TAINT_UNSCHEDULABLE;

/// spec.nodeName set by the user pins the pod to that node.
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.spec().and_then(|s| s.node_name.as_deref()) {
            Some(want) if !want.is_empty() && want != node.name => {
                Status::unresolvable("node(s) didn't match the requested node name")
            }
            _ => Status::success(),
        }
    }
}

/// A cordoned node takes only pods that tolerate its unschedulable taint.
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        let taint = k8s_openapi::api::core::v1::Taint {
            key: TAINT_UNSCHEDULABLE.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if pod.tolerations.iter().any(|t| tolerates(t, &taint)) {
            Status::success()
        } else {
            Status::unresolvable("node(s) were unschedulable")
        }
    }
}

/// hostPorts already taken on the node.
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let clash = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if clash {
            Status::unschedulable("node(s) didn't have free ports for the requested pod ports")
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::types::testing::*;
    use k8s_openapi::api::core::v1::{ContainerPort, Toleration};
    use std::sync::Arc;

    #[test]
    fn node_name_pins() {
        let mut p = pod("p", "1m", "1");
        p.spec.as_mut().unwrap().node_name = Some("b".into());
        let p = info(p);
        let s = CycleState::default();
        assert!(!NodeName
            .filter(&s, &p, &node_info(node("a", "1", "1Gi")))
            .is_success());
        assert!(NodeName
            .filter(&s, &p, &node_info(node("b", "1", "1Gi")))
            .is_success());
    }

    #[test]
    fn cordoned_nodes_take_only_tolerating_pods() {
        let mut n = node("a", "1", "1Gi");
        n.spec.as_mut().unwrap().unschedulable = Some(true);
        let n = node_info(n);
        let s = CycleState::default();
        let status = NodeUnschedulable.filter(&s, &info(pod("p", "1m", "1")), &n);
        assert_eq!(status.reasons, ["node(s) were unschedulable"]);
        let mut p = pod("q", "1m", "1");
        p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some(TAINT_UNSCHEDULABLE.into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        assert!(NodeUnschedulable.filter(&s, &info(p), &n).is_success());
    }

    #[test]
    fn host_ports_clash_across_wildcard_addresses() {
        let with_port = |name: &str, ip: Option<&str>| {
            let mut p = pod(name, "1m", "1");
            p.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
                container_port: 80,
                host_port: Some(8080),
                host_ip: ip.map(str::to_string),
                ..Default::default()
            }]);
            info(p)
        };
        let mut n = node_info(node("a", "1", "1Gi"));
        n.add_pod(Arc::new(with_port("x", Some("10.0.0.1"))));
        let s = CycleState::default();
        assert!(!NodePorts.filter(&s, &with_port("y", None), &n).is_success());
        assert!(!NodePorts
            .filter(&s, &with_port("y", Some("10.0.0.1")), &n)
            .is_success());
        assert!(NodePorts
            .filter(&s, &with_port("y", Some("10.0.0.2")), &n)
            .is_success());
    }
}
