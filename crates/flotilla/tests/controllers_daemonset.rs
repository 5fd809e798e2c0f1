//! The DaemonSet controller end to end: a real `flotilla server` with its scheduler,
//! simulated nodes that report bound pods Running and Ready, and the DaemonSet controller
//! in process; kubectl 1.33 applies, rolls out, reads history and undoes.
//!
//! Each test starts its own server and nodes (unique name prefixes), so they run in parallel.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use support::sim::{eventually_for, image_of, merge_patch, nodes, phase_of, SimCluster};
use support::ServerOptions;

const DEADLINE: Duration = Duration::from_secs(60);
const NS: &str = "default";

struct Harness {
    sim: SimCluster,
}

crate::deref_to_sim!(Harness);

impl Harness {
    async fn start() -> Self {
        let mut sim = SimCluster::start(ServerOptions {
            with_scheduler: true,
            ..Default::default()
        })
        .await;
        sim.spawn_shared(controllers::daemonset::run);
        Harness { sim }
    }

    /// Starts `count` simulated nodes named `<prefix>-<i>` (zones zone-0, zone-1, … round
    /// robin) and waits until they are registered.
    async fn add_nodes(&mut self, prefix: &str, count: usize) {
        self.sim.add_nodes(nodes(prefix, count)).await;
    }

    async fn kubectl(&self, args: &[&str], stdin: Option<String>) -> String {
        self.sim.kubectl("1.33", DEADLINE, args, stdin).await
    }

    /// `kubectl set image ds/<name> c=<image>`.
    async fn set_image(&self, name: &str, image: &str) {
        let (target, container) = (format!("ds/{name}"), format!("c={image}"));
        self.kubectl(&["set", "image", &target, &container], None)
            .await;
    }

    /// `kubectl rollout status ds/<name>`, which waits for the rollout; its output.
    async fn rollout_status(&self, name: &str) -> String {
        let target = format!("ds/{name}");
        self.kubectl(&["rollout", "status", &target, "--timeout=50s"], None)
            .await
    }

    fn daemon_sets(&self) -> Api<DaemonSet> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Live (not terminating) pods of app `app`, by node.
    async fn pods_by_node(&self, app: &str) -> BTreeMap<String, Vec<Pod>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        let mut out: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
        for p in pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .unwrap()
            .items
        {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            out.entry(node).or_default().push(p);
        }
        out
    }

    /// Waits until app `app` has exactly one Running pod on each of `nodes` and no other
    /// pod, each of `image`; returns them by node.
    async fn one_per_node(
        &self,
        app: &str,
        nodes: &[String],
        image: &str,
    ) -> BTreeMap<String, Pod> {
        let want: Vec<String> = {
            let mut v = nodes.to_vec();
            v.sort();
            v
        };
        eventually_for(
            DEADLINE,
            &format!("{app}: one {image} pod on each of {want:?}"),
            || async {
                let by_node = self.pods_by_node(app).await;
                let keys: Vec<String> = by_node.keys().cloned().collect();
                if keys != want {
                    return None;
                }
                let mut out = BTreeMap::new();
                for (node, mut pods) in by_node {
                    if pods.len() != 1 {
                        return None;
                    }
                    let p = pods.pop()?;
                    let running = phase_of(&p) == Some("Running");
                    if !running || image_of(&p) != image {
                        return None;
                    }
                    out.insert(node, p);
                }
                Some(out)
            },
        )
        .await
    }
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

fn daemon_set(name: &str, image: &str, template_spec_extra: serde_json::Value) -> DaemonSet {
    let mut spec = json!({"containers": [{"name": "c", "image": image}]});
    for (k, v) in template_spec_extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        }
    }))
    .unwrap()
}

async fn set_taint(nodes: &Api<Node>, node: &str, taints: serde_json::Value) {
    merge_patch(nodes, node, json!({"spec": {"taints": taints}})).await;
}

/// 3 nodes → 3 pods, one per node, each pinned by the metadata.name affinity and bound
/// there by the scheduler; a NoSchedule-tainted node gets none until the taint goes (a
/// tolerating DaemonSet gets one there at once); a node added later gets a pod; a
/// nodeSelector limits the nodes; a deleted node's pod goes; the status counts are right
/// and `kubectl rollout status` succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_set_runs_one_pod_per_eligible_node() {
    let mut h = Harness::start().await;
    h.add_nodes("dsn-node", 3).await;
    h.add_nodes("dsn-tainted", 1).await;
    let nodes: Api<Node> = Api::all(h.client.clone());
    set_taint(
        &nodes,
        "dsn-tainted-0",
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    )
    .await;

    let ds = h.daemon_sets();
    ds.create(
        &PostParams::default(),
        &daemon_set("agent", "registry.invalid/agent:1", json!({})),
    )
    .await
    .unwrap();
    ds.create(
        &PostParams::default(),
        &daemon_set(
            "tolerant",
            "registry.invalid/tolerant:1",
            json!({"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]}),
        ),
    )
    .await
    .unwrap();
    ds.create(
        &PostParams::default(),
        &daemon_set(
            "zonal",
            "registry.invalid/zonal:1",
            json!({"nodeSelector": {"topology.kubernetes.io/zone": "zone-1"}}),
        ),
    )
    .await
    .unwrap();

    let three = names("dsn-node", 3);
    let pods = h
        .one_per_node("agent", &three, "registry.invalid/agent:1")
        .await;
    for (node, pod) in &pods {
        let terms = &pod
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        let field = &terms[0].match_fields.as_ref().unwrap()[0];
        assert_eq!(field.key, "metadata.name");
        assert_eq!(field.values.as_deref(), Some(&[node.clone()][..]));
        let tolerations = pod.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
        assert!(tolerations.iter().any(|t| t.key.as_deref()
            == Some("node.kubernetes.io/unreachable")
            && t.toleration_seconds.is_none()));
        assert!(pod.labels().contains_key("controller-revision-hash"));
    }
    let mut with_tainted = three.clone();
    with_tainted.push("dsn-tainted-0".into());
    h.one_per_node("tolerant", &with_tainted, "registry.invalid/tolerant:1")
        .await;
    // zone-1 holds only dsn-node-1 (index 1 of 3); dsn-tainted-0 is zone-0.
    h.one_per_node(
        "zonal",
        &["dsn-node-1".to_string()],
        "registry.invalid/zonal:1",
    )
    .await;

    let out = h.rollout_status("agent").await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let status = eventually_for(DEADLINE, "agent status", || async {
        let s = ds.get("agent").await.ok()?.status?;
        (s.number_available == Some(3)).then_some(s)
    })
    .await;
    assert_eq!(status.desired_number_scheduled, 3);
    assert_eq!(status.current_number_scheduled, 3);
    assert_eq!(status.number_ready, 3);
    assert_eq!(status.updated_number_scheduled, Some(3));
    assert_eq!(status.number_misscheduled, 0);
    assert_eq!(status.number_unavailable, Some(0));
    let table = h
        .kubectl(&["get", "ds", "agent", "--no-headers"], None)
        .await;
    let cols: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(&cols[..6], ["agent", "3", "3", "3", "3", "3"], "{table}");

    // A new node gets a pod.
    h.add_nodes("dsn-late", 1).await;
    let mut four = three.clone();
    four.push("dsn-late-0".into());
    h.one_per_node("agent", &four, "registry.invalid/agent:1")
        .await;

    // The taint goes: the tainted node gets a pod too.
    set_taint(&nodes, "dsn-tainted-0", json!(null)).await;
    let mut five = four.clone();
    five.push("dsn-tainted-0".into());
    h.one_per_node("agent", &five, "registry.invalid/agent:1")
        .await;

    // A NoExecute taint evicts (only the DaemonSet that does not tolerate it).
    set_taint(
        &nodes,
        "dsn-tainted-0",
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]),
    )
    .await;
    h.one_per_node("agent", &four, "registry.invalid/agent:1")
        .await;

    // A deleted node's pods go, at once: no kubelet is left to finish them (so the
    // simulated node stops first).
    h.sim.stop_newest();
    nodes
        .delete("dsn-late-0", &DeleteParams::default())
        .await
        .unwrap();
    h.one_per_node("agent", &three, "registry.invalid/agent:1")
        .await;
    let pods_api: Api<Pod> = Api::namespaced(h.client.clone(), NS);
    eventually_for(
        DEADLINE,
        "no pod left on the deleted node, not even terminating",
        || async {
            let all = pods_api.list(&ListParams::default()).await.ok()?.items;
            let on_late = all.iter().any(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("dsn-late-0")
            });
            (!on_late).then_some(())
        },
    )
    .await;
    eventually_for(DEADLINE, "agent status after node deletion", || async {
        let s = ds.get("agent").await.ok()?.status?;
        (s.desired_number_scheduled == 3 && s.number_available == Some(3)).then_some(())
    })
    .await;

    // An extra pod of the DaemonSet on a node is deleted (the oldest stays).
    let by_node = h
        .one_per_node("agent", &three, "registry.invalid/agent:1")
        .await;
    let keep = by_node["dsn-node-0"].name_any();
    let mut extra = by_node["dsn-node-0"].clone();
    extra.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        // Created in the same second as the original, the two tie on age and the name
        // decides, as upstream's ordering does: this one sorts after any generated name.
        name: Some("agent-zzzzz-extra".into()),
        namespace: Some(NS.into()),
        labels: extra.metadata.labels.clone(),
        owner_references: extra.metadata.owner_references.clone(),
        ..Default::default()
    };
    extra.status = None;
    pods_api
        .create(&PostParams::default(), &extra)
        .await
        .unwrap();
    let after = h
        .one_per_node("agent", &three, "registry.invalid/agent:1")
        .await;
    assert_eq!(after["dsn-node-0"].name_any(), keep);

    // A failed daemon pod is deleted and replaced on its node.
    let failed = after["dsn-node-1"].clone();
    pods_api
        .patch_status(
            &failed.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await
        .unwrap();
    eventually_for(
        DEADLINE,
        "the failed pod replaced by a Running one",
        || async {
            let by_node = h.pods_by_node("agent").await;
            let pods = by_node.get("dsn-node-1")?;
            let p = pods.first()?;
            let running = phase_of(p) == Some("Running");
            (pods.len() == 1 && running && p.metadata.uid != failed.metadata.uid).then_some(())
        },
    )
    .await;
    h.one_per_node("agent", &three, "registry.invalid/agent:1")
        .await;
}

/// `kubectl set image ds/x` rolls out (revisions, hash labels), `kubectl rollout status`
/// succeeds, `kubectl rollout history` lists the revisions and shows a revision's
/// template, `kubectl rollout undo` restores the previous image; OnDelete waits for pods
/// to be deleted; maxSurge rolls out; a DaemonSet recreated after an orphaning delete
/// adopts the pods and the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_set_rolls_out_and_back() {
    let mut h = Harness::start().await;
    // Orphan deletion needs the garbage collector.
    h.sim.spawn(controllers::garbage_collector::run);
    h.add_nodes("dsr-node", 3).await;
    let nodes = names("dsr-node", 3);
    let manifest =
        serde_json::to_string(&daemon_set("logs", "registry.invalid/logs:1", json!({}))).unwrap();
    h.kubectl(&["apply", "-f", "-"], Some(manifest)).await;
    let v1 = h
        .one_per_node("logs", &nodes, "registry.invalid/logs:1")
        .await;
    h.rollout_status("logs").await;

    h.set_image("logs", "registry.invalid/logs:2").await;
    let out = h.rollout_status("logs").await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let v2 = h
        .one_per_node("logs", &nodes, "registry.invalid/logs:2")
        .await;
    let hash = |p: &Pod| p.labels()["controller-revision-hash"].clone();
    let (h1, h2) = (hash(&v1["dsr-node-0"]), hash(&v2["dsr-node-0"]));
    assert_ne!(h1, h2);
    assert!(v2.values().all(|p| hash(p) == h2));
    let s = h.daemon_sets().get("logs").await.unwrap().status.unwrap();
    assert_eq!(s.updated_number_scheduled, Some(3));

    let revs: Api<ControllerRevision> = Api::namespaced(h.client.clone(), NS);
    let list = revs
        .list(&ListParams::default().labels("app=logs"))
        .await
        .unwrap()
        .items;
    let mut numbered: Vec<(i64, String)> = list
        .iter()
        .map(|r| (r.revision, r.labels()["controller-revision-hash"].clone()))
        .collect();
    numbered.sort();
    assert_eq!(numbered, [(1, h1.clone()), (2, h2.clone())]);

    let history = h.kubectl(&["rollout", "history", "ds/logs"], None).await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let one = h
        .kubectl(&["rollout", "history", "ds/logs", "--revision=1"], None)
        .await;
    assert!(one.contains("registry.invalid/logs:1"), "{one}");
    assert!(!one.contains("registry.invalid/logs:2"), "{one}");

    h.kubectl(&["rollout", "undo", "ds/logs"], None).await;
    h.rollout_status("logs").await;
    let back = h
        .one_per_node("logs", &nodes, "registry.invalid/logs:1")
        .await;
    assert!(back.values().all(|p| hash(p) == h1));
    // Revision 1's template is current again, renumbered 3.
    let history = h.kubectl(&["rollout", "history", "ds/logs"], None).await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");

    // OnDelete: a new template touches no pod until one is deleted.
    h.kubectl(
        &[
            "patch",
            "ds/logs",
            "--type=merge",
            "-p",
            r#"{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}"#,
        ],
        None,
    )
    .await;
    h.set_image("logs", "registry.invalid/logs:3").await;
    let ds = h.daemon_sets();
    eventually_for(DEADLINE, "OnDelete status observed", || async {
        let d = ds.get("logs").await.ok()?;
        let s = d.status?;
        (s.observed_generation == d.metadata.generation && s.updated_number_scheduled == Some(0))
            .then_some(())
    })
    .await;
    let still = h
        .one_per_node("logs", &nodes, "registry.invalid/logs:1")
        .await;
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), NS);
    pods.delete(&still["dsr-node-2"].name_any(), &DeleteParams::default())
        .await
        .unwrap();
    eventually_for(
        DEADLINE,
        "the deleted pod replaced by the new template",
        || async {
            let by_node = h.pods_by_node("logs").await;
            let images: Vec<(String, String)> = by_node
                .iter()
                .flat_map(|(n, ps)| ps.iter().map(move |p| (n.clone(), image_of(p))))
                .collect();
            let want = vec![
                (
                    "dsr-node-0".to_string(),
                    "registry.invalid/logs:1".to_string(),
                ),
                (
                    "dsr-node-1".to_string(),
                    "registry.invalid/logs:1".to_string(),
                ),
                (
                    "dsr-node-2".to_string(),
                    "registry.invalid/logs:3".to_string(),
                ),
            ];
            (images == want).then_some(())
        },
    )
    .await;

    // Back to RollingUpdate, surging: each node gets its new pod before the old one goes.
    h.kubectl(
        &[
            "patch",
            "ds/logs",
            "--type=merge",
            "-p",
            r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1,"maxUnavailable":0}}}}"#,
        ],
        None,
    )
    .await;
    let out = h.rollout_status("logs").await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let before = h
        .one_per_node("logs", &nodes, "registry.invalid/logs:3")
        .await;

    // Deleted with orphan propagation and created again: the new DaemonSet adopts the
    // pods (no pod replaced) and the revision history.
    h.kubectl(&["delete", "ds/logs", "--cascade=orphan"], None)
        .await;
    let manifest =
        serde_json::to_string(&daemon_set("logs", "registry.invalid/logs:3", json!({}))).unwrap();
    h.kubectl(&["apply", "-f", "-"], Some(manifest)).await;
    h.rollout_status("logs").await;
    let uid = h.daemon_sets().get("logs").await.unwrap().metadata.uid;
    let after = eventually_for(DEADLINE, "the pods adopted", || async {
        let by_node = h.pods_by_node("logs").await;
        let adopted = by_node.values().flatten().all(|p| {
            p.owner_references()
                .iter()
                .any(|r| r.controller == Some(true) && Some(&r.uid) == uid.as_ref())
        });
        (adopted && by_node.len() == 3).then_some(by_node)
    })
    .await;
    for (node, pod) in &before {
        let now: Vec<_> = after[node].iter().map(|p| p.metadata.uid.clone()).collect();
        assert_eq!(
            now,
            std::slice::from_ref(&pod.metadata.uid),
            "{node}: pod replaced"
        );
    }
    let history = h.kubectl(&["rollout", "history", "ds/logs"], None).await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["2", "3", "4"], "{history}");
}
