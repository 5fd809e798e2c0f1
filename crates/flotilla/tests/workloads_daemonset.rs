//! A DaemonSet with real containers (root): `flotilla server` with its scheduler and
//! controllers, a real node agent (runc, CNI, a local registry), driven by kubectl.
//! The DaemonSet puts a Running pod on the node, `kubectl rollout status` reports it rolled
//! out, and a deleted daemon pod is replaced on the same node.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::Cluster;

const KUBECTL: &str = "1.33";
const NS: &str = "wl-daemonset";

fn kubectl(c: &Cluster, args: &[&str]) -> String {
    c.kubectl_run(KUBECTL, args)
        .expect_success(&args.join(" "))
        .to_string()
}

/// The daemon's pods that are not being deleted.
fn live_pods(c: &Cluster) -> Vec<Value> {
    let out = c.kubectl_run(
        KUBECTL,
        &[
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "app=node-agent",
            "-o",
            "json",
        ],
    );
    if !out.success() {
        return Vec::new();
    }
    let list: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn running_and_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["containerStatuses"][0]["ready"] == true
        && support::cluster::node_condition(p, "Ready").is_some_and(|c| c["status"] == "True")
}

/// Waits for exactly one live daemon pod, Running and Ready; panics with the state if not.
fn the_running_pod(c: &Cluster, not_uid: Option<&str>) -> Value {
    testkit::wait_for(Duration::from_secs(90), || {
        let pods = live_pods(c);
        (pods.len() == 1
            && running_and_ready(&pods[0])
            && not_uid.is_none_or(|u| pods[0]["metadata"]["uid"] != u))
        .then(|| pods[0].clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "no single Running daemon pod\npods: {}\nds: {}\n--- agent log ---\n{}",
            c.kubectl_run(KUBECTL, &["get", "pods", "-n", NS, "-o", "wide"])
                .stdout,
            c.kubectl_run(KUBECTL, &["get", "ds", "-n", NS, "-o", "yaml"])
                .stdout,
            {
                let log = c.agent_log();
                log[log.len().saturating_sub(4000)..].to_string()
            }
        )
    })
}

#[test]
fn a_daemon_set_puts_a_running_pod_on_the_node() {
    let c = Cluster::start();
    kubectl(&c, &["create", "namespace", NS]);
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "node-agent", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": "node-agent"}},
            "template": {
                "metadata": {"labels": {"app": "node-agent"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "agent", "image": c.image,
                                    "command": ["sleep", "3600"]}]
                }
            }
        }
    });
    c.kubectl(KUBECTL)
        .stdin(ds.to_string())
        .run(&["apply", "-f", "-"])
        .expect_success("apply the DaemonSet");

    let out = c.kubectl(KUBECTL).timeout(Duration::from_secs(100)).run(&[
        "rollout",
        "status",
        "ds/node-agent",
        "-n",
        NS,
        "--timeout=90s",
    ]);
    out.expect_success("rollout status ds/node-agent");
    assert!(
        out.stdout.contains("successfully rolled out"),
        "{}",
        out.stdout
    );

    let pod = the_running_pod(&c, None);
    assert_eq!(pod["spec"]["nodeName"], c.node_name.as_str());
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0],
        c.node_name.as_str()
    );
    let row = kubectl(&c, &["get", "ds", "node-agent", "-n", NS, "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..6], ["node-agent", "1", "1", "1", "1", "1"], "{row}");

    // A deleted daemon pod is replaced by a new one on the same node.
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    kubectl(&c, &["delete", "pod", &name, "-n", NS, "--wait=false"]);
    let replacement = the_running_pod(&c, Some(&uid));
    assert_eq!(replacement["spec"]["nodeName"], c.node_name.as_str());
}
