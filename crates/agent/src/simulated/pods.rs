//! The pods of simulated nodes: reported Running and Ready with an IP from the node's CIDR
//! as soon as they are bound; removed (the kubelet's final delete) once they are deleted.

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

pub async fn run(
    client: kube::Client,
    names: Arc<HashMap<String, usize>>,
    stopped: Arc<Mutex<HashSet<String>>>,
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
    // Pod IP counters per node; started pods so a resync does not report them twice.
    let mut next_ip: HashMap<String, u32> = HashMap::new();
    let mut started: HashSet<String> = HashSet::new();
    let watch = async {
        let mut stream = watcher::watcher(Api::<Pod>::all(client), watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = stream.try_next().await.transpose() {
            let pod = match ev {
                Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => p,
                Ok(Event::Delete(p)) => {
                    started.remove(p.metadata.uid.as_deref().unwrap_or(""));
                    continue;
                }
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "simulated pod watch");
                    continue;
                }
            };
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let Some(&index) = names.get(&node) else {
                continue;
            };
            if stopped.lock().is_ok_and(|s| s.contains(&node)) {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() {
                let _ = tx.send(Work::Remove(Box::new(pod)));
                continue;
            }
            let running = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Running");
            if running || !started.insert(uid) {
                continue;
            }
            let n = next_ip.entry(node).or_default();
            *n += 1;
            let ip = pod_ip(index, *n);
            let _ = tx.send(Work::Start {
                pod: Box::new(pod),
                ip,
            });
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
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "reporting a simulated pod");
            }
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
            if let Err(e) = api.delete(&name, &dp).await {
                tracing::debug!(pod = %name, error = %e, "removing a simulated pod");
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
}
