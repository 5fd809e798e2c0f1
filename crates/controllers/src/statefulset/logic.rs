//! The StatefulSet controller's decisions, as pure functions over k8s-openapi types:
//! identities, claims, which revision a new pod gets, the ordered plan of one sync, and
//! the status it reports. The controller (the parent module) only carries plans out.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use serde_json::Value;

use crate::controller_utils::{self, owner_ref};
use crate::history::{self, CONTROLLER_REVISION_HASH};
use crate::replicaset::is_pod_ready;

/// The label holding a pod's stable name (`apps.StatefulSetPodNameLabel`), so a Service can
/// select one member.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding a pod's ordinal (`apps.PodIndexLabel`).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

const DELETE: &str = "Delete";

// ---------------------------------------------------------------------------------------
// The spec, with upstream's defaults for what the API left out.

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// The first ordinal (`spec.ordinals.start`, 0 by default).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

pub fn min_ready_seconds(set: &StatefulSet) -> i64 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .map_or(0, i64::from)
        .max(0)
}

/// `podManagementPolicy: Parallel` lifts the ordering guarantees ("burst").
pub fn is_parallel(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

fn update_strategy_type(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

pub fn is_on_delete(set: &StatefulSet) -> bool {
    update_strategy_type(set) == "OnDelete"
}

/// `spec.updateStrategy.rollingUpdate.partition` when `rollingUpdate` is set.
pub fn partition(set: &StatefulSet) -> Option<i32> {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .map(|r| r.partition.unwrap_or(0).max(0))
}

pub fn revision_history_limit(set: &StatefulSet) -> usize {
    set.spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .map_or(history::DEFAULT_REVISION_HISTORY_LIMIT, |l| {
            l.max(0) as usize
        })
}

fn template(set: &StatefulSet) -> PodTemplateSpec {
    set.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Identity.

/// `<set>-<ordinal>`.
pub fn pod_name(set_name: &str, ordinal: i32) -> String {
    format!("{set_name}-{ordinal}")
}

/// The parent name and ordinal a pod name encodes (`(.*)-([0-9]+)$`), if any.
pub fn parent_and_ordinal(pod_name: &str) -> Option<(&str, i32)> {
    let (parent, ordinal) = pod_name.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ordinal.parse().ok()?))
}

/// The ordinal of `pod` if it is a member of `set` by name.
pub fn ordinal_of(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    match parent_and_ordinal(name) {
        Some((parent, ordinal)) if parent == set.name_any() => Some(ordinal),
        _ => None,
    }
}

fn in_range(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    ordinal >= start && ordinal < start.saturating_add(replicas(set))
}

/// `<claim template>-<set>-<ordinal>`: the claim a pod of that ordinal always gets.
pub fn claim_name(template_name: &str, set_name: &str, ordinal: i32) -> String {
    format!("{template_name}-{set_name}-{ordinal}")
}

/// The controller reference a StatefulSet puts on its pods and revisions.
pub fn controller_ref(set: &StatefulSet) -> OwnerReference {
    controller_utils::controller_ref(set)
}

/// The identity labels of the pod at `ordinal`.
pub fn identity_labels(set: &StatefulSet, ordinal: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            POD_NAME_LABEL.to_string(),
            pod_name(&set.name_any(), ordinal),
        ),
        (POD_INDEX_LABEL.to_string(), ordinal.to_string()),
    ])
}

/// Whether the pod carries its identity: the right namespace and identity labels.
pub fn identity_matches(set: &StatefulSet, pod: &Pod, ordinal: i32) -> bool {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    pod.metadata.namespace == set.metadata.namespace
        && identity_labels(set, ordinal)
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
}

/// The claims of the pod at `ordinal`, one per volumeClaimTemplate, keyed by the template
/// (= volume) name: named `<template>-<set>-<ordinal>`, labelled with the template's labels
/// and the set's selector labels, owned by the set when `whenDeleted: Delete`.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let selector_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    let owners = if retention(set).when_deleted_delete {
        Some(vec![owner_ref(set)])
    } else {
        None
    };
    claim_templates(set)
        .iter()
        .map(|t| {
            let volume = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&volume, &set.name_any(), ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    finalizers: t.metadata.finalizers.clone(),
                    owner_references: owners.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            };
            (volume, claim)
        })
        .collect()
}

/// The pod of `ordinal` stamped from `template` at `revision` (a revision name): stable
/// name, hostname and subdomain, identity and revision labels, volumes for its claims
/// (replacing template volumes of the same name), controlled by the set.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let name = pod_name(&set.name_any(), ordinal);
    let mut labels = meta.labels.unwrap_or_default();
    labels.extend(identity_labels(set, ordinal));
    labels.insert(CONTROLLER_REVISION_HASH.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let claims = claims_for(set, ordinal);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(volume, claim)| Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.name_any(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !claims.iter().any(|(name, _)| *name == v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

// ---------------------------------------------------------------------------------------
// Claim retention (`persistentVolumeClaimRetentionPolicy`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub when_deleted_delete: bool,
    pub when_scaled_delete: bool,
}

/// The policy; anything but `Delete` (absent, `Retain`, unknown) retains, as upstream.
pub fn retention(set: &StatefulSet) -> Retention {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let is_delete = |v: Option<&String>| v.map(String::as_str) == Some(DELETE);
    Retention {
        when_deleted_delete: is_delete(policy.and_then(|p| p.when_deleted.as_ref())),
        when_scaled_delete: is_delete(policy.and_then(|p| p.when_scaled.as_ref())),
    }
}

/// The owner references `claim` should carry for the pod that uses it (upstream's
/// `updateClaimOwnerRefForSetAndPod`), or `None` when they already do:
/// - whenDeleted Delete: owned by the set, except a scaled-down pod's claim under
///   whenScaled Delete, which the pod owns instead;
/// - whenScaled Delete: a scaled-down pod (ordinal out of range) owns its claim, so the
///   claim goes with the pod;
/// - Retain/Retain: neither owns it.
pub fn desired_claim_owners(
    set: &StatefulSet,
    claim: &PersistentVolumeClaim,
    pod: &Pod,
    scaled_down: bool,
) -> Option<Vec<OwnerReference>> {
    let policy = retention(set);
    let want_set = policy.when_deleted_delete && !(policy.when_scaled_delete && scaled_down);
    let want_pod = policy.when_scaled_delete && scaled_down;
    let set_uid = set.metadata.uid.clone().unwrap_or_default();
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut refs = claim.metadata.owner_references.clone().unwrap_or_default();
    let before = refs.clone();
    let has = |refs: &[OwnerReference], uid: &str| refs.iter().any(|r| r.uid == uid);
    if want_set && !has(&refs, &set_uid) {
        refs.push(owner_ref(set));
    } else if !want_set {
        refs.retain(|r| r.uid != set_uid);
    }
    // Without a uid (not created yet) the pod cannot own anything.
    if !pod_uid.is_empty() {
        if want_pod && !has(&refs, &pod_uid) {
            refs.push(owner_ref(pod));
        } else if !want_pod {
            refs.retain(|r| r.uid != pod_uid);
        }
    }
    (refs != before).then_some(refs)
}

/// A claim that must go before a pod of this name may use it again: being deleted, or
/// owned by an earlier pod of the same name (scaled down under whenScaled Delete), which
/// the garbage collector is about to remove (upstream's `PodClaimIsStale`).
pub fn claim_is_stale(claim: &PersistentVolumeClaim, pod_name: &str) -> bool {
    claim.metadata.deletion_timestamp.is_some()
        || claim
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.kind == "Pod" && r.name == pod_name)
}

// ---------------------------------------------------------------------------------------
// Pod health.

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == Some("Running") && is_pod_ready(pod)
}

pub fn is_running_and_available(pod: &Pod, min_ready_seconds: i64, now: jiff::Timestamp) -> bool {
    is_running_and_ready(pod) && crate::replicaset::is_pod_available(pod, min_ready_seconds, now)
}

/// Running, Ready and not going away.
pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// How long until a ready pod has been ready for `min_ready_seconds`.
fn until_available(pod: &Pod, min_ready_seconds: i64, now: jiff::Timestamp) -> Option<Duration> {
    let since = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()?
        .0;
    let at = since
        .checked_add(jiff::SignedDuration::from_secs(min_ready_seconds))
        .ok()?;
    let left = at.duration_since(now);
    // A moment past the boundary, since availability is strictly after it.
    Some(Duration::try_from(left).unwrap_or_default() + Duration::from_millis(100))
}

/// The revision (name) a pod runs: its `controller-revision-hash` label.
pub fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH)
        .map(String::as_str)
}

// ---------------------------------------------------------------------------------------
// Revisions.

/// What a revision stores for a set: the strategic merge patch that restores its template
/// (`{"spec":{"template":{…,"$patch":"replace"}}}`, upstream's `getPatch`), which is what
/// `kubectl rollout history/undo sts/x` apply.
pub fn revision_data(set: &StatefulSet) -> Value {
    let t = serde_json::to_value(template(set)).unwrap_or(Value::Null);
    history::template_patch(&t)
}

/// The template a revision restores.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Value::Object(map) = &mut t {
        map.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Where this sync's update revision comes from, given the set's revisions (oldest first)
/// and a freshly built candidate (upstream's `getStatefulSetRevisions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateRevision {
    /// The newest revision already holds this template: nothing changes.
    Latest(usize),
    /// An older revision holds it (a rollback): give it the next revision number.
    Renumber(usize),
    /// A template never seen: create the candidate.
    Create,
}

pub fn choose_update_revision(
    revisions: &[ControllerRevision],
    candidate: &ControllerRevision,
) -> UpdateRevision {
    let Some(last_equal) = revisions
        .iter()
        .rposition(|r| history::equal_revision(r, candidate))
    else {
        return UpdateRevision::Create;
    };
    if last_equal + 1 == revisions.len() {
        UpdateRevision::Latest(last_equal)
    } else {
        UpdateRevision::Renumber(last_equal)
    }
}

// ---------------------------------------------------------------------------------------
// The plan of one sync.

/// The current and update revisions of a sync, with their templates.
#[derive(Debug, Clone)]
pub struct Revisions {
    pub current: String,
    pub current_template: PodTemplateSpec,
    pub update: String,
    pub update_template: PodTemplateSpec,
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// It failed: it is recreated under the same name.
    Failed,
    /// It ran to completion: recreated too (an evicted pod's phase comes from exit codes).
    Succeeded,
    /// Its ordinal is beyond the replicas.
    ScaleDown,
    /// It runs an old revision.
    Update,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the missing `claims`, then `pod`.
    CreatePod {
        pod: Box<Pod>,
        claims: Vec<PersistentVolumeClaim>,
    },
    /// Create claims a pending pod waits for (deleted from under it).
    CreateClaims {
        pod: String,
        claims: Vec<PersistentVolumeClaim>,
    },
    DeletePod {
        name: String,
        reason: DeleteReason,
    },
    /// Restore the pod's identity labels.
    FixIdentity {
        name: String,
        labels: BTreeMap<String, String>,
    },
    /// Set a claim's owner references for the retention policy.
    SetClaimOwners {
        claim: String,
        resource_version: Option<String>,
        owners: Vec<OwnerReference>,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// In order; with OrderedReady, the first failing step ends the sync.
    pub steps: Vec<Step>,
    /// OrderedReady: the steps after a failed step must not run.
    pub monotonic: bool,
    /// What the sync stopped at, if it stopped.
    pub waiting: Option<String>,
    /// When to look again though nothing may change (minReadySeconds).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    fn wait(mut self, why: String) -> Self {
        self.waiting = Some(why);
        self
    }
}

/// Whether a new pod of `ordinal` gets the current revision rather than the update one
/// (upstream's `newVersionedStatefulSetPod`): below the partition; or, for a RollingUpdate
/// without `rollingUpdate`, among the pods already at the current revision.
pub fn new_pod_gets_current(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    match partition(set) {
        Some(p) => ordinal < start.saturating_add(p),
        None => {
            let current = set
                .status
                .as_ref()
                .and_then(|s| s.current_replicas)
                .unwrap_or(0);
            update_strategy_type(set) == "RollingUpdate" && ordinal < start.saturating_add(current)
        }
    }
}

fn versioned_pod(set: &StatefulSet, revs: &Revisions, ordinal: i32) -> Pod {
    if new_pod_gets_current(set, ordinal) {
        new_pod(set, &revs.current_template, ordinal, &revs.current)
    } else {
        new_pod(set, &revs.update_template, ordinal, &revs.update)
    }
}

/// What a replica slot holds during planning.
enum Slot<'a> {
    Live(&'a Pod),
    /// Created by this plan: not running yet.
    Planned,
}

/// One sync of a StatefulSet (upstream's `updateStatefulSet`), from the pods it owns and
/// the claims of its namespace, assuming every step succeeds:
///
/// 1. Each ordinal in range, lowest first: a Failed/Succeeded pod is deleted and created
///    anew; a missing pod is created (its claims first; stale claims make it wait); a
///    pending pod gets claims deleted from under it back; claim owners follow the
///    retention policy; identity labels are restored. OrderedReady stops at the first pod
///    it creates, or that is terminating, not Running and Ready, or not yet available.
/// 2. Pods beyond the range (condemned), highest ordinal first: their claims' owners follow
///    the policy; OrderedReady deletes one at a time, only once every lower pod is healthy,
///    and an unhealthy condemned pod only if it is the first unhealthy one; Parallel
///    deletes all.
/// 3. RollingUpdate: from the highest ordinal down to the partition, the first pod not at
///    the update revision is deleted (it comes back at the update revision), waiting for
///    every higher pod to be healthy first. OnDelete stops before this.
pub fn plan(
    set: &StatefulSet,
    pods: &[Pod],
    claims: &[PersistentVolumeClaim],
    revs: &Revisions,
    now: jiff::Timestamp,
) -> Plan {
    let monotonic = !is_parallel(set);
    let mut plan = Plan {
        monotonic,
        ..Plan::default()
    };
    if set.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let set_name = set.name_any();
    let start = start_ordinal(set);
    let count = replicas(set) as usize;
    let min_ready = min_ready_seconds(set);
    let mut slots: Vec<Option<Slot>> = (0..count).map(|_| None).collect();
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for pod in pods {
        let Some(ordinal) = ordinal_of(set, pod) else {
            continue;
        };
        if in_range(set, ordinal) {
            slots[(ordinal - start) as usize] = Some(Slot::Live(pod));
        } else {
            condemned.push((ordinal, pod));
        }
    }
    condemned.sort_by_key(|(o, _)| Reverse(*o));
    let claim = |name: &str| {
        claims
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
    };

    // The first unhealthy pod, by ordinal: the only unhealthy condemned pod OrderedReady may
    // delete before the ones above it recover.
    let first_unhealthy: Option<String> = slots
        .iter()
        .enumerate()
        .find(|(_, s)| !matches!(s, Some(Slot::Live(p)) if is_healthy(p)))
        .map(|(i, _)| pod_name(&set_name, start + i as i32))
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .find(|(_, p)| !is_healthy(p))
                .map(|(_, p)| p.name_any())
        });

    for (i, slot) in slots.iter_mut().enumerate() {
        let ordinal = start + i as i32;
        let name = pod_name(&set_name, ordinal);
        // Once deleted, a finished pod is only waited for: deleting it again would only
        // repeat the event.
        if let Some(Slot::Live(pod)) = slot
            .as_ref()
            .filter(|s| !matches!(s, Slot::Live(p) if is_terminating(p)))
        {
            let reason = match phase(pod) {
                Some("Failed") => Some(DeleteReason::Failed),
                Some("Succeeded") => Some(DeleteReason::Succeeded),
                _ => None,
            };
            if let Some(reason) = reason {
                plan.steps.push(Step::DeletePod {
                    name: name.clone(),
                    reason,
                });
                *slot = None;
            }
        }
        let pod = match slot {
            Some(Slot::Live(pod)) => *pod,
            Some(Slot::Planned) => continue,
            None => {
                let wanted = claims_for(set, ordinal);
                if wanted.iter().any(|(_, c)| {
                    claim(&c.name_any()).is_some_and(|live| claim_is_stale(live, &name))
                }) {
                    if monotonic {
                        return plan.wait(format!("claims of {name} are being deleted"));
                    }
                    continue;
                }
                let missing = wanted
                    .into_iter()
                    .map(|(_, c)| c)
                    .filter(|c| claim(&c.name_any()).is_none())
                    .collect();
                plan.steps.push(Step::CreatePod {
                    pod: Box::new(versioned_pod(set, revs, ordinal)),
                    claims: missing,
                });
                *slot = Some(Slot::Planned);
                if monotonic {
                    return plan.wait(format!("{name} to be Running and Ready"));
                }
                continue;
            }
        };
        if phase(pod) == Some("Pending") {
            let missing: Vec<PersistentVolumeClaim> = claims_for(set, ordinal)
                .into_iter()
                .map(|(_, c)| c)
                .filter(|c| claim(&c.name_any()).is_none())
                .collect();
            if !missing.is_empty() {
                plan.steps.push(Step::CreateClaims {
                    pod: name.clone(),
                    claims: missing,
                });
            }
        }
        if monotonic {
            if is_terminating(pod) {
                return plan.wait(format!("{name} to terminate"));
            }
            if !is_running_and_ready(pod) {
                return plan.wait(format!("{name} to be Running and Ready"));
            }
            if !is_running_and_available(pod, min_ready, now) {
                plan.requeue_after = until_available(pod, min_ready, now);
                return plan.wait(format!("{name} to be available"));
            }
        }
        plan.steps
            .extend(claim_owner_steps(set, pod, ordinal, false, &claim));
        if !identity_matches(set, pod, ordinal) {
            plan.steps.push(Step::FixIdentity {
                name,
                labels: identity_labels(set, ordinal),
            });
        }
    }

    for (ordinal, pod) in &condemned {
        plan.steps
            .extend(claim_owner_steps(set, pod, *ordinal, true, &claim));
    }
    for (_, pod) in &condemned {
        let name = pod.name_any();
        if is_terminating(pod) {
            if monotonic {
                return plan.wait(format!("{name} to terminate"));
            }
            continue;
        }
        let first = first_unhealthy.as_deref() == Some(name.as_str());
        if monotonic && !first && !is_running_and_available(pod, min_ready, now) {
            return plan.wait(format!("{name} to be healthy before scaling down"));
        }
        plan.steps.push(Step::DeletePod {
            name: name.clone(),
            reason: DeleteReason::ScaleDown,
        });
        if monotonic {
            return plan.wait(format!("{name} to terminate"));
        }
    }

    if is_on_delete(set) {
        return plan;
    }
    let update_min = partition(set).unwrap_or(0).max(0) as usize;
    for target in (update_min..count).rev() {
        let name = pod_name(&set_name, start + target as i32);
        match &slots[target] {
            Some(Slot::Live(pod)) => {
                if pod_revision(pod) != Some(revs.update.as_str()) && !is_terminating(pod) {
                    plan.steps.push(Step::DeletePod {
                        name: name.clone(),
                        reason: DeleteReason::Update,
                    });
                    return plan.wait(format!("{name} to be updated"));
                }
                if !is_healthy(pod) {
                    return plan.wait(format!("{name} to be healthy during the update"));
                }
            }
            _ => return plan.wait(format!("{name} to be Running and Ready")),
        }
    }
    plan
}

fn claim_owner_steps<'a>(
    set: &StatefulSet,
    pod: &Pod,
    ordinal: i32,
    scaled_down: bool,
    claim: &impl Fn(&str) -> Option<&'a PersistentVolumeClaim>,
) -> Vec<Step> {
    claim_templates(set)
        .iter()
        .filter_map(|t| {
            let name = claim_name(
                t.metadata.name.as_deref().unwrap_or_default(),
                &set.name_any(),
                ordinal,
            );
            let live = claim(&name)?;
            if live.metadata.deletion_timestamp.is_some() {
                return None;
            }
            let owners = desired_claim_owners(set, live, pod, scaled_down)?;
            Some(Step::SetClaimOwners {
                claim: name,
                resource_version: live.metadata.resource_version.clone(),
                owners,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Status.

/// The status of a sync from the set's pods (upstream's `computeReplicaStatus` and
/// `completeRollingUpdate`): `replicas` counts the pods that exist, `ready`/`available`
/// the Running and Ready ones, `current`/`updated` the live pods at each revision. Once a
/// rolling update has every pod updated and ready, the update revision becomes current.
pub fn compute_status(
    set: &StatefulSet,
    pods: &[Pod],
    revs: &Revisions,
    collision_count: i32,
    now: jiff::Timestamp,
) -> StatefulSetStatus {
    let min_ready = min_ready_seconds(set);
    let (mut count, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods.iter().filter(|p| ordinal_of(set, p).is_some()) {
        count += 1;
        if is_running_and_ready(pod) {
            ready += 1;
            if is_running_and_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if !is_terminating(pod) {
            let rev = pod_revision(pod);
            if rev == Some(revs.current.as_str()) {
                current += 1;
            }
            if rev == Some(revs.update.as_str()) {
                updated += 1;
            }
        }
    }
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: count,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(revs.current.clone()),
        update_revision: Some(revs.update.clone()),
        collision_count: Some(collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    if !is_on_delete(set) && updated == count && ready == count {
        status.current_replicas = Some(updated);
        status.current_revision = Some(revs.update.clone());
    }
    status
}

/// Equal as stored: absent counts are zero.
pub fn status_equal(old: Option<&StatefulSetStatus>, new: &StatefulSetStatus) -> bool {
    let Some(old) = old else {
        return false;
    };
    let n = |v: Option<i32>| v.unwrap_or(0);
    old.replicas == new.replicas
        && n(old.ready_replicas) == n(new.ready_replicas)
        && n(old.available_replicas) == n(new.available_replicas)
        && n(old.current_replicas) == n(new.current_replicas)
        && n(old.updated_replicas) == n(new.updated_replicas)
        && old.current_revision == new.current_revision
        && old.update_revision == new.update_revision
        && old.observed_generation == new.observed_generation
        && n(old.collision_count) == n(new.collision_count)
}

/// Whether the pod's name makes it one of the set's (`<set>-<ordinal>`, upstream's
/// `isMemberOf`): only such pods are claimed.
pub fn is_member(set: &StatefulSet, pod: &Pod) -> bool {
    ordinal_of(set, pod).is_some()
}

#[cfg(test)]
mod tests;
