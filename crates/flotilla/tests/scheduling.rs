//! Scheduling end to end: a real `flotilla server`, the scheduler and simulated nodes
//! talking to it through the API, and kubectl reading the outcome.
//!
//! Each test registers its own simulated nodes (unique name prefix) and uses its own
//! scheduler name, so the tests share nothing and run in parallel.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event as CoreEvent, Node, Pod, Taint};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};

use support::sim::{eventually, SimCluster, SimulatedConfig};
use support::{Server, ServerOptions};

struct Harness {
    sim: SimCluster,
    scheduler: String,
    prefix: String,
}

crate::deref_to_sim!(Harness);

impl Harness {
    /// A server with `nodes` simulated nodes (4 CPUs, 8 GiB, zones round-robin over 2),
    /// changed by `edit` before they register, and a scheduler named after the test.
    /// RUST_LOG=flotilla_scheduler=debug shows the scheduler's decisions.
    async fn start(test: &str, nodes: usize, edit: impl Fn(usize, &mut Node)) -> Self {
        let mut sim = SimCluster::start(ServerOptions::default()).await;
        let prefix = format!("{test}-node");
        let config = SimulatedConfig {
            cpu: "4".into(),
            memory: "8Gi".into(),
            zones: 2,
            ..support::sim::nodes(&prefix, nodes)
        };
        let api: Api<Node> = sim.cluster_api();
        for i in 0..nodes {
            let mut n = agent::simulated::simulated_node(&config, i);
            edit(i, &mut n);
            api.create(&PostParams::default(), &n).await.unwrap();
        }
        let scheduler = format!("{test}-scheduler");
        let cfg = scheduler::SchedulerConfig {
            name: scheduler.clone(),
            ..Default::default()
        };
        sim.spawn(move |client, shutdown| scheduler::Scheduler::new(client, cfg).run(shutdown));
        Harness {
            sim,
            scheduler,
            prefix,
        }
    }

    fn node(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    async fn create(&self, name: &str, mut spec: Value, labels: Value) -> Pod {
        spec["schedulerName"] = json!(self.scheduler);
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "registry.invalid/app:1",
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]);
        }
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": spec,
        }))
        .unwrap();
        Api::<Pod>::namespaced(self.client.clone(), "default")
            .create(&PostParams::default(), &pod)
            .await
            .unwrap()
    }

    /// The node each named pod is bound to, once all are bound.
    async fn placements(&self, names: &[&str]) -> BTreeMap<String, String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut out = BTreeMap::new();
            for n in names {
                if let Some(node) = api.get(n).await.unwrap().spec.and_then(|s| s.node_name) {
                    out.insert(n.to_string(), node);
                }
            }
            if out.len() == names.len() {
                return out;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "pods not all bound in time: {out:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The PodScheduled=False message of a pod the scheduler gave up on.
    async fn unschedulable_message(&self, name: &str) -> String {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let what = format!("{name} never reported unschedulable");
        eventually(30, &what, || async {
            let pod = api.get(name).await.unwrap();
            let c = pod
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
            assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
            assert!(pod.spec.unwrap().node_name.is_none());
            Some(c.message.unwrap_or_default())
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_fits_nowhere_says_why_in_kubernetes_words() {
    let h = Harness::start("nofit", 3, |i, n| {
        if i == 2 {
            n.spec.as_mut().unwrap().taints = Some(vec![Taint {
                key: "dedicated".into(),
                value: Some("gpu".into()),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]);
        }
    })
    .await;
    h.create(
        "huge",
        json!({"containers": [{"name": "c", "image": "registry.invalid/app:1",
            "resources": {"requests": {"memory": "64Gi"}}}]}),
        json!({}),
    )
    .await;
    let msg = h.unschedulable_message("huge").await;
    assert_eq!(
        msg,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
         2 Insufficient memory. preemption: 0/3 nodes are available: \
         1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
    );
    // The Event says the same, and kubectl describe shows it.
    // Events go out through the recorder's queue, apart from the condition: wait for it.
    let events: Api<CoreEvent> = Api::namespaced(h.client.clone(), "default");
    eventually(30, "a FailedScheduling event with the message", || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .any(|e| {
                e.reason.as_deref() == Some("FailedScheduling")
                    && e.message.as_deref() == Some(&msg)
            })
            .then_some(())
    })
    .await;
    let out = h.server.kubectl_run("1.33", &["describe", "pod", "huge"]);
    let text = out.expect_success("kubectl describe pod");
    assert!(text.contains("FailedScheduling"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_and_node_affinity_steer_pods() {
    let h = Harness::start("steer", 3, |i, n| {
        let labels = n.metadata.labels.as_mut().unwrap();
        labels.insert("disk".into(), if i == 1 { "ssd" } else { "hdd" }.into());
        if i == 0 {
            n.spec.as_mut().unwrap().taints = Some(vec![Taint {
                key: "maintenance".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]);
        }
    })
    .await;
    for i in 0..6 {
        h.create(&format!("plain-{i}"), json!({}), json!({})).await;
    }
    h.create(
        "wants-ssd",
        json!({"nodeSelector": {"disk": "ssd"}}),
        json!({}),
    )
    .await;
    h.create(
        "tolerant",
        json!({"tolerations": [{"key": "maintenance", "operator": "Exists"}],
               "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                   "nodeSelectorTerms": [{"matchExpressions": [
                       {"key": "kubernetes.io/hostname", "operator": "In", "values": [h.node(0)]}]}]}}}}),
        json!({}),
    )
    .await;
    let names: Vec<String> = (0..6).map(|i| format!("plain-{i}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.extend(["wants-ssd", "tolerant"]);
    let placed = h.placements(&all).await;
    for n in &names {
        assert_ne!(placed[n], h.node(0), "{n} went to the tainted node");
    }
    assert_eq!(placed["wants-ssd"], h.node(1));
    assert_eq!(placed["tolerant"], h.node(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_and_spread_constraints_place_replicas_apart() {
    let h = Harness::start("apart", 4, |_, _| {}).await;
    for i in 0..4 {
        h.create(
            &format!("web-{i}"),
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
            json!({"app": "web"}),
        )
        .await;
    }
    let names: Vec<String> = (0..4).map(|i| format!("web-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let placed = h.placements(&refs).await;
    let distinct: std::collections::BTreeSet<&String> = placed.values().collect();
    assert_eq!(distinct.len(), 4, "{placed:?}");
    // A fifth replica has nowhere to go.
    h.create(
        "web-4",
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
        json!({"app": "web"}),
    )
    .await;
    let msg = h.unschedulable_message("web-4").await;
    assert!(
        msg.starts_with("0/4 nodes are available: 4 node(s) didn't match pod anti-affinity rules."),
        "{msg}"
    );

    // Zone spreading: 4 pods, maxSkew 1 over 2 zones → 2 and 2.
    for i in 0..4 {
        h.create(
            &format!("spread-{i}"),
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "spread"}}}]}),
            json!({"app": "spread"}),
        )
        .await;
        // One at a time: each decision sees the previous binding.
        h.placements(&[&format!("spread-{i}")]).await;
    }
    let names: Vec<String> = (0..4).map(|i| format!("spread-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let placed = h.placements(&refs).await;
    let nodes: Api<Node> = Api::all(h.client.clone());
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for node in placed.values() {
        let zone = nodes.get(node).await.unwrap().metadata.labels.unwrap()
            ["topology.kubernetes.io/zone"]
            .clone();
        *per_zone.entry(zone).or_default() += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        [2, 2],
        "{per_zone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_pod_preempts_a_lower_one() {
    // Two nodes, the second closed by a taint, so one node holds both pods.
    let h = Harness::start("preempt", 2, |i, n| {
        if i == 1 {
            n.spec.as_mut().unwrap().taints = Some(vec![Taint {
                key: "closed".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]);
        }
    })
    .await;
    let api: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(h.client.clone());
    for (name, value) in [("preempt-low", 10), ("preempt-high", 1000)] {
        api.create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    }
    let big = |class: &str| {
        json!({"priorityClassName": class, "containers": [{"name": "c", "image": "registry.invalid/app:1",
            "resources": {"requests": {"cpu": "3"}}}]})
    };
    h.create("low", big("preempt-low"), json!({})).await;
    h.placements(&["low"]).await;
    h.create("high", big("preempt-high"), json!({})).await;
    // The victim goes (no agent: deletion of a bound pod waits for its node, which is
    // simulated here by nobody, so force the final delete as the kubelet would).
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match pods.get_opt("low").await.unwrap() {
            None => break,
            Some(p) if p.metadata.deletion_timestamp.is_some() => {
                let _ = pods
                    .delete(
                        "low",
                        &kube::api::DeleteParams {
                            grace_period_seconds: Some(0),
                            ..Default::default()
                        },
                    )
                    .await;
            }
            Some(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            let high = pods.get("high").await.unwrap();
            panic!(
                "the low-priority pod was not preempted; high: {:?}",
                high.status
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let placed = h.placements(&["high"]).await;
    assert_eq!(placed["high"], h.node(0));
}

/// The binary end to end: `flotilla server` schedules with its own scheduler onto nodes run
/// by `flotilla agent --simulate`, which reports the pods Running; a node whose heartbeat is
/// stopped on command stops renewing its Lease.
#[test]
fn the_servers_scheduler_places_pods_on_simulated_nodes() {
    use std::process::Command;
    use support::ProcessGroup;
    let server = Server::start_with(ServerOptions {
        with_scheduler: true,
        ..Default::default()
    });
    let token = std::fs::read_to_string(server.data_dir.join("token")).unwrap();
    let log = server.scratch_dir().join("sim-agent.log");
    let mut cmd = Command::new(support::flotilla_bin());
    cmd.args(["agent", "--simulate", "3", "--sim-name-prefix", "hollow"])
        .arg("--server")
        .arg(format!("https://127.0.0.1:{}", server.port()))
        .arg("--token")
        .arg(token.trim())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(server.scratch_dir().join("sim-agent.err")).unwrap());
    let _agent = ProcessGroup::spawn(&mut cmd).unwrap();
    let kubectl = |args: &[&str]| server.kubectl_run("1.33", args);
    support::wait_for(
        "three simulated nodes Ready",
        Duration::from_secs(30),
        || {
            let out = kubectl(&["get", "nodes", "--no-headers"]);
            (out.success() && out.stdout.matches(" Ready ").count() == 3).then_some(())
        },
    );
    kubectl(&["run", "web", "--image=registry.invalid/web:1"]).expect_success("kubectl run");
    let node = support::wait_for(
        "the pod Running on a simulated node",
        Duration::from_secs(30),
        || {
            let out = kubectl(&[
                "get",
                "pod",
                "web",
                "-o",
                "jsonpath={.status.phase} {.spec.nodeName} {.status.podIP}",
            ]);
            let text = out.stdout.trim().to_string();
            let parts: Vec<&str> = text.split(' ').collect();
            (parts.len() == 3
                && parts[0] == "Running"
                && parts[1].starts_with("hollow-")
                && parts[2].starts_with("10."))
            .then(|| parts[1].to_string())
        },
    );
    // Stop one node's heartbeat; its Lease stops moving while another's still renews.
    kubectl(&["annotate", "node", &node, "flotilla.io/heartbeat=stopped"])
        .expect_success("annotate");
    let renew = |n: &str| {
        kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            n,
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
        .stdout
        .trim()
        .to_string()
    };
    let other = ["hollow-0", "hollow-1", "hollow-2"]
        .into_iter()
        .find(|n| *n != node)
        .unwrap();
    // Let an in-flight renewal land before taking the reference time.
    let other_before = renew(other);
    support::wait_for(
        "another renewal of a live node",
        Duration::from_secs(30),
        || (renew(other) != other_before).then_some(()),
    );
    let stopped_at = renew(&node);
    let other_mid = renew(other);
    support::wait_for(
        "a further renewal of a live node",
        Duration::from_secs(30),
        || (renew(other) != other_mid).then_some(()),
    );
    assert_eq!(
        renew(&node),
        stopped_at,
        "the stopped node's Lease was renewed"
    );
}
