//! The DaemonSet controller's decisions, as pure functions over k8s-openapi types: which
//! nodes a DaemonSet's pod belongs on, which pods to create and delete there, which old
//! pods a rolling update replaces next, and the status.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::deployment::logic::scaled_value;
use crate::history::CONTROLLER_REVISION_HASH;
use crate::replicaset::is_pod_available;
use api::selectors::node_selector_matches;

/// The deprecated label with the DaemonSet generation a pod was made from; still set, as
/// upstream does, for tools that read it.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

use crate::node_lifecycle::{
    TAINT_DISK_PRESSURE, TAINT_MEMORY_PRESSURE, TAINT_NETWORK_UNAVAILABLE, TAINT_NOT_READY,
    TAINT_PID_PRESSURE, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE,
};

/// The tolerations every daemon pod gets, so that it runs on (and is not evicted from)
/// nodes that are not ready, unreachable, under resource pressure or cordoned: a daemon is
/// often what makes a node healthy again. `network-unavailable` only for host-network
/// pods, which do not need the pod network.
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut out = vec![
        t(TAINT_NOT_READY, "NoExecute"),
        t(TAINT_UNREACHABLE, "NoExecute"),
        t(TAINT_DISK_PRESSURE, "NoSchedule"),
        t(TAINT_MEMORY_PRESSURE, "NoSchedule"),
        t(TAINT_PID_PRESSURE, "NoSchedule"),
        t(TAINT_UNSCHEDULABLE, "NoSchedule"),
    ];
    if host_network {
        out.push(t(TAINT_NETWORK_UNAVAILABLE, "NoSchedule"));
    }
    out
}

/// Adds the daemon tolerations to a pod spec, replacing a toleration with the same key,
/// operator, value and effect (one with a tolerationSeconds would otherwise evict the
/// daemon from a not-ready node).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for want in daemon_tolerations(host_network) {
        let same = |t: &Toleration| {
            t.key == want.key
                && t.operator.as_deref().unwrap_or("Equal")
                    == want.operator.as_deref().unwrap_or("Equal")
                && t.value.as_deref().unwrap_or("") == want.value.as_deref().unwrap_or("")
                && t.effect == want.effect
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(t) => *t = want,
            None => tolerations.push(want),
        }
    }
}

/// Whether a toleration tolerates a taint (Kubernetes' `ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether a node satisfies a pod's nodeSelector and required node affinity.
pub fn node_matches_pod(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok && required.is_none_or(|sel| node_selector_matches(sel, node))
}

/// Whether a DaemonSet's pod should be on a node: `should_run` (a pod is created there) and
/// `should_continue_running` (an existing pod is left there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Eligibility {
    pub should_run: bool,
    pub should_continue_running: bool,
}

/// Kubernetes' `NodeShouldRunDaemonPod`: the node must match the template's nodeName,
/// nodeSelector and required node affinity; a taint the pod (with the daemon
/// tolerations) does not tolerate keeps new pods off, and evicts running ones only when it
/// is NoExecute.
pub fn node_eligibility(ds: &DaemonSet, node: &Node) -> Eligibility {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    let no = Eligibility::default();
    let node_name = node.name_any();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return no;
    }
    if !node_matches_pod(&spec, node) {
        return no;
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let untolerated = |effect: &str| {
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter(|t| t.effect == effect)
            .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
    };
    if untolerated("NoExecute") {
        return no;
    }
    if untolerated("NoSchedule") {
        return Eligibility {
            should_run: false,
            should_continue_running: true,
        };
    }
    Eligibility {
        should_run: true,
        should_continue_running: true,
    }
}

/// The node a daemon pod is for: where it is bound, or else the node its
/// `metadata.name In [node]` affinity term pins it to.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            let values = r.values.as_deref().unwrap_or_default();
            (r.key == "metadata.name" && r.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

/// The affinity a daemon pod for `node` gets: the template's, with the required node
/// affinity replaced by the one term `metadata.name In [node]` (the controller has already
/// checked the node against the template's terms), so the default scheduler binds it there.
pub fn node_name_affinity(affinity: Option<Affinity>, node: &str) -> Affinity {
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    });
    affinity
}

/// The controller reference a DaemonSet puts on its pods.
pub fn controller_ref(ds: &DaemonSet) -> OwnerReference {
    crate::controller_utils::controller_ref(ds)
}

/// The pod a DaemonSet creates for `node`: its template with the daemon tolerations and
/// node-name affinity, labelled with the revision `hash` and the generation, named
/// `<ds>-<random>`, controlled by the DaemonSet.
pub fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec.affinity = Some(node_name_affinity(spec.affinity.take(), node));
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH.into(), hash.into());
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// A DaemonSet's pods by the node they are for. Without `include_deleted_terminal`,
/// finished pods that are being deleted are left out (they are on their way out and run
/// nothing). Pods for no node at all are left out.
pub fn pods_by_node(pods: &[Pod], include_deleted_terminal: bool) -> BTreeMap<String, Vec<&Pod>> {
    let mut out: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        if !include_deleted_terminal
            && is_terminal(pod)
            && pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if let Some(node) = target_node(pod) {
            out.entry(node).or_default().push(pod);
        }
    }
    out
}

/// Bound pods first, then oldest first, then by name (upstream's
/// `podByCreationTimestampAndPhase`).
pub fn sort_pods(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let bound = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        };
        bound(b)
            .cmp(&bound(a))
            .then_with(|| {
                let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

fn pod_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH)
        .map(String::as_str)
}

/// Whether a pod runs the current revision.
pub fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod_hash(pod) == Some(hash)
}

/// What one sync's node-by-node pass does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ManagePlan {
    /// Nodes that need a pod.
    pub create_on: Vec<String>,
    /// Pods to delete: surplus, misplaced, or succeeded.
    pub delete: Vec<String>,
    /// Pods for nodes that no longer exist: no kubelet will ever finish them, so they are
    /// deleted at once (what the pod garbage collector does for orphaned pods).
    pub force_delete: Vec<String>,
    /// Failed pods as (node, pod): deleted, and so recreated, subject to a per-node back-off.
    pub failed: Vec<(String, String)>,
}

impl ManagePlan {
    pub fn is_empty(&self) -> bool {
        self.create_on.is_empty()
            && self.delete.is_empty()
            && self.force_delete.is_empty()
            && self.failed.is_empty()
    }
}

/// Kubernetes' `podsShouldBeOnNode` over every node, plus pods for vanished nodes.
/// `node_pods` must include terminating and finished pods: a node whose pod is still
/// going away gets no new one yet.
pub fn manage_plan(
    eligible: &BTreeMap<String, Eligibility>,
    node_pods: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    surge: bool,
    min_ready_seconds: i64,
    now: jiff::Timestamp,
) -> ManagePlan {
    let mut plan = ManagePlan::default();
    for (node, e) in eligible {
        let pods = node_pods.get(node).map(Vec::as_slice).unwrap_or_default();
        if e.should_run && pods.is_empty() {
            plan.create_on.push(node.clone());
        } else if e.should_continue_running {
            let mut running: Vec<&Pod> = Vec::new();
            for pod in pods {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match phase(pod) {
                    "Failed" => plan.failed.push((node.clone(), pod.name_any())),
                    "Succeeded" => plan.delete.push(pod.name_any()),
                    _ => running.push(pod),
                }
            }
            sort_pods(&mut running);
            if !surge {
                // One pod per node: keep the oldest.
                plan.delete
                    .extend(running.iter().skip(1).map(|p| p.name_any()));
                continue;
            }
            // Surging: at most one current and one old pod; of the old ones, keep an
            // available one over an unavailable one.
            let available = |p: &Pod| is_pod_available(p, min_ready_seconds, now);
            let mut newest_kept: Option<&Pod> = None;
            let mut old_kept: Option<&Pod> = None;
            for pod in running {
                if is_updated(pod, hash) {
                    if newest_kept.is_none() {
                        newest_kept = Some(pod);
                        continue;
                    }
                } else {
                    match old_kept {
                        None => {
                            old_kept = Some(pod);
                            continue;
                        }
                        Some(kept) if !available(kept) && available(pod) => {
                            plan.delete.push(kept.name_any());
                            old_kept = Some(pod);
                            continue;
                        }
                        Some(_) => {}
                    }
                }
                plan.delete.push(pod.name_any());
            }
        } else {
            plan.delete.extend(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .map(|p| p.name_any()),
            );
        }
    }
    for (node, pods) in node_pods {
        if !eligible.contains_key(node) {
            plan.force_delete.extend(pods.iter().map(|p| p.name_any()));
        }
    }
    plan
}

/// (maxSurge, maxUnavailable) resolved against the number of nodes that should run the
/// pod, percentages rounding up; both zero would stall a rollout, so unavailable becomes 1.
pub fn surge_and_unavailable(ds: &DaemonSet, desired: i32) -> Result<(i32, i32), String> {
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let surge = ru.and_then(|r| r.max_surge.as_ref());
    let unavailable = ru.and_then(|r| r.max_unavailable.as_ref());
    let surge = scaled_value(surge.unwrap_or(&IntOrString::Int(0)), desired, true)?;
    let unavailable = scaled_value(unavailable.unwrap_or(&IntOrString::Int(1)), desired, true)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge.max(0), unavailable.max(0)))
}

/// Whether the DaemonSet updates by RollingUpdate (the default) rather than OnDelete.
pub fn is_rolling_update(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// The one current and the one old pod on a node, ignoring terminating ones; None when
/// there is more than one of either (the manage pass cleans that node up first).
fn updated_and_old<'a>(pods: &[&'a Pod], hash: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let mut new = None;
    let mut old = None;
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let slot = if is_updated(pod, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*pod);
    }
    Some((new, old))
}

/// What one rolling-update step does: old pods to delete (the manage pass then creates
/// the current revision on their nodes) and, when surging, nodes to create a current pod
/// on beside the old one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RollingPlan {
    pub delete: Vec<String>,
    pub create_on: Vec<String>,
}

/// Kubernetes' DaemonSet `rollingUpdate`. Without surge, old pods are deleted so that no
/// more than maxUnavailable nodes are without an available pod, unavailable old pods
/// first; with surge, a current pod is started beside an old one on up to maxSurge nodes
/// at once, and the old pod deleted once the new one is available. `node_pods` without
/// finished pods being deleted.
#[allow(clippy::too_many_arguments)]
pub fn rolling_plan(
    eligible: &BTreeMap<String, Eligibility>,
    node_pods: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    max_surge: i32,
    max_unavailable: i32,
    desired: i32,
    min_ready_seconds: i64,
    now: jiff::Timestamp,
) -> RollingPlan {
    let available = |p: &Pod| is_pod_available(p, min_ready_seconds, now);
    let should_run = |node: &str| eligible.get(node).is_some_and(|e| e.should_run);
    let mut plan = RollingPlan::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for pods in node_pods.values() {
            match updated_and_old(pods, hash) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !available(old) {
                        replace_now.push(old.name_any());
                    } else if unavailable < max_unavailable {
                        candidates.push(old.name_any());
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        plan.delete = replace_now;
        plan.delete.extend(candidates.into_iter().take(room));
        return plan;
    }
    let mut surging = 0;
    let mut available_count = 0;
    let mut replace_now = Vec::new();
    let mut candidates = Vec::new();
    let mut misplaced_old = Vec::new();
    for (node, pods) in node_pods {
        let Some((new, old)) = updated_and_old(pods, hash) else {
            surging += 1;
            continue;
        };
        if old.or(new).is_some_and(available) {
            available_count += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(old) => {
                if should_run(node) {
                    replace_now.push(node.clone());
                } else {
                    plan.delete.push(old.name_any());
                }
            }
            (None, Some(old)) => {
                if !should_run(node) {
                    misplaced_old.push(old.name_any());
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    plan.delete.push(old.name_any());
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    plan.create_on = replace_now;
    plan.create_on.extend(candidates.into_iter().take(room));
    // Old pods on nodes that no longer want one go only while enough pods stay available.
    let spare =
        (available_count - (desired - max_unavailable)).clamp(0, misplaced_old.len() as i32);
    plan.delete
        .extend(misplaced_old.into_iter().take(spare as usize));
    plan
}

/// The status a sync reports (Kubernetes' `updateDaemonSetStatus`): counts over the
/// nodes that should run the pod, looking at each node's oldest pod; pods on nodes that
/// should not run one are misscheduled. `node_pods` without finished pods being deleted.
pub fn calculate_status(
    ds: &DaemonSet,
    eligible: &BTreeMap<String, Eligibility>,
    node_pods: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    now: jiff::Timestamp,
) -> DaemonSetStatus {
    let min_ready = min_ready_seconds(ds);
    let mut s = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let mut available = 0;
    let mut updated = 0;
    for (node, e) in eligible {
        let mut pods: Vec<&Pod> = node_pods.get(node).cloned().unwrap_or_default();
        if !e.should_run {
            if !pods.is_empty() {
                s.number_misscheduled += 1;
            }
            continue;
        }
        s.desired_number_scheduled += 1;
        if pods.is_empty() {
            continue;
        }
        s.current_number_scheduled += 1;
        sort_pods(&mut pods);
        let pod = pods[0];
        if crate::replicaset::is_pod_ready(pod) {
            s.number_ready += 1;
            if is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if is_updated(pod, hash) {
            updated += 1;
        }
    }
    s.number_available = Some(available);
    s.number_unavailable = Some(s.desired_number_scheduled - available);
    s.updated_number_scheduled = Some(updated);
    s
}

pub fn min_ready_seconds(ds: &DaemonSet) -> i64 {
    ds.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .map_or(0, i64::from)
        .max(0)
}

/// The per-(DaemonSet, node) back-off before a failed daemon pod is deleted again
/// (client-go's `flowcontrol.Backoff`, 1 s doubling to 15 min): a kubelet that keeps
/// rejecting the pod must not make the controller hot-loop.
#[derive(Debug, Default)]
pub struct FailedPodBackoff {
    entries: std::collections::HashMap<(String, String), (Duration, Instant)>,
}

pub const FAILED_POD_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
pub const FAILED_POD_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

impl FailedPodBackoff {
    /// How long until the key's back-off since its last failure runs out, if it has not.
    pub fn remaining(&self, key: &(String, String), now: Instant) -> Option<Duration> {
        let (delay, last) = self.entries.get(key)?;
        let since = now.saturating_duration_since(*last);
        (since < *delay).then(|| *delay - since)
    }

    /// Records a failure: the first (or the first after a long quiet spell) starts at the
    /// initial delay, each next one doubles it.
    pub fn next(&mut self, key: (String, String), now: Instant) {
        let entry = self.entries.entry(key).or_insert((Duration::ZERO, now));
        let expired = now.saturating_duration_since(entry.1) > FAILED_POD_BACKOFF_MAX * 2;
        entry.0 = if entry.0.is_zero() || expired {
            FAILED_POD_BACKOFF_INITIAL
        } else {
            (entry.0 * 2).min(FAILED_POD_BACKOFF_MAX)
        };
        entry.1 = now;
    }

    /// Forgets entries quiet for longer than twice the maximum.
    pub fn gc(&mut self, now: Instant) {
        self.entries.retain(|_, (_, last)| {
            now.saturating_duration_since(*last) <= FAILED_POD_BACKOFF_MAX * 2
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn ds(extra_spec: serde_json::Value) -> DaemonSet {
        let mut spec = json!({
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "img:1"}]}
            }
        });
        if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
            for (k, v) in extra {
                if k == "templateSpec" {
                    for (tk, tv) in v.as_object().unwrap() {
                        s["template"]["spec"][tk] = tv.clone();
                    }
                } else {
                    s.insert(k.clone(), v.clone());
                }
            }
        }
        serde_json::from_value(json!({
            "metadata": {"name": "d", "namespace": "ns", "uid": "ds-uid", "generation": 2},
            "spec": spec,
        }))
        .unwrap()
    }

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        }))
        .unwrap()
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool, age_s: i64) -> Pod {
        let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(age_s);
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "d", CONTROLLER_REVISION_HASH: hash},
                         "creationTimestamp": Time(t)},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "img"}]},
            "status": {"phase": "Running", "conditions": [{
                "type": "Ready", "status": if ready { "True" } else { "False" },
                "lastTransitionTime": Time(t)}]},
        }))
        .unwrap()
    }

    fn with_phase(mut p: Pod, phase: &str) -> Pod {
        p.status.as_mut().unwrap().phase = Some(phase.into());
        p
    }

    fn terminating(mut p: Pod) -> Pod {
        p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        p
    }

    const RUN: Eligibility = Eligibility {
        should_run: true,
        should_continue_running: true,
    };
    const KEEP: Eligibility = Eligibility {
        should_run: false,
        should_continue_running: true,
    };
    const NO: Eligibility = Eligibility {
        should_run: false,
        should_continue_running: false,
    };

    fn eligible(list: &[(&str, Eligibility)]) -> BTreeMap<String, Eligibility> {
        list.iter().map(|(n, e)| (n.to_string(), *e)).collect()
    }

    #[test]
    fn eligibility_follows_selector_affinity_and_node_name() {
        let plain = node("n1", json!({"disk": "ssd", "zone": "a"}), json!([]));
        let other = node("n2", json!({"disk": "hdd"}), json!([]));
        assert_eq!(node_eligibility(&ds(json!({})), &plain), RUN);
        let sel = ds(json!({"templateSpec": {"nodeSelector": {"disk": "ssd"}}}));
        assert_eq!(node_eligibility(&sel, &plain), RUN);
        assert_eq!(node_eligibility(&sel, &other), NO);
        let aff = ds(json!({"templateSpec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}
        ]}}}}}));
        assert_eq!(node_eligibility(&aff, &plain), NO);
        assert_eq!(node_eligibility(&aff, &other), RUN);
        let pinned = ds(json!({"templateSpec": {"nodeName": "n2"}}));
        assert_eq!(node_eligibility(&pinned, &plain), NO);
        assert_eq!(node_eligibility(&pinned, &other), RUN);
    }

    #[test]
    fn eligibility_follows_taints_and_tolerations() {
        let d = ds(json!({}));
        let no_schedule = node(
            "n",
            json!({}),
            json!([{"key": "gpu", "effect": "NoSchedule"}]),
        );
        assert_eq!(node_eligibility(&d, &no_schedule), KEEP);
        let no_exec = node(
            "n",
            json!({}),
            json!([{"key": "gpu", "value": "x", "effect": "NoExecute"}]),
        );
        assert_eq!(node_eligibility(&d, &no_exec), NO);
        let tol = ds(json!({"templateSpec": {"tolerations": [
            {"key": "gpu", "operator": "Equal", "value": "x"}]}}));
        assert_eq!(node_eligibility(&tol, &no_exec), RUN);
        let wrong_value = ds(json!({"templateSpec": {"tolerations": [
            {"key": "gpu", "operator": "Equal", "value": "y"}]}}));
        assert_eq!(node_eligibility(&wrong_value, &no_exec), NO);
        // Daemon pods tolerate not-ready, unreachable, pressure and cordoned nodes.
        let sick = node(
            "n",
            json!({}),
            json!([
                {"key": TAINT_NOT_READY, "effect": "NoExecute"},
                {"key": TAINT_UNREACHABLE, "effect": "NoExecute"},
                {"key": TAINT_DISK_PRESSURE, "effect": "NoSchedule"},
                {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"},
            ]),
        );
        assert_eq!(node_eligibility(&d, &sick), RUN);
        // network-unavailable only for host-network daemons.
        let no_net = node(
            "n",
            json!({}),
            json!([{"key": TAINT_NETWORK_UNAVAILABLE, "effect": "NoSchedule"}]),
        );
        assert_eq!(node_eligibility(&d, &no_net), KEEP);
        let host = ds(json!({"templateSpec": {"hostNetwork": true}}));
        assert_eq!(node_eligibility(&host, &no_net), RUN);
        // A PreferNoSchedule taint keeps nothing off.
        let soft = node(
            "n",
            json!({}),
            json!([{"key": "x", "effect": "PreferNoSchedule"}]),
        );
        assert_eq!(node_eligibility(&d, &soft), RUN);
    }

    #[test]
    fn toleration_matching() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let tol = |key: Option<&str>,
                   op: Option<&str>,
                   value: Option<&str>,
                   effect: Option<&str>| Toleration {
            key: key.map(Into::into),
            operator: op.map(Into::into),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            toleration_seconds: None,
        };
        assert!(tolerates(&tol(None, Some("Exists"), None, None), &taint));
        assert!(tolerates(&tol(Some("k"), None, Some("v"), None), &taint));
        assert!(!tolerates(&tol(Some("k"), None, Some("w"), None), &taint));
        assert!(!tolerates(
            &tol(Some("k"), Some("Exists"), None, Some("NoExecute")),
            &taint
        ));
        assert!(!tolerates(
            &tol(Some("j"), Some("Exists"), None, None),
            &taint
        ));
    }

    #[test]
    fn daemon_tolerations_replace_timed_ones() {
        let mut spec: PodSpec = serde_json::from_value(json!({
            "containers": [],
            "tolerations": [{"key": TAINT_NOT_READY, "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300},
                            {"key": "mine", "operator": "Exists"}]
        }))
        .unwrap();
        add_daemon_tolerations(&mut spec);
        let tols = spec.tolerations.unwrap();
        assert_eq!(tols.len(), 7);
        let nr: Vec<_> = tols
            .iter()
            .filter(|t| t.key.as_deref() == Some(TAINT_NOT_READY))
            .collect();
        assert_eq!(nr.len(), 1);
        assert_eq!(nr[0].toleration_seconds, None);
        assert!(tols.iter().any(|t| t.key.as_deref() == Some("mine")));
        assert!(!tols
            .iter()
            .any(|t| t.key.as_deref() == Some(TAINT_NETWORK_UNAVAILABLE)));
    }

    #[test]
    fn new_pod_is_pinned_labelled_and_owned() {
        let d = ds(json!({"templateSpec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {
                "matchExpressions": [{"key": "x", "operator": "Exists"}]}}]}}}}));
        let p = new_pod(&d, "n7", "h1");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("d-"));
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[CONTROLLER_REVISION_HASH], "h1");
        assert_eq!(labels[TEMPLATE_GENERATION_LABEL], "2");
        assert_eq!(labels["app"], "d");
        assert_eq!(target_node(&p).as_deref(), Some("n7"));
        let na = p
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap();
        let terms = &na
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert!(terms[0].match_expressions.is_none());
        assert!(na
            .preferred_during_scheduling_ignored_during_execution
            .is_some());
        assert_eq!(
            p.spec.as_ref().unwrap().tolerations.as_ref().unwrap().len(),
            6
        );
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("DaemonSet", "ds-uid")
        );
        // The pin matches only that node.
        let spec = p.spec.unwrap();
        assert!(node_matches_pod(&spec, &node("n7", json!({}), json!([]))));
        assert!(!node_matches_pod(&spec, &node("n8", json!({}), json!([]))));
    }

    #[test]
    fn manage_creates_on_empty_nodes_and_deletes_misplaced_and_extra() {
        let now = jiff::Timestamp::now();
        let pods = vec![
            pod("a1", "a", "h", true, 30),
            pod("a2", "a", "h", true, 10),
            pod("c1", "c", "h", true, 30),
            pod("d1", "d", "h", true, 30),
            pod("e1", "e", "h", true, 30),
            pod("gone1", "gone", "h", true, 30),
        ];
        let by_node = pods_by_node(&pods, true);
        let el = eligible(&[
            ("a", RUN),
            ("b", RUN),
            ("c", NO),
            ("d", KEEP),
            ("e", RUN),
            ("f", KEEP),
        ]);
        let plan = manage_plan(&el, &by_node, "h", false, 0, now);
        assert_eq!(plan.create_on, ["b"]);
        // a keeps its oldest pod, c's pod is misplaced.
        assert_eq!(plan.delete, ["a2", "c1"]);
        assert_eq!(plan.force_delete, ["gone1"]);
        assert!(plan.failed.is_empty());
    }

    #[test]
    fn manage_handles_failed_succeeded_and_terminating_pods() {
        let now = jiff::Timestamp::now();
        let pods = vec![
            with_phase(pod("a1", "a", "h", false, 30), "Failed"),
            with_phase(pod("b1", "b", "h", false, 30), "Succeeded"),
            terminating(pod("c1", "c", "h", true, 30)),
        ];
        let by_node = pods_by_node(&pods, true);
        let el = eligible(&[("a", RUN), ("b", RUN), ("c", RUN)]);
        let plan = manage_plan(&el, &by_node, "h", false, 0, now);
        // No node gets a second pod while its old one is still there.
        assert!(plan.create_on.is_empty());
        assert_eq!(plan.failed, [("a".to_string(), "a1".to_string())]);
        assert_eq!(plan.delete, ["b1"]);
        // Finished pods already being deleted are not counted for status.
        let pods = vec![terminating(with_phase(
            pod("a1", "a", "h", false, 30),
            "Failed",
        ))];
        assert!(pods_by_node(&pods, false).is_empty());
        assert_eq!(pods_by_node(&pods, true).len(), 1);
    }

    #[test]
    fn manage_with_surge_keeps_one_new_and_one_old() {
        let now = jiff::Timestamp::now();
        let pods = vec![
            pod("old1", "a", "old", false, 50),
            pod("old2", "a", "old", true, 40),
            pod("new1", "a", "h", false, 30),
            pod("new2", "a", "h", true, 20),
        ];
        let by_node = pods_by_node(&pods, true);
        let plan = manage_plan(&eligible(&[("a", RUN)]), &by_node, "h", true, 0, now);
        let mut deleted = plan.delete.clone();
        deleted.sort();
        assert_eq!(deleted, ["new2", "old1"]);
    }

    #[test]
    fn rolling_update_without_surge_respects_max_unavailable() {
        let now = jiff::Timestamp::now();
        let pods = vec![
            pod("a", "a", "old", true, 30),
            pod("b", "b", "old", true, 30),
            pod("c", "c", "old", false, 30),
            pod("d", "d", "h", true, 30),
        ];
        let by_node = pods_by_node(&pods, false);
        let el = eligible(&[("a", RUN), ("b", RUN), ("c", RUN), ("d", RUN)]);
        // The unavailable old pod goes at once; one more within maxUnavailable 1.
        let plan = rolling_plan(&el, &by_node, "h", 0, 1, 4, 0, now);
        assert_eq!(plan.delete, ["c", "a"]);
        assert!(plan.create_on.is_empty());
        // A new pod not yet available uses up the budget.
        let pods = vec![pod("a", "a", "old", true, 30), pod("b", "b", "h", false, 1)];
        let by_node = pods_by_node(&pods, false);
        let plan = rolling_plan(&el, &by_node, "h", 0, 1, 4, 0, now);
        assert!(plan.delete.is_empty());
        let plan = rolling_plan(&el, &by_node, "h", 0, 2, 4, 0, now);
        assert_eq!(plan.delete, ["a"]);
        // minReadySeconds: a pod ready for 30 s is not available under 60.
        let pods = vec![pod("a", "a", "old", true, 30), pod("b", "b", "h", true, 30)];
        let by_node = pods_by_node(&pods, false);
        assert!(rolling_plan(&el, &by_node, "h", 0, 1, 4, 60, now)
            .delete
            .contains(&"a".to_string()));
        assert_eq!(
            rolling_plan(&el, &by_node, "h", 0, 1, 4, 10, now).delete,
            ["a"]
        );
    }

    #[test]
    fn rolling_update_with_surge() {
        let now = jiff::Timestamp::now();
        let pods = vec![
            pod("a", "a", "old", true, 30),
            pod("b", "b", "old", true, 30),
            pod("c-old", "c", "old", true, 30),
            pod("c-new", "c", "h", true, 30),
            pod("d", "d", "old", false, 30),
        ];
        let by_node = pods_by_node(&pods, false);
        let el = eligible(&[("a", RUN), ("b", RUN), ("c", RUN), ("d", RUN)]);
        let plan = rolling_plan(&el, &by_node, "h", 1, 0, 4, 0, now);
        // c's new pod is available: its old pod goes. d's old pod is unavailable: replace
        // it at once; a gets the one surge slot.
        assert_eq!(plan.delete, ["c-old"]);
        assert_eq!(plan.create_on, ["d", "a"]);
        // A surge pod still starting uses up the slot.
        let pods = vec![
            pod("a", "a", "old", true, 30),
            pod("b-old", "b", "old", true, 30),
            pod("b-new", "b", "h", false, 1),
        ];
        let by_node = pods_by_node(&pods, false);
        let plan = rolling_plan(&el, &by_node, "h", 1, 0, 4, 0, now);
        assert!(plan.create_on.is_empty() && plan.delete.is_empty());
    }

    #[test]
    fn surge_and_unavailable_resolution() {
        let with = |ru: serde_json::Value| {
            ds(json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": ru}}))
        };
        assert_eq!(surge_and_unavailable(&ds(json!({})), 10), Ok((0, 1)));
        assert_eq!(
            surge_and_unavailable(&with(json!({"maxUnavailable": "25%"})), 10),
            Ok((0, 3))
        );
        assert_eq!(
            surge_and_unavailable(&with(json!({"maxUnavailable": 0, "maxSurge": "10%"})), 15),
            Ok((2, 0))
        );
        assert_eq!(
            surge_and_unavailable(&with(json!({"maxUnavailable": 0, "maxSurge": 0})), 5),
            Ok((0, 1))
        );
        assert!(surge_and_unavailable(&with(json!({"maxUnavailable": "x"})), 5).is_err());
        assert!(is_rolling_update(&ds(json!({}))));
        assert!(!is_rolling_update(&ds(
            json!({"updateStrategy": {"type": "OnDelete"}})
        )));
    }

    #[test]
    fn status_counts() {
        let now = jiff::Timestamp::now();
        let pods = vec![
            pod("a", "a", "h", true, 30),
            pod("b", "b", "old", true, 30),
            pod("c", "c", "h", false, 30),
            pod("x", "x", "h", true, 30),
        ];
        let by_node = pods_by_node(&pods, false);
        let el = eligible(&[("a", RUN), ("b", RUN), ("c", RUN), ("d", RUN), ("x", NO)]);
        let s = calculate_status(&ds(json!({})), &el, &by_node, "h", now);
        assert_eq!(s.desired_number_scheduled, 4);
        assert_eq!(s.current_number_scheduled, 3);
        assert_eq!(s.number_ready, 2);
        assert_eq!(s.number_available, Some(2));
        assert_eq!(s.number_unavailable, Some(2));
        assert_eq!(s.updated_number_scheduled, Some(2));
        assert_eq!(s.number_misscheduled, 1);
        assert_eq!(s.observed_generation, Some(2));
        // minReadySeconds holds back availability, not readiness.
        let s = calculate_status(&ds(json!({"minReadySeconds": 60})), &el, &by_node, "h", now);
        assert_eq!((s.number_ready, s.number_available), (2, Some(0)));
    }

    #[test]
    fn failed_pod_backoff_doubles() {
        let mut b = FailedPodBackoff::default();
        let key = ("ds".to_string(), "n".to_string());
        let t0 = Instant::now();
        assert_eq!(b.remaining(&key, t0), None);
        b.next(key.clone(), t0);
        assert_eq!(b.remaining(&key, t0), Some(Duration::from_secs(1)));
        let t1 = t0 + Duration::from_millis(1500);
        assert_eq!(b.remaining(&key, t1), None);
        b.next(key.clone(), t1);
        assert_eq!(b.remaining(&key, t1), Some(Duration::from_secs(2)));
        let late = t1 + FAILED_POD_BACKOFF_MAX * 3;
        b.next(key.clone(), late);
        assert_eq!(b.remaining(&key, late), Some(Duration::from_secs(1)));
        b.gc(late + FAILED_POD_BACKOFF_MAX * 3);
        assert_eq!(b.remaining(&key, late), None);
    }
}
