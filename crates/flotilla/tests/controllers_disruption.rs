//! PodDisruptionBudgets end to end: a real `flotilla server` with its scheduler, two
//! simulated nodes, and the ReplicaSet and disruption controllers in process. The budget's
//! status follows the pods; the eviction subresource takes the one disruption it allows
//! and answers 429 past it until a replacement is Ready; and `kubectl drain` completes by
//! retrying its evictions within the budget.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use serde_json::Value;

use support::sim::{app_workload, eventually, is_ready, SimCluster};

const PREFIX: &str = "pdb-node";

async fn ready_pods(pods: &Api<Pod>) -> Vec<Pod> {
    pods.list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .collect()
}

/// POSTs an Eviction for `pod` with a client that does not retry (kube's retries 429s):
/// the status code and the body.
async fn evict(sim: &SimCluster, pod: &str) -> (u16, Value) {
    let client = sim.server.admin_client();
    let path = format!("/api/v1/namespaces/default/pods/{pod}/eviction");
    let body = serde_json::json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": pod, "namespace": "default"}});
    tokio::task::spawn_blocking(move || {
        let r = client
            .request(
                "POST",
                &path,
                Some("application/json"),
                body.to_string().into_bytes(),
            )
            .unwrap();
        (r.status, r.json())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_stay_within_the_budget_and_drain_waits_for_it() {
    let mut sim = SimCluster::with_nodes(PREFIX, 2, false).await;
    sim.spawn_shared(controllers::replicaset::run);
    sim.spawn_shared(controllers::disruption::run);
    let timeout = Duration::from_secs(90);
    let rs = app_workload(
        "ReplicaSet",
        "web",
        3,
        serde_json::json!({"name": "c", "image": "registry.invalid/web:1"}),
    );
    sim.kubectl("1.33", timeout, &["apply", "-f", "-"], Some(rs.to_string()))
        .await;
    let pods: Api<Pod> = sim.api("default");
    eventually(60, "3 ready web pods", || async {
        (ready_pods(&pods).await.len() == 3).then_some(())
    })
    .await;
    sim.kubectl(
        "1.33",
        timeout,
        &[
            "create",
            "pdb",
            "web",
            "--selector=app=web",
            "--min-available=2",
        ],
        None,
    )
    .await;
    let budgets: Api<PodDisruptionBudget> = sim.api("default");
    eventually(30, "the budget allows one disruption", || async {
        let s = budgets.get("web").await.ok()?.status?;
        (s.disruptions_allowed == 1 && s.current_healthy == 3 && s.desired_healthy == 2)
            .then_some(s)
    })
    .await;
    let row = sim
        .kubectl(
            "1.33",
            timeout,
            &["get", "pdb", "web", "--no-headers"],
            None,
        )
        .await;
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..4], ["web", "2", "N/A", "1"], "{row}");

    // No replacement can be scheduled: one eviction is allowed, the next is not.
    for i in 0..2 {
        sim.kubectl("1.33", timeout, &["cordon", &format!("{PREFIX}-{i}")], None)
            .await;
    }
    let ready = ready_pods(&pods).await;
    let first = ready[0].metadata.name.clone().unwrap();
    let (code, body) = evict(&sim, &first).await;
    assert_eq!(code, 201, "{body}");
    let second = ready[1].metadata.name.clone().unwrap();
    let (code, body) = evict(&sim, &second).await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(
        body["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(body["details"]["causes"][0]["reason"], "DisruptionBudget");
    // currentHealthy is 2 or 3 depending on whether the controller has counted the first
    // eviction yet.
    let cause = body["details"]["causes"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        cause.starts_with("The disruption budget web needs 2 healthy pods and has "),
        "{body}"
    );
    let evicted = pods.get_opt(&first).await.unwrap();
    assert!(evicted.is_none_or(|p| p.metadata.deletion_timestamp.is_some()));

    // Room for the replacement: once it is Ready, the budget allows the next eviction.
    sim.kubectl("1.33", timeout, &["uncordon", &format!("{PREFIX}-1")], None)
        .await;
    eventually(60, "the second eviction is allowed", || async {
        (evict(&sim, &second).await.0 == 201).then_some(())
    })
    .await;

    // kubectl drain evicts node 0's pods one budget's worth at a time, retrying on 429.
    eventually(60, "3 ready web pods again", || async {
        (ready_pods(&pods).await.len() == 3).then_some(())
    })
    .await;
    sim.kubectl(
        "1.33",
        timeout,
        &["drain", &format!("{PREFIX}-0"), "--timeout=80s"],
        None,
    )
    .await;
    let left: Vec<Pod> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.spec.as_ref().and_then(|s| s.node_name.as_deref())
                    == Some(&format!("{PREFIX}-0"))
        })
        .collect();
    assert!(left.is_empty(), "pods left on the drained node: {left:?}");
}
