//! The StatefulSet controller end to end: a real `flotilla server` with its scheduler and
//! controllers, simulated nodes that report bound pods Running and Ready, kubectl and the
//! API acting and observing. A pod watch started before each set is applied records the
//! order things happened in, so ordering is asserted on the API's own event order.
//!
//! Each test starts its own server and nodes (unique name prefixes), so they run in parallel.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use support::sim::{app_workload, image_of, is_ready, nodes, until_gone, SimCluster};
use support::ServerOptions;

const DEADLINE: Duration = Duration::from_secs(90);
const NS: &str = "default";

/// One observed state of a pod, in watch order.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    uid: String,
    ready: bool,
    terminating: bool,
    gone: bool,
}

struct Harness {
    sim: SimCluster,
    version: &'static str,
}

crate::deref_to_sim!(Harness);

impl Harness {
    async fn start(test: &str, nodes: usize, version: &'static str) -> Self {
        let sim = SimCluster::with_nodes(&format!("{test}-node"), nodes, true).await;
        Harness { sim, version }
    }

    async fn kubectl(&self, args: &[&str], stdin: Option<String>) -> String {
        self.sim.kubectl(self.version, DEADLINE, args, stdin).await
    }

    /// `kubectl set image sts/<name> c=<image>`.
    async fn set_image(&self, name: &str, image: &str) {
        let (target, container) = (format!("sts/{name}"), format!("c={image}"));
        self.kubectl(&["set", "image", &target, &container], None)
            .await;
    }

    /// `kubectl rollout status sts/<name>`, which waits for the rollout; its output.
    async fn rollout_status(&self, name: &str) -> String {
        let target = format!("sts/{name}");
        self.kubectl(&["rollout", "status", &target, "--timeout=80s"], None)
            .await
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn sets(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Waits for the volume controller's default StorageClass: claims created before it
    /// exists get no class and never bind (there is no retroactive default assignment).
    async fn default_class(&self) {
        let classes: Api<k8s_openapi::api::storage::v1::StorageClass> =
            Api::all(self.client.clone());
        testkit::wait_for_async(DEADLINE, || async {
            classes.get_opt("local-path").await.ok().flatten()
        })
        .await
        .expect("the default StorageClass local-path");
    }

    /// Records every state of the pods labelled `app=<app>` from now on.
    fn watch(&mut self, app: &str) -> Arc<Mutex<Vec<Seen>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let cfg = watcher::Config::default().labels(&format!("app={app}"));
        let stream = watcher::watcher(self.pods(), cfg);
        self.sim.spawn(move |_, shutdown| async move {
            let record = |pod: &Pod, gone: bool| Seen {
                name: pod.name_any(),
                uid: pod.uid().unwrap_or_default(),
                ready: is_ready(pod),
                terminating: pod.metadata.deletion_timestamp.is_some(),
                gone,
            };
            let mut stream = std::pin::pin!(stream.take_until(shutdown));
            while let Some(ev) = stream.next().await {
                let mut log = log.lock().unwrap();
                match ev {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                        log.push(record(&p, false))
                    }
                    Ok(watcher::Event::Delete(p)) => log.push(record(&p, true)),
                    _ => {}
                }
            }
        });
        seen
    }

    /// The live (not terminating) pods of `app`, by name.
    async fn live_pods(&self, app: &str) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .pods()
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        pods.sort_by_key(|p| p.name_any());
        pods
    }

    /// Waits until set `name` has exactly `n` pods, all Ready and not terminating, and its
    /// status says so for the current generation; returns the pods by name.
    async fn converged(&self, name: &str, n: usize) -> Vec<Pod> {
        let got = testkit::wait_for_async(DEADLINE, || async {
            let set = self.sets().get(name).await.ok()?;
            let st = set.status.clone()?;
            let all: Vec<Pod> = self
                .pods()
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| {
                    p.owner_references()
                        .iter()
                        .any(|r| Some(&r.uid) == set.metadata.uid.as_ref())
                })
                .collect();
            (all.len() == n
                && all
                    .iter()
                    .all(|p| is_ready(p) && p.metadata.deletion_timestamp.is_none())
                && st.replicas == n as i32
                && st.ready_replicas == Some(n as i32)
                && st.observed_generation == set.metadata.generation)
                .then_some(all)
        })
        .await;
        match got {
            Some(mut pods) => {
                pods.sort_by_key(|p| p.name_any());
                pods
            }
            None => panic!(
                "{name} never converged to {n} ready pods\n{}\n{}\n{}\n{}\n--- server log ---\n{}",
                self.kubectl(&["get", "pods", "-o", "wide"], None).await,
                self.kubectl(&["get", "events"], None).await,
                self.kubectl(&["get", "pvc,pv,storageclass"], None).await,
                self.kubectl(&["get", "sts", name, "-o", "yaml"], None)
                    .await,
                tail(&self.server.log(), 4000),
            ),
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

fn manifest(name: &str, replicas: i32, extra: serde_json::Value) -> String {
    let container = json!({"name": "c", "image": "registry.local/app:1"});
    let mut v = app_workload("StatefulSet", name, replicas, container);
    v["spec"]["serviceName"] = json!(name);
    let spec = v["spec"].as_object_mut().unwrap();
    for (k, val) in extra.as_object().unwrap() {
        spec.insert(k.clone(), val.clone());
    }
    v.to_string()
}

/// The index of the first observation satisfying `f`.
fn first(seen: &[Seen], f: impl Fn(&Seen) -> bool) -> Option<usize> {
    seen.iter().position(f)
}

/// OrderedReady: pods come up one at a time in ordinal order, each claim is created for
/// its pod and kept; a deleted pod comes back under its name with its claim; scale-down
/// takes the highest ordinal first, one at a time, and leaves the claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_identity_claims_and_scale_down() {
    let mut h = Harness::start("sts-ord", 2, "1.33").await;
    h.default_class().await;
    let seen = h.watch("web");
    let claim_template = json!([{
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }]);
    h.kubectl(
        &["apply", "-f", "-"],
        Some(manifest(
            "web",
            3,
            json!({"volumeClaimTemplates": claim_template}),
        )),
    )
    .await;
    let pods = h.converged("web", 3).await;
    assert_eq!(names(&pods), ["web-0", "web-1", "web-2"]);

    // web-1 did not exist before web-0 was Ready, nor web-2 before web-1.
    {
        let seen = seen.lock().unwrap();
        for (prev, next) in [("web-0", "web-1"), ("web-1", "web-2")] {
            let ready = first(&seen, |s| s.name == prev && s.ready).unwrap();
            let created = first(&seen, |s| s.name == next).unwrap();
            assert!(
                ready < created,
                "{next} appeared (#{created}) before {prev} was Ready (#{ready}): {seen:?}"
            );
        }
    }

    // Identity and storage.
    for (i, p) in pods.iter().enumerate() {
        let name = format!("web-{i}");
        let labels = p.labels();
        assert_eq!(labels["statefulset.kubernetes.io/pod-name"], name);
        assert_eq!(labels["apps.kubernetes.io/pod-index"], i.to_string());
        assert!(labels["controller-revision-hash"].starts_with("web-"));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let vol = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "data")
            .unwrap();
        assert_eq!(
            vol.persistent_volume_claim.as_ref().unwrap().claim_name,
            format!("data-web-{i}")
        );
        let owner = &p.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("StatefulSet", Some(true))
        );
    }
    let claim_uids: Vec<String> = {
        let mut out = Vec::new();
        for i in 0..3 {
            let c = h.claims().get(&format!("data-web-{i}")).await.unwrap();
            assert_eq!(c.labels()["app"], "web");
            // Retain (the default): no owner, so the claim outlives pod and set.
            assert!(c.owner_references().is_empty());
            out.push(c.uid().unwrap());
        }
        out
    };

    // A deleted pod comes back under its name, with its claim.
    let old_uid = pods[1].uid().unwrap();
    h.kubectl(&["delete", "pod", "web-1", "--wait=false"], None)
        .await;
    let back = testkit::wait_for_async(DEADLINE, || async {
        let p = h.pods().get("web-1").await.ok()?;
        (p.uid() != Some(old_uid.clone()) && is_ready(&p)).then_some(p)
    })
    .await
    .expect("web-1 recreated and Ready");
    let vol = back.spec.as_ref().unwrap().volumes.clone().unwrap();
    assert!(vol.iter().any(|v| v
        .persistent_volume_claim
        .as_ref()
        .is_some_and(|c| c.claim_name == "data-web-1")));
    assert_eq!(
        h.claims().get("data-web-1").await.unwrap().uid().unwrap(),
        claim_uids[1]
    );
    h.converged("web", 3).await;

    // Scale down to 1: web-2 goes first, and only once it is gone does web-1 start going.
    let mark = seen.lock().unwrap().len();
    h.kubectl(&["scale", "sts", "web", "--replicas=1"], None)
        .await;
    let pods = h.converged("web", 1).await;
    assert_eq!(names(&pods), ["web-0"]);
    {
        let seen = seen.lock().unwrap();
        let after = &seen[mark..];
        let web2_gone = first(after, |s| s.name == "web-2" && s.gone).unwrap();
        let web1_going = first(after, |s| s.name == "web-1" && (s.terminating || s.gone)).unwrap();
        assert!(
            web2_gone < web1_going,
            "web-1 went (#{web1_going}) before web-2 was gone (#{web2_gone}): {after:?}"
        );
        assert!(first(after, |s| s.name == "web-0" && s.terminating).is_none());
    }
    // The claims stay.
    for (i, uid) in claim_uids.iter().enumerate() {
        let c = h.claims().get(&format!("data-web-{i}")).await.unwrap();
        assert_eq!(&c.uid().unwrap(), uid);
        assert!(c.metadata.deletion_timestamp.is_none());
    }

    // Scaling up again hands web-1 its old claim.
    h.kubectl(&["scale", "sts", "web", "--replicas=2"], None)
        .await;
    let pods = h.converged("web", 2).await;
    let vol = pods[1].spec.as_ref().unwrap().volumes.clone().unwrap();
    assert!(vol.iter().any(|v| v
        .persistent_volume_claim
        .as_ref()
        .is_some_and(|c| c.claim_name == "data-web-1")));
    assert_eq!(
        h.claims().get("data-web-1").await.unwrap().uid().unwrap(),
        claim_uids[1]
    );
    let get = h
        .kubectl(&["get", "sts", "web", "--no-headers"], None)
        .await;
    assert!(get.contains("2/2"), "{get}");

    // The controller's events, in upstream's words.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(h.client.clone(), NS);
    let wanted = [
        "create Pod web-0 in StatefulSet web successful",
        "create Claim data-web-0 Pod web-0 in StatefulSet web success",
        "delete Pod web-2 in StatefulSet web successful",
    ];
    testkit::wait_for_async(DEADLINE, || async {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        wanted
            .iter()
            .all(|w| {
                list.iter().any(|e| {
                    e.involved_object.kind.as_deref() == Some("StatefulSet")
                        && e.message.as_deref() == Some(w)
                })
            })
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("events {wanted:?} not all recorded"));
}

/// `kubectl set image` rolls the pods from the highest ordinal down, `kubectl rollout
/// status` succeeds, `rollout history` lists the revisions and `rollout undo` restores the
/// previous template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_status_history_and_undo() {
    let mut h = Harness::start("sts-roll", 2, "1.29").await;
    h.kubectl(&["apply", "-f", "-"], Some(manifest("roll", 3, json!({}))))
        .await;
    h.converged("roll", 3).await;
    let seen = h.watch("roll");
    let mark = testkit::wait_for_async(DEADLINE, || async {
        let n = seen.lock().unwrap().len();
        (n >= 3).then_some(n)
    })
    .await
    .unwrap();

    h.set_image("roll", "registry.local/app:2").await;
    let out = h.rollout_status("roll").await;
    assert!(out.contains("roll out complete"), "{out}");
    let pods = h.converged("roll", 3).await;
    assert!(pods.iter().all(|p| image_of(p) == "registry.local/app:2"));
    let set = h.sets().get("roll").await.unwrap();
    let st = set.status.unwrap();
    assert_eq!(st.current_revision, st.update_revision);
    assert_eq!(st.updated_replicas, Some(3));
    assert_eq!(st.current_replicas, Some(3));
    let rev = st.update_revision.unwrap();
    assert!(pods
        .iter()
        .all(|p| p.labels()["controller-revision-hash"] == rev));

    // Replaced from the top, each only after the one above was back and Ready.
    {
        let seen = seen.lock().unwrap();
        let after = &seen[mark..];
        let going = |name: &str| first(after, |s| s.name == name && s.terminating).unwrap();
        let back_ready = |name: &str| {
            let old = after.iter().find(|s| s.name == name).unwrap().uid.clone();
            first(after, |s| s.name == name && s.uid != old && s.ready).unwrap()
        };
        assert!(going("roll-2") < going("roll-1"), "{after:?}");
        assert!(back_ready("roll-2") < going("roll-1"), "{after:?}");
        assert!(back_ready("roll-1") < going("roll-0"), "{after:?}");
    }

    let history = h.kubectl(&["rollout", "history", "sts/roll"], None).await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let one = h
        .kubectl(&["rollout", "history", "sts/roll", "--revision=1"], None)
        .await;
    assert!(one.contains("registry.local/app:1"), "{one}");

    h.kubectl(&["rollout", "undo", "sts/roll"], None).await;
    let out = h.rollout_status("roll").await;
    assert!(out.contains("roll out complete"), "{out}");
    let pods = testkit::wait_for_async(DEADLINE, || async {
        let pods = h.live_pods("roll").await;
        (pods.len() == 3
            && pods
                .iter()
                .all(|p| is_ready(p) && image_of(p) == "registry.local/app:1"))
        .then_some(pods)
    })
    .await
    .expect("the undo restored app:1 on every pod");
    assert_eq!(names(&pods), ["roll-0", "roll-1", "roll-2"]);
    // The undone template is the old revision renumbered, not a new one.
    let history = h.kubectl(&["rollout", "history", "sts/roll"], None).await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");
    let st = h.sets().get("roll").await.unwrap().status.unwrap();
    assert_ne!(st.update_revision.as_deref(), Some(rev.as_str()));
}

/// Parallel creates every pod at once and deletes them at once: with pods that cannot be
/// scheduled (so never Ready), all three exist, where OrderedReady stops at the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_does_not_wait_for_readiness() {
    let h = Harness::start("sts-par", 1, "1.33").await;
    let unschedulable = |policy: &str| {
        json!({
            "podManagementPolicy": policy,
            "template": {
                "metadata": {"labels": {}},
                "spec": {
                    "nodeSelector": {"no-such-node": "true"},
                    "containers": [{"name": "c", "image": "registry.local/app:1"}]
                }
            }
        })
    };
    let mut par = unschedulable("Parallel");
    par["template"]["metadata"]["labels"] = json!({"app": "par"});
    let mut ord = unschedulable("OrderedReady");
    ord["template"]["metadata"]["labels"] = json!({"app": "ord"});
    h.kubectl(&["apply", "-f", "-"], Some(manifest("ord", 3, ord)))
        .await;
    h.kubectl(&["apply", "-f", "-"], Some(manifest("par", 3, par)))
        .await;
    let pods = testkit::wait_for_async(DEADLINE, || async {
        let pods = h.live_pods("par").await;
        (pods.len() == 3).then_some(pods)
    })
    .await
    .expect("3 parallel pods");
    assert_eq!(names(&pods), ["par-0", "par-1", "par-2"]);
    assert!(pods.iter().all(|p| !is_ready(p)));
    let st = testkit::wait_for_async(DEADLINE, || async {
        let st = h.sets().get("par").await.ok()?.status?;
        (st.replicas == 3).then_some(st)
    })
    .await
    .expect("par status counts 3 replicas");
    assert_eq!(st.ready_replicas.unwrap_or(0), 0);
    let ord_pods = testkit::wait_for_async(DEADLINE, || async {
        let pods = h.live_pods("ord").await;
        (!pods.is_empty()).then_some(pods)
    })
    .await
    .unwrap();
    assert_eq!(names(&ord_pods), ["ord-0"]);

    // Scale-down takes them all at once, not one by one after readiness.
    h.kubectl(&["scale", "sts", "par", "--replicas=0"], None)
        .await;
    testkit::wait_for_async(DEADLINE, || async {
        h.live_pods("par").await.is_empty().then_some(())
    })
    .await
    .expect("parallel scale-down to 0");
    // OrderedReady still has only its first pod.
    assert_eq!(names(&h.live_pods("ord").await), ["ord-0"]);
}

/// `persistentVolumeClaimRetentionPolicy` Delete/Delete: a scaled-down pod's claim passes
/// to the pod and goes with it; the remaining claims are the set's and go with the set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_the_retention_policy() {
    let h = Harness::start("sts-ret", 2, "1.31").await;
    h.default_class().await;
    let extra = json!({
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
        "volumeClaimTemplates": [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }]
    });
    h.kubectl(&["apply", "-f", "-"], Some(manifest("ret", 2, extra)))
        .await;
    h.converged("ret", 2).await;
    let set_uid = h.sets().get("ret").await.unwrap().uid().unwrap();
    for i in 0..2 {
        let c = h.claims().get(&format!("data-ret-{i}")).await.unwrap();
        let owners: Vec<(&str, &str)> = c
            .owner_references()
            .iter()
            .map(|r| (r.kind.as_str(), r.uid.as_str()))
            .collect();
        assert_eq!(owners, [("StatefulSet", set_uid.as_str())]);
    }

    h.kubectl(&["scale", "sts", "ret", "--replicas=1"], None)
        .await;
    h.converged("ret", 1).await;
    until_gone(
        &h.claims(),
        "data-ret-1",
        DEADLINE,
        "data-ret-1 not deleted after scale-down",
    )
    .await;
    let kept = h.claims().get("data-ret-0").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_none());

    h.kubectl(&["delete", "sts", "ret", "--wait=false"], None)
        .await;
    until_gone(
        &h.claims(),
        "data-ret-0",
        DEADLINE,
        "data-ret-0 not deleted with its set",
    )
    .await;
}

/// A partition holds the update to the ordinals at or above it (`rollout status` reports
/// the partitioned roll out complete); OnDelete changes nothing until a pod is deleted by
/// hand, which then comes back with the new template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_and_on_delete() {
    let h = Harness::start("sts-part", 2, "1.27").await;
    let partitioned =
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}});
    h.kubectl(
        &["apply", "-f", "-"],
        Some(manifest("part", 3, partitioned)),
    )
    .await;
    let on_delete = json!({"updateStrategy": {"type": "OnDelete"}});
    h.kubectl(&["apply", "-f", "-"], Some(manifest("ondel", 2, on_delete)))
        .await;
    h.converged("part", 3).await;
    h.converged("ondel", 2).await;

    h.set_image("part", "registry.local/app:2").await;
    let out = h.rollout_status("part").await;
    assert!(out.contains("partitioned roll out complete"), "{out}");
    let pods = testkit::wait_for_async(DEADLINE, || async {
        let pods = h.live_pods("part").await;
        (pods.len() == 3 && pods.iter().all(is_ready)).then_some(pods)
    })
    .await
    .unwrap();
    let images: Vec<String> = pods.iter().map(image_of).collect();
    assert_eq!(
        images,
        [
            "registry.local/app:1",
            "registry.local/app:1",
            "registry.local/app:2"
        ]
    );
    let st = h.sets().get("part").await.unwrap().status.unwrap();
    assert_eq!(st.updated_replicas, Some(1));
    assert_ne!(st.current_revision, st.update_revision);

    let before: Vec<String> = h
        .live_pods("ondel")
        .await
        .iter()
        .map(|p| p.uid().unwrap())
        .collect();
    h.set_image("ondel", "registry.local/app:2").await;
    let generation = h.sets().get("ondel").await.unwrap().metadata.generation;
    let st = testkit::wait_for_async(DEADLINE, || async {
        let st = h.sets().get("ondel").await.ok()?.status?;
        (st.observed_generation == generation).then_some(st)
    })
    .await
    .unwrap();
    assert_ne!(st.current_revision, st.update_revision);
    assert_eq!(st.updated_replicas.unwrap_or(0), 0);
    let now: Vec<String> = h
        .live_pods("ondel")
        .await
        .iter()
        .map(|p| p.uid().unwrap())
        .collect();
    assert_eq!(now, before, "OnDelete replaced pods by itself");
    h.kubectl(&["delete", "pod", "ondel-1", "--wait=false"], None)
        .await;
    let back = testkit::wait_for_async(DEADLINE, || async {
        let p = h.pods().get("ondel-1").await.ok()?;
        (Some(&p.uid().unwrap()) != before.get(1) && is_ready(&p)).then_some(p)
    })
    .await
    .expect("ondel-1 recreated");
    assert_eq!(image_of(&back), "registry.local/app:2");
    let untouched = h.pods().get("ondel-0").await.unwrap();
    assert_eq!(untouched.uid().as_ref(), before.first());
    assert_eq!(image_of(&untouched), "registry.local/app:1");
}

/// Level-triggered: changes made while the controller is down (a pod deleted, the set
/// scaled down) are put right by a new controller from the state it finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_converges() {
    let mut sim = SimCluster::start(ServerOptions {
        with_scheduler: true,
        ..Default::default()
    })
    .await;
    sim.add_nodes(nodes("sts-restart-node", 1)).await;
    let client = sim.client.clone();
    let start_controller = |client: kube::Client| {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controllers::statefulset::run(
            controllers::informers::Informers::new(client),
            async {
                let _ = rx.await;
            },
        ));
        (tx, task)
    };
    let h = Harness {
        sim,
        version: "1.33",
    };
    let (stop, task) = start_controller(client.clone());
    h.kubectl(&["apply", "-f", "-"], Some(manifest("rs", 3, json!({}))))
        .await;
    let pods = h.converged("rs", 3).await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();

    // While it is down: web-0 deleted (force, so it is gone at once) and scaled to 2.
    let old_uid = pods[0].uid().unwrap();
    h.kubectl(
        &["delete", "pod", "rs-0", "--grace-period=0", "--force"],
        None,
    )
    .await;
    h.kubectl(&["scale", "sts", "rs", "--replicas=2"], None)
        .await;
    assert_eq!(names(&h.live_pods("rs").await), ["rs-1", "rs-2"]);

    let (stop, _task) = start_controller(client);
    let pods = h.converged("rs", 2).await;
    assert_eq!(names(&pods), ["rs-0", "rs-1"]);
    assert_ne!(pods[0].uid().unwrap(), old_uid);
    let _ = stop.send(());
}
