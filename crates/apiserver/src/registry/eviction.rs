//! The eviction subresource's PodDisruptionBudget check, as upstream's eviction REST:
//! a pod that is running under a budget may go only while the budget allows a disruption,
//! which the eviction takes (`disruptionsAllowed − 1`, the pod noted in `disruptedPods`
//! for the disruption controller) by compare-and-swap on the budget. Otherwise the answer
//! is 429 TooManyRequests, which `kubectl drain` retries.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{json, Value};

use super::update::{Preconditions, Transition};
use super::{meta, ObjectRef, Registry};
use crate::status::{ApiError, Cause, Details};

/// Upstream's cap on evictions the disruption controller has not confirmed yet.
const MAX_DISRUPTED_PODS: usize = 2000;

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Pods a budget does not protect: not running yet, finished, or already going.
fn can_ignore_budget(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    matches!(phase, Some("Succeeded" | "Failed" | "Pending"))
        || meta::deletion_timestamp(pod).is_some()
}

/// Whether a budget's selector picks the pod; an empty or invalid selector picks nothing
/// here, as upstream's eviction code has it.
fn selects(pdb: &Value, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(sel) = pdb
        .pointer("/spec/selector")
        .cloned()
        .and_then(|s| serde_json::from_value::<LabelSelector>(s).ok())
    else {
        return false;
    };
    let empty = sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty);
    !empty && api::selectors::label_selector_matches(&sel, labels)
}

fn too_many_requests(cause: String) -> ApiError {
    ApiError::new(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
    )
    .with_details(Details {
        causes: vec![Cause {
            reason: "DisruptionBudget".into(),
            message: cause,
            field: None,
        }],
        ..Default::default()
    })
}

/// The budget after taking one disruption for `pod_name`, or why it cannot be taken.
pub fn take_disruption(pdb: &Value, pod_name: &str, now: &str) -> Result<Value, ApiError> {
    let name = meta::name(pdb).unwrap_or_default();
    let status = pdb.get("status").cloned().unwrap_or(json!({}));
    let int = |k: &str| status.get(k).and_then(Value::as_i64).unwrap_or(0);
    let observed = status
        .get("observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if observed < generation {
        return Err(too_many_requests(format!(
            "The disruption budget {name} is still being processed by the server."
        )));
    }
    let allowed = int("disruptionsAllowed");
    if allowed < 0 {
        return Err(ApiError::forbidden("pdb disruptions allowed is negative"));
    }
    let disrupted = status
        .get("disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len);
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(ApiError::forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many_requests(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            int("desiredHealthy"),
            int("currentHealthy")
        )));
    }
    let mut out = pdb.clone();
    out["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if !out["status"]["disruptedPods"].is_object() {
        out["status"]["disruptedPods"] = json!({});
    }
    out["status"]["disruptedPods"][pod_name] = json!(now);
    if allowed == 1 {
        // None left: the condition says so at once, as upstream's eviction does.
        let mut conditions: Vec<Value> = out["status"]["conditions"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter(|c| c["type"] != "DisruptionAllowed")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        conditions.push(json!({"type": "DisruptionAllowed", "status": "False",
            "reason": "InsufficientPods", "message": "", "lastTransitionTime": now,
            "observedGeneration": observed}));
        out["status"]["conditions"] = json!(conditions);
    }
    Ok(out)
}

impl Registry {
    /// Checks (and, unless `dry_run`, takes) the disruption an eviction of `pod` needs.
    pub async fn admit_eviction(&self, pod: &Value, dry_run: bool) -> Result<(), ApiError> {
        if can_ignore_budget(pod) {
            return Ok(());
        }
        let Some(info) = self.info("policy", "PodDisruptionBudget").cloned() else {
            return Ok(());
        };
        let ns = meta::namespace(pod).unwrap_or_default().to_string();
        let pod_name = meta::name(pod).unwrap_or_default().to_string();
        let labels: Option<BTreeMap<String, String>> = pod
            .pointer("/metadata/labels")
            .cloned()
            .and_then(|l| serde_json::from_value(l).ok());
        // A consistent list, not the watch cache: a budget just made must not be missed.
        let budgets: Vec<Value> = self
            .list(&info, Some(&ns), &super::ListParams::default())
            .await?
            .items
            .iter()
            .map(|o| o.value())
            .filter(|b| selects(b, labels.as_ref()))
            .collect();
        let pdb = match budgets.as_slice() {
            [] => return Ok(()),
            [one] => one,
            _ => {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ))
            }
        };
        let pdb_name = meta::name(pdb).unwrap_or_default().to_string();
        if !pod_ready(pod) {
            // An unhealthy pod: AlwaysAllow lets it go; IfHealthyBudget while the budget is met.
            let policy = pdb
                .pointer("/spec/unhealthyPodEvictionPolicy")
                .and_then(Value::as_str)
                .unwrap_or("IfHealthyBudget");
            let int = |k: &str| {
                pdb.pointer(&format!("/status/{k}"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            };
            if policy == "AlwaysAllow"
                || (int("currentHealthy") >= int("desiredHealthy") && int("desiredHealthy") > 0)
            {
                return Ok(());
            }
        }
        let now = meta::now_rfc3339();
        let r = ObjectRef::new(&info, Some(&ns), &pdb_name);
        if dry_run {
            let (current, _) = self.read_current(&r.key(), r.target()).await?;
            return take_disruption(&current, &pod_name, &now).map(drop);
        }
        self.guaranteed_update(r, &Preconditions::default(), false, |current: Value| {
            take_disruption(&current, &pod_name, &now).map(Transition::Write)
        })
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(allowed: i64, observed: i64, generation: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": generation},
               "spec": {"selector": {"matchLabels": {"app": "web"}}},
               "status": {"disruptionsAllowed": allowed, "observedGeneration": observed,
                          "currentHealthy": 2, "desiredHealthy": 2}})
    }

    #[test]
    fn a_disruption_is_taken_only_when_allowed_and_processed() {
        let out = take_disruption(&pdb(1, 1, 1), "p", "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(out["status"]["disruptionsAllowed"], 0);
        assert_eq!(out["status"]["disruptedPods"]["p"], "2026-01-01T00:00:00Z");
        assert_eq!(out["status"]["conditions"][0]["status"], "False");
        let e = take_disruption(&pdb(0, 1, 1), "p", "t").unwrap_err();
        assert_eq!((e.code, e.reason), (429, "TooManyRequests"));
        assert_eq!(
            e.message,
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        let cause = &e.details.as_ref().unwrap().causes[0];
        assert_eq!(cause.reason, "DisruptionBudget");
        assert_eq!(
            cause.message,
            "The disruption budget web needs 2 healthy pods and has 2 currently"
        );
        let e = take_disruption(&pdb(3, 1, 2), "p", "t").unwrap_err();
        assert_eq!(e.code, 429);
        assert!(e.details.unwrap().causes[0]
            .message
            .contains("still being processed"));
        assert_eq!(
            take_disruption(&pdb(-1, 1, 1), "p", "t").unwrap_err().code,
            403
        );
    }

    #[test]
    fn budgets_pick_pods_by_a_non_empty_selector() {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        assert!(selects(&pdb(1, 1, 1), Some(&labels)));
        assert!(!selects(&pdb(1, 1, 1), None));
        let empty = json!({"spec": {"selector": {}}});
        assert!(
            !selects(&empty, Some(&labels)),
            "an empty selector picks nothing here"
        );
        assert!(can_ignore_budget(&json!({"status": {"phase": "Pending"}})));
        assert!(!can_ignore_budget(&json!({"status": {"phase": "Running"}})));
    }
}
