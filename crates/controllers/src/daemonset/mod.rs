//! The DaemonSet controller: one pod per eligible node, with rolling update, as
//! kube-controller-manager's does.
//!
//! - A node is eligible when it matches the template's nodeName, nodeSelector and required
//!   node affinity, and the pod (with the daemon tolerations for not-ready, unreachable,
//!   pressured and cordoned nodes) tolerates its NoSchedule and NoExecute taints. An
//!   untolerated NoSchedule taint keeps new pods off but leaves a running one.
//! - Pods are created with the required node affinity `metadata.name In [node]` and placed
//!   by the default scheduler. Nodes without a pod get one; pods on nodes that should not
//!   run one, surplus pods and succeeded pods are deleted; failed pods are deleted (and so
//!   recreated) with a per-node back-off; pods for deleted nodes are deleted at once.
//! - Each template is a ControllerRevision (see [`crate::history`]); pods carry its
//!   `controller-revision-hash`. RollingUpdate replaces old pods within maxUnavailable (or
//!   surges up to maxSurge); OnDelete waits for old pods to be deleted. Old revisions are
//!   kept up to revisionHistoryLimit.
//! - Status counts what `kubectl get ds` and `kubectl rollout status ds` read.
//!
//! Every sync lists the namespace's pods from the API (a consistent read), so no creation
//! expectations are needed; a sync that created or deleted pods leaves the rolling update
//! to the next sync, which sees the result. Nodes, which this controller never writes, are
//! read from the informers' shared node store (a list of every node per sync cost a
//! cluster of 5,000 nodes about 10 MB of JSON); the store shows a node change before the
//! change triggers a sync, and no sync runs before the store has its first list.

pub mod logic;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::json;

use events::{EventRecorder, EventType};

use crate::controller_utils::{controller_of, controllers_of_pod, event_reference, release_pod};
use crate::history;
use crate::informers::Informers;
use crate::replicaset::{is_namespace_terminating, selector_matches, slow_start_batches};
use crate::runner::{drive, RetryBackoff};
use logic::{Eligibility, FailedPodBackoff};

const COMPONENT: &str = "daemonset-controller";
/// A periodic resync, so that nothing is left waiting on a lost event.
const RESYNC: Duration = Duration::from_secs(300);
/// The most pods one sync creates (kube-controller-manager's DaemonSet `BurstReplicas`).
pub const BURST_REPLICAS: usize = 250;
/// Requests in flight at once when a sync creates or deletes many pods.
const IN_FLIGHT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("DaemonSet {0} has no namespace")]
    NoNamespace(String),
    #[error("DaemonSet {0} has no spec")]
    NoSpec(String),
    #[error("DaemonSet {0} has a selector that cannot be listed by")]
    BadSelector(String),
    #[error("DaemonSet {0}: {1}")]
    Invalid(String, String),
    #[error("DaemonSet {0}: revision hash collision, collisionCount raised")]
    HashCollision(String),
    #[error("{0}")]
    SyncPods(String),
    #[error("serialising the pod template: {0}")]
    Json(#[from] serde_json::Error),
}

struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    /// Consecutive failed syncs per DaemonSet, for the exponential retry back-off.
    backoff: RetryBackoff<DaemonSet>,
    failed_pods: Mutex<FailedPodBackoff>,
    nodes: Store<Node>,
}

/// Runs the controller on the controller manager's `informers` until `shutdown` completes.
pub async fn run(
    informers: Informers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let ctx = Arc::new(Context {
        recorder: EventRecorder::for_component(client.clone(), COMPONENT, None),
        client: client.clone(),
        backoff: RetryBackoff::new(),
        failed_pods: Mutex::new(FailedPodBackoff::default()),
        // Only once listed: an empty store would make every daemon pod surplus.
        nodes: informers.node_store().await,
    });
    let pods_store = store.clone();
    let nodes_store = store;
    let controller = controller
        .watches_stream(informers.pods().touched_objects(), move |pod: Pod| {
            daemon_sets_for_pod(&pods_store, &pod)
        })
        .watches_stream(scheduling_relevant_nodes(&informers), move |_node: Node| {
            nodes_store
                .state()
                .iter()
                .map(|ds| ObjectRef::from_obj(&**ds))
                .collect::<Vec<_>>()
        });
    drive(
        "daemonset",
        controller,
        shutdown,
        reconcile,
        error_policy,
        ctx,
    )
    .await;
    Ok(())
}

/// Node changes that can change where daemons belong: a new or deleted node, or changed
/// labels, taints or schedulability. Heartbeats (status) are not: they would wake every
/// DaemonSet every few seconds per node.
fn scheduling_relevant_nodes(
    informers: &Informers,
) -> impl futures::Stream<Item = Result<Node, watcher::Error>> + Send + 'static {
    let mut filter = NodeChangeFilter::default();
    informers
        .nodes()
        .flat_map(move |ev| futures::stream::iter(filter.relevant(ev)))
}

/// The state behind [`scheduling_relevant_nodes`]: what each node looked like when last
/// passed on, and the nodes seen so far in a relist.
#[derive(Default)]
struct NodeChangeFilter {
    seen: HashMap<String, String>,
    relisting: Option<HashSet<String>>,
}

impl NodeChangeFilter {
    fn fingerprint(n: &Node) -> String {
        let spec = n.spec.as_ref();
        json!([
            n.metadata.labels,
            spec.and_then(|s| s.taints.as_ref()),
            spec.and_then(|s| s.unschedulable),
        ])
        .to_string()
    }

    fn relevant(
        &mut self,
        ev: Result<Event<Node>, watcher::Error>,
    ) -> Vec<Result<Node, watcher::Error>> {
        match ev {
            Ok(Event::Apply(n)) | Ok(Event::InitApply(n)) => {
                if let Some(names) = self.relisting.as_mut() {
                    names.insert(n.name_any());
                }
                let fp = Self::fingerprint(&n);
                if self.seen.insert(n.name_any(), fp.clone()) == Some(fp) {
                    return Vec::new();
                }
                vec![Ok(n)]
            }
            Ok(Event::Delete(n)) => {
                self.seen.remove(&n.name_any());
                vec![Ok(n)]
            }
            Ok(Event::Init) => {
                self.relisting = Some(HashSet::new());
                Vec::new()
            }
            Ok(Event::InitDone) => {
                // A relist after the watch was down: nodes deleted meanwhile sent no event.
                let listed = self.relisting.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .seen
                    .keys()
                    .filter(|n| !listed.contains(*n))
                    .cloned()
                    .collect();
                gone.into_iter()
                    .map(|name| {
                        self.seen.remove(&name);
                        let mut n = Node::default();
                        n.metadata.name = Some(name);
                        Ok(n)
                    })
                    .collect()
            }
            Err(e) => vec![Err(e)],
        }
    }
}

/// The DaemonSets a pod's change concerns: its controller if it has one, else every
/// DaemonSet of its namespace whose selector matches it (a candidate for adoption).
fn daemon_sets_for_pod(store: &Store<DaemonSet>, pod: &Pod) -> Vec<ObjectRef<DaemonSet>> {
    controllers_of_pod(store, pod, |ds| {
        ds.spec
            .as_ref()
            .is_some_and(|s| selector_matches(&s.selector, pod.metadata.labels.as_ref()))
    })
}

fn error_policy(ds: Arc<DaemonSet>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.backoff.failed(&ds, err)
}

fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ds.name_any();
    let ns = ds
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    // Being deleted: its pods and revisions are the garbage collector's now.
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if ds.spec.is_none() {
        return Ok(Action::await_change());
    }
    let eligible: BTreeMap<String, Eligibility> = ctx
        .nodes
        .state()
        .iter()
        .map(|n| (n.name_any(), logic::node_eligibility(&ds, n)))
        .collect();

    let (cur, old) = construct_history(&ctx, &ds, &ns).await?;
    let hash = history::revision_hash(&cur)
        .map(str::to_string)
        .unwrap_or_else(|| cur.name_any());

    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let all = pods_api.list(&ListParams::default()).await?.items;
    let owned = claim_pods(&ctx, &ds, &pods_api, all).await?;
    let now = jiff::Timestamp::now();
    let min_ready = logic::min_ready_seconds(&ds);
    let desired = eligible.values().filter(|e| e.should_run).count() as i32;
    let (max_surge, max_unavailable) =
        logic::surge_and_unavailable(&ds, desired).map_err(|e| Error::Invalid(name.clone(), e))?;
    let rolling = logic::is_rolling_update(&ds);
    let surge = rolling && max_surge > 0;

    let mut requeue = RESYNC;
    let all_by_node = logic::pods_by_node(&owned, true);
    let mut plan = logic::manage_plan(&eligible, &all_by_node, &hash, surge, min_ready, now);
    // Failed pods: delete unless the node's back-off since the last one still runs.
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let mut failed_to_delete = Vec::new();
    {
        let mut backoff = ctx.failed_pods.lock().unwrap_or_else(|p| p.into_inner());
        let instant = Instant::now();
        backoff.gc(instant);
        for (node, pod) in std::mem::take(&mut plan.failed) {
            let key = (uid.clone(), node.clone());
            if let Some(wait) = backoff.remaining(&key, instant) {
                requeue = requeue.min(wait);
                continue;
            }
            backoff.next(key, instant);
            ctx.recorder.object_event(
                event_reference(&*ds),
                EventType::Warning,
                "FailedDaemonPod",
                format!("Found failed daemon pod {ns}/{pod} on node {node}, will try to kill it"),
            );
            failed_to_delete.push(pod);
        }
    }
    plan.delete.extend(failed_to_delete);
    let changed = !plan.is_empty();
    let mut sync_err = sync_nodes(
        &ctx,
        &ds,
        &pods_api,
        &plan.create_on,
        &plan.delete,
        &plan.force_delete,
        &hash,
    )
    .await
    .err();

    // The rolling update acts on what it sees; with pods just created or deleted that is
    // stale, so it waits for the sync their events bring.
    let live_by_node = logic::pods_by_node(&owned, false);
    if !changed && sync_err.is_none() && rolling {
        let step = logic::rolling_plan(
            &eligible,
            &live_by_node,
            &hash,
            max_surge,
            max_unavailable,
            desired,
            min_ready,
            now,
        );
        sync_err = sync_nodes(
            &ctx,
            &ds,
            &pods_api,
            &step.create_on,
            &step.delete,
            &[],
            &hash,
        )
        .await
        .err();
    }

    cleanup_history(&ctx, &ds, &ns, old, &owned).await?;

    let status = logic::calculate_status(&ds, &eligible, &live_by_node, &hash, now);
    if ds.status.as_ref() != Some(&status) {
        Api::<DaemonSet>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(status_patch(&status)),
            )
            .await?;
    }
    if let Some(e) = sync_err {
        return Err(e);
    }
    ctx.backoff.succeeded(&ds);
    if min_ready > 0 && status.number_ready != status.number_available.unwrap_or(0) {
        requeue = requeue.min(Duration::from_secs(min_ready as u64));
    }
    Ok(Action::requeue(requeue))
}

fn status_patch(s: &DaemonSetStatus) -> serde_json::Value {
    json!({"status": {
        "desiredNumberScheduled": s.desired_number_scheduled,
        "currentNumberScheduled": s.current_number_scheduled,
        "numberMisscheduled": s.number_misscheduled,
        "numberReady": s.number_ready,
        "numberAvailable": s.number_available.unwrap_or(0),
        "numberUnavailable": s.number_unavailable.unwrap_or(0),
        "updatedNumberScheduled": s.updated_number_scheduled.unwrap_or(0),
        "observedGeneration": s.observed_generation,
    }})
}

/// Adopts matching orphans and releases owned pods that no longer match; returns every
/// pod this DaemonSet owns afterwards, terminating and finished ones included.
async fn claim_pods(
    ctx: &Context,
    ds: &DaemonSet,
    pods_api: &Api<Pod>,
    all: Vec<Pod>,
) -> Result<Vec<Pod>, Error> {
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(Vec::new());
    };
    let uid = ds.metadata.uid.as_deref().unwrap_or_default();
    let mut owned = Vec::new();
    let mut can_adopt: Option<bool> = None;
    for pod in all {
        let matches = selector_matches(&spec.selector, pod.metadata.labels.as_ref());
        match controller_of(&pod.metadata) {
            Some(r) if r.uid != uid => {}
            Some(_) if matches => owned.push(pod),
            Some(_) => release_pod(pods_api, &pod, uid).await?,
            None if !matches || pod.metadata.deletion_timestamp.is_some() => {}
            None => {
                if can_adopt.is_none() {
                    // A fresh read: never adopt for a DaemonSet that is gone or going.
                    let fresh = ignore_not_found(
                        Api::<DaemonSet>::namespaced(
                            ctx.client.clone(),
                            ds.metadata.namespace.as_deref().unwrap_or_default(),
                        )
                        .get(&ds.name_any())
                        .await,
                    )?;
                    can_adopt = Some(fresh.is_some_and(|f| {
                        f.metadata.uid == ds.metadata.uid && f.metadata.deletion_timestamp.is_none()
                    }));
                }
                if can_adopt != Some(true) {
                    continue;
                }
                let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                refs.push(logic::controller_ref(ds));
                let patch = json!({"metadata": {
                    "resourceVersion": pod.metadata.resource_version,
                    "ownerReferences": refs,
                }});
                if let Some(adopted) = ignore_not_found(
                    pods_api
                        .patch(
                            &pod.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await,
                )? {
                    owned.push(adopted);
                }
            }
        }
    }
    Ok(owned)
}

/// Creates a pod of revision `hash` on each of `create_on` (in slow-start batches, at most
/// [`BURST_REPLICAS`]) and deletes `delete` (and `force_delete` without grace).
async fn sync_nodes(
    ctx: &Context,
    ds: &DaemonSet,
    pods_api: &Api<Pod>,
    create_on: &[String],
    delete: &[String],
    force_delete: &[String],
    hash: &str,
) -> Result<(), Error> {
    let mut first_err: Option<String> = None;
    let to_create = &create_on[..create_on.len().min(BURST_REPLICAS)];
    let mut offset = 0;
    for batch in slow_start_batches(to_create.len()) {
        let nodes = &to_create[offset..offset + batch];
        offset += batch;
        let pods: Vec<Pod> = nodes.iter().map(|n| logic::new_pod(ds, n, hash)).collect();
        let results: Vec<_> = futures::stream::iter(pods.into_iter().map(|pod| {
            let api = pods_api.clone();
            async move { api.create(&PostParams::default(), &pod).await }
        }))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
        for r in results {
            match r {
                Ok(created) => ctx.recorder.object_event(
                    event_reference(ds),
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", created.name_any()),
                ),
                Err(e) if is_namespace_terminating(&e) => {}
                Err(e) => {
                    let msg = e.to_string();
                    ctx.recorder.object_event(
                        event_reference(ds),
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {msg}"),
                    );
                    first_err.get_or_insert(msg);
                }
            }
        }
        if first_err.is_some() {
            // Slow start: a failing batch stops the larger ones after it.
            break;
        }
    }
    let deletions = delete
        .iter()
        .map(|n| (n.clone(), DeleteParams::default()))
        .chain(force_delete.iter().map(|n| {
            (
                n.clone(),
                DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
        }))
        .collect::<Vec<_>>();
    let results: Vec<_> = futures::stream::iter(deletions.into_iter().map(|(name, dp)| {
        let api = pods_api.clone();
        async move {
            let r = ignore_not_found(api.delete(&name, &dp).await);
            (name, r)
        }
    }))
    .buffer_unordered(IN_FLIGHT)
    .collect()
    .await;
    for (name, r) in results {
        match r {
            Ok(_) => ctx.recorder.object_event(
                event_reference(ds),
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            ),
            Err(e) => {
                let msg = e.to_string();
                ctx.recorder.object_event(
                    event_reference(ds),
                    EventType::Warning,
                    "FailedDelete",
                    format!("Error deleting: {msg}"),
                );
                first_err.get_or_insert(msg);
            }
        }
    }
    match first_err {
        Some(msg) => Err(Error::SyncPods(msg)),
        None => Ok(()),
    }
}

/// The current revision (created, or renumbered to the newest, when needed) and the old
/// ones (upstream's `constructHistory`).
async fn construct_history(
    ctx: &Context,
    ds: &DaemonSet,
    ns: &str,
) -> Result<(ControllerRevision, Vec<ControllerRevision>), Error> {
    let name = ds.name_any();
    let spec = ds
        .spec
        .as_ref()
        .ok_or_else(|| Error::NoSpec(name.clone()))?;
    let selector =
        history::selector_string(&spec.selector).ok_or_else(|| Error::BadSelector(name.clone()))?;
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    adopt_orphan_revisions(ctx, ds, ns, &selector).await?;
    let revisions = history::list_revisions(ctx.client.clone(), ns, &uid, &selector).await?;
    let data = history::template_patch(&serde_json::to_value(&spec.template)?);
    let (mut current, old): (Vec<_>, Vec<_>) = revisions
        .into_iter()
        .partition(|r| r.data.as_ref().map(|d| &d.0) == Some(&data));
    let next = history::next_revision_number(&old);
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), ns);
    if current.is_empty() {
        let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let rev = history::new_revision(ds, &labels, data, next, collision_count);
        return match api.create(&PostParams::default(), &rev).await {
            Ok(created) => Ok((created, old)),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api.get(&rev.name_any()).await?;
                let ours = existing
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.controller == Some(true) && r.uid == uid);
                if ours && history::equal_revision(&existing, &rev) {
                    return Ok((existing, old));
                }
                // Same name, different template: perturb the hash and try again.
                let count = collision_count.unwrap_or(0).saturating_add(1);
                Api::<DaemonSet>::namespaced(ctx.client.clone(), ns)
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"collisionCount": count}})),
                    )
                    .await?;
                Err(Error::HashCollision(name))
            }
            Err(e) => Err(e.into()),
        };
    }
    // Several revisions with this template (a race): keep the newest, drop the rest.
    history::sort_revisions(&mut current);
    let mut cur = current.pop().ok_or_else(|| Error::NoSpec(name.clone()))?;
    for dup in current {
        ignore_not_found(api.delete(&dup.name_any(), &DeleteParams::default()).await)?;
    }
    if cur.revision < next {
        // Rolled back to an older template: it becomes the newest revision again.
        cur = api
            .patch(
                &cur.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"revision": next})),
            )
            .await?;
    }
    Ok((cur, old))
}

/// Takes over revisions matching the selector that have no controller (left by a
/// DaemonSet deleted with orphan propagation), so that a DaemonSet recreated in its place
/// keeps their history, as its pods are adopted.
async fn adopt_orphan_revisions(
    ctx: &Context,
    ds: &DaemonSet,
    ns: &str,
    selector: &str,
) -> Result<(), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), ns);
    let mut lp = ListParams::default();
    if !selector.is_empty() {
        lp = lp.labels(selector);
    }
    for rev in api.list(&lp).await?.items {
        let refs = rev.metadata.owner_references.clone().unwrap_or_default();
        if refs.iter().any(|r| r.controller == Some(true))
            || rev.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let mut refs = refs;
        refs.push(logic::controller_ref(ds));
        let patch = json!({"metadata": {
            "resourceVersion": rev.metadata.resource_version,
            "ownerReferences": refs,
        }});
        ignore_not_found(
            api.patch(
                &rev.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await,
        )?;
    }
    Ok(())
}

/// Deletes the oldest old revisions no pod runs, beyond revisionHistoryLimit. As upstream,
/// the limit counts old revisions still in use too.
async fn cleanup_history(
    ctx: &Context,
    ds: &DaemonSet,
    ns: &str,
    old: Vec<ControllerRevision>,
    owned: &[Pod],
) -> Result<(), Error> {
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .map_or(history::DEFAULT_REVISION_HISTORY_LIMIT, |l| {
            l.max(0) as usize
        });
    if old.len() <= limit {
        return Ok(());
    }
    let live: HashSet<String> = owned
        .iter()
        .filter_map(|p| {
            p.metadata
                .labels
                .as_ref()?
                .get(history::CONTROLLER_REVISION_HASH)
                .cloned()
        })
        .collect();
    let in_use = old
        .iter()
        .filter(|r| history::revision_hash(r).is_some_and(|h| live.contains(h)))
        .count();
    history::truncate_history(
        ctx.client.clone(),
        ns,
        old,
        &live,
        limit.saturating_sub(in_use),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn node(name: &str, zone: &str, status_note: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"zone": zone}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "message": status_note}]},
        }))
        .unwrap()
    }

    fn names(out: Vec<Result<Node, watcher::Error>>) -> Vec<String> {
        out.into_iter().map(|r| r.unwrap().name_any()).collect()
    }

    #[test]
    fn node_filter_passes_scheduling_changes_only() {
        let mut f = NodeChangeFilter::default();
        assert_eq!(names(f.relevant(Ok(Event::Init))), Vec::<String>::new());
        assert_eq!(
            names(f.relevant(Ok(Event::InitApply(node("a", "z1", ""))))),
            ["a"]
        );
        assert_eq!(
            names(f.relevant(Ok(Event::InitApply(node("b", "z1", ""))))),
            ["b"]
        );
        assert!(names(f.relevant(Ok(Event::InitDone))).is_empty());
        // A heartbeat changes status only.
        assert!(names(f.relevant(Ok(Event::Apply(node("a", "z1", "beat"))))).is_empty());
        assert_eq!(
            names(f.relevant(Ok(Event::Apply(node("a", "z2", ""))))),
            ["a"]
        );
        assert_eq!(
            names(f.relevant(Ok(Event::Delete(node("a", "z2", ""))))),
            ["a"]
        );
        // After a relist, nodes that vanished meanwhile are reported.
        f.relevant(Ok(Event::Apply(node("c", "z1", ""))));
        f.relevant(Ok(Event::Init));
        assert!(names(f.relevant(Ok(Event::InitApply(node("b", "z1", ""))))).is_empty());
        assert_eq!(names(f.relevant(Ok(Event::InitDone))), ["c"]);
        assert_eq!(
            names(f.relevant(Ok(Event::Apply(node("c", "z1", ""))))),
            ["c"]
        );
    }
}
