//! The pods of simulated nodes: reported Running and Ready with an IP from the node's CIDR
//! as soon as they are bound; removed (the kubelet's final delete) once they are deleted.
//! A stopped node ignores its pods until it resumes, then catches up.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::json;
use tokio::sync::mpsc;

use super::SimError;

/// Node `index`'s pod CIDR: never routed anywhere, pod IPs here are only status fields.
pub fn node_cidr(index: usize) -> String {
    format!("10.{}.{}.0/24", 64 + index / 256, index % 256)
}

fn pod_ip(index: usize, n: u32) -> String {
    format!("10.{}.{}.{}", 64 + index / 256, index % 256, 2 + n % 250)
}

enum Work {
    Start { pod: Box<Pod>, ip: String },
    Remove(Box<Pod>),
}

/// What the pod watch knows: pod IP counters per node, the pods already reported started
/// (so a resync does not report them twice), and the last state of the pods of stopped
/// nodes, which a resumed node catches up on.
struct Pods {
    names: Arc<HashMap<String, usize>>,
    stopped: Arc<Mutex<HashSet<String>>>,
    next_ip: HashMap<String, u32>,
    started: HashSet<String>,
    /// node → uid → the pod as last seen while the node was stopped.
    deferred: HashMap<String, HashMap<String, Pod>>,
    /// node → when its heartbeat last resumed.
    resumed: HashMap<String, std::time::Instant>,
}

/// How long after its heartbeat resumes a node re-reports its running pods Ready when
/// they are marked otherwise: the kubelet's status sync period.
const RESUME_RECONCILE: std::time::Duration = std::time::Duration::from_secs(10);

impl Pods {
    fn node_of<'p>(&self, pod: &'p Pod) -> Option<(&'p str, usize)> {
        let node = pod.spec.as_ref()?.node_name.as_deref()?;
        Some((node, *self.names.get(node)?))
    }

    fn on_apply(&mut self, pod: Pod, tx: &mpsc::UnboundedSender<Work>) {
        let Some((node, index)) = self.node_of(&pod) else {
            return;
        };
        let node = node.to_string();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.stopped.lock().is_ok_and(|s| s.contains(&node)) {
            self.deferred.entry(node).or_default().insert(uid, pod);
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            let _ = tx.send(Work::Remove(Box::new(pod)));
            return;
        }
        // A kubelet coming back reconciles the API's pod status with the containers it runs:
        // a running pod marked not ready meanwhile (by the node lifecycle controller, while
        // the node was silent or from a stale view of it just after it came back) is
        // reported Ready again. Only for a while after the resume: otherwise a pod made not
        // ready from outside stays so (tests stand in for a failing readiness probe that
        // way, simulated pods having no probes).
        let resumed_lately = self
            .resumed
            .get(&node)
            .is_some_and(|t| t.elapsed() < RESUME_RECONCILE);
        if resumed_lately && needs_ready_again(&pod) {
            self.started.insert(uid);
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_default();
            let _ = tx.send(Work::Start {
                pod: Box::new(pod),
                ip,
            });
            return;
        }
        let running = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Running");
        if running || !self.started.insert(uid) {
            return;
        }
        let n = self.next_ip.entry(node).or_default();
        *n += 1;
        let ip = pod_ip(index, *n);
        let _ = tx.send(Work::Start {
            pod: Box::new(pod),
            ip,
        });
    }

    fn on_delete(&mut self, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        self.started.remove(uid);
        if let Some((node, _)) = self.node_of(pod) {
            if let Some(d) = self.deferred.get_mut(node) {
                d.remove(uid);
            }
        }
    }

    /// A node's heartbeat resumed: act on what happened to its pods meanwhile, as a
    /// kubelet coming back does.
    fn on_resume(&mut self, node: &str, tx: &mpsc::UnboundedSender<Work>) {
        self.resumed
            .insert(node.to_string(), std::time::Instant::now());
        let Some(pods) = self.deferred.remove(node) else {
            return;
        };
        for pod in pods.into_values() {
            self.on_apply(pod, tx);
        }
    }
}

/// A running, not terminating pod whose Ready condition is not True.
fn needs_ready_again(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    pod.metadata.deletion_timestamp.is_none()
        && status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && !status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub async fn run(
    client: kube::Client,
    names: Arc<HashMap<String, usize>>,
    stopped: Arc<Mutex<HashSet<String>>>,
    mut resumed: mpsc::UnboundedReceiver<String>,
    concurrency: usize,
) -> Result<(), SimError> {
    let (tx, rx) = mpsc::unbounded_channel::<Work>();
    let worker = {
        let client = client.clone();
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx).for_each_concurrent(
            concurrency.max(1),
            move |w| {
                let client = client.clone();
                async move { apply(client, w).await }
            },
        )
    };
    let mut state = Pods {
        names,
        stopped,
        next_ip: HashMap::new(),
        started: HashSet::new(),
        deferred: HashMap::new(),
        resumed: HashMap::new(),
    };
    let watch = async {
        let mut stream = watcher::watcher(Api::<Pod>::all(client), watcher::Config::default())
            .default_backoff()
            .boxed();
        loop {
            tokio::select! {
                ev = stream.try_next() => match ev {
                    Ok(Some(Event::Apply(p))) | Ok(Some(Event::InitApply(p))) => {
                        state.on_apply(p, &tx)
                    }
                    Ok(Some(Event::Delete(p))) => state.on_delete(&p),
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => tracing::debug!(error = %e, "simulated pod watch"),
                },
                Some(node) = resumed.recv() => state.on_resume(&node, &tx),
            }
        }
        Err::<(), _>(SimError::WatchEnded)
    };
    tokio::select! {
        r = watch => r,
        _ = worker => Err(SimError::WatchEnded),
    }
}

async fn apply(client: kube::Client, work: Work) {
    match work {
        Work::Start { pod, ip } => {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let now = jiff::Timestamp::now().to_string();
            let containers: Vec<serde_json::Value> = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .map(|c| {
                    json!({
                        "name": c.name,
                        "image": c.image,
                        "imageID": "",
                        "containerID": format!("simulated://{}-{}", pod.metadata.uid.as_deref().unwrap_or(""), c.name),
                        "ready": true,
                        "started": true,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": now}},
                    })
                })
                .collect();
            let cond = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
            let patch = json!({"status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "hostIP": ip,
                "startTime": now,
                "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"),
                               cond("ContainersReady"), cond("Ready"), cond("PodScheduled")],
                "containerStatuses": containers,
            }});
            let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
            retrying("reporting a simulated pod", &name, || {
                api.patch_status(&name, &params, &patch)
            })
            .await;
        }
        Work::Remove(pod) => {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            retrying("removing a simulated pod", &name, || api.delete(&name, &dp)).await;
        }
    }
}

/// Attempts at a pod write before it is given up (with a debug line).
const WRITE_ATTEMPTS: u32 = 6;

/// Runs `write` until it succeeds, is refused for good (a 4xx other than 429: the pod is
/// gone, or its uid changed), or has failed WRITE_ATTEMPTS times. A pod is reported once,
/// so one lost write would otherwise leave it Pending or Terminating for ever.
async fn retrying<T, F, Fut>(what: &str, pod: &str, mut write: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut pause = std::time::Duration::from_millis(100);
    for attempt in 1..=WRITE_ATTEMPTS {
        match write().await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if (400..500).contains(&s.code) && s.code != 429 => {
                tracing::debug!(pod, code = s.code, "{what}: refused");
                return;
            }
            Err(e) => {
                tracing::debug!(pod, error = %e, attempt, "{what}: failed");
                if attempt < WRITE_ATTEMPTS {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_stay_inside_the_node_cidr() {
        assert_eq!(node_cidr(0), "10.64.0.0/24");
        assert_eq!(node_cidr(257), "10.65.1.0/24");
        assert_eq!(pod_ip(257, 1), "10.65.1.3");
        assert_eq!(pod_ip(257, 500), "10.65.1.2");
    }

    fn pod(phase: &str, ready: &str, terminating: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "deletionTimestamp":
                terminating.then_some("2026-11-28T10:00:00Z")},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_resumed_node_re_readies_only_its_running_pods_marked_not_ready() {
        assert!(needs_ready_again(&pod("Running", "False", false)));
        assert!(!needs_ready_again(&pod("Running", "True", false)));
        assert!(!needs_ready_again(&pod("Running", "False", true)));
        assert!(!needs_ready_again(&pod("Succeeded", "False", false)));
        assert!(!needs_ready_again(&pod("Pending", "False", false)));
    }
}
