//! The Deployment controller's decisions, as pure functions over k8s-openapi types: the
//! pod-template hash, surge and unavailability fenceposts, how far to scale the new and the
//! old ReplicaSets, proportional scaling, the status and its conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// The alphabet of apimachinery's `rand.SafeEncodeString`: no vowels (no words), no
/// look-alikes (0/o, 1/l, 3/e).
const SAFE_ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, 32 bits.
fn fnv32a(data: &[u8], mut h: u32) -> u32 {
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

const FNV32_OFFSET: u32 = 0x811c_9dc5;

/// `rand.SafeEncodeString`: every byte of `s` mapped onto the safe alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHANUMS[usize::from(b) % SAFE_ALPHANUMS.len()] as char)
        .collect()
}

/// The pod-template-hash of a template (Kubernetes' `controller.ComputeHash`): FNV-32a over
/// a deterministic rendering of the template, then the collision count as 4 little-endian
/// bytes when there is one, the sum in decimal, safe-encoded.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // serde_json renders k8s-openapi types deterministically (struct fields in declaration
    // order, maps as BTreeMaps), standing in for Go's spew printer.
    let rendered = serde_json::to_vec(template).unwrap_or_default();
    let mut h = fnv32a(&rendered, FNV32_OFFSET);
    if let Some(c) = collision_count {
        h = fnv32a(&(c as u32).to_le_bytes(), h);
    }
    safe_encode(&h.to_string())
}

/// Whether two templates are equal once the pod-template-hash label is left out of both.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        let meta = t.metadata.get_or_insert_with(Default::default);
        if let Some(l) = meta.labels.as_mut() {
            l.remove(HASH_LABEL);
            if l.is_empty() {
                meta.labels = None;
            }
        }
        t
    };
    strip(a) == strip(b)
}

pub fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// `intstr.GetScaledValueFromIntOrPercent`: an int as is, a percentage of `total` rounded up
/// or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct = s
                .strip_suffix('%')
                .and_then(|p| p.parse::<i64>().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let prod = pct * i64::from(total);
            let v = if round_up {
                (prod + 99).div_euclid(100)
            } else {
                prod.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

/// `ResolveFenceposts`: (maxSurge, maxUnavailable), surge rounding up, unavailable down; both
/// zero would deadlock a rollout, so unavailable becomes 1.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&default);
    let unavail = ru
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&default);
    let total = replicas_of(d);
    let s = scaled_value(surge, total, true).unwrap_or(0);
    let u = scaled_value(unavail, total, false).unwrap_or(0);
    if s == 0 && u == 0 {
        (0, 1)
    } else {
        (s, u)
    }
}

pub fn max_surge(d: &Deployment) -> i32 {
    if is_recreate(d) {
        0
    } else {
        fenceposts(d).0
    }
}

/// `MaxUnavailable`: 0 for Recreate and for no replicas, never more than the replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let replicas = replicas_of(d);
    if is_recreate(d) || replicas == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas)
}

pub fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter().map(revision_of).max().unwrap_or(0)
}

/// The new ReplicaSet: the oldest whose template equals the Deployment's (ignoring the hash).
pub fn find_new<'a>(d: &Deployment, rss: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    let template = d.spec.as_ref().map(|s| &s.template)?;
    let mut matching: Vec<&ReplicaSet> = rss
        .iter()
        .filter(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, template))
        })
        .collect();
    sort_by_creation(&mut matching);
    matching.first().copied()
}

fn creation_key(rs: &ReplicaSet) -> (Option<Time>, String) {
    (
        rs.metadata.creation_timestamp.clone(),
        rs.metadata.name.clone().unwrap_or_default(),
    )
}

pub fn sort_by_creation(rss: &mut [&ReplicaSet]) {
    rss.sort_by_key(|a| creation_key(a));
}

/// Annotations of a new or found ReplicaSet: the Deployment's own (minus the ones that are
/// not copied), the revision (only ever raised), desired and max replicas. Returns whether
/// anything changed.
pub fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    if let Some(da) = d.metadata.annotations.as_ref() {
        for (k, v) in da {
            if skip_copy(k) {
                continue;
            }
            if ann.get(k) != Some(v) {
                ann.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    }
    let old: i64 = ann.get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0);
    if old < new_revision {
        if old > 0 {
            let hist = match ann.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{old}"),
                _ => old.to_string(),
            };
            ann.insert(REVISION_HISTORY.into(), hist);
        }
        ann.insert(REVISION.into(), new_revision.to_string());
        changed = true;
    }
    changed |= set_replicas_annotations(ann, replicas_of(d), replicas_of(d) + max_surge(d));
    changed
}

fn skip_copy(k: &str) -> bool {
    matches!(
        k,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

pub fn set_replicas_annotations(
    ann: &mut BTreeMap<String, String>,
    desired: i32,
    max: i32,
) -> bool {
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if ann.get(k) != Some(&v) {
            ann.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

/// Whether the ReplicaSet's desired/max annotations differ from the Deployment's.
pub fn replicas_annotations_mismatch(d: &Deployment, rs: &ReplicaSet) -> bool {
    let mut ann = rs.metadata.annotations.clone().unwrap_or_default();
    set_replicas_annotations(&mut ann, replicas_of(d), replicas_of(d) + max_surge(d))
}

fn annotated_desired(rs: &ReplicaSet) -> Option<i32> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESIRED_REPLICAS))
        .and_then(|v| v.parse().ok())
}

/// `isScalingEvent`: an active ReplicaSet was made for another replica count.
pub fn is_scaling_event(d: &Deployment, all: &[&ReplicaSet]) -> bool {
    all.iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .any(|rs| annotated_desired(rs).is_some_and(|n| n != replicas_of(d)))
}

/// `NewRSNewReplicas`: how many replicas the new ReplicaSet may have now.
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs_replicas: i32) -> i32 {
    let replicas = replicas_of(d);
    if is_recreate(d) {
        return replicas;
    }
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = replicas + max_surge(d);
    if current >= max_total {
        return new_rs_replicas;
    }
    let up = (max_total - current).min(replicas - new_rs_replicas).max(0);
    new_rs_replicas + up
}

/// How far the old ReplicaSets may shrink this round (`reconcileOldReplicaSets` before the
/// unhealthy clean-up), or None when nothing may go.
pub fn max_scaled_down(d: &Deployment, all: &[&ReplicaSet], new_rs: Option<&ReplicaSet>) -> i32 {
    let all_pods: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let min_available = replicas_of(d) - max_unavailable(d);
    let new_unavailable = new_rs
        .map(|rs| rs_replicas(rs) - rs_available(rs))
        .unwrap_or(0);
    all_pods - min_available - new_unavailable
}

/// `cleanupUnhealthyReplicas`: first take unavailable replicas out of old ReplicaSets (oldest
/// first), at most `max`. Returns the new sizes by index into `old` and the total removed.
pub fn cleanup_unhealthy(old: &[&ReplicaSet], max: i32) -> (Vec<(usize, i32)>, i32) {
    let mut order: Vec<usize> = (0..old.len()).collect();
    order.sort_by_key(|i| creation_key(old[*i]));
    let mut total = 0;
    let mut out = Vec::new();
    for i in order {
        if total >= max {
            break;
        }
        let rs = old[i];
        let replicas = rs_replicas(rs);
        if replicas == 0 {
            continue;
        }
        let unhealthy = replicas - rs_available(rs);
        if unhealthy <= 0 {
            continue;
        }
        let down = (max - total).min(unhealthy);
        total += down;
        out.push((i, replicas - down));
    }
    (out, total)
}

/// `scaleDownOldReplicaSetsForRollingUpdate`: shrink old ReplicaSets (oldest first) while
/// the available pods stay at or above replicas − maxUnavailable. New sizes by index.
pub fn scale_down_old_rolling(
    d: &Deployment,
    all: &[&ReplicaSet],
    old: &[&ReplicaSet],
) -> Vec<(usize, i32)> {
    let min_available = replicas_of(d) - max_unavailable(d);
    let available: i32 = all.iter().map(|rs| rs_available(rs)).sum();
    if available <= min_available {
        return Vec::new();
    }
    let total_down = available - min_available;
    let mut order: Vec<usize> = (0..old.len()).collect();
    order.sort_by_key(|i| creation_key(old[*i]));
    let mut done = 0;
    let mut out = Vec::new();
    for i in order {
        if done >= total_down {
            break;
        }
        let replicas = rs_replicas(old[i]);
        if replicas == 0 {
            continue;
        }
        let down = replicas.min(total_down - done);
        done += down;
        out.push((i, replicas - down));
    }
    out
}

/// `scale` for a scaling event in the middle of a rollout: the new sizes of the active
/// ReplicaSets, by index into `all`. `new_idx` is the new ReplicaSet's index, if any.
pub fn proportional_sizes(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_idx: Option<usize>,
    status_replicas: i32,
) -> Vec<(usize, i32)> {
    let replicas = replicas_of(d);
    let active: Vec<usize> = (0..all.len())
        .filter(|i| rs_replicas(all[*i]) > 0)
        .collect();
    // One active ReplicaSet (or none: then the newest) takes the whole count.
    if active.len() <= 1 {
        let target = active
            .first()
            .copied()
            .or(new_idx)
            .or_else(|| (0..all.len()).max_by_key(|i| creation_key(all[*i])));
        return match target {
            Some(i) if rs_replicas(all[i]) != replicas => vec![(i, replicas)],
            _ => Vec::new(),
        };
    }
    // A saturated new ReplicaSet: the old ones go to zero.
    if let Some(n) = new_idx {
        let rs = all[n];
        if rs_replicas(rs) == replicas && rs_available(rs) == replicas {
            return (0..all.len())
                .filter(|i| *i != n && rs_replicas(all[*i]) > 0)
                .map(|i| (i, 0))
                .collect();
        }
    }
    if is_recreate(d) {
        return Vec::new();
    }
    let allowed = replicas + max_surge(d);
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let to_add = allowed - current;
    if to_add == 0 {
        return Vec::new();
    }
    // Larger first; for additions the newer among equals first, for removals the older.
    let mut order = active.clone();
    order.sort_by(|a, b| {
        let (ra, rb) = (all[*a], all[*b]);
        rs_replicas(rb).cmp(&rs_replicas(ra)).then_with(|| {
            if to_add > 0 {
                creation_key(rb).cmp(&creation_key(ra))
            } else {
                creation_key(ra).cmp(&creation_key(rb))
            }
        })
    });
    let mut added = 0;
    let mut sizes: BTreeMap<usize, i32> = BTreeMap::new();
    for i in &order {
        let rs = all[*i];
        let p = proportion(rs, replicas + max_surge(d), to_add, added, status_replicas);
        sizes.insert(*i, rs_replicas(rs) + p);
        added += p;
    }
    // The leftover goes to the largest ReplicaSet.
    if let Some(first) = order.first() {
        if let Some(s) = sizes.get_mut(first) {
            *s = (*s + to_add - added).max(0);
        }
    }
    sizes
        .into_iter()
        .filter(|(i, s)| rs_replicas(all[*i]) != *s)
        .collect()
}

fn proportion(
    rs: &ReplicaSet,
    max_total: i32,
    to_add: i32,
    added: i32,
    status_replicas: i32,
) -> i32 {
    let replicas = rs_replicas(rs);
    if replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let annotated = rs
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MAX_REPLICAS))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(status_replicas);
    let fraction = if annotated <= 0 {
        0
    } else {
        let size = f64::from(replicas) * f64::from(max_total) / f64::from(annotated);
        size.round() as i32 - replicas
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// `calculateStatus`: counts from the ReplicaSets, the Available condition; other conditions
/// carried over.
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: &Time,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(|rs| rs_available(rs)).sum();
    let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|rs| rs_status_replicas(rs)).sum()),
        updated_replicas: Some(new_rs.map(rs_status_replicas).unwrap_or(0)),
        ready_replicas: Some(all.iter().map(|rs| rs_ready(rs)).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    let cond = if available >= replicas_of(d) - max_unavailable(d) {
        new_condition(
            AVAILABLE,
            "True",
            MIN_AVAILABLE,
            "Deployment has minimum availability.",
            now,
        )
    } else {
        new_condition(
            AVAILABLE,
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, cond);
    status
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

pub fn get_condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// `SetDeploymentCondition`: no change for the same status and reason; the transition time
/// kept while the status stays.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    let conds = s.conditions.get_or_insert_with(Vec::new);
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|x| x.type_ != type_);
    }
}

/// `DeploymentComplete`.
pub fn is_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas_of(d);
    s.updated_replicas == Some(r)
        && s.replicas == Some(r)
        && s.available_replicas == Some(r)
        && s.observed_generation >= d.metadata.generation
}

/// `DeploymentProgressing`: more updated, fewer old, more ready or more available replicas.
pub fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let g = |v: Option<i32>| v.unwrap_or(0);
    let old_old = g(old.replicas) - g(old.updated_replicas);
    let new_old = g(new.replicas) - g(new.updated_replicas);
    g(new.updated_replicas) > g(old.updated_replicas)
        || new_old < old_old
        || g(new.ready_replicas) > g(old.ready_replicas)
        || g(new.available_replicas) > g(old.available_replicas)
}

pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    match d.spec.as_ref().and_then(|s| s.progress_deadline_seconds) {
        Some(i32::MAX) => None,
        Some(s) => Some(s),
        // apps/v1 defaults it to 600.
        None => Some(600),
    }
}

/// `DeploymentTimedOut`: the Progressing condition was last updated longer ago than the
/// deadline.
pub fn is_timed_out(d: &Deployment, s: &DeploymentStatus, now: &Time) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = get_condition(s, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => return false,
        Some(TIMED_OUT) => return true,
        _ => {}
    }
    let Some(from) = c.last_update_time.as_ref() else {
        return false;
    };
    from.0
        .checked_add(jiff::SignedDuration::from_secs(i64::from(deadline)))
        .is_ok_and(|t| t < now.0)
}

/// `syncRolloutStatus` on a calculated status: the Progressing condition.
pub fn rollout_conditions(
    d: &Deployment,
    status: &mut DeploymentStatus,
    new_rs: Option<&str>,
    now: &Time,
) {
    if progress_deadline(d).is_none() {
        remove_condition(status, PROGRESSING);
        return;
    }
    let cur = get_condition(status, PROGRESSING).cloned();
    let complete_before = status.replicas == status.updated_replicas
        && cur.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
    if complete_before {
        return;
    }
    if is_complete(d, status) {
        let msg = match new_rs {
            Some(n) => format!("ReplicaSet \"{n}\" has successfully progressed."),
            None => "Deployment has successfully progressed.".into(),
        };
        set_condition(
            status,
            new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, &msg, now),
        );
    } else if is_progressing(d, status) {
        let msg = match new_rs {
            Some(n) => format!("ReplicaSet \"{n}\" is progressing."),
            None => "Deployment is progressing.".into(),
        };
        let mut c = new_condition(PROGRESSING, "True", RS_UPDATED, &msg, now);
        if let Some(cur) = cur.as_ref().filter(|c| c.status == "True") {
            c.last_transition_time = cur.last_transition_time.clone();
        }
        remove_condition(status, PROGRESSING);
        set_condition(status, c);
    } else if is_timed_out(d, status, now) {
        let msg = match new_rs {
            Some(n) => format!("ReplicaSet \"{n}\" has timed out progressing."),
            None => "Deployment has timed out progressing.".into(),
        };
        set_condition(
            status,
            new_condition(PROGRESSING, "False", TIMED_OUT, &msg, now),
        );
    }
}

/// `getReplicaFailures`: a ReplicaFailure=True condition of the new ReplicaSet (else of an
/// old one) becomes the Deployment's ReplicaFailure condition; none removes it.
pub fn replica_failure(
    status: &mut DeploymentStatus,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
) {
    let failing = |rs: &ReplicaSet| {
        rs.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
                    .cloned()
            })
    };
    let found = new_rs
        .and_then(failing)
        .or_else(|| all.iter().find_map(|rs| failing(rs)));
    match found {
        Some(c) => set_condition(
            status,
            DeploymentCondition {
                type_: c.type_,
                status: c.status,
                reason: c.reason,
                message: c.message,
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time,
            },
        ),
        None => remove_condition(status, REPLICA_FAILURE),
    }
}

/// When a progressing, unfinished rollout must be looked at again to notice its deadline.
pub fn requeue_for_deadline(
    d: &Deployment,
    s: &DeploymentStatus,
    now: &Time,
) -> Option<std::time::Duration> {
    let deadline = progress_deadline(d)?;
    let c = get_condition(s, PROGRESSING)?;
    if is_complete(d, s) || c.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let from = c.last_update_time.as_ref()?;
    let after = from
        .0
        .checked_add(jiff::SignedDuration::from_secs(i64::from(deadline) + 1))
        .ok()?;
    let wait = after.duration_since(now.0);
    Some(std::time::Duration::from_secs(wait.as_secs().max(1) as u64))
}

/// `LabelSelector` match over labels (matchLabels and matchExpressions).
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let ml = sel.match_labels.as_ref();
    let me = sel.match_expressions.as_ref();
    if ml.is_none_or(|m| m.is_empty()) && me.is_none_or(|m| m.is_empty()) {
        return false;
    }
    if let Some(ml) = ml {
        if ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    me.into_iter().flatten().all(|e| {
        let vals = e.values.clone().unwrap_or_default();
        let got = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => got.is_some_and(|g| vals.contains(g)),
            "NotIn" => got.is_none_or(|g| !vals.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        }
    })
}

/// `cleanupDeployment`: which old ReplicaSets to delete, beyond revisionHistoryLimit, oldest
/// revision first, and only ones fully scaled down.
pub fn history_to_delete<'a>(d: &Deployment, old: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let mut alive: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let diff = alive.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return Vec::new();
    }
    alive.sort_by_key(|rs| (revision_of(rs), creation_key(rs)));
    alive
        .into_iter()
        .take(diff as usize)
        .filter(|rs| {
            rs_status_replicas(rs) == 0
                && rs_replicas(rs) == 0
                && rs.metadata.generation.unwrap_or(0)
                    <= rs
                        .status
                        .as_ref()
                        .and_then(|s| s.observed_generation)
                        .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(v: serde_json::Value) -> Deployment {
        let mut base = json!({
            "metadata": {"name": "web", "namespace": "default", "generation": 1},
            "spec": {
                "replicas": 10,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}},
            }
        });
        merge(&mut base, v);
        serde_json::from_value(base).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn rs(name: &str, created: &str, replicas: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": name, "creationTimestamp": created},
            "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": replicas, "availableReplicas": available, "readyReplicas": available},
        }))
        .unwrap()
    }

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn safe_encoding_uses_the_alphabet() {
        // '0' is 48: 48 % 27 = 21 → '4'; '9' is 57: 57 % 27 = 3 → 'f'.
        assert_eq!(safe_encode("09"), "4f");
        let d = deploy(json!({}));
        let tpl = &d.spec.as_ref().unwrap().template;
        let h = compute_hash(tpl, None);
        assert!(!h.is_empty() && h.len() <= 10);
        assert!(h.bytes().all(|b| SAFE_ALPHANUMS.contains(&b)));
        assert_eq!(h, compute_hash(tpl, None), "deterministic");
        assert_ne!(
            h,
            compute_hash(tpl, Some(1)),
            "collision count changes the hash"
        );
        let other = deploy(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}),
        );
        assert_ne!(h, compute_hash(&other.spec.unwrap().template, None));
    }

    #[test]
    fn fnv32a_known_vectors() {
        assert_eq!(fnv32a(b"", FNV32_OFFSET), 0x811c9dc5);
        assert_eq!(fnv32a(b"a", FNV32_OFFSET), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar", FNV32_OFFSET), 0xbf9cf968);
    }

    #[test]
    fn templates_equal_ignoring_the_hash_label() {
        let d = deploy(json!({}));
        let mut tpl = d.spec.as_ref().unwrap().template.clone();
        tpl.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), "abc".into());
        assert!(equal_ignore_hash(&tpl, &d.spec.as_ref().unwrap().template));
        tpl.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("x".into(), "y".into());
        assert!(!equal_ignore_hash(&tpl, &d.spec.as_ref().unwrap().template));
    }

    #[test]
    fn surge_rounds_up_unavailable_rounds_down() {
        let d = deploy(json!({}));
        // 25% of 10: surge 3, unavailable 2.
        assert_eq!(fenceposts(&d), (3, 2));
        let d = deploy(json!({"spec": {"replicas": 1}}));
        assert_eq!(fenceposts(&d), (1, 0));
        let d = deploy(
            json!({"spec": {"replicas": 3, "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}}}),
        );
        // both zero → unavailable 1.
        assert_eq!(fenceposts(&d), (0, 1));
        assert_eq!(max_unavailable(&d), 1);
        let d = deploy(
            json!({"spec": {"replicas": 2, "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 5}}}}),
        );
        assert_eq!(max_unavailable(&d), 2, "capped at replicas");
        let d = deploy(json!({"spec": {"strategy": {"type": "Recreate"}}}));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 0));
        assert!(scaled_value(&IntOrString::String("x".into()), 3, true).is_err());
    }

    #[test]
    fn new_replica_set_grows_within_the_surge() {
        let d = deploy(json!({}));
        let old = rs("old", "2024-01-01T00:00:00Z", 10, 10);
        let new = rs("new", "2024-01-02T00:00:00Z", 0, 0);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], 0), 3);
        let new3 = rs("new", "2024-01-02T00:00:00Z", 3, 0);
        assert_eq!(
            new_rs_new_replicas(&d, &[&old, &new3], 3),
            3,
            "at the surge limit"
        );
        let old2 = rs("old", "2024-01-01T00:00:00Z", 2, 2);
        let new9 = rs("new", "2024-01-02T00:00:00Z", 9, 9);
        assert_eq!(
            new_rs_new_replicas(&d, &[&old2, &new9], 9),
            10,
            "never above replicas"
        );
        let r = deploy(json!({"spec": {"strategy": {"type": "Recreate"}}}));
        assert_eq!(new_rs_new_replicas(&r, &[&old, &new], 0), 10);
    }

    #[test]
    fn old_replica_sets_shrink_keeping_minimum_available() {
        let d = deploy(json!({}));
        let old = rs("old", "2024-01-01T00:00:00Z", 10, 10);
        let new = rs("new", "2024-01-02T00:00:00Z", 3, 0);
        let all = [&old, &new];
        // 13 pods, min available 8, 3 new unavailable → 2 may go.
        assert_eq!(max_scaled_down(&d, &all, Some(&new)), 2);
        let (unhealthy, n) = cleanup_unhealthy(&[&old], 2);
        assert!(unhealthy.is_empty() && n == 0);
        assert_eq!(scale_down_old_rolling(&d, &all, &[&old]), vec![(0, 8)]);
        // Unavailable old pods go first.
        let sick = rs("sick", "2024-01-01T00:00:00Z", 4, 1);
        assert_eq!(cleanup_unhealthy(&[&sick], 2), (vec![(0, 2)], 2));
        // Oldest first across several.
        let a = rs("a", "2024-01-01T00:00:00Z", 2, 2);
        let b = rs("b", "2023-01-01T00:00:00Z", 2, 2);
        let n = rs("n", "2024-02-01T00:00:00Z", 9, 9);
        let d = deploy(json!({}));
        // available 13, min 8 → 5 down: b 2→0, a 2→0.
        assert_eq!(
            scale_down_old_rolling(&d, &[&a, &b, &n], &[&a, &b]),
            vec![(1, 0), (0, 0)]
        );
    }

    #[test]
    fn proportional_scaling_in_mid_rollout() {
        // 10 → 15 while old has 8 and new 5 (max 13 annotated).
        let d = deploy(json!({"spec": {"replicas": 15}}));
        let mut old = rs("old", "2024-01-01T00:00:00Z", 8, 8);
        let mut new = rs("new", "2024-01-02T00:00:00Z", 5, 0);
        for r in [&mut old, &mut new] {
            r.metadata.annotations = Some([(MAX_REPLICAS.to_string(), "13".to_string())].into());
        }
        let sizes = proportional_sizes(&d, &[&old, &new], Some(1), 13);
        let total: i32 = sizes.iter().map(|(_, s)| s).sum();
        // 15 + 4 surge = 19 allowed.
        assert_eq!(total, 19);
        assert_eq!(sizes, vec![(0, 12), (1, 7)]);
        // One active ReplicaSet takes the count.
        let only = rs("only", "2024-01-01T00:00:00Z", 3, 3);
        assert_eq!(proportional_sizes(&d, &[&only], Some(0), 3), vec![(0, 15)]);
        // A saturated new ReplicaSet: old ones to zero.
        let d = deploy(json!({"spec": {"replicas": 3}}));
        let n = rs("n", "2024-01-02T00:00:00Z", 3, 3);
        let o = rs("o", "2024-01-01T00:00:00Z", 1, 1);
        assert_eq!(proportional_sizes(&d, &[&o, &n], Some(1), 4), vec![(0, 0)]);
    }

    #[test]
    fn scaling_event_from_annotations() {
        let d = deploy(json!({}));
        let mut r = rs("a", "2024-01-01T00:00:00Z", 3, 3);
        assert!(!is_scaling_event(&d, &[&r]));
        r.metadata.annotations = Some([(DESIRED_REPLICAS.to_string(), "3".to_string())].into());
        assert!(is_scaling_event(&d, &[&r]));
        r.metadata.annotations = Some([(DESIRED_REPLICAS.to_string(), "10".to_string())].into());
        assert!(!is_scaling_event(&d, &[&r]));
    }

    #[test]
    fn annotations_copy_and_revision_only_rises() {
        let d = deploy(json!({"metadata": {"annotations": {"team": "a",
            "kubectl.kubernetes.io/last-applied-configuration": "{}", REVISION: "9"}}}));
        let mut r = rs("a", "2024-01-01T00:00:00Z", 3, 3);
        assert!(set_new_rs_annotations(&d, &mut r, 2));
        let ann = r.metadata.annotations.clone().unwrap();
        assert_eq!(ann.get("team").unwrap(), "a");
        assert!(!ann.contains_key(LAST_APPLIED));
        assert_eq!(ann.get(REVISION).unwrap(), "2");
        assert_eq!(ann.get(DESIRED_REPLICAS).unwrap(), "10");
        assert_eq!(ann.get(MAX_REPLICAS).unwrap(), "13");
        assert!(!set_new_rs_annotations(&d, &mut r, 1));
        assert!(set_new_rs_annotations(&d, &mut r, 4));
        let ann = r.metadata.annotations.unwrap();
        assert_eq!(ann.get(REVISION).unwrap(), "4");
        assert_eq!(ann.get(REVISION_HISTORY).unwrap(), "2");
    }

    #[test]
    fn status_and_conditions() {
        let now = t("2024-05-01T00:00:00Z");
        let d = deploy(json!({"spec": {"replicas": 4}}));
        let old = rs("old", "2024-01-01T00:00:00Z", 2, 2);
        let new = rs("new", "2024-01-02T00:00:00Z", 3, 1);
        let mut s = calculate_status(&d, &[&old, &new], Some(&new), &now);
        assert_eq!(s.replicas, Some(5));
        assert_eq!(s.updated_replicas, Some(3));
        assert_eq!(s.available_replicas, Some(3));
        assert_eq!(s.unavailable_replicas, Some(2));
        assert_eq!(s.observed_generation, Some(1));
        let a = get_condition(&s, AVAILABLE).unwrap();
        assert_eq!(
            (a.status.as_str(), a.reason.as_deref()),
            ("True", Some(MIN_AVAILABLE))
        );
        rollout_conditions(&d, &mut s, Some("new"), &now);
        let p = get_condition(&s, PROGRESSING).unwrap();
        assert_eq!(p.reason.as_deref(), Some(RS_UPDATED));
        assert_eq!(
            p.message.as_deref(),
            Some("ReplicaSet \"new\" is progressing.")
        );
        // Complete.
        let done = rs("new", "2024-01-02T00:00:00Z", 4, 4);
        let mut s = calculate_status(&d, &[&done], Some(&done), &now);
        rollout_conditions(&d, &mut s, Some("new"), &now);
        assert!(is_complete(&d, &s));
        let p = get_condition(&s, PROGRESSING).unwrap();
        assert_eq!(p.reason.as_deref(), Some(NEW_RS_AVAILABLE));
        // Unavailable below the minimum.
        let low = rs("new", "2024-01-02T00:00:00Z", 4, 1);
        let s = calculate_status(&d, &[&low], Some(&low), &now);
        assert_eq!(
            get_condition(&s, AVAILABLE).unwrap().reason.as_deref(),
            Some(MIN_UNAVAILABLE)
        );
    }

    #[test]
    fn replica_failure_comes_from_the_new_replica_set_first() {
        let now = t("2024-05-01T00:00:00Z");
        let d = deploy(json!({}));
        let fail = |name: &str, msg: &str| {
            let mut r = rs(name, "2024-01-01T00:00:00Z", 1, 0);
            r.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(json!({
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": msg, "lastTransitionTime": "2024-04-01T00:00:00Z"}))
            .unwrap()]);
            r
        };
        let (old, new) = (fail("old", "old quota"), fail("new", "new quota"));
        let mut s = calculate_status(&d, &[&old, &new], Some(&new), &now);
        replica_failure(&mut s, &[&old, &new], Some(&new));
        let c = get_condition(&s, REPLICA_FAILURE).unwrap();
        assert_eq!(c.message.as_deref(), Some("new quota"));
        assert_eq!(c.last_update_time, Some(t("2024-04-01T00:00:00Z")));
        let healthy = rs("new", "2024-01-01T00:00:00Z", 1, 1);
        replica_failure(&mut s, &[&healthy], Some(&healthy));
        assert!(get_condition(&s, REPLICA_FAILURE).is_none());
    }

    #[test]
    fn progress_deadline_exceeded() {
        let d = deploy(
            json!({"spec": {"replicas": 2, "progressDeadlineSeconds": 30},
            "status": {"replicas": 2, "updatedReplicas": 1, "availableReplicas": 1, "readyReplicas": 1,
                "conditions": [{"type": "Progressing", "status": "True", "reason": RS_UPDATED,
                    "lastUpdateTime": "2024-05-01T00:00:00Z", "lastTransitionTime": "2024-05-01T00:00:00Z"}]}}),
        );
        let old = rs("old", "2024-01-01T00:00:00Z", 1, 1);
        let new = rs("new", "2024-01-02T00:00:00Z", 1, 0);
        let soon = t("2024-05-01T00:00:10Z");
        let mut s = calculate_status(&d, &[&old, &new], Some(&new), &soon);
        s.updated_replicas = Some(1);
        rollout_conditions(&d, &mut s, Some("new"), &soon);
        assert_eq!(
            get_condition(&s, PROGRESSING).unwrap().reason.as_deref(),
            Some(RS_UPDATED)
        );
        assert_eq!(
            requeue_for_deadline(&d, &s, &soon),
            Some(std::time::Duration::from_secs(21))
        );
        let late = t("2024-05-01T00:01:00Z");
        let mut s = calculate_status(&d, &[&old, &new], Some(&new), &late);
        rollout_conditions(&d, &mut s, Some("new"), &late);
        let p = get_condition(&s, PROGRESSING).unwrap();
        assert_eq!(
            (p.status.as_str(), p.reason.as_deref()),
            ("False", Some(TIMED_OUT))
        );
        assert_eq!(
            p.message.as_deref(),
            Some("ReplicaSet \"new\" has timed out progressing.")
        );
    }

    #[test]
    fn history_limit_deletes_oldest_revisions_at_zero() {
        let d = deploy(json!({"spec": {"revisionHistoryLimit": 1}}));
        let mk = |name: &str, rev: &str, replicas: i32| {
            let mut r = rs(name, "2024-01-01T00:00:00Z", replicas, replicas);
            r.metadata.annotations = Some([(REVISION.to_string(), rev.to_string())].into());
            r
        };
        let (a, b, c) = (mk("a", "1", 0), mk("b", "3", 0), mk("c", "2", 1));
        let del: Vec<String> = history_to_delete(&d, &[&a, &b, &c])
            .into_iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect();
        // Two over the limit: revisions 1 and 2; 2 still has replicas.
        assert_eq!(del, vec!["a"]);
        let d = deploy(json!({}));
        assert!(history_to_delete(&d, &[&a, &b, &c]).is_empty());
    }

    #[test]
    fn selectors() {
        let sel: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}))
        .unwrap();
        let l =
            |v: serde_json::Value| serde_json::from_value::<BTreeMap<String, String>>(v).unwrap();
        assert!(selector_matches(
            &sel,
            &l(json!({"app": "web", "tier": "a"}))
        ));
        assert!(!selector_matches(&sel, &l(json!({"app": "web"}))));
        assert!(!selector_matches(
            &LabelSelector::default(),
            &l(json!({"app": "web"}))
        ));
    }

    #[test]
    fn new_replica_set_is_the_oldest_matching() {
        let d = deploy(json!({}));
        let tpl = d.spec.as_ref().unwrap().template.clone();
        let mut a = rs("a", "2024-01-02T00:00:00Z", 1, 1);
        let mut b = rs("b", "2024-01-01T00:00:00Z", 1, 1);
        let c = rs("c", "2023-01-01T00:00:00Z", 1, 1);
        a.spec.as_mut().unwrap().template = Some(tpl.clone());
        b.spec.as_mut().unwrap().template = Some(tpl);
        let all = [a, b, c];
        assert_eq!(
            find_new(&d, &all).unwrap().metadata.name.as_deref(),
            Some("b")
        );
        assert_eq!(max_revision(&all), 0);
    }
}
