//! The garbage collector: deletes objects whose owners are gone, and carries out the
//! `Foreground` and `Orphan` deletion propagation policies.
//!
//! Kubernetes' behaviour (see "Garbage Collection" and "Owners and Dependents" in its docs):
//! - A dependent none of whose owners exists any more (404, or a different uid) is deleted
//!   in the background.
//! - An owner deleted with `propagationPolicy=Foreground` carries the `foregroundDeletion`
//!   finalizer; its dependents are deleted, and the finalizer is removed once no dependent
//!   with `blockOwnerDeletion=true` is left.
//! - An owner deleted with `propagationPolicy=Orphan` carries the `orphan` finalizer; its
//!   dependents lose their reference to it, then the finalizer is removed.
//!
//! Every served resource that can be listed, watched and deleted is watched through the
//! metadata-only API. One kube-runtime `Controller` per resource reconciles its objects;
//! a shared owner → dependents graph (built from the same watch events) wakes the
//! dependents of an object that changed or went away, and the owners of a dependent.

mod decide;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use serde_json::json;

use crate::runner::drive;

pub use decide::{decide_dependent, foreground_blockers, DependentDecision, OwnerState};

/// Finalizer of an owner being deleted in the foreground.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer of an owner whose dependents are to be orphaned.
pub const ORPHAN_FINALIZER: &str = "orphan";

type Meta = PartialObjectMeta<DynamicObject>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("discovering the served resources: {0}")]
    Discovery(#[source] kube::Error),
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("no served resource for owner kind {kind} ({api_version})")]
    UnknownKind { api_version: String, kind: String },
    #[error("the dependency graph has not finished its initial listing")]
    NotSynced,
}

/// One watched resource.
#[derive(Clone, Debug)]
struct Kind {
    ar: ApiResource,
    namespaced: bool,
}

/// An object as the graph knows it: where it is and whom it references.
#[derive(Clone, Debug)]
struct GraphNode {
    kind: usize,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    /// Deleting in the foreground (deletionTimestamp and the foregroundDeletion finalizer).
    waiting_for_dependents: bool,
}

/// Owner → dependents, from the metadata of every watched object.
#[derive(Default)]
struct Graph {
    nodes: HashMap<String, GraphNode>,
    dependents: HashMap<String, HashSet<String>>,
    /// Per kind: its initial listing is complete.
    synced: Vec<bool>,
    /// Per kind: uids seen since the watch (re)started its listing.
    relisting: Vec<Option<HashSet<String>>>,
}

impl Graph {
    fn remove(&mut self, uid: &str) -> Option<GraphNode> {
        let node = self.nodes.remove(uid)?;
        for o in &node.owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
        Some(node)
    }

    fn upsert(&mut self, uid: &str, node: GraphNode) -> Option<GraphNode> {
        let old = self.remove(uid);
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.to_string());
        }
        self.nodes.insert(uid.to_string(), node);
        old
    }

    /// The objects referencing `owner_uid`, with their reference to it.
    fn dependents_of(&self, owner_uid: &str) -> Vec<(String, &GraphNode, &OwnerReference)> {
        let Some(set) = self.dependents.get(owner_uid) else {
            return Vec::new();
        };
        set.iter()
            .filter_map(|d| {
                let n = self.nodes.get(d)?;
                let r = n.owners.iter().find(|o| o.uid == owner_uid)?;
                Some((d.clone(), n, r))
            })
            .collect()
    }

    fn all_synced(&self) -> bool {
        self.synced.iter().all(|s| *s)
    }

    fn remove_touching(&mut self, uid: &str, touched: &mut Vec<String>) {
        touched.extend(self.dependents.get(uid).into_iter().flatten().cloned());
        if let Some(old) = self.remove(uid) {
            touched.extend(old.owners.into_iter().map(|o| o.uid));
        }
    }

    /// Records a watch event of `kind`; returns the uids of the objects it concerns: the
    /// object's dependents (their owner changed or went) and its owners, old and new (a
    /// foreground-deleting owner waits for its dependents to go).
    fn apply(&mut self, kind: usize, event: &watcher::Event<Meta>) -> Vec<String> {
        let mut touched = Vec::new();
        match event {
            watcher::Event::Init => {
                self.relisting[kind] = Some(HashSet::new());
            }
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let Some(uid) = obj.metadata.uid.clone() else {
                    return touched;
                };
                if let (watcher::Event::InitApply(_), Some(seen)) =
                    (event, &mut self.relisting[kind])
                {
                    seen.insert(uid.clone());
                }
                let m = &obj.metadata;
                let node = GraphNode {
                    kind,
                    namespace: m.namespace.clone(),
                    name: m.name.clone().unwrap_or_default(),
                    owners: m.owner_references.clone().unwrap_or_default(),
                    waiting_for_dependents: m.deletion_timestamp.is_some()
                        && m.finalizers
                            .iter()
                            .flatten()
                            .any(|f| f == FOREGROUND_FINALIZER),
                };
                touched.extend(node.owners.iter().map(|o| o.uid.clone()));
                if let Some(old) = self.upsert(&uid, node) {
                    touched.extend(old.owners.into_iter().map(|o| o.uid));
                }
                touched.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
            }
            watcher::Event::Delete(obj) => {
                if let Some(uid) = &obj.metadata.uid {
                    self.remove_touching(uid, &mut touched);
                }
            }
            watcher::Event::InitDone => {
                if let Some(seen) = self.relisting[kind].take() {
                    let gone: Vec<String> = self
                        .nodes
                        .iter()
                        .filter(|(uid, n)| n.kind == kind && !seen.contains(*uid))
                        .map(|(uid, _)| uid.clone())
                        .collect();
                    for uid in gone {
                        self.remove_touching(&uid, &mut touched);
                    }
                }
                self.synced[kind] = true;
            }
        }
        touched
    }

    /// Every owner `refs` names is known and not waiting for its dependents: the object
    /// certainly has a solid owner and no dangling reference, no API call needed. (An owner
    /// that went since is followed by its Delete event, which wakes the object again.)
    /// The owner must also be where the reference can point: cluster-scoped, or in the
    /// dependent's `namespace`.
    fn owners_all_solid(&self, refs: &[OwnerReference], namespace: Option<&str>) -> bool {
        self.all_synced()
            && !refs.is_empty()
            && refs.iter().all(|r| {
                self.nodes.get(&r.uid).is_some_and(|n| {
                    !n.waiting_for_dependents
                        && (n.namespace.is_none() || n.namespace.as_deref() == namespace)
                })
            })
    }
}

struct Ctx {
    client: kube::Client,
    kinds: Vec<Kind>,
    /// (apiVersion, kind) → index into `kinds`.
    by_version_kind: HashMap<(String, String), usize>,
    /// (group, kind) → index, for references naming another version of a served kind.
    by_group_kind: HashMap<(String, String), usize>,
    graph: Mutex<Graph>,
    triggers: Vec<mpsc::UnboundedSender<ObjectRef<Meta>>>,
    recorder: events::EventRecorder,
    /// Consecutive reconcile failures per object uid, for the retry back-off.
    failures: Mutex<HashMap<String, u32>>,
}

impl Ctx {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        // A panic while holding the lock leaves a consistent-enough graph: keep going.
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn api(&self, kind: usize, namespace: Option<&str>) -> Api<DynamicObject> {
        let k = &self.kinds[kind];
        match namespace {
            Some(ns) if k.namespaced => Api::namespaced_with(self.client.clone(), ns, &k.ar),
            _ => Api::all_with(self.client.clone(), &k.ar),
        }
    }

    fn kind_of(&self, api_version: &str, kind: &str) -> Option<usize> {
        if let Some(i) = self
            .by_version_kind
            .get(&(api_version.to_string(), kind.to_string()))
        {
            return Some(*i);
        }
        let group = api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default();
        self.by_group_kind
            .get(&(group.to_string(), kind.to_string()))
            .copied()
    }

    /// Wakes the controller of the object `uid`, if the graph knows it.
    fn wake(&self, graph: &Graph, uid: &str) {
        if let Some(n) = graph.nodes.get(uid) {
            self.wake_node(n);
        }
    }

    fn wake_node(&self, n: &GraphNode) {
        let mut r = ObjectRef::<Meta>::new_with(&n.name, self.kinds[n.kind].ar.clone());
        if let Some(ns) = &n.namespace {
            r = r.within(ns);
        }
        // A closed channel means that controller stopped (shutdown): nothing to wake.
        let _ = self.triggers[n.kind].unbounded_send(r);
    }

    /// Records a watch event of `kind` in the graph and wakes whoever it concerns.
    fn observe(&self, kind: usize, event: &watcher::Event<Meta>) {
        if let watcher::Event::Delete(obj) = event {
            if let Some(uid) = &obj.metadata.uid {
                self.failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(uid);
            }
        }
        let mut g = self.graph();
        let touched = g.apply(kind, event);
        for uid in touched {
            self.wake(&g, &uid);
        }
    }
}

/// Runs the garbage collector until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let shutdown = shutdown.shared();
    // The API server may not be serving yet: retry discovery with back-off until shutdown.
    let mut delay = Duration::from_millis(200);
    let discovery = loop {
        match Discovery::new(client.clone()).run().await {
            Ok(d) => break d,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "garbage collector: discovery failed");
                tokio::select! {
                    _ = shutdown.clone() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    };
    let mut kinds = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::WATCH)
                && caps.supports_operation(verbs::DELETE)
            {
                kinds.push(Kind {
                    ar,
                    namespaced: caps.scope == Scope::Namespaced,
                });
            }
        }
    }
    let mut by_version_kind = HashMap::new();
    let mut by_group_kind = HashMap::new();
    for (i, k) in kinds.iter().enumerate() {
        by_version_kind.insert((k.ar.api_version.clone(), k.ar.kind.clone()), i);
        by_group_kind
            .entry((k.ar.group.clone(), k.ar.kind.clone()))
            .or_insert(i);
    }
    let mut triggers = Vec::with_capacity(kinds.len());
    let mut receivers = Vec::with_capacity(kinds.len());
    for _ in &kinds {
        let (tx, rx) = mpsc::unbounded();
        triggers.push(tx);
        receivers.push(rx);
    }
    let graph = Graph {
        synced: vec![false; kinds.len()],
        relisting: vec![None; kinds.len()],
        ..Graph::default()
    };
    let ctx = Arc::new(Ctx {
        recorder: events::EventRecorder::for_component(
            client.clone(),
            "garbage-collector-controller",
            None,
        ),
        client,
        kinds: kinds.clone(),
        by_version_kind,
        by_group_kind,
        graph: Mutex::new(graph),
        triggers,
        failures: Mutex::new(HashMap::new()),
    });
    tracing::info!(resources = kinds.len(), "garbage collector watching");

    let mut controllers = Vec::with_capacity(kinds.len());
    for ((i, kind), rx) in kinds.into_iter().enumerate().zip(receivers) {
        let api = Api::<Meta>::all_with(ctx.client.clone(), &kind.ar);
        let writer = reflector::store::Writer::<Meta>::new(kind.ar.clone());
        let reader = writer.as_reader();
        let observer = ctx.clone();
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .inspect(move |e| match e {
                Ok(e) => observer.observe(i, e),
                // Retried with back-off; until this kind lists, foreground and orphan
                // deletions wait (they need every dependent known).
                Err(err) => tracing::warn!(
                    resource = %observer.kinds[i].ar.plural,
                    error = %err,
                    "garbage collector watch failed"
                ),
            });
        let stream = reflector::reflector(writer, stream).applied_objects();
        let ctx = ctx.clone();
        let controller =
            Controller::for_stream_with(stream, reader, kind.ar.clone()).reconcile_on(rx);
        controllers.push(tokio::spawn(drive(
            "garbage-collector",
            controller,
            shutdown.clone(),
            move |obj, ctx| reconcile(obj, ctx, i),
            error_policy,
            ctx,
        )));
    }
    for c in controllers {
        // A panicking controller task is a bug; the others keep running until shutdown.
        if let Err(e) = c.await {
            tracing::error!(error = %e, "garbage collector controller task failed");
        }
    }
    Ok(())
}

fn error_policy(obj: Arc<Meta>, err: &Error, ctx: Arc<Ctx>) -> Action {
    if let Error::NotSynced = err {
        return Action::requeue(Duration::from_millis(500));
    }
    let uid = obj.metadata.uid.clone().unwrap_or_default();
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let n = failures.entry(uid).or_insert(0);
    *n = n.saturating_add(1);
    Action::requeue(retry_delay(*n))
}

/// Per-object exponential back-off after failures: 500ms, 1s, 2s, … up to 5 minutes.
fn retry_delay(failures: u32) -> Duration {
    let base = Duration::from_millis(500);
    let cap = Duration::from_secs(300);
    base.checked_mul(1u32 << failures.saturating_sub(1).min(16))
        .unwrap_or(cap)
        .min(cap)
}

async fn reconcile(obj: Arc<Meta>, ctx: Arc<Ctx>, kind: usize) -> Result<Action, Error> {
    let out = reconcile_inner(&obj, &ctx, kind).await;
    if out.is_ok() {
        if let Some(uid) = &obj.metadata.uid {
            ctx.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(uid);
        }
    }
    out
}

async fn reconcile_inner(obj: &Meta, ctx: &Ctx, kind: usize) -> Result<Action, Error> {
    let Some(uid) = obj.metadata.uid.clone() else {
        return Ok(Action::await_change());
    };
    let finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    if obj.metadata.deletion_timestamp.is_some() {
        if has(ORPHAN_FINALIZER) {
            orphan_dependents(ctx, obj, &uid, kind).await?;
            return Ok(Action::await_change());
        }
        if has(FOREGROUND_FINALIZER) {
            process_foreground(ctx, obj, &uid, kind).await?;
        }
        // Already on its way out: its owners no longer matter.
        return Ok(Action::await_change());
    }
    let refs = obj.metadata.owner_references.clone().unwrap_or_default();
    if refs.is_empty() {
        return Ok(Action::await_change());
    }
    attempt_to_delete(ctx, obj, &uid, kind, refs).await
}

/// What the API says about one owner of an object in `namespace` (of kind `dep_kind`).
async fn owner_state(
    ctx: &Ctx,
    dep_kind: usize,
    namespace: Option<&str>,
    r: &OwnerReference,
) -> Result<OwnerState, Error> {
    let Some(k) = ctx.kind_of(&r.api_version, &r.kind) else {
        return Err(Error::UnknownKind {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
        });
    };
    // A cluster-scoped dependent cannot have a namespaced owner: that reference is dangling.
    if ctx.kinds[k].namespaced && !ctx.kinds[dep_kind].namespaced {
        return Ok(OwnerState::Absent);
    }
    let api = ctx.api(k, namespace);
    let found = api.get_metadata_opt(&r.name).await?;
    Ok(decide::owner_state_of(
        r,
        found.as_ref().map(|m| &m.metadata),
    ))
}

async fn attempt_to_delete(
    ctx: &Ctx,
    obj: &Meta,
    uid: &str,
    kind: usize,
    refs: Vec<OwnerReference>,
) -> Result<Action, Error> {
    if ctx
        .graph()
        .owners_all_solid(&refs, obj.metadata.namespace.as_deref())
    {
        return Ok(Action::await_change());
    }
    let ns = obj.metadata.namespace.as_deref();
    let mut owners = Vec::with_capacity(refs.len());
    for r in refs {
        let state = owner_state(ctx, kind, ns, &r).await?;
        if state == OwnerState::Absent
            && ctx
                .kind_of(&r.api_version, &r.kind)
                .is_some_and(|k| ctx.kinds[k].namespaced && !ctx.kinds[kind].namespaced)
        {
            ctx.recorder.object_event(
                object_reference(ctx, kind, obj),
                events::EventType::Warning,
                "OwnerRefInvalidNamespace",
                format!(
                    "ownerRef [{}/{}, namespace: , name: {}, uid: {}] does not exist in namespace \"\"",
                    r.api_version, r.kind, r.name, r.uid
                ),
            );
        }
        owners.push((r, state));
    }
    let (has_dependents, dependent_waits) = {
        let g = ctx.graph();
        // Whether it has dependents decides the policy when an owner waits for it.
        let waiting = owners
            .iter()
            .any(|(_, s)| *s == OwnerState::WaitingForDependents);
        if waiting && !g.all_synced() {
            return Err(Error::NotSynced);
        }
        let deps = g.dependents_of(uid);
        (
            !deps.is_empty(),
            deps.iter().any(|(_, n, _)| n.waiting_for_dependents),
        )
    };
    let finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    match decide_dependent(&owners, has_dependents, &finalizers) {
        DependentDecision::Keep => {}
        DependentDecision::SetOwnerReferences(refs) => {
            tracing::debug!(%name, "garbage collector: dropping dangling owner references");
            let patch = json!({"metadata": {
                "uid": uid,
                "resourceVersion": obj.metadata.resource_version,
                "ownerReferences": refs,
            }});
            ctx.api(kind, ns)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        DependentDecision::Delete(policy) => {
            // Kubernetes' cycle breaker: deleting this object in the foreground while one of
            // its own dependents also waits for its dependents could wait forever; stop
            // blocking the owners first.
            if policy == kube::api::PropagationPolicy::Foreground && dependent_waits {
                let refs = obj.metadata.owner_references.clone().unwrap_or_default();
                if let Some(refs) = decide::unblocked(&refs) {
                    let patch = json!({"metadata": {
                        "uid": uid,
                        "resourceVersion": obj.metadata.resource_version,
                        "ownerReferences": refs,
                    }});
                    ctx.api(kind, ns)
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                }
            }
            tracing::debug!(%name, ?policy, "garbage collector: deleting a dependent whose owners are gone");
            let dp = DeleteParams {
                propagation_policy: Some(policy),
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_string()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match ctx.api(kind, ns).delete(&name, &dp).await {
                Ok(_) => {}
                // Gone already, or replaced by a new object of that name: nothing to do.
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Action::await_change())
}

/// Foreground deletion of an owner: wake its dependents (they see a waiting owner and go),
/// and once no blocking dependent is left, remove the finalizer.
async fn process_foreground(ctx: &Ctx, obj: &Meta, uid: &str, kind: usize) -> Result<(), Error> {
    let blockers = {
        let g = ctx.graph();
        if !g.all_synced() {
            return Err(Error::NotSynced);
        }
        let deps = g.dependents_of(uid);
        for (_, n, _) in &deps {
            ctx.wake_node(n);
        }
        foreground_blockers(deps.iter().map(|(_, _, r)| *r))
    };
    if blockers > 0 {
        tracing::debug!(name = ?obj.metadata.name, blockers, "foreground deletion waits for dependents");
        return Ok(());
    }
    remove_finalizer(ctx, obj, uid, kind, FOREGROUND_FINALIZER).await
}

/// Orphan deletion: drop the reference to this owner from every dependent, then let it go.
async fn orphan_dependents(ctx: &Ctx, obj: &Meta, uid: &str, kind: usize) -> Result<(), Error> {
    let deps: Vec<GraphNode> = {
        let g = ctx.graph();
        if !g.all_synced() {
            return Err(Error::NotSynced);
        }
        g.dependents_of(uid)
            .into_iter()
            .map(|(_, n, _)| n.clone())
            .collect()
    };
    for d in deps {
        let api = ctx.api(d.kind, d.namespace.as_deref());
        let Some(current) = api.get_metadata_opt(&d.name).await? else {
            continue;
        };
        let refs = current
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default();
        let Some(kept) = decide::without_owner(&refs, uid) else {
            continue;
        };
        let patch = json!({"metadata": {
            "uid": current.metadata.uid,
            "resourceVersion": current.metadata.resource_version,
            "ownerReferences": kept,
        }});
        match api
            .patch(&d.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    remove_finalizer(ctx, obj, uid, kind, ORPHAN_FINALIZER).await
}

async fn remove_finalizer(
    ctx: &Ctx,
    obj: &Meta,
    uid: &str,
    kind: usize,
    finalizer: &str,
) -> Result<(), Error> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let api = ctx.api(kind, obj.metadata.namespace.as_deref());
    let Some(current) = api.get_metadata_opt(&name).await? else {
        return Ok(());
    };
    if current.metadata.uid.as_deref() != Some(uid) {
        return Ok(());
    }
    let finalizers = current.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
    let patch = json!({"metadata": {
        "uid": uid,
        "resourceVersion": current.metadata.resource_version,
        "finalizers": kept,
    }});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn object_reference(ctx: &Ctx, kind: usize, obj: &Meta) -> ObjectReference {
    let ar = &ctx.kinds[kind].ar;
    ObjectReference {
        api_version: Some(ar.api_version.clone()),
        kind: Some(ar.kind.clone()),
        name: obj.metadata.name.clone(),
        namespace: obj.metadata.namespace.clone(),
        uid: obj.metadata.uid.clone(),
        resource_version: obj.metadata.resource_version.clone(),
        field_path: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn graph(kinds: usize) -> Graph {
        Graph {
            synced: vec![false; kinds],
            relisting: vec![None; kinds],
            ..Graph::default()
        }
    }

    fn obj(uid: &str, owners: &[(&str, bool)]) -> Meta {
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(format!("n-{uid}")),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                owner_references: Some(
                    owners
                        .iter()
                        .map(|(o, block)| OwnerReference {
                            api_version: "v1".into(),
                            kind: "ConfigMap".into(),
                            name: format!("n-{o}"),
                            uid: o.to_string(),
                            block_owner_deletion: Some(*block),
                            controller: None,
                        })
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            _phantom: std::marker::PhantomData,
        }
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn retries_back_off_exponentially_to_a_cap() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_secs(1));
        assert_eq!(retry_delay(4), Duration::from_secs(4));
        assert_eq!(retry_delay(20), Duration::from_secs(300));
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn events_wake_owners_and_dependents() {
        let mut g = graph(1);
        g.apply(0, &watcher::Event::Init);
        assert!(g
            .apply(0, &watcher::Event::InitApply(obj("a", &[])))
            .is_empty());
        // A new dependent wakes its owner.
        assert_eq!(
            g.apply(0, &watcher::Event::InitApply(obj("b", &[("a", true)]))),
            ["a"]
        );
        g.apply(0, &watcher::Event::InitDone);
        assert!(g.all_synced());
        // A change of the owner wakes its dependents.
        assert_eq!(g.apply(0, &watcher::Event::Apply(obj("a", &[]))), ["b"]);
        // Moving the dependent to another owner wakes both owners.
        assert_eq!(
            sorted(g.apply(0, &watcher::Event::Apply(obj("b", &[("c", false)])))),
            ["a", "c"]
        );
        assert!(g.dependents_of("a").is_empty());
        assert_eq!(g.dependents_of("c").len(), 1);
        assert_eq!(
            foreground_blockers(g.dependents_of("c").iter().map(|d| d.2)),
            0
        );
        // Its deletion wakes its owner; the owner's deletion wakes nothing left.
        assert_eq!(
            g.apply(0, &watcher::Event::Delete(obj("b", &[("c", false)]))),
            ["c"]
        );
        assert!(g.dependents.is_empty());
        assert!(g
            .apply(0, &watcher::Event::Delete(obj("a", &[])))
            .is_empty());
        assert!(g.nodes.is_empty());
    }

    #[test]
    fn a_relist_drops_objects_deleted_while_the_watch_was_down() {
        let mut g = graph(2);
        for e in [
            watcher::Event::Init,
            watcher::Event::InitApply(obj("owner", &[])),
            watcher::Event::InitApply(obj("dep", &[("owner", true)])),
            watcher::Event::InitDone,
        ] {
            g.apply(0, &e);
        }
        assert!(!g.all_synced(), "the second kind has not listed yet");
        g.apply(1, &watcher::Event::Init);
        g.apply(1, &watcher::Event::InitDone);
        assert!(g.all_synced());
        // The watch restarts; the owner is not listed again: it went, its dependent wakes.
        g.apply(0, &watcher::Event::Init);
        g.apply(
            0,
            &watcher::Event::InitApply(obj("dep", &[("owner", true)])),
        );
        assert_eq!(g.apply(0, &watcher::Event::InitDone), ["dep"]);
        assert!(!g.nodes.contains_key("owner"));
        assert!(g.nodes.contains_key("dep"));
    }

    #[test]
    fn owners_all_solid_needs_a_synced_graph_and_no_foreground_deletion() {
        let mut g = graph(1);
        let refs = obj("d", &[("a", false)])
            .metadata
            .owner_references
            .unwrap_or_default();
        g.apply(0, &watcher::Event::Init);
        g.apply(0, &watcher::Event::InitApply(obj("a", &[])));
        assert!(!g.owners_all_solid(&refs, Some("ns")), "not synced yet");
        g.apply(0, &watcher::Event::InitDone);
        assert!(g.owners_all_solid(&refs, Some("ns")));
        assert!(!g.owners_all_solid(&[], Some("ns")));
        // A namespaced owner cannot own across namespaces, nor a cluster-scoped object.
        assert!(!g.owners_all_solid(&refs, Some("elsewhere")));
        assert!(!g.owners_all_solid(&refs, None));
        let mut deleting = obj("a", &[]);
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        deleting.metadata.finalizers = Some(vec![FOREGROUND_FINALIZER.into()]);
        g.apply(0, &watcher::Event::Apply(deleting));
        assert!(!g.owners_all_solid(&refs, Some("ns")));
        g.apply(0, &watcher::Event::Delete(obj("a", &[])));
        assert!(
            !g.owners_all_solid(&refs, Some("ns")),
            "an unknown owner needs a look"
        );
    }
}
