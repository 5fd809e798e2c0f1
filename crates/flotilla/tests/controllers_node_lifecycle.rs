//! The node lifecycle controller end to end: a real `flotilla server` with its scheduler,
//! three simulated nodes renewing their Leases every 200 ms, and the controller (grace
//! 3 s, default toleration 2 s) running in process. One node's heartbeat stops: it turns
//! Ready=Unknown with the unreachable taints, its pods are marked not ready and evicted
//! after their toleration, a pod with a long toleration stays, and once the node reports
//! again the taints go.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use support::{Server, ServerOptions};

const PREFIX: &str = "nlc-node";
const NS: &str = "default";

async fn client(server: &Server) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Polls `check` until it yields a value, failing after `secs` with `what`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
    let mut spec = json!({
        "containers": [{"name": "c", "image": "registry.invalid/app:1"}],
        "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_tainted_its_pods_evicted_and_it_recovers() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let server = Server::start_with(ServerOptions {
        with_scheduler: true,
        ..Default::default()
    });
    let client = client(&server).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = futures::FutureExt::shared(async {
        let _ = stopped.await;
    });

    let sim = agent::simulated::SimulatedConfig {
        count: 3,
        name_prefix: PREFIX.into(),
        lease_interval: Duration::from_millis(200),
        ..Default::default()
    };
    tokio::spawn(agent::simulated::run(client.clone(), sim, stopped.clone()));
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..3 {
        let name = node_name(i);
        eventually(30, "the simulated nodes register", || {
            let nodes = nodes.clone();
            let name = name.clone();
            async move { nodes.get_opt(&name).await.unwrap() }
        })
        .await;
    }

    let config = controllers::node_lifecycle::Config {
        grace_period: Duration::from_secs(3),
        default_toleration_seconds: 2,
        monitor_period: Duration::from_millis(500),
    };
    tokio::spawn(controllers::node_lifecycle::run_with(
        client.clone(),
        config,
        stopped.clone(),
    ));

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
    let silent = eventually(20, "node 0 turns Unknown and unreachable", || {
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
        let p = eventually(20, "the short-toleration pods are evicted", || {
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

    // The heartbeat resumes and the kubelet posts Ready again (simulated nodes renew only
    // their Lease, so the test posts the status a kubelet would): the taints go.
    nodes
        .patch(
            &n0,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"flotilla.io/heartbeat": null}}})),
        )
        .await
        .unwrap();
    let now = Time(Timestamp::now());
    let mut conditions: Vec<Value> = Vec::new();
    for (type_, status, reason) in [
        ("Ready", "True", "KubeletReady"),
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
    ] {
        conditions.push(json!({"type": type_, "status": status, "reason": reason,
            "message": "simulated node: recovered", "lastHeartbeatTime": now,
            "lastTransitionTime": now}));
    }
    nodes
        .patch_status(
            &n0,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": conditions}})),
        )
        .await
        .unwrap();
    eventually(20, "node 0's taints are removed", || {
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

    let _ = stop.send(());
}
