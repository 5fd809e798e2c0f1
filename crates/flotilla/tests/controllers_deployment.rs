//! The Deployment controller end to end: a real `flotilla server` with its scheduler,
//! simulated nodes that report bound pods Running, the ReplicaSet and Deployment controllers
//! in process; kubectl (1.33 and 1.29) applies, scales, rolls out and undoes.
//!
//! Each test starts its own server and nodes (unique name prefixes), so they run in parallel.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use serde_json::json;

use support::sim::{app_workload, image_of, is_ready, phase_of, SimCluster};

const DEADLINE: Duration = Duration::from_secs(90);

struct Harness {
    sim: SimCluster,
    version: &'static str,
}

crate::deref_to_sim!(Harness);

impl Harness {
    async fn start(test: &str, nodes: usize, version: &'static str) -> Self {
        let mut sim = SimCluster::with_nodes(&format!("{test}-node"), nodes, false).await;
        sim.spawn_shared(controllers::replicaset::run);
        sim.spawn(controllers::deployment::run);
        Harness { sim, version }
    }

    async fn kubectl_output(
        &self,
        args: &[&str],
        stdin: Option<String>,
    ) -> support::kubectl::KubectlOutput {
        self.sim
            .kubectl_output(self.version, DEADLINE, args, stdin)
            .await
    }

    async fn kubectl(&self, args: &[&str], stdin: Option<String>) -> String {
        self.sim.kubectl(self.version, DEADLINE, args, stdin).await
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn replica_sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Pods of app `app` not being deleted.
    async fn live_pods(&self, app: &str) -> Vec<Pod> {
        self.pods()
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// Waits until Deployment `name` has exactly `n` live, Running pods, all of `image`, and
    /// reports them updated and available for its current generation.
    async fn converged(&self, name: &str, n: usize, image: &str) -> Vec<Pod> {
        self.converged_updated(name, n, image, n).await
    }

    /// As `converged`, with `updated` of them from the current template (a paused
    /// Deployment's template change leaves none updated).
    async fn converged_updated(
        &self,
        name: &str,
        n: usize,
        image: &str,
        updated: usize,
    ) -> Vec<Pod> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let d = self.deployments().get(name).await.unwrap();
            let pods = self.live_pods(name).await;
            let running = pods
                .iter()
                .filter(|p| phase_of(p) == Some("Running"))
                .filter(|p| image_of(p) == image)
                .count();
            let st = d.status.clone().unwrap_or_default();
            let n32 = n as i32;
            if pods.len() == n
                && running == n
                && st.replicas == Some(n32)
                && st.updated_replicas == Some(updated as i32)
                && st.ready_replicas == Some(n32)
                && st.available_replicas == Some(n32)
                && st.observed_generation == d.metadata.generation
            {
                return pods;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never converged to {n} × {image}: {} pods, {running} running, status {st:?}",
                pods.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Deployment's ReplicaSets, oldest first.
    async fn owned_replica_sets(&self, name: &str) -> Vec<ReplicaSet> {
        let d = self.deployments().get(name).await.unwrap();
        let uid = d.metadata.uid.unwrap();
        let mut out: Vec<ReplicaSet> = self
            .replica_sets()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|r| {
                r.owner_references()
                    .iter()
                    .any(|o| o.uid == uid && o.controller == Some(true))
            })
            .collect();
        // Creation times have a resolution of seconds: the first revision breaks ties.
        out.sort_by_key(|r| {
            let first_rev: u32 = annotation(r, "deployment.kubernetes.io/revision-history")
                .and_then(|h| h.split(',').next().and_then(|v| v.parse().ok()))
                .or_else(|| {
                    annotation(r, "deployment.kubernetes.io/revision").and_then(|v| v.parse().ok())
                })
                .unwrap_or(0);
            (r.metadata.creation_timestamp.clone(), first_rev)
        });
        out
    }
}

fn annotation(r: &ReplicaSet, k: &str) -> Option<String> {
    r.annotations().get(k).cloned()
}

fn manifest(name: &str, replicas: i32, strategy: serde_json::Value) -> String {
    let mut v = app_workload(
        "Deployment",
        name,
        replicas,
        json!({"name": "c", "image": "registry.invalid/app:1",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}),
    );
    v["spec"]["strategy"] = strategy;
    v.to_string()
}

/// apply → 3 Running pods; scale to 5 then 2; set image rolls out with at least
/// replicas − maxUnavailable pods ready at every sample, `rollout status` succeeds; undo
/// restores the previous image.
async fn lifecycle(test: &str, version: &'static str) {
    let h = Harness::start(test, 3, version).await;
    let strategy = json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    h.kubectl(&["apply", "-f", "-"], Some(manifest("web", 3, strategy)))
        .await;
    h.converged("web", 3, "registry.invalid/app:1").await;

    // One ReplicaSet named after its pod-template-hash, owned by the Deployment.
    let rss = h.owned_replica_sets("web").await;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs.labels().get("pod-template-hash").cloned().unwrap();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(
        spec.selector
            .match_labels
            .as_ref()
            .unwrap()
            .get("pod-template-hash"),
        Some(&hash)
    );
    let tpl_labels = spec
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(tpl_labels.get("pod-template-hash"), Some(&hash));
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/revision").as_deref(),
        Some("1")
    );
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("4")
    );
    let d = h.deployments().get("web").await.unwrap();
    let conds = d.status.unwrap().conditions.unwrap();
    let cond = |t: &str| conds.iter().find(|c| c.type_ == t).cloned().unwrap();
    assert_eq!(
        cond("Available").reason.as_deref(),
        Some("MinimumReplicasAvailable")
    );
    assert_eq!(
        cond("Progressing").reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        cond("Progressing").message,
        Some(format!(
            "ReplicaSet \"web-{hash}\" has successfully progressed."
        ))
    );

    // Scale through the scale subresource.
    h.kubectl(&["scale", "deployment/web", "--replicas=5"], None)
        .await;
    h.converged("web", 5, "registry.invalid/app:1").await;
    h.kubectl(&["scale", "deployment/web", "--replicas=2"], None)
        .await;
    h.converged("web", 2, "registry.invalid/app:1").await;

    // Roll out a new image, sampling readiness meanwhile: at least 2 − 1 ready pods.
    h.kubectl(
        &["set", "image", "deployment/web", "c=registry.invalid/app:2"],
        None,
    )
    .await;
    let status = {
        let sampler = async {
            let mut samples = 0;
            loop {
                let ready = h
                    .live_pods("web")
                    .await
                    .iter()
                    .filter(|p| is_ready(p))
                    .count();
                assert!(ready >= 1, "only {ready} ready pods during the rollout");
                samples += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                if samples > 10_000 {
                    break;
                }
            }
        };
        tokio::select! {
            out = h.kubectl_output(&["rollout", "status", "deployment/web", "--timeout=80s"], None) => out,
            _ = sampler => unreachable!(),
        }
    };
    let stdout = status.expect_success("rollout status");
    assert!(stdout.contains("successfully rolled out"), "{stdout}");
    let pods = h.converged("web", 2, "registry.invalid/app:2").await;
    assert_eq!(pods.len(), 2);
    let rss = h.owned_replica_sets("web").await;
    assert_eq!(rss.len(), 2);
    assert_eq!(rss[0].spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(rss[1].spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(
        annotation(&rss[1], "deployment.kubernetes.io/revision").as_deref(),
        Some("2")
    );
    let d = h.deployments().get("web").await.unwrap();
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("2")
    );

    // Undo: the first ReplicaSet comes back as revision 3.
    h.kubectl(&["rollout", "undo", "deployment/web"], None)
        .await;
    let out = h
        .kubectl(
            &["rollout", "status", "deployment/web", "--timeout=80s"],
            None,
        )
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    h.converged("web", 2, "registry.invalid/app:1").await;
    let rss = h.owned_replica_sets("web").await;
    assert_eq!(rss.len(), 2, "undo reuses the first ReplicaSet");
    assert_eq!(rss[0].name_any(), format!("web-{hash}"));
    assert_eq!(rss[0].spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(rss[1].spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(
        annotation(&rss[0], "deployment.kubernetes.io/revision").as_deref(),
        Some("3")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_kubectl_1_33() {
    lifecycle("dep133", "1.33").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_kubectl_1_29() {
    lifecycle("dep129", "1.29").await;
}

impl Harness {
    /// Waits until the Deployment's controller has seen its current generation and its
    /// Progressing condition has `reason`; returns the Deployment.
    async fn progressing(&self, name: &str, reason: &str) -> Deployment {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let d = self.deployments().get(name).await.unwrap();
            let st = d.status.clone().unwrap_or_default();
            let got = st
                .conditions
                .as_ref()
                .and_then(|c| c.iter().find(|c| c.type_ == "Progressing"))
                .and_then(|c| c.reason.clone());
            if st.observed_generation == d.metadata.generation && got.as_deref() == Some(reason) {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never reported Progressing {reason}: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Recreate: the old pods are all gone before any new one exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_overlaps() {
    let h = Harness::start("deprecreate", 2, "1.33").await;
    h.kubectl(
        &["apply", "-f", "-"],
        Some(manifest("rec", 3, json!({"type": "Recreate"}))),
    )
    .await;
    h.converged("rec", 3, "registry.invalid/app:1").await;
    h.kubectl(
        &["set", "image", "deployment/rec", "c=registry.invalid/app:2"],
        None,
    )
    .await;
    let sampler = async {
        loop {
            let pods = h.live_pods("rec").await;
            let images: std::collections::BTreeSet<String> = pods.iter().map(image_of).collect();
            assert!(images.len() <= 1, "old and new pods at once: {images:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let out = tokio::select! {
        out = h.kubectl_output(&["rollout", "status", "deployment/rec", "--timeout=80s"], None) => out,
        _ = sampler => unreachable!(),
    };
    assert!(out
        .expect_success("rollout status")
        .contains("successfully rolled out"));
    h.converged("rec", 3, "registry.invalid/app:2").await;
    let rss = h.owned_replica_sets("rec").await;
    assert_eq!(rss.len(), 2);
    assert_eq!(rss[0].spec.as_ref().unwrap().replicas, Some(0));
    // Recreate never surges: max-replicas is the replica count.
    assert_eq!(
        annotation(&rss[1], "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("3")
    );
}

/// Pause holds a template change back, resume rolls it out, restart rolls out again, and
/// revisionHistoryLimit keeps one old ReplicaSet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_restart_and_history() {
    let h = Harness::start("deppause", 2, "1.33").await;
    let mut m: serde_json::Value =
        serde_json::from_str(&manifest("pz", 2, json!({"type": "RollingUpdate"}))).unwrap();
    m["spec"]["revisionHistoryLimit"] = json!(1);
    h.kubectl(&["apply", "-f", "-"], Some(m.to_string())).await;
    h.converged("pz", 2, "registry.invalid/app:1").await;

    h.kubectl(&["rollout", "pause", "deployment/pz"], None)
        .await;
    h.progressing("pz", "DeploymentPaused").await;
    h.kubectl(
        &["set", "image", "deployment/pz", "c=registry.invalid/app:2"],
        None,
    )
    .await;
    // The change is observed but not rolled out.
    h.progressing("pz", "DeploymentPaused").await;
    assert_eq!(h.owned_replica_sets("pz").await.len(), 1);
    assert!(h
        .live_pods("pz")
        .await
        .iter()
        .all(|p| image_of(p) == "registry.invalid/app:1"));
    // Scaling still works while paused.
    h.kubectl(&["scale", "deployment/pz", "--replicas=3"], None)
        .await;
    h.converged_updated("pz", 3, "registry.invalid/app:1", 0)
        .await;
    assert_eq!(h.owned_replica_sets("pz").await.len(), 1);

    h.kubectl(&["rollout", "resume", "deployment/pz"], None)
        .await;
    let out = h
        .kubectl(
            &["rollout", "status", "deployment/pz", "--timeout=80s"],
            None,
        )
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    h.converged("pz", 3, "registry.invalid/app:2").await;

    h.kubectl(&["rollout", "restart", "deployment/pz"], None)
        .await;
    let out = h
        .kubectl(
            &["rollout", "status", "deployment/pz", "--timeout=80s"],
            None,
        )
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    h.converged("pz", 3, "registry.invalid/app:2").await;
    // Three revisions, limit 1: the first ReplicaSet is deleted.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let rss = loop {
        let rss = h.owned_replica_sets("pz").await;
        if rss.len() == 2 {
            break rss;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} ReplicaSets",
            rss.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let revs: Vec<_> = rss
        .iter()
        .map(|r| annotation(r, "deployment.kubernetes.io/revision").unwrap())
        .collect();
    assert_eq!(revs, vec!["2", "3"]);
    let tpl = rss[1].spec.as_ref().unwrap().template.as_ref().unwrap();
    assert!(tpl
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()
        .contains_key("kubectl.kubernetes.io/restartedAt"));
    let history = h
        .kubectl(&["rollout", "history", "deployment/pz"], None)
        .await;
    assert!(history.contains('2') && history.contains('3'), "{history}");

    // The controller records its scaling as events on the Deployment.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let events = h
            .kubectl(
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=pz",
                    "-o",
                    "json",
                ],
                None,
            )
            .await;
        if events.contains("ScalingReplicaSet") && events.contains("deployment-controller") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ScalingReplicaSet event: {events}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Pods that never become available: Progressing turns False with ProgressDeadlineExceeded
/// and `kubectl rollout status` fails saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_deadline_exceeded() {
    let h = Harness::start("depdeadline", 1, "1.33").await;
    let mut m: serde_json::Value =
        serde_json::from_str(&manifest("stuck", 2, json!({"type": "RollingUpdate"}))).unwrap();
    m["spec"]["progressDeadlineSeconds"] = json!(2);
    m["spec"]["template"]["spec"]["nodeSelector"] = json!({"no-such-label": "x"});
    h.kubectl(&["apply", "-f", "-"], Some(m.to_string())).await;
    let d = h.progressing("stuck", "ProgressDeadlineExceeded").await;
    let conds = d.status.as_ref().unwrap().conditions.clone().unwrap();
    let p = conds.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(p.status, "False");
    assert!(p
        .message
        .as_deref()
        .unwrap()
        .ends_with("has timed out progressing."));
    let a = conds.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!(
        (a.status.as_str(), a.reason.as_deref()),
        ("False", Some("MinimumReplicasUnavailable"))
    );
    let out = h
        .kubectl_output(
            &["rollout", "status", "deployment/stuck", "--timeout=30s"],
            None,
        )
        .await;
    assert!(!out.success());
    assert!(
        out.stderr.contains("exceeded its progress deadline"),
        "{}",
        out.stderr
    );
}

/// minReadySeconds reaches the ReplicaSet: ready pods count as available only once they have
/// been ready that long, and the Deployment reports them so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ready_seconds_delays_availability() {
    let h = Harness::start("depminready", 2, "1.33").await;
    let mut m: serde_json::Value =
        serde_json::from_str(&manifest("slow", 2, json!({"type": "RollingUpdate"}))).unwrap();
    // Long enough that a busy machine still shows the ready-but-not-available window.
    m["spec"]["minReadySeconds"] = json!(15);
    h.kubectl(&["apply", "-f", "-"], Some(m.to_string())).await;
    // Ready but not yet available.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let early = loop {
        let st = h
            .deployments()
            .get("slow")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if st.ready_replicas == Some(2) {
            break st;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(early.available_replicas.unwrap_or(0) < 2, "{early:?}");
    assert_eq!(
        early.unavailable_replicas,
        Some(2 - early.available_replicas.unwrap_or(0))
    );
    let rss = h.owned_replica_sets("slow").await;
    assert_eq!(rss[0].spec.as_ref().unwrap().min_ready_seconds, Some(15));
    // Then available, and the rollout complete.
    h.converged("slow", 2, "registry.invalid/app:1").await;
    h.progressing("slow", "NewReplicaSetAvailable").await;
}

/// An orphan ReplicaSet the selector matches is adopted; with the Deployment's template it
/// is the new ReplicaSet, so no other is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_an_orphan_replica_set() {
    let h = Harness::start("depadopt", 2, "1.33").await;
    let d: serde_json::Value =
        serde_json::from_str(&manifest("adopt", 2, json!({"type": "RollingUpdate"}))).unwrap();
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"]["pod-template-hash"] = json!("orphan");
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "adopt-orphan", "namespace": "default",
            "labels": {"app": "adopt", "pod-template-hash": "orphan"}},
        "spec": {"replicas": 1,
            "selector": {"matchLabels": {"app": "adopt", "pod-template-hash": "orphan"}},
            "template": template},
    });
    h.kubectl(&["apply", "-f", "-"], Some(rs.to_string())).await;
    h.kubectl(&["apply", "-f", "-"], Some(d.to_string())).await;
    h.converged("adopt", 2, "registry.invalid/app:1").await;
    let rss = h.owned_replica_sets("adopt").await;
    assert_eq!(rss.len(), 1, "{rss:?}");
    assert_eq!(rss[0].name_any(), "adopt-orphan");
    assert_eq!(rss[0].spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(
        annotation(&rss[0], "deployment.kubernetes.io/revision").as_deref(),
        Some("1")
    );
}
