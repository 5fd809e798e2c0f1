//! The node lifecycle controller end to end: a real `flotilla server` with its scheduler,
//! three simulated nodes renewing their Leases every 200 ms, and the controller (grace
//! 3 s, default toleration 2 s) running in process. One node's heartbeat stops: it turns
//! Ready=Unknown with the unreachable taints, its pods are marked not ready and evicted
//! after their toleration, a pod with a long toleration stays, and once the node reports
//! again (the simulated kubelet posts Ready=True itself) the taints go and its pods are
//! caught up on. A Deployment spread over three nodes loses one: its pods are evicted and
//! replaced on the other two.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use support::sim::{eventually, merge_patch, nodes, SimCluster, SimulatedConfig};
use support::ServerOptions;

const PREFIX: &str = "nlc-node";
const NS: &str = "default";

fn node_name(i: usize) -> String {
    format!("{PREFIX}-{i}")
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == effect))
}

fn pod_condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// A pod tolerating the unreachable taint for `seconds`, pinned to `node` either by
/// spec.nodeName or (through the scheduler) by a hostname nodeSelector.
fn pod(name: &str, node: &str, seconds: i64, by_scheduler: bool) -> Pod {
    pod_tolerating(
        name,
        node,
        "node.kubernetes.io/unreachable",
        seconds,
        by_scheduler,
    )
}

fn pod_tolerating(name: &str, node: &str, key: &str, seconds: i64, by_scheduler: bool) -> Pod {
    let mut spec = json!({
        "containers": [{"name": "c", "image": "registry.invalid/app:1"}],
        "tolerations": [{"key": key, "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": seconds}],
    });
    if by_scheduler {
        spec["nodeSelector"] = json!({"kubernetes.io/hostname": node});
    } else {
        spec["nodeName"] = json!(node);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }))
    .unwrap()
}

type ControllerTask = tokio::task::JoinHandle<Result<(), controllers::node_lifecycle::Error>>;

/// A server with its scheduler, `count` simulated nodes named `<prefix>-<i>` renewing
/// their Leases every 200 ms, and the node lifecycle controller (grace 3 s, default
/// toleration 2 s, monitor period 500 ms).
struct Cluster {
    sim: SimCluster,
    nodes: Api<Node>,
    // Dropping the sender stops the controller.
    controller: Option<(tokio::sync::oneshot::Sender<()>, ControllerTask)>,
    eviction_rate: f64,
}

crate::deref_to_sim!(Cluster);

impl Cluster {
    async fn start(prefix: &str, count: usize) -> Self {
        Self::start_with(prefix, count, 3, 0.1).await
    }

    /// With the nodes spread over `zones` zones and NoExecute tainting limited to
    /// `eviction_rate` nodes per second per zone.
    async fn start_with(prefix: &str, count: usize, zones: usize, eviction_rate: f64) -> Self {
        let mut sim = SimCluster::start(ServerOptions {
            with_scheduler: true,
            ..Default::default()
        })
        .await;
        sim.add_nodes(SimulatedConfig {
            lease_interval: Duration::from_millis(200),
            zones,
            ..nodes(prefix, count)
        })
        .await;
        let mut cluster = Cluster {
            nodes: sim.cluster_api(),
            sim,
            controller: None,
            eviction_rate,
        };
        cluster.start_controller();
        cluster
    }

    fn start_controller(&mut self) {
        let config = controllers::node_lifecycle::Config {
            grace_period: Duration::from_secs(3),
            default_toleration_seconds: 2,
            monitor_period: Duration::from_millis(500),
            eviction_rate: self.eviction_rate,
            ..Default::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controllers::node_lifecycle::run_with(
            controllers::informers::Informers::new(self.client.clone()),
            config,
            async {
                let _ = stopped.await;
            },
        ));
        self.controller = Some((stop, task));
    }

    /// Stops the controller and waits for it to be gone.
    async fn stop_controller(&mut self) {
        let (stop, task) = self.controller.take().unwrap();
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }

    async fn set_heartbeat(&self, node: &str, stopped: bool) {
        let value = if stopped {
            json!("stopped")
        } else {
            Value::Null
        };
        let patch = json!({"metadata": {"annotations": {"flotilla.io/heartbeat": value}}});
        merge_patch(&self.nodes, node, patch).await;
    }

    /// Posts the node's conditions as its kubelet would (simulated nodes only renew their
    /// Lease): Ready with `ready`, no pressure.
    async fn post_status(&self, node: &str, ready: &str) {
        let now = Time(Timestamp::now());
        let reason = if ready == "True" {
            "KubeletReady"
        } else {
            "KubeletNotReady"
        };
        let mut conditions: Vec<Value> = vec![json!({"type": "Ready", "status": ready,
            "reason": reason, "message": "simulated kubelet", "lastHeartbeatTime": now,
            "lastTransitionTime": now})];
        for (type_, reason) in [
            ("MemoryPressure", "KubeletHasSufficientMemory"),
            ("DiskPressure", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "KubeletHasSufficientPID"),
        ] {
            conditions.push(json!({"type": type_, "status": "False", "reason": reason,
                "message": "simulated kubelet", "lastHeartbeatTime": now,
                "lastTransitionTime": now}));
        }
        self.nodes
            .patch_status(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": conditions}})),
            )
            .await
            .unwrap();
    }

    /// Waits for the node's taints to satisfy `check`.
    async fn wait_taints(&self, node: &str, what: &str, check: impl Fn(&Node) -> bool) -> Node {
        eventually(60, what, || {
            let nodes = self.nodes.clone();
            let node = node.to_string();
            let check = &check;
            async move {
                let n = nodes.get(&node).await.unwrap();
                check(&n).then_some(n)
            }
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_tainted_its_pods_evicted_and_it_recovers() {
    let cluster = Cluster::start(PREFIX, 3).await;
    let (client, nodes) = (cluster.client.clone(), cluster.nodes.clone());

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let (n0, n1) = (node_name(0), node_name(1));
    for p in [
        pod("nlc-short", &n0, 2, false),
        pod("nlc-scheduled", &n0, 2, true),
        pod("nlc-long", &n0, 3600, false),
        pod("nlc-elsewhere", &n1, 2, false),
    ] {
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    for name in ["nlc-short", "nlc-scheduled", "nlc-long", "nlc-elsewhere"] {
        let pod = eventually(30, "the pods run and are Ready", || {
            let pods = pods.clone();
            async move {
                let p = pods.get(name).await.unwrap();
                (pod_condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
            }
        })
        .await;
        let expected = if name == "nlc-elsewhere" { &n1 } else { &n0 };
        assert_eq!(pod.spec.unwrap().node_name.as_ref(), Some(expected));
    }
    // Healthy nodes stay untouched for longer than the grace period.
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < quiet_until {
        for i in 0..3 {
            let n = nodes.get(&node_name(i)).await.unwrap();
            assert_eq!(condition(&n, "Ready").unwrap().status, "True");
            assert!(!has_taint(
                &n,
                "node.kubernetes.io/unreachable",
                "NoExecute"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Stop node 0's heartbeat.
    nodes
        .patch(
            &n0,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"flotilla.io/heartbeat": "stopped"}}}),
            ),
        )
        .await
        .unwrap();
    let silent = eventually(60, "node 0 turns Unknown and unreachable", || {
        let nodes = nodes.clone();
        let n0 = n0.clone();
        async move {
            let n = nodes.get(&n0).await.unwrap();
            (has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute")
                && has_taint(&n, "node.kubernetes.io/unreachable", "NoSchedule"))
            .then_some(n)
        }
    })
    .await;
    // kubectl reads it as Kubernetes' would. Run off the runtime that drives the
    // heartbeats and the controller, so that kubectl's wait stalls neither.
    let kubectl_timeout = Duration::from_secs(60);
    for version in ["1.29", "1.33"] {
        let out = cluster
            .kubectl_output(
                version,
                kubectl_timeout,
                &["get", "node", &n0, "--no-headers"],
                None,
            )
            .await;
        let status = out
            .expect_success("kubectl get node")
            .split_whitespace()
            .nth(1);
        assert_eq!(status, Some("NotReady"), "kubectl {version}");
    }
    let out = cluster
        .kubectl_output("1.33", kubectl_timeout, &["describe", "node", &n0], None)
        .await;
    let described = out.expect_success("kubectl describe node");
    assert!(
        described.contains("node.kubernetes.io/unreachable:NoExecute"),
        "{described}"
    );
    assert!(described.contains("NodeStatusUnknown"), "{described}");
    for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = condition(&silent, type_).unwrap();
        assert_eq!(c.status, "Unknown", "{type_}");
        assert_eq!(c.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            c.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
    }
    let tainted_at = silent
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .and_then(|ts| {
            ts.iter()
                .find(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute")
        })
        .and_then(|t| t.time_added.clone())
        .expect("the NoExecute taint carries timeAdded")
        .0;

    // The pods with a 2 s toleration are evicted: deleted gracefully, so Terminating on
    // the unreachable node, with DisruptionTarget set.
    for name in ["nlc-short", "nlc-scheduled"] {
        let p = eventually(60, "the short-toleration pods are evicted", || {
            let pods = pods.clone();
            async move {
                let p = pods.get(name).await.unwrap();
                p.metadata.deletion_timestamp.is_some().then_some(p)
            }
        })
        .await;
        assert_eq!(
            pod_condition(&p, "DisruptionTarget").as_deref(),
            Some("True")
        );
        assert_eq!(pod_condition(&p, "Ready").as_deref(), Some("False"));
        // Not before the toleration ran out: deletionTimestamp = deletion + grace period.
        let grace = p.metadata.deletion_grace_period_seconds.unwrap_or(0);
        let deleted_at =
            p.metadata.deletion_timestamp.unwrap().0 - SignedDuration::from_secs(grace);
        assert!(
            deleted_at >= tainted_at + SignedDuration::from_millis(1900),
            "{name} evicted at {deleted_at}, taint added at {tainted_at}"
        );
    }
    // The long toleration keeps its pod, marked not ready; the other node's pod is untouched.
    let long = pods.get("nlc-long").await.unwrap();
    assert!(long.metadata.deletion_timestamp.is_none());
    assert_eq!(pod_condition(&long, "Ready").as_deref(), Some("False"));
    let elsewhere = pods.get("nlc-elsewhere").await.unwrap();
    assert!(elsewhere.metadata.deletion_timestamp.is_none());
    assert_eq!(pod_condition(&elsewhere, "Ready").as_deref(), Some("True"));
    let n1_node = nodes.get(&n1).await.unwrap();
    assert_eq!(condition(&n1_node, "Ready").unwrap().status, "True");
    assert!(n1_node.spec.unwrap().taints.unwrap_or_default().is_empty());

    // The heartbeat resumes: the simulated kubelet posts Ready=True again by itself (the
    // controller had written Unknown), so the taints go.
    nodes
        .patch(
            &n0,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"flotilla.io/heartbeat": null}}})),
        )
        .await
        .unwrap();
    let posted = eventually(60, "node 0 posts Ready=True again", || {
        let nodes = nodes.clone();
        let n0 = n0.clone();
        async move {
            let n = nodes.get(&n0).await.unwrap();
            (condition(&n, "Ready").unwrap().status == "True").then_some(n)
        }
    })
    .await;
    for (type_, status, reason) in [
        ("Ready", "True", "KubeletReady"),
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
    ] {
        let c = condition(&posted, type_).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            (status, Some(reason))
        );
        // A transition, posted after the controller's Unknown.
        assert!(
            c.last_transition_time.as_ref().unwrap().0 > tainted_at,
            "{type_}"
        );
    }
    eventually(60, "node 0's taints are removed", || {
        let nodes = nodes.clone();
        let n0 = n0.clone();
        async move {
            let n = nodes.get(&n0).await.unwrap();
            let clear = !has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute")
                && !has_taint(&n, "node.kubernetes.io/unreachable", "NoSchedule");
            clear.then_some(())
        }
    })
    .await;
    // It stays healthy: the renewed Lease keeps it Ready past the grace period.
    let steady_until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < steady_until {
        let n = nodes.get(&n0).await.unwrap();
        assert_eq!(condition(&n, "Ready").unwrap().status, "True");
        assert!(!has_taint(
            &n,
            "node.kubernetes.io/unreachable",
            "NoExecute"
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(pods
        .get("nlc-long")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_none());
    // Back, the node catches up on its pods: the evicted ones finish terminating, the one
    // that tolerated the outage is Ready again.
    eventually(
        20,
        "the evicted pods are gone and nlc-long is Ready",
        || {
            let pods = pods.clone();
            async move {
                for name in ["nlc-short", "nlc-scheduled"] {
                    if pods.get_opt(name).await.unwrap().is_some() {
                        return None;
                    }
                }
                let long = pods.get("nlc-long").await.unwrap();
                (pod_condition(&long, "Ready").as_deref() == Some("True")).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_nodes_deployment_pods_are_rescheduled_onto_the_other_nodes() {
    let prefix = "nlc-deploy-node";
    let cluster = Cluster::start(prefix, 3).await;
    let client = cluster.client.clone();
    // The workload controllers, in process beside the node lifecycle controller.
    tokio::spawn(controllers::replicaset::run(
        controllers::informers::Informers::new(client.clone()),
        futures::future::pending(),
    ));
    tokio::spawn(controllers::deployment::run(
        client.clone(),
        futures::future::pending(),
    ));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let app = "nlc-deploy";
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": NS},
        "spec": {
            "replicas": 6,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {
                    "containers": [{"name": "c", "image": "registry.invalid/app:1"}],
                    "topologySpreadConstraints": [{"maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": {"app": app}}}],
                    "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 2}],
                },
            },
        },
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let available = |want: i32| {
        let deployments = deployments.clone();
        move || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get(app).await.unwrap();
                let s = d.status?;
                (s.available_replicas == Some(want)
                    && s.updated_replicas == Some(want)
                    && s.replicas == Some(want)
                    && s.observed_generation == d.metadata.generation)
                    .then_some(())
            }
        }
    };
    eventually(30, "the Deployment is available", available(6)).await;
    let selector = ListParams::default().labels(&format!("app={app}"));
    let before = pods.list(&selector).await.unwrap().items;
    let on = |p: &Pod| p.spec.as_ref().unwrap().node_name.clone().unwrap();
    let silent = node(prefix, 0);
    let victims: Vec<String> = before
        .iter()
        .filter(|p| on(p) == silent)
        .map(|p| p.metadata.uid.clone().unwrap())
        .collect();
    for i in 0..3 {
        assert!(
            before.iter().any(|p| on(p) == node(prefix, i)),
            "the Deployment is spread over the three nodes: {:?}",
            before.iter().map(on).collect::<Vec<_>>()
        );
    }

    cluster.set_heartbeat(&silent, true).await;
    // Its pods are evicted after their 2 s toleration, and replacements run elsewhere: the
    // Deployment is back to six available replicas, none of them on the silent node.
    let after = eventually(60, "the Deployment recovers on the other nodes", || {
        let pods = pods.clone();
        let selector = selector.clone();
        let victims = victims.clone();
        let silent = silent.clone();
        let check = available(6);
        async move {
            let items = pods.list(&selector).await.unwrap().items;
            let active: Vec<Pod> = items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .cloned()
                .collect();
            let evicted = items.iter().filter(|p| {
                victims.contains(p.metadata.uid.as_ref().unwrap())
                    && p.metadata.deletion_timestamp.is_some()
            });
            let all_evicted = evicted.count() == victims.len();
            let moved = active.len() == 6 && active.iter().all(|p| on(p) != silent);
            (all_evicted && moved).then_some(())?;
            check().await?;
            Some(items)
        }
    })
    .await;
    for p in after
        .iter()
        .filter(|p| victims.contains(p.metadata.uid.as_ref().unwrap()))
    {
        assert_eq!(
            pod_condition(p, "DisruptionTarget").as_deref(),
            Some("True")
        );
    }
    let replacements = after
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !before.iter().any(|b| b.metadata.uid == p.metadata.uid))
        .count();
    assert_eq!(replacements, victims.len());
    let silent_node = cluster.nodes.get(&silent).await.unwrap();
    assert_eq!(condition(&silent_node, "Ready").unwrap().status, "Unknown");
}

fn node(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_ready_node_gets_the_not_ready_taints_and_evicts() {
    let prefix = "nlc-nr-node";
    let cluster = Cluster::start(prefix, 2).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), NS);
    let n0 = format!("{prefix}-0");
    for p in [
        pod_tolerating(
            "nlc-nr-short",
            &n0,
            "node.kubernetes.io/not-ready",
            1,
            false,
        ),
        // The admission default (300 s) for not-ready.
        pod_tolerating("nlc-nr-default", &n0, "example.com/other", 1, false),
    ] {
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    // The kubelet keeps its Lease but reports NotReady.
    cluster.post_status(&n0, "False").await;
    let n = cluster
        .wait_taints(&n0, "node 0 gets the not-ready taints", |n| {
            has_taint(n, "node.kubernetes.io/not-ready", "NoExecute")
                && has_taint(n, "node.kubernetes.io/not-ready", "NoSchedule")
        })
        .await;
    assert!(!has_taint(
        &n,
        "node.kubernetes.io/unreachable",
        "NoExecute"
    ));
    // A live heartbeat: the kubelet's own conditions stand.
    assert_eq!(condition(&n, "Ready").unwrap().status, "False");
    assert_eq!(
        condition(&n, "Ready").unwrap().reason.as_deref(),
        Some("KubeletNotReady")
    );
    eventually(60, "the 1 s not-ready toleration evicts its pod", || {
        let pods = pods.clone();
        async move {
            // The node's agent is alive, so the deletion may already have completed.
            match pods.get_opt("nlc-nr-short").await.unwrap() {
                None => Some(()),
                Some(p) => p.metadata.deletion_timestamp.is_some().then_some(()),
            }
        }
    })
    .await;
    let kept = pods.get("nlc-nr-default").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_none());
    let tolerations = kept.spec.unwrap().tolerations.unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready")
            && t.toleration_seconds == Some(300)));

    // Ready again: the taints go.
    cluster.post_status(&n0, "True").await;
    let n = cluster
        .wait_taints(&n0, "node 0's not-ready taints are removed", |n| {
            !has_taint(n, "node.kubernetes.io/not-ready", "NoExecute")
                && !has_taint(n, "node.kubernetes.io/not-ready", "NoSchedule")
        })
        .await;
    assert_eq!(condition(&n, "Ready").unwrap().status, "True");
    assert!(pods
        .get("nlc-nr-default")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_node_is_silent_nothing_is_evicted() {
    let prefix = "nlc-all-node";
    let cluster = Cluster::start(prefix, 2).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), NS);
    let (n0, n1) = (format!("{prefix}-0"), format!("{prefix}-1"));
    // A 3 s toleration outlasts a NoExecute taint n0 may get for a moment (below).
    pods.create(&PostParams::default(), &pod("nlc-all-short", &n0, 3, false))
        .await
        .unwrap();
    cluster.set_heartbeat(&n0, true).await;
    cluster.set_heartbeat(&n1, true).await;
    // Both go Unknown and unschedulable, but without the NoExecute taint.
    for n in [&n0, &n1] {
        let node = cluster
            .wait_taints(
                n,
                "the silent nodes get the unreachable NoSchedule taint",
                // The two silences may land a heartbeat tick apart, so n0 can be tainted
                // NoExecute until the controller sees the full disruption and lifts it, as
                // Kubernetes does: wait for the settled state.
                |n| {
                    has_taint(n, "node.kubernetes.io/unreachable", "NoSchedule")
                        && !has_taint(n, "node.kubernetes.io/unreachable", "NoExecute")
                },
            )
            .await;
        assert_eq!(condition(&node, "Ready").unwrap().status, "Unknown");
    }
    // Past the pod's toleration and several monitor periods, nothing is NoExecute-tainted
    // or evicted.
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        for n in [&n0, &n1] {
            let node = cluster.nodes.get(n).await.unwrap();
            assert!(!has_taint(
                &node,
                "node.kubernetes.io/unreachable",
                "NoExecute"
            ));
        }
        let p = pods.get("nlc-all-short").await.unwrap();
        assert!(p.metadata.deletion_timestamp.is_none());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // One node comes back: the other is no longer a full disruption, so it is tainted
    // NoExecute and its pod evicted.
    cluster.set_heartbeat(&n1, false).await;
    cluster.post_status(&n1, "True").await;
    cluster
        .wait_taints(&n0, "the still-silent node gets the NoExecute taint", |n| {
            has_taint(n, "node.kubernetes.io/unreachable", "NoExecute")
        })
        .await;
    eventually(60, "its pod is evicted", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("nlc-all-short").await.unwrap();
            p.metadata.deletion_timestamp.is_some().then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_execute_tainting_is_rate_limited_per_zone() {
    let prefix = "nlc-rate-node";
    // One zone of three nodes, at most one new NoExecute taint every 2 s.
    let cluster = Cluster::start_with(prefix, 3, 1, 0.5).await;
    let (n0, n1) = (format!("{prefix}-0"), format!("{prefix}-1"));
    cluster.set_heartbeat(&n0, true).await;
    cluster.set_heartbeat(&n1, true).await;
    let mut added = Vec::new();
    for n in [&n0, &n1] {
        let node = cluster
            .wait_taints(n, "both silent nodes get the NoExecute taint", |n| {
                has_taint(n, "node.kubernetes.io/unreachable", "NoExecute")
            })
            .await;
        assert_eq!(condition(&node, "Ready").unwrap().status, "Unknown");
        // Unschedulable at once, whatever the rate.
        assert!(has_taint(
            &node,
            "node.kubernetes.io/unreachable",
            "NoSchedule"
        ));
        let t = node
            .spec
            .unwrap()
            .taints
            .unwrap()
            .into_iter()
            .find(|t| t.effect == "NoExecute")
            .and_then(|t| t.time_added)
            .unwrap()
            .0;
        added.push(t);
    }
    let gap = added[0].duration_until(added[1]).abs();
    assert!(
        gap >= SignedDuration::from_millis(1500),
        "NoExecute taints {gap} apart at 0.5 nodes/s"
    );
    // The third node, healthy, is untouched.
    let n2 = cluster.nodes.get(&format!("{prefix}-2")).await.unwrap();
    assert_eq!(condition(&n2, "Ready").unwrap().status, "True");
    assert!(n2.spec.unwrap().taints.unwrap_or_default().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_converges_from_the_current_state() {
    let prefix = "nlc-restart-node";
    let mut cluster = Cluster::start(prefix, 2).await;
    let n0 = format!("{prefix}-0");
    cluster.set_heartbeat(&n0, true).await;
    cluster
        .wait_taints(&n0, "the silent node is tainted", |n| {
            has_taint(n, "node.kubernetes.io/unreachable", "NoExecute")
        })
        .await;
    // The controller goes away; meanwhile the node comes back.
    cluster.stop_controller().await;
    cluster.set_heartbeat(&n0, false).await;
    cluster.post_status(&n0, "True").await;
    let n = cluster.nodes.get(&n0).await.unwrap();
    assert!(has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute"));
    // A new controller reconciles from what is there.
    cluster.start_controller();
    let n = cluster
        .wait_taints(&n0, "the restarted controller lifts the taints", |n| {
            !has_taint(n, "node.kubernetes.io/unreachable", "NoExecute")
                && !has_taint(n, "node.kubernetes.io/unreachable", "NoSchedule")
        })
        .await;
    assert_eq!(condition(&n, "Ready").unwrap().status, "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_taints_drain_evicts_and_uncordon_lifts_the_taint() {
    let prefix = "nlc-cordon-node";
    let cluster = Cluster::start(prefix, 2).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), NS);
    let n0 = format!("{prefix}-0");
    pods.create(
        &PostParams::default(),
        &pod("nlc-cordon-pod", &n0, 300, false),
    )
    .await
    .unwrap();
    let timeout = Duration::from_secs(60);

    cluster
        .kubectl("1.33", timeout, &["cordon", &n0], None)
        .await;
    let n = cluster
        .wait_taints(&n0, "a cordoned node gets the unschedulable taint", |n| {
            has_taint(n, "node.kubernetes.io/unschedulable", "NoSchedule")
        })
        .await;
    assert_eq!(n.spec.as_ref().unwrap().unschedulable, Some(true));
    let row = cluster
        .kubectl("1.33", timeout, &["get", "node", &n0, "--no-headers"], None)
        .await;
    assert!(row.contains("Ready,SchedulingDisabled"), "{row}");

    // drain evicts (through the Eviction API) what runs there; --force because the pod
    // has no controller.
    cluster
        .kubectl(
            "1.33",
            timeout,
            &["drain", &n0, "--force", "--timeout=50s"],
            None,
        )
        .await;
    assert!(pods.get_opt("nlc-cordon-pod").await.unwrap().is_none());

    cluster
        .kubectl("1.33", timeout, &["uncordon", &n0], None)
        .await;
    let n = cluster
        .wait_taints(&n0, "an uncordoned node loses the taint", |n| {
            !has_taint(n, "node.kubernetes.io/unschedulable", "NoSchedule")
        })
        .await;
    assert_ne!(n.spec.as_ref().unwrap().unschedulable, Some(true));
}
