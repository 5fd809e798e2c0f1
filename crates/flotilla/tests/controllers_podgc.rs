//! The pod garbage collector end to end: a real `flotilla server`, one simulated node and
//! PodGC in process (quarantine 1 s, a pass every 200 ms, at most 2 finished pods kept).
//! The oldest finished pod beyond the threshold is deleted; once the node's agent stops
//! and its Node is deleted, its pods are marked Failed with the DisruptionTarget condition
//! and force-deleted, as nothing would ever confirm their deletion otherwise.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use support::sim::{eventually, merge_patch, nodes, phase_of, SimCluster};
use support::ServerOptions;

const NS: &str = "default";

fn bound_pod(name: &str, node: &str, finalizer: bool) -> Pod {
    let finalizers = if finalizer {
        json!(["example.com/hold"])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "finalizers": finalizers},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.invalid/app:1"}]}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_pods_are_capped_and_a_deleted_nodes_pods_are_failed_and_removed() {
    let mut sim = SimCluster::start(ServerOptions::default()).await;
    let config = controllers::podgc::Config {
        terminated_pod_threshold: 2,
        quarantine: Duration::from_secs(1),
        period: Duration::from_millis(200),
    };
    sim.spawn_shared(move |informers, stop| controllers::podgc::run_with(informers, config, stop));
    sim.add_nodes(nodes("podgc-node", 1)).await;
    let node = "podgc-node-0";
    let pods: Api<Pod> = sim.api(NS);
    for (name, hold) in [
        ("done-0", false),
        ("done-1", false),
        ("done-2", false),
        ("plain", false),
        ("held", true),
    ] {
        pods.create(&PostParams::default(), &bound_pod(name, node, hold))
            .await
            .unwrap();
    }
    for name in ["done-0", "done-1", "done-2", "plain", "held"] {
        eventually(30, &format!("{name} Running"), || async {
            let p = pods.get(name).await.ok()?;
            (phase_of(&p) == Some("Running")).then_some(())
        })
        .await;
    }

    // Three finished pods, two kept: the oldest (same second: the first by name) goes.
    for name in ["done-0", "done-1", "done-2"] {
        let patch = json!({"status": {"phase": "Succeeded"}});
        pods.patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    }
    eventually(30, "the oldest finished pod is deleted", || async {
        pods.get_opt("done-0")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(pods.get_opt("done-1").await.unwrap().is_some());
    assert!(pods.get_opt("done-2").await.unwrap().is_some());

    // The node's agent goes away for good, and its Node with it.
    sim.stop_newest();
    let nodes_api: Api<Node> = sim.cluster_api();
    nodes_api
        .delete(node, &DeleteParams::default())
        .await
        .unwrap();
    eventually(30, "the running pod is force-deleted", || async {
        pods.get_opt("plain").await.unwrap().is_none().then_some(())
    })
    .await;
    let held = eventually(30, "the held pod is marked Failed and deleted", || async {
        let p = pods.get("held").await.ok()?;
        (p.metadata.deletion_timestamp.is_some() && phase_of(&p) == Some("Failed")).then_some(p)
    })
    .await;
    let dt = held
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionTarget"))
        .cloned()
        .unwrap();
    assert_eq!(dt.status, "True");
    assert_eq!(dt.reason.as_deref(), Some("DeletionByPodGC"));
    assert_eq!(dt.message.as_deref(), Some("PodGC: node no longer exists"));
    // Finished pods on the gone node go too, without being marked.
    for name in ["done-1", "done-2"] {
        eventually(30, &format!("{name} is deleted"), || async {
            pods.get_opt(name).await.unwrap().is_none().then_some(())
        })
        .await;
    }
    merge_patch(&pods, "held", json!({"metadata": {"finalizers": null}})).await;
    eventually(30, "the held pod is gone once released", || async {
        pods.get_opt("held").await.unwrap().is_none().then_some(())
    })
    .await;
}
