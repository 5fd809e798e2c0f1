//! The ReplicaSet controller end to end: a real `flotilla server` with its scheduler,
//! simulated nodes that report bound pods Running, and the controller running in process;
//! kubectl and the API act and observe.
//!
//! Each test starts its own server and nodes (unique name prefixes), so they run in parallel.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use support::sim::{app_workload, phase_of, run_kubectl, SimCluster};

const DEADLINE: Duration = Duration::from_secs(60);

struct Harness {
    sim: SimCluster,
    /// Which installed kubectl the test drives (tests spread over 1.29..1.33).
    kubectl_version: &'static str,
}

crate::deref_to_sim!(Harness);

impl Harness {
    // RUST_LOG=flotilla_controllers=debug shows the controller's syncs.
    async fn start(test: &str, nodes: usize, kubectl_version: &'static str) -> Self {
        let mut sim = SimCluster::with_nodes(&format!("{test}-node"), nodes, false).await;
        sim.spawn_shared(controllers::replicaset::run);
        Harness {
            sim,
            kubectl_version,
        }
    }

    async fn kubectl(&self, args: &[&str], stdin: Option<String>) -> String {
        let k = self.server.kubectl(self.kubectl_version);
        let k = match stdin {
            Some(s) => k.stdin(s),
            None => k,
        };
        run_kubectl(k, args)
            .await
            .expect_success("kubectl")
            .to_string()
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn replica_sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// The active pods controlled by ReplicaSet `rs`.
    async fn owned_pods(&self, rs: &ReplicaSet) -> Vec<Pod> {
        let uid = rs.metadata.uid.clone().unwrap();
        self.pods()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|r| r.uid == uid && r.controller == Some(true))
            })
            .collect()
    }

    /// Waits until ReplicaSet `name` owns exactly `n` Running pods and reports them all
    /// ready and available for its current generation; returns those pods.
    async fn converged(&self, name: &str, n: usize) -> Vec<Pod> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let rs = self.replica_sets().get(name).await.unwrap();
            let pods = self.owned_pods(&rs).await;
            let running = pods
                .iter()
                .filter(|p| phase_of(p) == Some("Running"))
                .count();
            let st = rs.status.clone().unwrap_or_default();
            if pods.len() == n
                && running == n
                && st.replicas == n as i32
                && st.ready_replicas.unwrap_or(0) == n as i32
                && st.available_replicas.unwrap_or(0) == n as i32
                && st.fully_labeled_replicas.unwrap_or(0) == n as i32
                && st.observed_generation == rs.metadata.generation
            {
                return pods;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never converged to {n}: {} pods, {running} running, status {st:?}",
                pods.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn manifest(name: &str, replicas: i32) -> String {
    let mut v = app_workload(
        "ReplicaSet",
        name,
        replicas,
        json!({"name": "c", "image": "registry.invalid/app:1",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}),
    );
    v["spec"]["template"]["metadata"]["labels"]["tier"] = json!("web");
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_scale_and_heal() {
    let h = Harness::start("rsscale", 3, "1.33").await;
    h.kubectl(&["apply", "-f", "-"], Some(manifest("web", 3)))
        .await;
    let pods = h.converged("web", 3).await;
    for p in &pods {
        assert!(p.name_any().starts_with("web-"), "{}", p.name_any());
        assert_eq!(p.labels().get("tier").map(String::as_str), Some("web"));
        let owner = &p.owner_references()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.block_owner_deletion
            ),
            ("ReplicaSet", "web", Some(true))
        );
        assert!(p.spec.as_ref().unwrap().node_name.is_some());
    }
    // The scheduler spreads one owner's pods over the nodes.
    let nodes: std::collections::BTreeSet<_> = pods
        .iter()
        .map(|p| p.spec.as_ref().unwrap().node_name.clone().unwrap())
        .collect();
    assert_eq!(nodes.len(), 3, "{nodes:?}");

    h.kubectl(&["scale", "rs", "web", "--replicas=5"], None)
        .await;
    h.converged("web", 5).await;
    h.kubectl(&["scale", "rs", "web", "--replicas=2"], None)
        .await;
    let pods = h.converged("web", 2).await;

    // A deleted pod is replaced by a new one.
    let victim = pods[0].name_any();
    h.pods()
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let pods = h.converged("web", 2).await;
        if pods.iter().all(|p| p.name_any() != victim) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{victim} not replaced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // kubectl reads the status the controller writes.
    let out = h.kubectl(&["get", "rs", "web", "--no-headers"], None).await;
    let cols: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(&cols[..4], &["web", "2", "2", "2"], "{out}");

    // The controller recorded its creations and deletions on the ReplicaSet.
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(h.client.clone(), "default");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("ReplicaSet"))
            .filter_map(|e| e.reason)
            .collect();
        if reasons.iter().any(|r| r == "SuccessfulCreate")
            && reasons.iter().any(|r| r == "SuccessfulDelete")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no SuccessfulCreate/SuccessfulDelete events: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_orphans_and_releases_mismatches() {
    let h = Harness::start("rsadopt", 3, "1.29").await;
    // An orphan that matches the selector exists before the ReplicaSet.
    let orphan: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "namespace": "default",
            "labels": {"app": "api", "tier": "web"}},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]},
    }))
    .unwrap();
    h.pods()
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    h.kubectl(&["apply", "-f", "-"], Some(manifest("api", 2)))
        .await;
    let pods = h.converged("api", 2).await;
    assert!(
        pods.iter().any(|p| p.name_any() == "stray"),
        "the orphan was not adopted: {:?}",
        pods.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );

    // Relabelling an owned pod out of the selector releases it; a replacement is made.
    h.kubectl(&["label", "pod", "stray", "app=other", "--overwrite"], None)
        .await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let stray = h.pods().get("stray").await.unwrap();
        let pods = h.converged("api", 2).await;
        if stray.owner_references().is_empty() && pods.iter().all(|p| p.name_any() != "stray") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stray never released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let labels: BTreeMap<String, String> = h.pods().get("stray").await.unwrap().labels().clone();
    assert_eq!(labels.get("app").map(String::as_str), Some("other"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_replicas_comes_and_goes() {
    let h = Harness::start("rsburst", 3, "1.31").await;
    h.kubectl(&["apply", "-f", "-"], Some(manifest("burst", 60)))
        .await;
    let pods = h.converged("burst", 60).await;
    let names: std::collections::BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
    assert_eq!(names.len(), 60);
    h.kubectl(&["scale", "rs", "burst", "--replicas=0"], None)
        .await;
    h.converged("burst", 0).await;
    // Nothing is left behind once the simulated nodes finish the deletions.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = h.pods().list(&ListParams::default()).await.unwrap().items;
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} pods left",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
