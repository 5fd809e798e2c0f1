//! The pod garbage collector, as kube-controller-manager's PodGC: every [`Config::period`]
//!
//! - pods bound to a node that no longer exists (absent from the node informer for
//!   [`Config::quarantine`], then confirmed gone by a read) are marked Failed with a
//!   `DisruptionTarget` condition (reason `DeletionByPodGC`) and force-deleted. This is what
//!   frees a StatefulSet's pod, or a Job's, from a node whose Node object was deleted: no
//!   agent will ever confirm their deletion;
//! - terminating pods on a node tainted `node.kubernetes.io/out-of-service` that is not
//!   Ready are marked Failed and force-deleted (non-graceful node shutdown);
//! - terminating pods that were never scheduled are marked Failed and force-deleted;
//! - past [`Config::terminated_pod_threshold`] finished pods, the oldest go.
//!
//! It reads the controller manager's shared pod and node stores.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use crate::informers::Informers;

pub const TAINT_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
const FIELD_MANAGER: &str = "pod-garbage-collector";

#[derive(Debug, Clone)]
pub struct Config {
    /// Finished pods kept before the oldest are deleted (`--terminated-pod-gc-threshold`).
    pub terminated_pod_threshold: usize,
    /// How long a pod's node must be missing before its pods are collected.
    pub quarantine: Duration,
    pub period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            terminated_pod_threshold: 12_500,
            quarantine: Duration::from_secs(40),
            period: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pod garbage collector: {0}")]
    Api(#[from] kube::Error),
}

pub async fn run(
    informers: Informers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    run_with(informers, Config::default(), shutdown).await
}

pub async fn run_with(
    informers: Informers,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = informers.client().clone();
    tokio::pin!(shutdown);
    let stores = async { (informers.pod_store().await, informers.node_store().await) };
    let (pods, nodes) = tokio::select! {
        () = &mut shutdown => return Ok(()),
        s = stores => s,
    };
    let mut missing_since: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(config.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            _ = tick.tick() => {}
        }
        let pods = pods.state();
        let nodes = nodes.state();
        if let Err(e) = pass(&client, &config, &pods, &nodes, &mut missing_since).await {
            tracing::warn!(error = %e, "pod garbage collection pass failed; retried next period");
        }
    }
}

async fn pass(
    client: &kube::Client,
    config: &Config,
    pods: &[Arc<Pod>],
    nodes: &[Arc<Node>],
    missing_since: &mut HashMap<String, Instant>,
) -> Result<(), Error> {
    let now = Instant::now();
    let known: BTreeSet<&str> = nodes
        .iter()
        .map(|n| n.metadata.name.as_deref().unwrap_or_default())
        .collect();
    let missing = missing_nodes(pods, &known);
    missing_since.retain(|n, _| missing.contains(n.as_str()));
    let node_api: Api<Node> = Api::all(client.clone());
    for node in &missing {
        let since = *missing_since.entry(node.clone()).or_insert(now);
        if now.duration_since(since) < config.quarantine {
            continue;
        }
        // The informer may lag: only a read that finds nothing condemns the pods.
        if node_api.get_opt(node).await?.is_some() {
            missing_since.remove(node);
            continue;
        }
        for pod in pods.iter().filter(|p| node_of(p) == Some(node.as_str())) {
            logged(mark_failed_and_delete(client, pod, Some("PodGC: node no longer exists")).await);
        }
        missing_since.remove(node);
    }
    for node in nodes.iter().filter(|n| out_of_service(n)) {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        for pod in pods
            .iter()
            .filter(|p| node_of(p) == Some(name) && p.metadata.deletion_timestamp.is_some())
        {
            logged(mark_failed_and_delete(client, pod, None).await);
        }
    }
    // Never scheduled, so no node will finish them: Failed (a Job counts them), and gone.
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && node_of(p).is_none())
    {
        logged(mark_failed_and_delete(client, pod, None).await);
    }
    for pod in terminated_excess(pods, config.terminated_pod_threshold) {
        logged(force_delete(client, pod).await);
    }
    Ok(())
}

/// One pod's failure does not stop the pass for the others.
fn logged(result: Result<(), Error>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "pod garbage collection of one pod failed; retried next period");
    }
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The nodes pods are bound to that the node informer does not know.
pub fn missing_nodes(pods: &[Arc<Pod>], known: &BTreeSet<&str>) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| node_of(p))
        .filter(|n| !known.contains(n))
        .map(str::to_string)
        .collect()
}

/// A node tainted out-of-service (any effect) whose Ready condition is not True.
pub fn out_of_service(node: &Node) -> bool {
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == TAINT_OUT_OF_SERVICE));
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    tainted && !ready
}

/// Finished pods past `threshold`, oldest first (upstream sorts by creation time).
pub fn terminated_excess(pods: &[Arc<Pod>], threshold: usize) -> Vec<&Pod> {
    let mut done: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| is_terminal(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    // 0 turns the cap off, as upstream's `--terminated-pod-gc-threshold` <= 0 does.
    if threshold == 0 || done.len() <= threshold {
        return Vec::new();
    }
    done.sort_by(|a, b| {
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let excess = done.len() - threshold;
    done.truncate(excess);
    done
}

/// The pod's conditions with `DisruptionTarget` set to True for PodGC.
pub fn with_disruption_target(
    conditions: &[PodCondition],
    message: &str,
    now: jiff::Timestamp,
) -> Vec<PodCondition> {
    let mut out: Vec<PodCondition> = conditions
        .iter()
        .filter(|c| c.type_ != "DisruptionTarget")
        .cloned()
        .collect();
    out.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByPodGC".into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    });
    out
}

/// Marks a pod that has not finished Failed (with the DisruptionTarget condition when
/// `message` says why), then force-deletes it.
async fn mark_failed_and_delete(
    client: &kube::Client,
    pod: &Pod,
    message: Option<&str>,
) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    if !is_terminal(pod) {
        let mut status = json!({"phase": "Failed"});
        if let Some(message) = message {
            let current = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            status["conditions"] = json!(with_disruption_target(
                &current,
                message,
                jiff::Timestamp::now()
            ));
        }
        let patch = json!({"status": status});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api
            .patch_status(&pod.name_any(), &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(pod = %pod.name_any(), namespace = ?pod.namespace(), "pod garbage collected");
    force_delete(client, pod).await
}

async fn force_delete(client: &kube::Client, pod: &Pod) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: pod
            .metadata
            .uid
            .clone()
            .map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
        ..Default::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        // Gone already, or another pod of that name now.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str, created: i64) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns",
                    "creationTimestamp": jiff::Timestamp::from_second(1_800_000_000 + created).unwrap()},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": phase}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn orphans_are_pods_on_unknown_nodes() {
        let pods = [
            pod("a", Some("n1"), "Running", 0),
            pod("b", Some("gone"), "Running", 0),
            pod("c", None, "Pending", 0),
        ];
        let known: BTreeSet<&str> = ["n1"].into();
        assert_eq!(missing_nodes(&pods, &known), ["gone".to_string()].into());
    }

    #[test]
    fn only_finished_pods_past_the_threshold_go_oldest_first() {
        let pods = [
            pod("new", Some("n"), "Succeeded", 30),
            pod("old", Some("n"), "Failed", 10),
            pod("running", Some("n"), "Running", 0),
            pod("mid", Some("n"), "Succeeded", 20),
        ];
        let names = |v: Vec<&Pod>| -> Vec<String> { v.iter().map(|p| p.name_any()).collect() };
        assert_eq!(names(terminated_excess(&pods, 1)), ["old", "mid"]);
        assert!(terminated_excess(&pods, 3).is_empty());
        assert!(terminated_excess(&pods, 0).is_empty(), "0 is off");
    }

    #[test]
    fn out_of_service_needs_the_taint_and_no_readiness() {
        let node = |taint: bool, ready: &str| -> Node {
            serde_json::from_value(json!({
                "metadata": {"name": "n"},
                "spec": {"taints": if taint { json!([{"key": TAINT_OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}]) } else { json!([]) }},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}
            }))
            .unwrap()
        };
        assert!(out_of_service(&node(true, "False")));
        assert!(out_of_service(&node(true, "Unknown")));
        assert!(!out_of_service(&node(true, "True")));
        assert!(!out_of_service(&node(false, "False")));
        let mut no_schedule = node(true, "False");
        no_schedule.spec.as_mut().unwrap().taints.as_mut().unwrap()[0].effect = "NoSchedule".into();
        assert!(out_of_service(&no_schedule));
    }

    #[test]
    fn the_disruption_target_replaces_any_earlier_one() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let earlier = vec![
            PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            },
            PodCondition {
                type_: "DisruptionTarget".into(),
                status: "False".into(),
                ..Default::default()
            },
        ];
        let out = with_disruption_target(&earlier, "PodGC: node no longer exists", now);
        assert_eq!(out.len(), 2);
        let dt = out.iter().find(|c| c.type_ == "DisruptionTarget").unwrap();
        assert_eq!(dt.status, "True");
        assert_eq!(dt.reason.as_deref(), Some("DeletionByPodGC"));
    }
}
