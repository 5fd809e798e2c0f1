//! The disruption controller: each PodDisruptionBudget's status, as kube-controller-manager's
//! does it. The API server's eviction subresource reads `disruptionsAllowed` to decide
//! whether a pod may go (and records it in `disruptedPods` when it does).
//!
//! - Pods: those in the budget's namespace its selector matches (an empty selector matches
//!   all of them, no selector none, as policy/v1 has it); healthy means Ready and not being
//!   deleted, minus pods an eviction just took (`disruptedPods`, for two minutes or until
//!   the pod is seen going).
//! - `minAvailable: N`: N healthy wanted out of the pods there are. A percentage, or
//!   `maxUnavailable`, is taken of the replicas of the pods' controllers (a Deployment through
//!   its ReplicaSet, a ReplicaSet, a StatefulSet); pods without a controller are left out of
//!   that count, as upstream; a controller of another kind makes the sync fail and allows
//!   no disruption.
//! - `disruptionsAllowed = currentHealthy − desiredHealthy` (never below 0), with the
//!   `DisruptionAllowed` condition (SufficientPods / InsufficientPods / SyncFailed).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

use crate::controller_utils::is_pod_ready;
use crate::informers::Informers;
use crate::runner::{drive, RetryBackoff};

/// How long an evicted pod stays out of the healthy count while it is not seen going.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
const FIELD_MANAGER: &str = "disruption-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("disruption: {0}")]
    Api(#[from] kube::Error),
}

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    backoff: RetryBackoff<PodDisruptionBudget>,
}

pub async fn run(
    informers: Informers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let controller = Controller::new(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = controller.store();
    let pods = informers.pod_store().await;
    let ctx = Arc::new(Context {
        client,
        pods,
        backoff: RetryBackoff::new(),
    });
    // A pod's change concerns the budgets of its namespace (few): all are looked at again.
    let controller =
        controller.watches_stream(informers.pods().touched_objects(), move |pod: Pod| {
            let ns = pod.namespace();
            budgets
                .state()
                .into_iter()
                .filter(|b| b.namespace() == ns)
                .map(|b| ObjectRef::from_obj(&*b))
                .collect::<Vec<_>>()
        });
    drive(
        "disruption",
        controller,
        shutdown,
        reconcile,
        error_policy,
        ctx,
    )
    .await;
    Ok(())
}

fn error_policy(pdb: Arc<PodDisruptionBudget>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.backoff.failed(&pdb, err)
}

/// What a sync found: the numbers of the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub expected: i32,
    pub desired: i32,
    pub healthy: i32,
}

/// `value` of `total`, rounded up (upstream's GetScaledValueFromIntOrPercent, roundUp).
fn scaled(value: &IntOrString, total: i32) -> Option<i32> {
    crate::deployment::logic::scaled_value(value, total, true).ok()
}

/// Expected and desired healthy pods. `scale` is the pods' controllers' replicas, needed
/// only for a percentage or maxUnavailable (None: some pod has no controller).
pub fn desired(
    pdb: &PodDisruptionBudget,
    pods: i32,
    scale: Option<i32>,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let no_scale = || "the pods have a controller without a known scale".to_string();
    if let Some(max) = &spec.max_unavailable {
        let expected = scale.ok_or_else(no_scale)?;
        let unavailable = scaled(max, expected).ok_or("invalid maxUnavailable")?;
        return Ok((expected, (expected - unavailable).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((pods, *n)),
        Some(pct @ IntOrString::String(_)) => {
            let expected = scale.ok_or_else(no_scale)?;
            Ok((
                expected,
                scaled(pct, expected).ok_or("invalid minAvailable")?,
            ))
        }
        // Neither set: upstream treats it as maxUnavailable 0 of the pods there are.
        None => Ok((pods, pods)),
    }
}

/// Healthy pods: Ready, not being deleted, and not just evicted (per `disrupted`, within
/// [`DELETION_TIMEOUT`] of `now`).
pub fn healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: jiff::Timestamp) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_pod_ready(p))
        .filter(|p| {
            disrupted.get(&p.name_any()).is_none_or(|t| {
                t.0.checked_add(
                    jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default(),
                )
                .is_ok_and(|end| end <= now)
            })
        })
        .count() as i32
}

/// The `disruptedPods` still to keep: pods that exist, are not going, and were evicted
/// less than [`DELETION_TIMEOUT`] ago.
pub fn kept_disrupted(
    pods: &[Arc<Pod>],
    disrupted: &BTreeMap<String, Time>,
    now: jiff::Timestamp,
) -> BTreeMap<String, Time> {
    disrupted
        .iter()
        .filter(|(name, t)| {
            let present = pods
                .iter()
                .any(|p| p.name_any() == **name && p.metadata.deletion_timestamp.is_none());
            let fresh = t
                .0
                .checked_add(jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default())
                .is_ok_and(|end| end > now);
            present && fresh
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = pdb.namespace().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let selector = pdb.spec.as_ref().and_then(|s| s.selector.clone());
    let pods: Vec<Arc<Pod>> = match &selector {
        None => Vec::new(),
        Some(sel) => ctx.pods.state_filter(|p| {
            p.namespace().as_deref() == Some(ns.as_str())
                && api::selectors::label_selector_matches(sel, p.metadata.labels.as_ref())
        }),
    };
    let needs_scale = pdb.spec.as_ref().is_some_and(|s| {
        s.max_unavailable.is_some() || matches!(s.min_available, Some(IntOrString::String(_)))
    });
    let scale = if needs_scale {
        expected_scale(&ctx.client, &ns, &pods).await?
    } else {
        None
    };
    let status = pdb.status.clone().unwrap_or_default();
    let disrupted = kept_disrupted(
        &pods,
        &status.disrupted_pods.clone().unwrap_or_default(),
        now,
    );
    let generation = pdb.metadata.generation;
    let (new_status, next) = match desired(&pdb, pods.len() as i32, scale) {
        Ok((expected, desired_healthy)) => {
            let current = healthy(&pods, &disrupted, now);
            let allowed = if expected <= 0 {
                0
            } else {
                (current - desired_healthy).max(0)
            };
            let (cond, reason) = if allowed > 0 {
                ("True", "SufficientPods")
            } else {
                ("False", "InsufficientPods")
            };
            let next = disrupted
                .values()
                .filter_map(|t| {
                    t.0.checked_add(jiff::SignedDuration::try_from(DELETION_TIMEOUT).ok()?)
                        .ok()
                })
                .min();
            (
                json!({
                    "observedGeneration": generation,
                    "disruptionsAllowed": allowed,
                    "currentHealthy": current,
                    "desiredHealthy": desired_healthy,
                    "expectedPods": expected,
                    "disruptedPods": disrupted,
                    "conditions": [condition(&status, cond, reason, "", generation, now)],
                }),
                next,
            )
        }
        Err(message) => (
            json!({
                "observedGeneration": generation,
                "disruptionsAllowed": 0,
                "currentHealthy": status.current_healthy,
                "desiredHealthy": status.desired_healthy,
                "expectedPods": status.expected_pods,
                "disruptedPods": disrupted,
                "conditions": [condition(&status, "False", "SyncFailed", &message, generation, now)],
            }),
            None,
        ),
    };
    let current = serde_json::to_value(&status).unwrap_or_default();
    if !same_status(&current, &new_status) {
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        // disruptedPods is a map: null out the entries dropped, since a merge patch keeps
        // what it does not mention.
        let mut patch_status = new_status.clone();
        if let Some(old) = status.disrupted_pods.as_ref() {
            for name in old.keys().filter(|k| !disrupted.contains_key(*k)) {
                patch_status["disruptedPods"][name] = serde_json::Value::Null;
            }
        }
        let patch = json!({
            "metadata": {"resourceVersion": pdb.metadata.resource_version},
            "status": patch_status,
        });
        api.patch_status(&pdb.name_any(), &params, &Patch::Merge(&patch))
            .await?;
    }
    ctx.backoff.succeeded(&pdb);
    Ok(match next {
        Some(t) => Action::requeue(
            Duration::try_from(t.duration_since(now)).unwrap_or_default()
                + Duration::from_millis(10),
        ),
        None => Action::await_change(),
    })
}

/// The status compared without the condition's transition time.
fn same_status(current: &serde_json::Value, new: &serde_json::Value) -> bool {
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(cs) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for c in cs {
                if let Some(m) = c.as_object_mut() {
                    m.remove("lastTransitionTime");
                }
            }
        }
        if v.get("disruptedPods")
            .is_some_and(|d| d.as_object().is_some_and(|m| m.is_empty()))
        {
            if let Some(m) = v.as_object_mut() {
                m.remove("disruptedPods");
            }
        }
        v
    };
    strip(current) == strip(new)
}

/// The DisruptionAllowed condition, keeping its transition time when its status holds.
fn condition(
    status: &k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus,
    cond: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> serde_json::Value {
    let since = status
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionAllowed"))
        .filter(|c| c.status == cond)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    json!({"type": "DisruptionAllowed", "status": cond, "reason": reason, "message": message,
           "observedGeneration": generation, "lastTransitionTime": since})
}

/// The replicas of the pods' controllers, each counted once (and each read once); pods
/// without a controller add nothing. None for a controller of a kind without a known scale.
async fn expected_scale(
    client: &kube::Client,
    ns: &str,
    pods: &[Arc<Pod>],
) -> Result<Option<i32>, Error> {
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let deploy_api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut owners_seen: BTreeSet<String> = BTreeSet::new();
    let mut total = 0;
    for pod in pods {
        let Some(owner) = pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
        else {
            continue;
        };
        if !owners_seen.insert(owner.uid.clone()) {
            continue;
        }
        let replicas = match owner.kind.as_str() {
            "ReplicaSet" => {
                let Some(rs) = rs_api.get_opt(&owner.name).await? else {
                    return Ok(None);
                };
                let by_deploy = rs
                    .owner_references()
                    .iter()
                    .find(|o| o.controller == Some(true) && o.kind == "Deployment")
                    .cloned();
                match by_deploy {
                    Some(d) => {
                        if !seen.insert(format!("Deployment/{}", d.name)) {
                            continue;
                        }
                        match deploy_api.get_opt(&d.name).await? {
                            Some(dep) => dep.spec.and_then(|s| s.replicas).unwrap_or(1),
                            None => return Ok(None),
                        }
                    }
                    None => {
                        if !seen.insert(format!("ReplicaSet/{}", owner.name)) {
                            continue;
                        }
                        rs.spec.and_then(|s| s.replicas).unwrap_or(1)
                    }
                }
            }
            "StatefulSet" => {
                if !seen.insert(format!("StatefulSet/{}", owner.name)) {
                    continue;
                }
                match sts_api.get_opt(&owner.name).await? {
                    Some(sts) => sts.spec.and_then(|s| s.replicas).unwrap_or(1),
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        total += replicas;
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(spec: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "b"}, "spec": spec})).unwrap()
    }

    fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap();
        if deleting {
            p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        }
        Arc::new(p)
    }

    #[test]
    fn budgets_scale_like_upstream() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Some(2));
        assert_eq!(scaled(&IntOrString::String("0%".into()), 3), Some(0));
        assert_eq!(scaled(&IntOrString::Int(2), 3), Some(2));
        assert_eq!(
            desired(&pdb(json!({"minAvailable": 2})), 5, None),
            Ok((5, 2))
        );
        assert_eq!(
            desired(&pdb(json!({"minAvailable": "50%"})), 5, Some(4)),
            Ok((4, 2))
        );
        assert_eq!(
            desired(&pdb(json!({"maxUnavailable": 1})), 3, Some(3)),
            Ok((3, 2))
        );
        assert_eq!(
            desired(&pdb(json!({"maxUnavailable": "50%"})), 3, Some(3)),
            Ok((3, 1))
        );
        assert!(desired(&pdb(json!({"maxUnavailable": 1})), 3, None).is_err());
        assert_eq!(
            desired(&pdb(json!({"maxUnavailable": 5})), 3, Some(3)),
            Ok((3, 0))
        );
    }

    #[test]
    fn healthy_pods_are_ready_staying_and_not_just_evicted() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let pods = [
            pod("a", true, false),
            pod("b", true, false),
            pod("c", false, false),
            pod("d", true, true),
        ];
        let just = BTreeMap::from([("b".to_string(), Time(now))]);
        assert_eq!(healthy(&pods, &BTreeMap::new(), now), 2);
        assert_eq!(healthy(&pods, &just, now), 1);
        let later = now + jiff::SignedDuration::from_secs(121);
        assert_eq!(
            healthy(&pods, &just, later),
            2,
            "an eviction not seen through expires"
        );
        assert_eq!(kept_disrupted(&pods, &just, now).len(), 1);
        assert!(kept_disrupted(&pods, &just, later).is_empty());
        let gone = BTreeMap::from([("d".to_string(), Time(now)), ("zz".to_string(), Time(now))]);
        assert!(
            kept_disrupted(&pods, &gone, now).is_empty(),
            "going or gone pods are dropped"
        );
    }
}
