//! Nodes: NAME STATUS ROLES AGE VERSION | INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION
//! CONTAINER-RUNTIME.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{json, Value};

use super::columns::{col, wide, AGE, NAME};
use super::fields::{age, list_at, map_at, name, opt_bool_at, str_at};
use crate::table::{Column, TablePrinter};

/// `node-role.kubernetes.io/<role>` labels name a node's roles (kubeadm's convention).
const ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";
/// The older `kubernetes.io/role=<role>` label.
const ROLE_LABEL: &str = "kubernetes.io/role";

pub struct NodePrinter;

const COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available."),
    wide("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available."),
    wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
];

impl TablePrinter for NodePrinter {
    fn columns(&self) -> Vec<Column> {
        COLUMNS.to_vec()
    }

    fn cells(&self, node: &Value, now: Timestamp) -> Vec<Value> {
        let roles = roles(node);
        let info = |field: &str| match str_at(node, &format!("/status/nodeInfo/{field}")) {
            "" => "<unknown>".to_string(),
            v => v.to_string(),
        };
        vec![
            name(node),
            json!(status(node)),
            json!(if roles.is_empty() {
                "<none>".to_string()
            } else {
                roles.join(",")
            }),
            age(node, now),
            json!(str_at(node, "/status/nodeInfo/kubeletVersion")),
            json!(address(node, "InternalIP")),
            json!(address(node, "ExternalIP")),
            json!(info("osImage")),
            json!(info("kernelVersion")),
            json!(info("containerRuntimeVersion")),
        ]
    }
}

/// "Ready", "NotReady" or "Unknown" from the Ready condition, then ",SchedulingDisabled"
/// when the node is cordoned.
fn status(node: &Value) -> String {
    let mut status = match list_at(node, "/status/conditions")
        .iter()
        .rev()
        .find(|c| str_at(c, "/type") == "Ready")
    {
        Some(c) if str_at(c, "/status") == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if opt_bool_at(node, "/spec/unschedulable") == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// The sorted, de-duplicated roles named by the node's labels.
fn roles(node: &Value) -> Vec<String> {
    let Some(labels) = map_at(node, "/metadata/labels") else {
        return Vec::new();
    };
    let mut roles = BTreeSet::new();
    for (key, value) in labels {
        if let Some(role) = key.strip_prefix(ROLE_LABEL_PREFIX) {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if key == ROLE_LABEL {
            match value.as_str() {
                Some(role) if !role.is_empty() => {
                    roles.insert(role.to_string());
                }
                _ => {}
            }
        }
    }
    roles.into_iter().collect()
}

/// The node's first address of `type_`, or `<none>`.
fn address(node: &Value, type_: &str) -> String {
    list_at(node, "/status/addresses")
        .iter()
        .find(|a| str_at(a, "/type") == type_)
        .map_or_else(
            || "<none>".to_string(),
            |a| str_at(a, "/address").to_string(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-06-01T12:00:00Z".parse().expect("time")
    }

    fn node() -> Value {
        json!({
            "metadata": {"name": "n1", "creationTimestamp": "2024-05-29T09:00:00Z", "labels": {
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/worker": "true",
                "kubernetes.io/role": "master",
                "node-role.kubernetes.io/": "ignored",
                "kubernetes.io/hostname": "n1",
            }},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.50.2"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0-flotilla", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "runc://1.1.12"},
            },
        })
    }

    #[test]
    fn ready_node_with_roles() {
        assert_eq!(
            NodePrinter.cells(&node(), now()),
            [
                json!("n1"),
                json!("Ready"),
                json!("control-plane,master,worker"),
                json!("3d3h"),
                json!("v1.33.0-flotilla"),
                json!("192.168.50.2"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0-18-amd64"),
                json!("runc://1.1.12")
            ]
        );
    }

    #[test]
    fn cordoned_not_ready_and_unknown_nodes() {
        let mut n = node();
        n["spec"] = json!({"unschedulable": true});
        n["status"]["conditions"][1]["status"] = json!("Unknown");
        assert_eq!(
            NodePrinter.cells(&n, now())[1],
            json!("NotReady,SchedulingDisabled")
        );
        let bare = json!({"metadata": {"name": "new"}});
        let c = NodePrinter.cells(&bare, now());
        assert_eq!(
            (&c[1], &c[2], &c[5], &c[7]),
            (
                &json!("Unknown"),
                &json!("<none>"),
                &json!("<none>"),
                &json!("<unknown>")
            )
        );
    }
}
