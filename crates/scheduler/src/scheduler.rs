//! The scheduler's loop: watch nodes and pods into the cache and queue, schedule pending
//! pods one cycle at a time, bind them asynchronously, and explain failures.
//!
//! Everything that touches the cache runs on one task, so cycles need no locks; bindings
//! and status writes run beside it with bounded concurrency and report back by channel.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    Binding, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::cache::Cache;
use crate::framework::{Framework, PodInfo};
use crate::plugins::volume_binding::{self, VolumeCache};
use crate::preemption;
use crate::queue::SchedulingQueue;
use events::{EventRecorder, EventType};

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods whose spec.schedulerName is this are ours.
    pub name: String,
    /// Bindings in flight at once.
    pub bind_concurrency: usize,
    /// Cycles run between looks at the watch streams.
    pub batch: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            name: "default-scheduler".into(),
            bind_concurrency: 64,
            batch: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("watch stream ended")]
    StreamEnded,
}

/// Events buffered between a watch's decoding task and the scheduling loop.
const WATCH_BUFFER: usize = 4096;

/// Runs a watch on its own task, so that decoding its events (for pods, most of the
/// scheduler's work besides the cycles) happens on another core, beside the cycles rather
/// than between them. The task ends when the returned stream is dropped.
fn decoded_apart<K>(
    watch: impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
) -> futures::stream::BoxStream<'static, Result<Event<K>, watcher::Error>>
where
    K: Send + 'static,
{
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    tokio::spawn(async move {
        let mut watch = std::pin::pin!(watch.default_backoff());
        loop {
            tokio::select! {
                ev = watch.next() => match ev {
                    Some(ev) => if tx.send(ev).await.is_err() { return },
                    None => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

/// What the side tasks report back.
enum Outcome {
    Bound { key: String, latency: Duration },
    BindFailed { key: String, error: String },
}

/// Figures for the benchmark and logs.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub scheduled: u64,
    pub failed_attempts: u64,
    /// Queue-pop to binding-acknowledged latencies, in order.
    pub latencies: Vec<Duration>,
    /// Time spent in scheduling cycles (filter, score, preemption), binding excluded.
    pub cycle_time: Duration,
}

pub struct Scheduler {
    client: kube::Client,
    config: SchedulerConfig,
    framework: Framework,
    /// Claims, volumes and classes, read by the VolumeBinding plugin.
    volumes: VolumeCache,
    cache: Cache,
    queue: SchedulingQueue,
    recorder: EventRecorder,
    priority_classes: HashMap<String, i32>,
    default_priority: i32,
    /// Last failure message written per pod, so a retry that fails the same way is quiet.
    reported: HashMap<String, String>,
    cursor: usize,
    rng: u64,
    stats: Stats,
    /// Receives the count of pods bound so far (benchmarks and tests wait on it).
    progress: Option<tokio::sync::watch::Sender<u64>>,
}

impl Scheduler {
    pub fn new(client: kube::Client, config: SchedulerConfig) -> Self {
        let recorder = EventRecorder::for_component(client.clone(), &config.name, None);
        let volumes = VolumeCache::default();
        Scheduler {
            client,
            config,
            framework: crate::plugins::default_profile_with_volumes(volumes.clone()),
            volumes,
            cache: Cache::default(),
            queue: SchedulingQueue::default(),
            recorder,
            priority_classes: HashMap::new(),
            default_priority: 0,
            reported: HashMap::new(),
            cursor: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            stats: Stats::default(),
            progress: None,
        }
    }

    /// Publishes the number of pods bound so far on `tx`.
    pub fn with_progress(mut self, tx: tokio::sync::watch::Sender<u64>) -> Self {
        self.progress = Some(tx);
        self
    }

    /// Runs until `shutdown` resolves; returns what it did.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<Stats, SchedulerError> {
        let pods = decoded_apart(watcher::watcher(
            Api::<Pod>::all(self.client.clone()),
            watcher::Config::default(),
        ));
        let nodes = decoded_apart(watcher::watcher(
            Api::<Node>::all(self.client.clone()),
            watcher::Config::default(),
        ));
        let classes = decoded_apart(watcher::watcher(
            Api::<PriorityClass>::all(self.client.clone()),
            watcher::Config::default(),
        ));
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let binds = Arc::new(Semaphore::new(self.config.bind_concurrency));
        let mut pods = pods.fuse();
        let mut nodes = nodes.fuse();
        let mut classes = classes.fuse();
        let mut claims = decoded_apart(watcher::watcher(
            Api::<PersistentVolumeClaim>::all(self.client.clone()),
            watcher::Config::default(),
        ))
        .fuse();
        let mut volumes = decoded_apart(watcher::watcher(
            Api::<PersistentVolume>::all(self.client.clone()),
            watcher::Config::default(),
        ))
        .fuse();
        let mut storage_classes = decoded_apart(watcher::watcher(
            Api::<StorageClass>::all(self.client.clone()),
            watcher::Config::default(),
        ))
        .fuse();
        let mut relist = Relists::default();
        tokio::pin!(shutdown);
        loop {
            let wake = self.queue.flush(Instant::now());
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => return Ok(self.stats),
                ev = nodes.next() => self.on_node(ev.ok_or(SchedulerError::StreamEnded)?, &mut relist),
                ev = pods.next() => self.on_pod(ev.ok_or(SchedulerError::StreamEnded)?, &mut relist),
                ev = classes.next() => self.on_priority_class(ev.ok_or(SchedulerError::StreamEnded)?),
                // A claim, volume or class that changed may make a waiting pod fit.
                ev = claims.next() => if self.volumes.on_claim(ev.ok_or(SchedulerError::StreamEnded)?) {
                    self.queue.move_all_unschedulable();
                },
                ev = volumes.next() => if self.volumes.on_volume(ev.ok_or(SchedulerError::StreamEnded)?) {
                    self.queue.move_all_unschedulable();
                },
                ev = storage_classes.next() => if self.volumes.on_class(ev.ok_or(SchedulerError::StreamEnded)?) {
                    self.queue.move_all_unschedulable();
                },
                Some(o) = outcomes.recv() => self.on_outcome(o),
                _ = sleep => {}
            }
            // Take in everything already waiting before the next batch of cycles.
            loop {
                let mut progressed = false;
                while let Some(Some(ev)) = nodes.next().now_or_never() {
                    self.on_node(ev, &mut relist);
                    progressed = true;
                }
                while let Some(Some(ev)) = pods.next().now_or_never() {
                    self.on_pod(ev, &mut relist);
                    progressed = true;
                }
                while let Ok(o) = outcomes.try_recv() {
                    self.on_outcome(o);
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            // As kube-scheduler waits for its informers: deciding on a partial view of the
            // nodes would only produce failures to retry.
            if !relist.synced() || !self.volumes.synced() {
                continue;
            }
            for _ in 0..self.config.batch {
                let Some(pod) = self.queue.pop() else {
                    break;
                };
                let t = Instant::now();
                self.schedule_one(pod, &tx, &binds);
                self.stats.cycle_time += t.elapsed();
            }
        }
    }

    fn on_priority_class(&mut self, ev: Result<Event<PriorityClass>, watcher::Error>) {
        match ev {
            Ok(Event::Apply(pc)) | Ok(Event::InitApply(pc)) => {
                let name = pc.metadata.name.clone().unwrap_or_default();
                if pc.global_default == Some(true) {
                    self.default_priority = pc.value;
                }
                self.priority_classes.insert(name, pc.value);
                self.queue.move_all_unschedulable();
            }
            Ok(Event::Delete(pc)) => {
                self.priority_classes
                    .remove(pc.metadata.name.as_deref().unwrap_or(""));
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "priority class watch"),
        }
    }

    fn on_node(&mut self, ev: Result<Event<Node>, watcher::Error>, relist: &mut Relists) {
        match ev {
            Ok(Event::Init) => relist.nodes = Some(HashSet::new()),
            Ok(Event::InitApply(n)) => {
                if let Some(seen) = relist.nodes.as_mut() {
                    seen.insert(n.metadata.name.clone().unwrap_or_default());
                }
                self.cache.upsert_node(n);
            }
            Ok(Event::InitDone) => {
                relist.nodes_listed = true;
                if let Some(seen) = relist.nodes.take() {
                    let gone: Vec<String> = self
                        .cache
                        .nodes()
                        .iter()
                        .filter(|n| !seen.contains(&n.name))
                        .map(|n| n.name.clone())
                        .collect();
                    for n in gone {
                        self.cache.remove_node(&n);
                    }
                }
                self.queue.move_all_unschedulable();
            }
            Ok(Event::Apply(n)) => {
                self.cache.upsert_node(n);
                self.queue.move_all_unschedulable();
            }
            Ok(Event::Delete(n)) => self
                .cache
                .remove_node(n.metadata.name.as_deref().unwrap_or("")),
            Err(e) => tracing::debug!(error = %e, "node watch"),
        }
    }

    /// The pod's priority: spec.priority when the API server's admission set it, else
    /// resolved here from its PriorityClass (or the global default).
    fn resolve_priority(&self, pod: &Pod) -> i32 {
        let spec = pod.spec.as_ref();
        if let Some(p) = spec.and_then(|s| s.priority) {
            return p;
        }
        spec.and_then(|s| s.priority_class_name.as_deref())
            .and_then(|n| self.priority_classes.get(n).copied())
            .unwrap_or(self.default_priority)
    }

    fn pod_info(&self, pod: Pod) -> Arc<PodInfo> {
        let priority = self.resolve_priority(&pod);
        let mut info = PodInfo::new(Arc::new(pod));
        info.priority = priority;
        Arc::new(info)
    }

    fn on_pod(&mut self, ev: Result<Event<Pod>, watcher::Error>, relist: &mut Relists) {
        match ev {
            Ok(Event::Init) => relist.pods = Some(HashSet::new()),
            Ok(Event::InitApply(p)) => {
                let info = self.pod_info(p);
                if let Some(seen) = relist.pods.as_mut() {
                    seen.insert(info.key.clone());
                }
                self.apply_pod(info);
            }
            Ok(Event::InitDone) => {
                relist.pods_listed = true;
                if let Some(seen) = relist.pods.take() {
                    relist.known.retain(|k| {
                        let keep = seen.contains(k);
                        if !keep {
                            self.cache.remove_pod(k);
                            self.queue.delete(k);
                        }
                        keep
                    });
                    relist.known.extend(seen);
                }
            }
            Ok(Event::Apply(p)) => {
                let info = self.pod_info(p);
                relist.known.insert(info.key.clone());
                self.apply_pod(info);
            }
            Ok(Event::Delete(p)) => {
                let info = self.pod_info(p);
                relist.known.remove(&info.key);
                self.cache.remove_pod(&info.key);
                self.queue.delete(&info.key);
                self.reported.remove(&info.key);
                self.queue.move_all_unschedulable();
            }
            Err(e) => tracing::debug!(error = %e, "pod watch"),
        }
    }

    fn apply_pod(&mut self, info: Arc<PodInfo>) {
        let phase = info.pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let finished = matches!(phase, Some("Succeeded") | Some("Failed"));
        let node = info
            .spec()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        match node {
            Some(node) => {
                self.queue.done(&info.key);
                if finished {
                    self.cache.remove_pod(&info.key);
                    self.queue.move_all_unschedulable();
                } else {
                    self.cache.add_pod(info, &node);
                }
            }
            None => {
                let ours = info
                    .spec()
                    .and_then(|s| s.scheduler_name.as_deref())
                    .unwrap_or("default-scheduler")
                    == self.config.name;
                let deleting = info.pod.metadata.deletion_timestamp.is_some();
                // An assumed pod whose binding we have not seen yet stays assumed.
                if ours && !deleting && !finished && !self.cache.is_placed(&info.key) {
                    self.queue.add_or_update(info);
                } else if deleting {
                    self.queue.delete(&info.key);
                }
            }
        }
    }

    fn schedule_one(
        &mut self,
        pod: Arc<PodInfo>,
        tx: &mpsc::UnboundedSender<Outcome>,
        binds: &Arc<Semaphore>,
    ) {
        let started = Instant::now();
        // A PriorityClass seen after the pod was queued changes its priority.
        let pod = match self.resolve_priority(&pod.pod) {
            p if p != pod.priority => {
                let mut fresh = (*pod).clone();
                fresh.priority = p;
                Arc::new(fresh)
            }
            _ => pod,
        };
        let nodes = self.cache.nodes();
        match self
            .framework
            .schedule(&pod, nodes, &mut self.cursor, &mut self.rng)
        {
            Ok(result) => {
                tracing::debug!(pod = %pod.key, node = %result.node, evaluated = result.evaluated, "assumed");
                // Assumed: counted on the node now; it leaves the queue once bound.
                self.cache.add_pod(pod.clone(), &result.node);
                self.spawn_bind(pod, result.node, started, tx, binds);
            }
            Err(mut fit) => {
                tracing::debug!(pod = %pod.key, priority = pod.priority, reason = %fit.message(), "unschedulable");
                self.stats.failed_attempts += 1;
                let nodes = self.cache.nodes();
                match preemption::find_candidate(&self.framework, &pod, nodes, &fit) {
                    Ok(candidate) => {
                        tracing::debug!(pod = %pod.key, node = %candidate.node, victims = candidate.victims.len(), "preempting");
                        self.preempt(&pod, candidate);
                        fit.post_filter_message = None;
                    }
                    Err(summary) => fit.post_filter_message = Some(summary),
                }
                let message = if self.cache.node_count() == 0 {
                    "no nodes available to schedule pods".to_string()
                } else {
                    fit.message()
                };
                self.queue.unschedulable(&pod.key, Instant::now());
                self.report_unschedulable(&pod, message);
            }
        }
    }

    fn preempt(&mut self, pod: &Arc<PodInfo>, candidate: preemption::Candidate) {
        let client = self.client.clone();
        let recorder = self.recorder.clone();
        let preemptor = pod.clone();
        let node = candidate.node.clone();
        tokio::spawn(async move {
            for v in &candidate.victims {
                let api: Api<Pod> = Api::namespaced(client.clone(), &v.namespace);
                let name = v.pod.metadata.name.clone().unwrap_or_default();
                recorder.pod_event(
                    &v.pod,
                    None,
                    EventType::Normal,
                    "Preempted",
                    format!(
                        "Preempted by pod {} on node {}",
                        preemptor.pod.metadata.uid.as_deref().unwrap_or(""),
                        node
                    ),
                );
                if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                    tracing::warn!(pod = %v.key, error = %e, "evicting a preemption victim");
                }
            }
            let api: Api<Pod> = Api::namespaced(client, &preemptor.namespace);
            let patch = json!({"status": {"nominatedNodeName": node}});
            let name = preemptor.pod.metadata.name.clone().unwrap_or_default();
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(error = %e, "recording nominatedNodeName");
            }
        });
    }

    fn report_unschedulable(&mut self, pod: &PodInfo, message: String) {
        if self.reported.get(&pod.key) == Some(&message) {
            return;
        }
        self.reported.insert(pod.key.clone(), message.clone());
        self.recorder.pod_event(
            &pod.pod,
            None,
            EventType::Warning,
            "FailedScheduling",
            message.clone(),
        );
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let name = pod.pod.metadata.name.clone().unwrap_or_default();
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": jiff::Timestamp::now().to_string(),
        }]}});
        tokio::spawn(async move {
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "writing PodScheduled=False");
            }
        });
    }

    fn spawn_bind(
        &self,
        pod: Arc<PodInfo>,
        node: String,
        started: Instant,
        tx: &mpsc::UnboundedSender<Outcome>,
        binds: &Arc<Semaphore>,
    ) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let tx = tx.clone();
        let binds = binds.clone();
        // Only pods with claims get a client for VolumeBinding's pre-bind.
        let volume_client = volume_binding::has_claims(&pod.pod).then(|| self.client.clone());
        tokio::spawn(async move {
            if let Some(client) = &volume_client {
                if let Err(error) = volume_binding::pre_bind(client, &pod, &node).await {
                    let _ = tx.send(Outcome::BindFailed {
                        key: pod.key.clone(),
                        error,
                    });
                    return;
                }
            }
            let _permit = binds.acquire().await;
            let name = pod.pod.metadata.name.clone().unwrap_or_default();
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(pod.namespace.clone()),
                    uid: pod.pod.metadata.uid.clone(),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node),
                    ..Default::default()
                },
            };
            let outcome = match api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await
            {
                Ok(_) => Outcome::Bound {
                    key: pod.key.clone(),
                    latency: started.elapsed(),
                },
                Err(e) => Outcome::BindFailed {
                    key: pod.key.clone(),
                    error: e.to_string(),
                },
            };
            let _ = tx.send(outcome);
        });
    }

    fn on_outcome(&mut self, o: Outcome) {
        match o {
            Outcome::Bound { key, latency } => {
                self.stats.scheduled += 1;
                self.stats.latencies.push(latency);
                self.queue.done(&key);
                if let Some(p) = &self.progress {
                    p.send_replace(self.stats.scheduled);
                }
                self.reported.remove(&key);
            }
            Outcome::BindFailed { key, error } => {
                tracing::info!(pod = %key, %error, "binding failed; retrying");
                self.stats.failed_attempts += 1;
                self.cache.remove_pod(&key);
                self.queue.backoff(&key, Instant::now());
            }
        }
    }
}

/// Bookkeeping across a watcher's re-list, so objects gone meanwhile are forgotten.
#[derive(Default)]
struct Relists {
    nodes: Option<HashSet<String>>,
    pods: Option<HashSet<String>>,
    known: HashSet<String>,
    nodes_listed: bool,
    pods_listed: bool,
}

impl Relists {
    /// Both initial lists are in.
    fn synced(&self) -> bool {
        self.nodes_listed && self.pods_listed
    }
}
