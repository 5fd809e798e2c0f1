//! The ReplicaSet controller: keeps `spec.replicas` active pods stamped from
//! `spec.template`, as kube-controller-manager's does.
//!
//! - Pods are claimed by selector and controller ownerReference: matching orphans are
//!   adopted, owned pods that no longer match are released.
//! - Terminating pods (deletionTimestamp) and finished pods (Succeeded/Failed) are not
//!   active: they neither count towards replicas nor get deleted.
//! - Creations go out in slow-start batches (1, 2, 4, …), at most [`BURST_REPLICAS`] per
//!   sync; a failed batch stops the sync and sets the ReplicaFailure condition.
//! - Scale-down deletes the least valuable pods first (see [`deletion_order`]).
//!
//! Pods come from the controller's reflector cache (the watch it is triggered by), not from
//! a list per sync: at a thousand replicas, listing the namespace on every pod status change
//! dominated the controller's and the API server's time. A cache may lag the controller's
//! own writes, so, as kube-controller-manager does, each sync that creates or deletes pods
//! records expectations (the uids it created, the uids it deleted); until the cache shows
//! them all (or [`EXPECTATIONS_TIMEOUT`] passes), syncs only report status and never act
//! on the stale view, which would create or delete twice.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

use crate::controller_utils::{self, controller_of, release_pod};
use crate::informers::Informers;
use crate::runner::{drive, RetryBackoff};
use events::{EventRecorder, EventType};

/// The most pods one sync creates or deletes (kube-controller-manager's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

const COMPONENT: &str = "replicaset-controller";
const REPLICA_FAILURE: &str = "ReplicaFailure";
/// A periodic resync, so that nothing is left waiting on a lost event.
const RESYNC: Duration = Duration::from_secs(300);
/// How long unmet expectations hold a ReplicaSet's syncs back (kube-controller-manager's
/// `ExpectationsTimeout`): a lost watch event must not wedge it for good.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("ReplicaSet {0} has no namespace")]
    NoNamespace(String),
    #[error("original ReplicaSet {ns}/{name} is gone: got uid {got:?}, wanted {want:?}")]
    Gone {
        ns: String,
        name: String,
        got: Option<String>,
        want: Option<String>,
    },
    #[error("{0}")]
    ManageReplicas(String),
}

struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    backoff: RetryBackoff<ReplicaSet>,
    /// The controller's ReplicaSet cache: sibling ReplicaSets (same owner) for ranking.
    replica_sets: Store<ReplicaSet>,
    /// The pod cache the syncs work from.
    pods: Store<Pod>,
    expectations: Arc<Mutex<HashMap<ObjectRef<ReplicaSet>, Expectations>>>,
}

/// What a ReplicaSet's last sync did that its pod cache has not shown yet
/// (kube-controller-manager's UID-tracking `ControllerExpectations`).
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// The ReplicaSet they belong to: a new one of the same name starts afresh.
    pub owner_uid: String,
    /// Pods created and not yet seen.
    pub creates: HashSet<String>,
    /// Pods deleted and not yet seen terminating or gone.
    pub deletes: HashSet<String>,
    pub since: Option<Instant>,
}

impl Expectations {
    /// A watch event for one of the owner's pods: `gone` for a deletion.
    pub fn observe_event(&mut self, uid: &str, terminating_or_gone: bool) {
        self.creates.remove(uid);
        if terminating_or_gone {
            self.deletes.remove(uid);
        }
    }

    /// Settles against the whole cache (`uid` → terminating), which covers events missed
    /// across a re-list: a created pod the cache holds was seen; a deleted pod it holds
    /// terminating, or no longer holds, was too.
    pub fn observe_cache(&mut self, cached: &HashMap<&str, bool>) {
        self.creates
            .retain(|uid| !cached.contains_key(uid.as_str()));
        self.deletes.retain(|uid| {
            cached
                .get(uid.as_str())
                .is_some_and(|terminating| !terminating)
        });
    }

    /// Whether a sync may act on the cache: nothing pending, or pending too long.
    pub fn satisfied(&self, now: Instant) -> bool {
        (self.creates.is_empty() && self.deletes.is_empty())
            || self
                .since
                .is_none_or(|t| now.saturating_duration_since(t) >= EXPECTATIONS_TIMEOUT)
    }
}

/// Requests in flight at once when a sync creates or deletes many pods.
const IN_FLIGHT: usize = 64;

/// Runs the controller on the controller manager's `informers` until `shutdown` completes.
pub async fn run(
    informers: Informers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let pods = informers.pod_store().await;
    let expectations: Arc<Mutex<HashMap<ObjectRef<ReplicaSet>, Expectations>>> = Arc::default();
    let ctx = Arc::new(Context {
        recorder: EventRecorder::for_component(client.clone(), COMPONENT, None),
        client: client.clone(),
        backoff: RetryBackoff::new(),
        replica_sets: store.clone(),
        pods,
        expectations: expectations.clone(),
    });
    // The informer updates the shared pod store before it hands an event on, and the
    // expectations are observed here before the event triggers a sync: by then both
    // reflect it.
    let pod_events = informers
        .pods()
        .inspect(move |ev| {
            if let Ok(ev) = ev {
                observe_pod_event(&expectations, ev);
            }
        })
        .touched_objects();
    let controller = controller.watches_stream(pod_events, move |pod: Pod| {
        replica_sets_for_pod(&store, &pod)
    });
    drive(
        "replicaset",
        controller,
        shutdown,
        reconcile,
        error_policy,
        ctx,
    )
    .await;
    Ok(())
}

/// Marks what a watch event shows of the controller's own creations and deletions.
fn observe_pod_event(
    expectations: &Mutex<HashMap<ObjectRef<ReplicaSet>, Expectations>>,
    ev: &watcher::Event<Pod>,
) {
    let (pod, deleted) = match ev {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
        watcher::Event::Delete(p) => (p, true),
        watcher::Event::Init | watcher::Event::InitDone => return,
    };
    let Some(owner) = controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet") else {
        return;
    };
    let key = ObjectRef::new(&owner.name).within(pod.metadata.namespace.as_deref().unwrap_or(""));
    let mut all = expectations.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = all.get_mut(&key).filter(|e| e.owner_uid == owner.uid) {
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        e.observe_event(uid, deleted || pod.metadata.deletion_timestamp.is_some());
    }
}

/// The ReplicaSets a pod's change concerns: its controller if it has one, else every
/// ReplicaSet of its namespace whose selector matches it (a candidate for adoption).
fn replica_sets_for_pod(store: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    controller_utils::controllers_of_pod(store, pod, |rs| {
        rs.spec
            .as_ref()
            .is_some_and(|s| selector_matches(&s.selector, pod.metadata.labels.as_ref()))
    })
}

fn error_policy(rs: Arc<ReplicaSet>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.backoff.failed(&rs, err)
}

pub use crate::runner::retry_backoff;

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = rs.name_any();
    let ns = rs
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let key = ObjectRef::from_obj(&*rs);
    let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
    let siblings = sibling_uids(&rs, &ctx.replica_sets.state());
    let selector = rs.spec.as_ref().map(|s| &s.selector);
    // One pass over the cache: settle the expectations, and keep (cloned) only the active
    // pods this sync can concern: its own, its siblings', and orphans it may adopt.
    let mut cached: HashMap<&str, bool> = HashMap::new();
    let cache = ctx.pods.state();
    let mut active: Vec<Pod> = Vec::new();
    for pod in cache
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
    {
        let owner = controller_of(&pod.metadata);
        if owner.is_some_and(|o| o.uid == rs_uid) {
            cached.insert(
                pod.metadata.uid.as_deref().unwrap_or(""),
                pod.metadata.deletion_timestamp.is_some(),
            );
        }
        let relevant = match owner {
            Some(o) => o.uid == rs_uid || siblings.contains(&o.uid),
            None => selector.is_some_and(|s| selector_matches(s, pod.metadata.labels.as_ref())),
        };
        if relevant && is_pod_active(pod) {
            active.push(Pod::clone(pod));
        }
    }
    let may_act = {
        let mut all = ctx.expectations.lock().unwrap_or_else(|p| p.into_inner());
        match all.get_mut(&key) {
            Some(e) if e.owner_uid == rs_uid => {
                e.observe_cache(&cached);
                let ok = e.satisfied(Instant::now());
                if ok {
                    all.remove(&key);
                }
                ok
            }
            Some(_) => {
                all.remove(&key);
                true
            }
            None => true,
        }
    };
    drop(cached);
    let siblings_pods: Vec<Pod> = active
        .iter()
        .filter(|p| controller_of(&p.metadata).is_some_and(|r| siblings.contains(&r.uid)))
        .cloned()
        .collect();
    let owned = claim_pods(&ctx, &rs, &pods_api, active).await?;

    let manage = if rs.metadata.deletion_timestamp.is_none() && may_act {
        let related: Vec<&Pod> = owned.iter().chain(&siblings_pods).collect();
        let (done, result) = manage_replicas(&ctx, &rs, &pods_api, &owned, &related).await;
        if !done.creates.is_empty() || !done.deletes.is_empty() {
            ctx.expectations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    key.clone(),
                    Expectations {
                        owner_uid: rs_uid.clone(),
                        since: Some(Instant::now()),
                        ..done
                    },
                );
        }
        result
    } else {
        Ok(())
    };
    let manage_err = manage
        .as_ref()
        .err()
        .map(|(reason, msg)| (*reason, msg.as_str()));
    let now = jiff::Timestamp::now();
    let status = calculate_status(&rs, &owned, manage_err, now);
    if !status_equal(rs.status.as_ref(), &status) {
        let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        rs_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(status_patch(&status)),
            )
            .await?;
    }
    if let Err((_, msg)) = manage {
        return Err(Error::ManageReplicas(msg));
    }
    ctx.backoff.succeeded(&rs);
    let min_ready = min_ready_seconds(&rs);
    if min_ready > 0
        && status.ready_replicas.unwrap_or(0) == status.replicas
        && status.available_replicas.unwrap_or(0) != status.replicas
    {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::requeue(RESYNC))
}

fn min_ready_seconds(rs: &ReplicaSet) -> i64 {
    rs.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .map_or(0, i64::from)
        .max(0)
}

fn desired_replicas(rs: &ReplicaSet) -> usize {
    rs.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize
}

/// Adopts matching orphans and releases owned pods that no longer match; returns the pods
/// this ReplicaSet owns afterwards.
async fn claim_pods(
    ctx: &Context,
    rs: &ReplicaSet,
    pods_api: &Api<Pod>,
    active: Vec<Pod>,
) -> Result<Vec<Pod>, Error> {
    let Some(spec) = rs.spec.as_ref() else {
        return Ok(Vec::new());
    };
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let mut owned = Vec::new();
    let mut can_adopt: Option<bool> = None;
    for pod in active {
        let matches = selector_matches(&spec.selector, pod.metadata.labels.as_ref());
        match claim_decision(rs, &pod, matches) {
            Claim::Owned => owned.push(pod),
            Claim::Ignore => {}
            Claim::Release if !deleting => {
                let uid = rs.metadata.uid.as_deref().unwrap_or_default();
                release_pod(pods_api, &pod, uid).await?;
            }
            Claim::Release => {}
            Claim::Adopt if !deleting => {
                if can_adopt.is_none() {
                    // A fresh read: never adopt for a ReplicaSet that is gone or going.
                    let rs_api: Api<ReplicaSet> = Api::namespaced(
                        ctx.client.clone(),
                        rs.metadata.namespace.as_deref().unwrap_or_default(),
                    );
                    let fresh = rs_api.get(&rs.name_any()).await?;
                    if fresh.metadata.uid != rs.metadata.uid {
                        return Err(Error::Gone {
                            ns: rs.metadata.namespace.clone().unwrap_or_default(),
                            name: rs.name_any(),
                            got: fresh.metadata.uid,
                            want: rs.metadata.uid.clone(),
                        });
                    }
                    can_adopt = Some(fresh.metadata.deletion_timestamp.is_none());
                }
                if can_adopt != Some(true) {
                    continue;
                }
                let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                refs.push(controller_ref(rs));
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
            Claim::Adopt => {}
        }
    }
    Ok(owned)
}

/// The API's refusal to create in a namespace being deleted (cause `NamespaceTerminating`).
pub fn is_namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")))
}

fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What claiming does with one active pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours and matching.
    Owned,
    /// Ours but no longer matching: remove our controller reference.
    Release,
    /// An orphan that matches: set our controller reference.
    Adopt,
    /// Another controller's, or a non-matching orphan, or terminating.
    Ignore,
}

/// Kubernetes' `ClaimObject` decision, before the "is the owner being deleted" checks.
pub fn claim_decision(rs: &ReplicaSet, pod: &Pod, selector_matches: bool) -> Claim {
    match controller_of(&pod.metadata) {
        Some(owner) if Some(&owner.uid) != rs.metadata.uid.as_ref() => Claim::Ignore,
        Some(_) if selector_matches => Claim::Owned,
        Some(_) => Claim::Release,
        None if !selector_matches || pod.metadata.deletion_timestamp.is_some() => Claim::Ignore,
        None if pod.metadata.namespace != rs.metadata.namespace => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// The controller reference a ReplicaSet puts on its pods.
pub fn controller_ref(rs: &ReplicaSet) -> OwnerReference {
    controller_utils::controller_ref(rs)
}

/// Creates or deletes pods towards `spec.replicas`: the uids created and deleted (the
/// expectations for the next sync), and on failure the ReplicaFailure reason
/// (`FailedCreate`/`FailedDelete`) and the error message.
async fn manage_replicas(
    ctx: &Context,
    rs: &ReplicaSet,
    pods_api: &Api<Pod>,
    owned: &[Pod],
    related: &[&Pod],
) -> (Expectations, Result<(), (&'static str, String)>) {
    let mut done = Expectations::default();
    let result = manage_replicas_into(ctx, rs, pods_api, owned, related, &mut done).await;
    (done, result)
}

async fn manage_replicas_into(
    ctx: &Context,
    rs: &ReplicaSet,
    pods_api: &Api<Pod>,
    owned: &[Pod],
    related: &[&Pod],
    done: &mut Expectations,
) -> Result<(), (&'static str, String)> {
    let want = desired_replicas(rs);
    if owned.len() < want {
        let count = (want - owned.len()).min(BURST_REPLICAS);
        let pod = pod_from_template(rs).map_err(|e| ("FailedCreate", e))?;
        for batch in slow_start_batches(count) {
            let results: Vec<_> = futures::stream::iter((0..batch).map(|_| {
                let api = pods_api.clone();
                let pod = pod.clone();
                async move { api.create(&PostParams::default(), &pod).await }
            }))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
            let mut first_err = None;
            for r in results {
                match r {
                    Ok(created) => {
                        if let Some(uid) = created.metadata.uid.clone() {
                            done.creates.insert(uid);
                        }
                        ctx.recorder.object_event(
                            rs_reference(rs),
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("Created pod: {}", created.name_any()),
                        )
                    }
                    // Creating in a terminating namespace is no failure: nothing more to do.
                    Err(e) if is_namespace_terminating(&e) => {}
                    Err(e) => {
                        let msg = e.to_string();
                        ctx.recorder.object_event(
                            rs_reference(rs),
                            EventType::Warning,
                            "FailedCreate",
                            format!("Error creating: {msg}"),
                        );
                        first_err.get_or_insert(msg);
                    }
                }
            }
            if let Some(msg) = first_err {
                return Err(("FailedCreate", msg));
            }
        }
    } else if owned.len() > want {
        let count = (owned.len() - want).min(BURST_REPLICAS);
        let now = jiff::Timestamp::now();
        let victims: Vec<(String, String)> = deletion_order(owned, related, now)
            .into_iter()
            .take(count)
            .map(|i| (owned[i].name_any(), owned[i].uid().unwrap_or_default()))
            .collect();
        let results: Vec<_> = futures::stream::iter(victims.into_iter().map(|(name, uid)| {
            let api = pods_api.clone();
            async move {
                let r = api.delete(&name, &DeleteParams::default()).await;
                (name, uid, ignore_not_found(r))
            }
        }))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
        let mut first_err = None;
        for (name, uid, r) in results {
            match r {
                Ok(deleted) => {
                    if deleted.is_some() {
                        done.deletes.insert(uid);
                    }
                    ctx.recorder.object_event(
                        rs_reference(rs),
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    )
                }
                Err(e) => {
                    let msg = e.to_string();
                    ctx.recorder.object_event(
                        rs_reference(rs),
                        EventType::Warning,
                        "FailedDelete",
                        format!("Error deleting: {msg}"),
                    );
                    first_err.get_or_insert(msg);
                }
            }
        }
        if let Some(msg) = first_err {
            return Err(("FailedDelete", msg));
        }
    }
    Ok(())
}

fn rs_reference(rs: &ReplicaSet) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("ReplicaSet".into()),
        name: rs.metadata.name.clone(),
        namespace: rs.metadata.namespace.clone(),
        uid: rs.metadata.uid.clone(),
        resource_version: rs.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// Batch sizes of a slow start over `count` creations: 1, 2, 4, … and the remainder.
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut remaining = count;
    let mut size = 1usize.min(remaining);
    while size > 0 {
        out.push(size);
        remaining -= size;
        size = size.saturating_mul(2).min(remaining);
    }
    out
}

/// The pod a ReplicaSet creates: its template's labels, annotations, finalizers and spec,
/// named `<rs>-<random>`, controlled by the ReplicaSet.
pub fn pod_from_template(rs: &ReplicaSet) -> Result<Pod, String> {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    if meta.labels.as_ref().is_none_or(BTreeMap::is_empty) {
        return Err("unable to create pods, no labels".into());
    }
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    })
}

pub use crate::controller_utils::{is_pod_active, is_pod_ready};

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Ready for at least `min_ready_seconds` (Kubernetes' `IsPodAvailable`).
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i64, now: jiff::Timestamp) -> bool {
    let Some(c) = ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds == 0 {
        return true;
    }
    c.last_transition_time.as_ref().is_some_and(|t| {
        t.0.checked_add(jiff::SignedDuration::from_secs(min_ready_seconds))
            .is_ok_and(|avail| avail < now)
    })
}

/// Whether `labels` satisfy a label selector (an empty selector matches everything).
pub fn selector_matches(sel: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    api::selectors::label_selector_matches(sel, labels)
}

/// The status a sync reports: counts over the owned active pods, observedGeneration, and
/// the ReplicaFailure condition set by a failed create/delete and cleared by a clean sync.
pub fn calculate_status(
    rs: &ReplicaSet,
    owned: &[Pod],
    manage_err: Option<(&str, &str)>,
    now: jiff::Timestamp,
) -> ReplicaSetStatus {
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = min_ready_seconds(rs);
    let mut fully_labeled = 0;
    let mut ready = 0;
    let mut available = 0;
    for pod in owned {
        let labels = pod.metadata.labels.as_ref();
        if template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            fully_labeled += 1;
        }
        if is_pod_ready(pod) {
            ready += 1;
            if is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
    }
    let mut conditions = rs
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match manage_err {
        Some((reason, message)) if !has_failure => conditions.push(ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(now)),
        }),
        None if has_failure => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    ReplicaSetStatus {
        replicas: owned.len() as i32,
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        ..Default::default()
    }
}

/// Equal as stored: absent counts are zero, absent conditions are none.
fn status_equal(old: Option<&ReplicaSetStatus>, new: &ReplicaSetStatus) -> bool {
    let Some(old) = old else {
        return false;
    };
    let n = |v: Option<i32>| v.unwrap_or(0);
    old.replicas == new.replicas
        && n(old.fully_labeled_replicas) == n(new.fully_labeled_replicas)
        && n(old.ready_replicas) == n(new.ready_replicas)
        && n(old.available_replicas) == n(new.available_replicas)
        && old.observed_generation == new.observed_generation
        && old.conditions.as_deref().unwrap_or_default()
            == new.conditions.as_deref().unwrap_or_default()
}

/// A merge patch that sets every field of the status, clearing absent conditions.
fn status_patch(s: &ReplicaSetStatus) -> serde_json::Value {
    json!({"status": {
        "replicas": s.replicas,
        "fullyLabeledReplicas": s.fully_labeled_replicas.unwrap_or(0),
        "readyReplicas": s.ready_replicas.unwrap_or(0),
        "availableReplicas": s.available_replicas.unwrap_or(0),
        "observedGeneration": s.observed_generation,
        "conditions": s.conditions,
    }})
}

/// Indices of `pods` from the least to the most valuable: the order scale-down deletes in
/// (Kubernetes' `ActivePodsWithRanks` with `LogarithmicScaleDown`, the rank being the
/// number of `related` pods on the same node: this ReplicaSet's and its siblings', those
/// of the same Deployment):
/// unassigned before assigned; Pending before Unknown before Running; not ready before
/// ready; more pods doubled up on the node first; for ready pods, ready more recently
/// first; more container restarts first; newer first; then by uid. Times compare by the
/// power of two of their age, so pods made in one burst are taken at random (by uid)
/// rather than strictly newest first. A sort key, so the order is total.
pub fn deletion_order(pods: &[Pod], related: &[&Pod], now: jiff::Timestamp) -> Vec<usize> {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related {
        *on_node.entry(node_name(p)).or_insert(0) += 1;
    }
    let mut idx: Vec<usize> = (0..pods.len()).collect();
    idx.sort_by_cached_key(|&i| {
        let p = &pods[i];
        let rank = on_node.get(node_name(p)).copied().unwrap_or(0);
        let ready = is_pod_ready(p);
        let ready_since = if ready {
            age_bucket(
                ready_condition(p).and_then(|c| c.last_transition_time.as_ref().map(|t| t.0)),
                now,
            )
        } else {
            0
        };
        (
            !node_name(p).is_empty(),
            phase_ordinal(p),
            ready,
            Reverse(rank),
            ready_since,
            Reverse(max_restarts(p)),
            age_bucket(p.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
            p.metadata.uid.clone().unwrap_or_default(),
        )
    });
    idx
}

/// ⌊log2(age in ns)⌋: newer sorts first; a missing time counts as newest (Kubernetes'
/// `afterOrZero`), a time not in the past as -1.
fn age_bucket(t: Option<jiff::Timestamp>, now: jiff::Timestamp) -> i64 {
    let Some(t) = t else {
        return i64::MIN;
    };
    let age = now.as_nanosecond() - t.as_nanosecond();
    if age <= 0 {
        -1
    } else {
        i64::from(127 - age.leading_zeros() as i32)
    }
}

/// The uids of the other ReplicaSets with the same controller (a Deployment's other
/// revisions); none for a ReplicaSet without a controller.
pub fn sibling_uids(rs: &ReplicaSet, all: &[Arc<ReplicaSet>]) -> Vec<String> {
    let Some(owner) = controller_of(&rs.metadata) else {
        return Vec::new();
    };
    all.iter()
        .filter(|o| {
            o.metadata.namespace == rs.metadata.namespace && o.metadata.uid != rs.metadata.uid
        })
        .filter(|o| controller_of(&o.metadata).is_some_and(|r| r.uid == owner.uid))
        .filter_map(|o| o.metadata.uid.clone())
        .collect()
}

fn node_name(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_ordinal(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn max_restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{
        ContainerStatus, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn now() -> jiff::Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    fn ago(secs: i64) -> Time {
        Time(now() - jiff::SignedDuration::from_secs(secs))
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("rs-uid".into()),
                generation: Some(4),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web"), ("tier", "front")])),
                        annotations: Some(labels(&[("a", "1")])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec::default()),
                }),
            }),
            status: None,
        }
    }

    /// A pod: `node` empty for unassigned; `ready_secs` Some(age of readiness) for ready.
    fn pod(
        name: &str,
        node: &str,
        phase: &str,
        ready_secs: Option<i64>,
        restarts: i32,
        age: i64,
    ) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(labels(&[("app", "web"), ("tier", "front")])),
                creation_timestamp: Some(ago(age)),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready_secs.is_some() {
                        "True"
                    } else {
                        "False"
                    }
                    .into(),
                    last_transition_time: ready_secs.map(ago),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    name: "c".into(),
                    restart_count: restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn order(pods: &[Pod]) -> Vec<String> {
        let related: Vec<&Pod> = pods.iter().collect();
        deletion_order(pods, &related, now())
            .into_iter()
            .map(|i| pods[i].name_any())
            .collect()
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let l = labels(&[("app", "web"), ("env", "prod")]);
        let expr = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        };
        let sel = |exprs: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(exprs),
        };
        assert!(selector_matches(&LabelSelector::default(), None));
        assert!(selector_matches(&sel(vec![]), Some(&l)));
        assert!(!selector_matches(&sel(vec![]), None));
        assert!(selector_matches(
            &sel(vec![expr("env", "In", &["prod", "qa"])]),
            Some(&l)
        ));
        assert!(!selector_matches(
            &sel(vec![expr("env", "In", &["qa"])]),
            Some(&l)
        ));
        assert!(selector_matches(
            &sel(vec![expr("env", "NotIn", &["qa"])]),
            Some(&l)
        ));
        assert!(selector_matches(
            &sel(vec![expr("zone", "NotIn", &["a"])]),
            Some(&l)
        ));
        assert!(!selector_matches(
            &sel(vec![expr("env", "NotIn", &["prod"])]),
            Some(&l)
        ));
        assert!(selector_matches(
            &sel(vec![expr("env", "Exists", &[])]),
            Some(&l)
        ));
        assert!(!selector_matches(
            &sel(vec![expr("env", "DoesNotExist", &[])]),
            Some(&l)
        ));
        assert!(!selector_matches(
            &sel(vec![expr("env", "Bogus", &[])]),
            Some(&l)
        ));
        let other = labels(&[("app", "api"), ("env", "prod")]);
        assert!(!selector_matches(&sel(vec![]), Some(&other)));
    }

    #[test]
    fn expectations_hold_syncs_back_until_the_cache_shows_the_writes() {
        let t0 = Instant::now();
        let mut e = Expectations {
            owner_uid: "rs-uid".into(),
            creates: ["c1", "c2"].map(String::from).into(),
            deletes: ["d1", "d2", "d3"].map(String::from).into(),
            since: Some(t0),
        };
        assert!(!e.satisfied(t0));
        // c1 seen by an event; d1's deletion seen as terminating.
        e.observe_event("c1", false);
        e.observe_event("d1", true);
        // An update of a pod being deleted but not yet terminating does not count.
        e.observe_event("d2", false);
        assert!(e.deletes.contains("d2"));
        // The cache holds c2 and d2 (terminating now); d3 is already gone from it.
        let cached: HashMap<&str, bool> = [("c2", false), ("d2", true)].into();
        e.observe_cache(&cached);
        assert!(e.creates.is_empty() && e.deletes.is_empty());
        assert!(e.satisfied(t0));
    }

    #[test]
    fn a_created_pod_deleted_before_the_sync_is_still_seen_and_stale_ones_expire() {
        let t0 = Instant::now();
        let mut e = Expectations {
            owner_uid: "rs-uid".into(),
            creates: ["c1"].map(String::from).into(),
            deletes: ["d1"].map(String::from).into(),
            since: Some(t0),
        };
        // The cache still holds d1 running; c1 was added and deleted in between.
        e.observe_event("c1", true);
        let cached: HashMap<&str, bool> = [("d1", false)].into();
        e.observe_cache(&cached);
        assert!(e.creates.is_empty());
        assert_eq!(e.deletes.len(), 1);
        assert!(!e.satisfied(t0 + Duration::from_secs(299)));
        // A lost event must not wedge the ReplicaSet.
        assert!(e.satisfied(t0 + EXPECTATIONS_TIMEOUT));
    }

    #[test]
    fn slow_start_doubles_batches() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(3), vec![1, 2]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
        assert_eq!(
            slow_start_batches(500),
            vec![1, 2, 4, 8, 16, 32, 64, 128, 245]
        );
        assert_eq!(slow_start_batches(500).iter().sum::<usize>(), 500);
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        assert_eq!(retry_backoff(1), Duration::from_millis(5));
        assert_eq!(retry_backoff(2), Duration::from_millis(10));
        assert_eq!(retry_backoff(5), Duration::from_millis(80));
        assert_eq!(retry_backoff(40), Duration::from_secs(1000));
        assert_eq!(retry_backoff(u32::MAX), Duration::from_secs(1000));
    }

    #[test]
    fn terminating_and_finished_pods_are_not_active() {
        let mut p = pod("a", "n1", "Running", Some(10), 0, 10);
        assert!(is_pod_active(&p));
        p.metadata.deletion_timestamp = Some(ago(1));
        assert!(!is_pod_active(&p));
        for phase in ["Succeeded", "Failed"] {
            let p = pod("b", "n1", phase, None, 0, 10);
            assert!(!is_pod_active(&p), "{phase}");
        }
        assert!(is_pod_active(&pod("c", "", "Pending", None, 0, 1)));
    }

    #[test]
    fn claiming_adopts_releases_and_leaves_others_alone() {
        let rs = rs(3, 0);
        let mut owned = pod("a", "n1", "Running", None, 0, 1);
        owned.metadata.owner_references = Some(vec![controller_ref(&rs)]);
        assert_eq!(claim_decision(&rs, &owned, true), Claim::Owned);
        assert_eq!(claim_decision(&rs, &owned, false), Claim::Release);

        let orphan = pod("b", "n1", "Running", None, 0, 1);
        assert_eq!(claim_decision(&rs, &orphan, true), Claim::Adopt);
        assert_eq!(claim_decision(&rs, &orphan, false), Claim::Ignore);
        let mut going = orphan.clone();
        going.metadata.deletion_timestamp = Some(ago(1));
        assert_eq!(claim_decision(&rs, &going, true), Claim::Ignore);
        let mut elsewhere = orphan.clone();
        elsewhere.metadata.namespace = Some("other".into());
        assert_eq!(claim_decision(&rs, &elsewhere, true), Claim::Ignore);

        // Another controller's pod is never taken, matching or not.
        let mut theirs = pod("c", "n1", "Running", None, 0, 1);
        let mut other_ref = controller_ref(&rs);
        other_ref.uid = "someone-else".into();
        theirs.metadata.owner_references = Some(vec![other_ref.clone()]);
        assert_eq!(claim_decision(&rs, &theirs, true), Claim::Ignore);
        // A non-controller owner does not stop adoption.
        other_ref.controller = None;
        theirs.metadata.owner_references = Some(vec![other_ref]);
        assert_eq!(claim_decision(&rs, &theirs, true), Claim::Adopt);
    }

    #[test]
    fn pods_come_from_the_template_controlled_by_the_replicaset() {
        let rs = rs(3, 0);
        let p = pod_from_template(&rs).unwrap();
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(p.metadata.name, None);
        assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            p.metadata.labels,
            Some(labels(&[("app", "web"), ("tier", "front")]))
        );
        assert_eq!(p.metadata.annotations, Some(labels(&[("a", "1")])));
        let refs = p.metadata.owner_references.unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].kind, "ReplicaSet");
        assert_eq!(refs[0].api_version, "apps/v1");
        assert_eq!(refs[0].uid, "rs-uid");
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(refs[0].block_owner_deletion, Some(true));

        let mut bare = rs.clone();
        bare.spec
            .as_mut()
            .unwrap()
            .template
            .as_mut()
            .unwrap()
            .metadata = None;
        assert!(pod_from_template(&bare).is_err());
    }

    #[test]
    fn scale_down_takes_the_least_valuable_first() {
        // Each criterion alone.
        let unassigned = pod("unassigned", "", "Pending", None, 0, 100);
        let pending = pod("pending", "n1", "Pending", None, 0, 100);
        let unknown = pod("unknown", "n2", "Unknown", None, 0, 100);
        let not_ready = pod("not-ready", "n3", "Running", None, 0, 100);
        let ready = pod("ready", "n4", "Running", Some(100), 0, 100);
        let pods = vec![
            ready.clone(),
            not_ready.clone(),
            unknown.clone(),
            pending.clone(),
            unassigned.clone(),
        ];
        assert_eq!(
            order(&pods),
            ["unassigned", "pending", "unknown", "not-ready", "ready"]
        );

        // Doubled-up pods go before a pod alone on its node.
        let pods = vec![
            pod("alone", "n1", "Running", Some(100), 0, 100),
            pod("double-1", "n2", "Running", Some(100), 0, 100),
            pod("double-2", "n2", "Running", Some(100), 0, 100),
        ];
        assert_eq!(order(&pods)[2], "alone");

        // Ready more recently (by power-of-two buckets) first.
        let pods = vec![
            pod("ready-long", "n1", "Running", Some(10_000), 0, 20_000),
            pod("ready-lately", "n2", "Running", Some(10), 0, 20_000),
        ];
        assert_eq!(order(&pods), ["ready-lately", "ready-long"]);

        // More restarts first, then newer first.
        let pods = vec![
            pod("calm", "n1", "Running", None, 0, 100),
            pod("crashy", "n2", "Running", None, 7, 100),
        ];
        assert_eq!(order(&pods), ["crashy", "calm"]);
        let pods = vec![
            pod("old", "n1", "Running", None, 0, 100_000),
            pod("new", "n2", "Running", None, 0, 10),
        ];
        assert_eq!(order(&pods), ["new", "old"]);

        // A missing creation time counts as newest.
        let mut no_time = pod("no-time", "n3", "Running", None, 0, 0);
        no_time.metadata.creation_timestamp = None;
        let pods = vec![pod("new", "n2", "Running", None, 0, 10), no_time];
        assert_eq!(order(&pods), ["no-time", "new"]);
    }

    #[test]
    fn siblings_pods_count_towards_doubling_up() {
        // Alone among this ReplicaSet's pods on n1 and n2, but a sibling revision's pod
        // shares n2: the n2 pod goes first.
        let pods = vec![
            pod("on-n1", "n1", "Running", Some(100), 0, 100),
            pod("on-n2", "n2", "Running", Some(100), 0, 100),
        ];
        let sibling = pod("sibling", "n2", "Running", Some(100), 0, 100);
        let related: Vec<&Pod> = pods.iter().chain([&sibling]).collect();
        let first = deletion_order(&pods, &related, now())[0];
        assert_eq!(pods[first].name_any(), "on-n2");
    }

    #[test]
    fn siblings_share_the_controller() {
        let deployment = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "d".into(),
            uid: "d-uid".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let mk = |name: &str, ns: &str, owner: Option<&OwnerReference>| {
            let mut r = rs(1, 0);
            r.metadata.name = Some(name.into());
            r.metadata.uid = Some(format!("{name}-uid"));
            r.metadata.namespace = Some(ns.into());
            r.metadata.owner_references = owner.map(|o| vec![o.clone()]);
            Arc::new(r)
        };
        let me = mk("v2", "ns", Some(&deployment));
        let all = vec![
            me.clone(),
            mk("v1", "ns", Some(&deployment)),
            mk("lone", "ns", None),
            mk("far", "other", Some(&deployment)),
        ];
        assert_eq!(sibling_uids(&me, &all), ["v1-uid"]);
        assert!(sibling_uids(&all[2], &all).is_empty());
    }

    #[test]
    fn namespace_termination_is_recognised_by_its_cause() {
        let status = |reason: &str| {
            let mut s = kube::core::Status::failure("forbidden", "Forbidden");
            s.code = 403;
            s.details = Some(kube::core::response::StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: vec![kube::core::response::StatusCause {
                    reason: reason.into(),
                    message: "namespace ns is being terminated".into(),
                    field: "metadata.namespace".into(),
                }],
                retry_after_seconds: 0,
            });
            kube::Error::Api(s.boxed())
        };
        assert!(is_namespace_terminating(&status("NamespaceTerminating")));
        assert!(!is_namespace_terminating(&status("FieldValueInvalid")));
    }

    #[test]
    fn age_buckets_are_powers_of_two() {
        let at = |secs: i64| Some(ago(secs).0);
        assert_eq!(age_bucket(None, now()), i64::MIN);
        assert_eq!(age_bucket(at(0), now()), -1);
        assert_eq!(age_bucket(at(-5), now()), -1);
        // 1 s = 1e9 ns: 2^29 ≤ 1e9 < 2^30.
        assert_eq!(age_bucket(at(1), now()), 29);
        assert_eq!(age_bucket(at(2), now()), 30);
        assert!(age_bucket(at(100), now()) < age_bucket(at(1000), now()));
    }

    #[test]
    fn status_counts_owned_pods() {
        let rs = rs(3, 0);
        let mut stray_labels = pod("c", "n3", "Running", None, 0, 5);
        stray_labels.metadata.labels = Some(labels(&[("app", "web")]));
        let pods = vec![
            pod("a", "n1", "Running", Some(30), 0, 60),
            pod("b", "n2", "Running", Some(1), 0, 60),
            stray_labels,
        ];
        let st = calculate_status(&rs, &pods, None, now());
        assert_eq!(st.replicas, 3);
        assert_eq!(st.fully_labeled_replicas, Some(2));
        assert_eq!(st.ready_replicas, Some(2));
        assert_eq!(st.available_replicas, Some(2));
        assert_eq!(st.observed_generation, Some(4));
        assert_eq!(st.conditions, None);

        // minReadySeconds: only pods ready for longer than it are available.
        let st = calculate_status(&rs_min(10), &pods, None, now());
        assert_eq!(st.ready_replicas, Some(2));
        assert_eq!(st.available_replicas, Some(1));
    }

    fn rs_min(min_ready: i32) -> ReplicaSet {
        rs(3, min_ready)
    }

    #[test]
    fn availability_needs_ready_for_min_ready_seconds() {
        let p = pod("a", "n1", "Running", Some(10), 0, 60);
        assert!(is_pod_available(&p, 0, now()));
        assert!(is_pod_available(&p, 9, now()));
        assert!(!is_pod_available(&p, 10, now()));
        assert!(!is_pod_available(&p, 30, now()));
        let not_ready = pod("b", "n1", "Running", None, 0, 60);
        assert!(!is_pod_available(&not_ready, 0, now()));
    }

    #[test]
    fn replica_failure_is_set_kept_and_cleared() {
        let mut rs = rs(3, 0);
        let st = calculate_status(&rs, &[], Some(("FailedCreate", "quota exceeded")), now());
        let conds = st.conditions.clone().unwrap();
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].type_, "ReplicaFailure");
        assert_eq!(conds[0].status, "True");
        assert_eq!(conds[0].reason.as_deref(), Some("FailedCreate"));
        assert_eq!(conds[0].message.as_deref(), Some("quota exceeded"));

        // A later failure keeps the first condition (and its transition time).
        rs.status = Some(st.clone());
        let later = now() + jiff::SignedDuration::from_secs(60);
        let again = calculate_status(&rs, &[], Some(("FailedCreate", "other")), later);
        assert_eq!(again.conditions, st.conditions);
        assert!(status_equal(rs.status.as_ref(), &again));

        // A clean sync removes it.
        let clean = calculate_status(&rs, &[], None, later);
        assert_eq!(clean.conditions, None);
        assert!(!status_equal(rs.status.as_ref(), &clean));
        let patch = status_patch(&clean);
        assert_eq!(patch["status"]["conditions"], serde_json::Value::Null);
        assert_eq!(patch["status"]["readyReplicas"], json!(0));
    }

    #[test]
    fn stored_status_without_zero_fields_equals_a_computed_one() {
        let rs = rs(0, 0);
        let computed = calculate_status(&rs, &[], None, now());
        let stored = ReplicaSetStatus {
            replicas: 0,
            observed_generation: Some(4),
            ..Default::default()
        };
        assert!(status_equal(Some(&stored), &computed));
        assert!(!status_equal(None, &computed));
        let stale = ReplicaSetStatus {
            observed_generation: Some(3),
            ..stored
        };
        assert!(!status_equal(Some(&stale), &computed));
    }

    #[test]
    fn pod_changes_map_to_their_controller_or_matching_replicasets() {
        let (reader, mut writer) = kube::runtime::reflector::store::<ReplicaSet>();
        let web = rs(3, 0);
        let mut api = rs(1, 0);
        api.metadata.name = Some("api".into());
        api.metadata.uid = Some("api-uid".into());
        api.spec.as_mut().unwrap().selector.match_labels = Some(labels(&[("app", "api")]));
        let mut elsewhere = rs(1, 0);
        elsewhere.metadata.name = Some("web2".into());
        elsewhere.metadata.namespace = Some("other".into());
        for o in [&web, &api, &elsewhere] {
            writer.apply_watcher_event(&watcher::Event::Apply(o.clone()));
        }
        let orphan = pod("a", "n1", "Running", None, 0, 1);
        let names =
            |refs: Vec<ObjectRef<ReplicaSet>>| refs.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(replica_sets_for_pod(&reader, &orphan)), ["web"]);
        let mut owned = orphan.clone();
        owned.metadata.owner_references = Some(vec![controller_ref(&api)]);
        assert_eq!(names(replica_sets_for_pod(&reader, &owned)), ["api"]);
        let mut foreign = orphan;
        foreign.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "j".into(),
            uid: "j".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        assert!(replica_sets_for_pod(&reader, &foreign).is_empty());
    }
}
