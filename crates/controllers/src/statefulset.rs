//! The StatefulSet controller: ordered start and stop, stable names, volumeClaimTemplates,
//! as kube-controller-manager's.
//!
//! - Pods are `<set>-<ordinal>` for ordinals `[start, start + replicas)`, with hostname =
//!   name, subdomain = `serviceName`, the `statefulset.kubernetes.io/pod-name`,
//!   `apps.kubernetes.io/pod-index` and `controller-revision-hash` labels.
//! - Each pod's claims `<template>-<set>-<ordinal>` are created before it and never
//!   deleted by this controller: under the default Retain policy a recreated pod finds the
//!   same claim (and data); `persistentVolumeClaimRetentionPolicy` Delete hands them to the
//!   garbage collector through owner references (to the set, or to a scaled-down pod).
//!   Nothing waits for a claim to be bound: binding is the volume controller's and the
//!   scheduler's business.
//! - OrderedReady creates one pod at a time, each once its predecessor is Running, Ready and
//!   available, and scales down from the highest ordinal, one at a time, once all lower pods
//!   are healthy; Parallel does both at once. A Failed pod is deleted and recreated.
//! - Templates are recorded as ControllerRevisions ([`crate::history`]); RollingUpdate
//!   replaces pods not at the update revision from the highest ordinal down to the
//!   partition, one at a time, each after the previous is Ready; OnDelete only gives new
//!   pods the new template. `maxUnavailable` is not honoured: upstream gates it behind the
//!   alpha `MaxUnavailableStatefulSet` feature, off by default, so it updates one pod at a
//!   time as here.
//!
//! Each sync lists the namespace's pods (and claims) from the API, claims the pods,
//! computes a [`logic::plan`] and carries it out, then writes the status `kubectl rollout
//! status sts/x` reads.

pub mod logic;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

use events::{EventRecorder, EventType};
use logic::{DeleteReason, Plan, Revisions, Step, UpdateRevision};

use crate::controller_utils::{controller_of, controllers_of_pod, event_reference};
use crate::history;
use crate::informers::Informers;
use crate::replicaset::{is_namespace_terminating, selector_matches};
use crate::runner::{drive, RetryBackoff};

const COMPONENT: &str = "statefulset-controller";
/// A periodic resync, so that nothing is left waiting on a lost event.
const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("StatefulSet {0} has no namespace")]
    NoNamespace(String),
    #[error("StatefulSet {0} has no spec")]
    NoSpec(String),
    #[error("original StatefulSet {0} is gone or being deleted")]
    Gone(String),
    #[error("hash collision for revision {0}: collisionCount raised")]
    Collision(String),
    #[error("revision {0} holds no pod template")]
    BadRevision(String),
}

struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    /// Consecutive failed syncs per StatefulSet, for the retry back-off.
    backoff: RetryBackoff<StatefulSet>,
}

/// Runs the controller on the controller manager's `informers` until `shutdown` completes.
pub async fn run(
    informers: Informers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let controller = Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let ctx = Arc::new(Context {
        recorder: EventRecorder::for_component(client.clone(), COMPONENT, None),
        client: client.clone(),
        backoff: RetryBackoff::new(),
    });
    let controller = controller
        .watches_stream(informers.pods().touched_objects(), move |pod: Pod| {
            sets_for_pod(&store, &pod)
        });
    drive(
        "statefulset",
        controller,
        shutdown,
        reconcile,
        error_policy,
        ctx,
    )
    .await;
    Ok(())
}

/// The StatefulSets a pod's change concerns: its controller, or (an orphan) every set of
/// its namespace that would adopt it.
fn sets_for_pod(store: &Store<StatefulSet>, pod: &Pod) -> Vec<ObjectRef<StatefulSet>> {
    controllers_of_pod(store, pod, |s| {
        logic::is_member(s, pod) && set_selects(s, pod)
    })
}

fn set_selects(set: &StatefulSet, pod: &Pod) -> bool {
    set.spec
        .as_ref()
        .is_some_and(|s| selector_matches(&s.selector, pod.metadata.labels.as_ref()))
}

fn error_policy(set: Arc<StatefulSet>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.backoff.failed(&set, err)
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let action = Sync::new(&ctx, &set)?.run().await?;
    ctx.backoff.succeeded(&set);
    Ok(action)
}

/// One sync of one StatefulSet.
struct Sync<'a> {
    ctx: &'a Context,
    set: &'a StatefulSet,
    ns: String,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
    revisions: Api<ControllerRevision>,
}

impl<'a> Sync<'a> {
    fn new(ctx: &'a Context, set: &'a StatefulSet) -> Result<Self, Error> {
        let ns = set
            .metadata
            .namespace
            .clone()
            .ok_or_else(|| Error::NoNamespace(set.name_any()))?;
        if set.spec.is_none() {
            return Err(Error::NoSpec(set.name_any()));
        }
        Ok(Sync {
            ctx,
            set,
            pods: Api::namespaced(ctx.client.clone(), &ns),
            claims: Api::namespaced(ctx.client.clone(), &ns),
            revisions: Api::namespaced(ctx.client.clone(), &ns),
            ns,
        })
    }

    fn event(&self, type_: EventType, reason: &str, message: String) {
        self.ctx
            .recorder
            .object_event(event_reference(self.set), type_, reason, message);
    }

    async fn run(&self) -> Result<Action, Error> {
        let revisions = self.claim_revisions().await?;
        let pods = self.claim_pods().await?;
        let collision_count = self
            .set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let (current, update) = self.current_and_update(&revisions, collision_count).await?;
        let revs = Revisions {
            current_template: logic::template_of(&current)
                .ok_or_else(|| Error::BadRevision(current.name_any()))?,
            current: current.name_any(),
            update_template: logic::template_of(&update)
                .ok_or_else(|| Error::BadRevision(update.name_any()))?,
            update: update.name_any(),
        };
        let claims = if logic::claims_for(self.set, 0).is_empty() {
            Vec::new()
        } else {
            self.claims.list(&ListParams::default()).await?.items
        };
        let now = jiff::Timestamp::now();
        let plan = logic::plan(self.set, &pods, &claims, &revs, now);
        if let Some(why) = &plan.waiting {
            tracing::debug!(statefulset = %self.key(), waiting_for = %why, steps = plan.steps.len(), "sync");
        }
        let outcome = self.execute(&plan).await;

        let status = logic::compute_status(self.set, &pods, &revs, collision_count, now);
        self.write_status(&status).await?;
        outcome?;

        let mut live: HashSet<String> = HashSet::from([revs.current.clone(), revs.update.clone()]);
        live.extend(
            pods.iter()
                .filter_map(|p| logic::pod_revision(p).map(str::to_string)),
        );
        self.truncate_history(&revisions, &current, &update, &live)
            .await?;

        let min_ready = logic::min_ready_seconds(self.set);
        let requeue = if min_ready > 0
            && status.available_replicas.unwrap_or(0) != logic::replicas(self.set)
        {
            Some(
                plan.requeue_after
                    .unwrap_or(Duration::from_secs(min_ready as u64)),
            )
        } else {
            plan.requeue_after
        };
        Ok(Action::requeue(requeue.unwrap_or(RESYNC)))
    }

    fn key(&self) -> String {
        format!("{}/{}", self.ns, self.set.name_any())
    }

    /// Fails when the set is gone or going: nothing may be adopted for it then.
    async fn check_can_adopt(&self) -> Result<(), Error> {
        let api: Api<StatefulSet> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let fresh = api.get(&self.set.name_any()).await?;
        if fresh.metadata.uid != self.set.metadata.uid
            || fresh.metadata.deletion_timestamp.is_some()
        {
            return Err(Error::Gone(self.key()));
        }
        Ok(())
    }

    /// The pods this set owns, after adopting matching orphans named as its members and
    /// releasing owned pods it no longer selects. Terminating pods count: their names are
    /// taken until they are gone.
    async fn claim_pods(&self) -> Result<Vec<Pod>, Error> {
        let uid = self.set.metadata.uid.clone().unwrap_or_default();
        let deleting = self.set.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        let mut adoption_checked = false;
        for pod in self.pods.list(&ListParams::default()).await?.items {
            let matches = logic::is_member(self.set, &pod) && set_selects(self.set, &pod);
            match controller_of(&pod.metadata) {
                Some(r) if r.uid != uid => {}
                Some(_) if matches => owned.push(pod),
                Some(_) if !deleting => {
                    let refs: Vec<&OwnerReference> = pod
                        .owner_references()
                        .iter()
                        .filter(|r| r.uid != uid)
                        .collect();
                    self.patch_pod_owners(&pod, json!(refs)).await?;
                }
                Some(_) => {}
                None if matches && !deleting && pod.metadata.deletion_timestamp.is_none() => {
                    if !adoption_checked {
                        self.check_can_adopt().await?;
                        adoption_checked = true;
                    }
                    let mut refs = pod.owner_references().to_vec();
                    refs.push(logic::controller_ref(self.set));
                    if let Some(adopted) = self.patch_pod_owners(&pod, json!(refs)).await? {
                        owned.push(adopted);
                    }
                }
                None => {}
            }
        }
        Ok(owned)
    }

    async fn patch_pod_owners(
        &self,
        pod: &Pod,
        refs: serde_json::Value,
    ) -> Result<Option<Pod>, Error> {
        let patch = json!({"metadata": {
            "resourceVersion": pod.metadata.resource_version,
            "ownerReferences": refs,
        }});
        ignore_not_found(
            self.pods
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await,
        )
    }

    /// The set's revisions, oldest first, adopting orphans its selector matches.
    async fn claim_revisions(&self) -> Result<Vec<ControllerRevision>, Error> {
        let uid = self.set.metadata.uid.clone().unwrap_or_default();
        let selector = self
            .set
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let mut owned = Vec::new();
        let mut adoption_checked = false;
        for rev in self.revisions.list(&ListParams::default()).await?.items {
            let matches = selector_matches(&selector, rev.metadata.labels.as_ref());
            match controller_of(&rev.metadata) {
                Some(r) if r.uid == uid && matches => owned.push(rev),
                None if matches && self.set.metadata.deletion_timestamp.is_none() => {
                    if !adoption_checked {
                        self.check_can_adopt().await?;
                        adoption_checked = true;
                    }
                    let mut refs = rev.owner_references().to_vec();
                    refs.push(logic::controller_ref(self.set));
                    let patch = json!({"metadata": {
                        "resourceVersion": rev.metadata.resource_version,
                        "ownerReferences": refs,
                    }});
                    if let Some(adopted) = ignore_not_found(
                        self.revisions
                            .patch(
                                &rev.name_any(),
                                &PatchParams::default(),
                                &Patch::Merge(&patch),
                            )
                            .await,
                    )? {
                        owned.push(adopted);
                    }
                }
                _ => {}
            }
        }
        history::sort_revisions(&mut owned);
        Ok(owned)
    }

    /// The current revision (`status.currentRevision`, or the update revision for a new
    /// set) and the update revision (the set's template now), creating or renumbering the
    /// latter as upstream's `getStatefulSetRevisions`.
    async fn current_and_update(
        &self,
        revisions: &[ControllerRevision],
        collision_count: i32,
    ) -> Result<(ControllerRevision, ControllerRevision), Error> {
        let labels = self
            .set
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let mut candidate = history::new_revision(
            self.set,
            &labels,
            logic::revision_data(self.set),
            history::next_revision_number(revisions),
            Some(collision_count),
        );
        // Unlike a DaemonSet's, a StatefulSet's revisions carry none of its annotations
        // (upstream's `history.NewControllerRevision`).
        candidate.metadata.annotations = None;
        let update = match logic::choose_update_revision(revisions, &candidate) {
            UpdateRevision::Latest(i) => revisions[i].clone(),
            UpdateRevision::Renumber(i) => {
                let patch = json!({"revision": candidate.revision});
                self.revisions
                    .patch(
                        &revisions[i].name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?
            }
            UpdateRevision::Create => self.create_revision(candidate, collision_count).await?,
        };
        let current_name = self
            .set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone());
        let current = revisions
            .iter()
            .find(|r| r.metadata.name.is_some() && r.metadata.name == current_name)
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((current, update))
    }

    /// Creates a revision; a different revision under the same name is a hash collision,
    /// counted in `status.collisionCount` so the next sync hashes differently.
    async fn create_revision(
        &self,
        candidate: ControllerRevision,
        collision_count: i32,
    ) -> Result<ControllerRevision, Error> {
        match self
            .revisions
            .create(&PostParams::default(), &candidate)
            .await
        {
            Ok(created) => Ok(created),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let name = candidate.name_any();
                let existing = self.revisions.get(&name).await?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.set.metadata.uid.as_ref());
                if ours && history::equal_revision(&existing, &candidate) {
                    return Ok(existing);
                }
                let api: Api<StatefulSet> = Api::namespaced(self.ctx.client.clone(), &self.ns);
                let patch =
                    json!({"status": {"collisionCount": collision_count.saturating_add(1)}});
                api.patch_status(
                    &self.set.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                Err(Error::Collision(name))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the oldest revisions beyond `revisionHistoryLimit` that neither the
    /// current nor the update revision nor any pod uses.
    async fn truncate_history(
        &self,
        revisions: &[ControllerRevision],
        current: &ControllerRevision,
        update: &ControllerRevision,
        live_names: &HashSet<String>,
    ) -> Result<(), Error> {
        let live_hashes: HashSet<String> = revisions
            .iter()
            .chain([current, update])
            .filter(|r| live_names.contains(&r.name_any()))
            .filter_map(|r| history::revision_hash(r).map(str::to_string))
            .collect();
        let old: Vec<ControllerRevision> = revisions
            .iter()
            .filter(|r| r.metadata.name != update.metadata.name)
            .cloned()
            .collect();
        history::truncate_history(
            self.ctx.client.clone(),
            &self.ns,
            old,
            &live_hashes,
            logic::revision_history_limit(self.set),
        )
        .await?;
        Ok(())
    }

    /// Carries the plan out in order. OrderedReady stops at the first step that fails; a
    /// pod that cannot be created because its predecessor of the same name is still going
    /// ends the sync quietly (its deletion will wake the set again).
    async fn execute(&self, plan: &Plan) -> Result<(), Error> {
        let mut first_err: Option<Error> = None;
        for step in &plan.steps {
            match self.step(step).await {
                Ok(true) => {}
                Ok(false) => {
                    if plan.monotonic {
                        break;
                    }
                }
                Err(e) => {
                    if plan.monotonic {
                        return Err(e);
                    }
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// One step: Ok(false) when it could not be done yet.
    async fn step(&self, step: &Step) -> Result<bool, Error> {
        let set_name = self.set.name_any();
        match step {
            Step::CreatePod { pod, claims } => {
                let pod_name = pod.name_any();
                self.create_claims(&pod_name, claims).await?;
                match self.pods.create(&PostParams::default(), pod).await {
                    Ok(_) => {
                        self.event(
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                        );
                        Ok(true)
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) if is_namespace_terminating(&e) => Ok(false),
                    Err(e) => {
                        self.event(
                            EventType::Warning,
                            "FailedCreate",
                            format!(
                                "create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                            ),
                        );
                        Err(e.into())
                    }
                }
            }
            Step::CreateClaims { pod, claims } => {
                self.create_claims(pod, claims).await?;
                Ok(true)
            }
            Step::DeletePod { name, reason } => {
                match reason {
                    DeleteReason::Failed => self.event(
                        EventType::Warning,
                        "RecreatingFailedPod",
                        format!("StatefulSet {} is recreating failed Pod {name}", self.key()),
                    ),
                    DeleteReason::Succeeded => self.event(
                        EventType::Normal,
                        "RecreatingTerminatedPod",
                        format!(
                            "StatefulSet {} is recreating terminated Pod {name}",
                            self.key()
                        ),
                    ),
                    DeleteReason::ScaleDown | DeleteReason::Update => {}
                }
                match ignore_not_found(self.pods.delete(name, &DeleteParams::default()).await) {
                    Ok(_) => {
                        self.event(
                            EventType::Normal,
                            "SuccessfulDelete",
                            format!("delete Pod {name} in StatefulSet {set_name} successful"),
                        );
                        Ok(true)
                    }
                    Err(e) => {
                        self.event(
                            EventType::Warning,
                            "FailedDelete",
                            format!(
                                "delete Pod {name} in StatefulSet {set_name} failed error: {e}"
                            ),
                        );
                        Err(e)
                    }
                }
            }
            Step::FixIdentity { name, labels } => {
                let patch = json!({"metadata": {"labels": labels}});
                ignore_not_found(
                    self.pods
                        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await,
                )?;
                Ok(true)
            }
            Step::SetClaimOwners {
                claim,
                resource_version,
                owners,
            } => {
                let patch = json!({"metadata": {
                    "resourceVersion": resource_version,
                    "ownerReferences": owners,
                }});
                ignore_not_found(
                    self.claims
                        .patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                        .await,
                )?;
                Ok(true)
            }
        }
    }

    /// Creates claims that do not exist yet; one created meanwhile is as good.
    async fn create_claims(
        &self,
        pod: &str,
        claims: &[PersistentVolumeClaim],
    ) -> Result<(), Error> {
        let set_name = self.set.name_any();
        for claim in claims {
            let name = claim.name_any();
            match self.claims.create(&PostParams::default(), claim).await {
                Ok(_) => self.event(
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("create Claim {name} Pod {pod} in StatefulSet {set_name} success"),
                ),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    self.event(
                        EventType::Warning,
                        "FailedCreate",
                        format!(
                            "create Claim {name} for Pod {pod} in StatefulSet {set_name} failed error: {e}"
                        ),
                    );
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    async fn write_status(&self, status: &StatefulSetStatus) -> Result<(), Error> {
        if logic::status_equal(self.set.status.as_ref(), status) {
            return Ok(());
        }
        let api: Api<StatefulSet> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let patch = json!({"status": {
            "observedGeneration": status.observed_generation,
            "replicas": status.replicas,
            "readyReplicas": status.ready_replicas.unwrap_or(0),
            "availableReplicas": status.available_replicas.unwrap_or(0),
            "currentReplicas": status.current_replicas.unwrap_or(0),
            "updatedReplicas": status.updated_replicas.unwrap_or(0),
            "currentRevision": status.current_revision,
            "updateRevision": status.update_revision,
            "collisionCount": status.collision_count.unwrap_or(0),
        }});
        ignore_not_found(
            api.patch_status(
                &self.set.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await,
        )?;
        Ok(())
    }
}

fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}
