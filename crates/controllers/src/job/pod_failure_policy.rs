//! A failed pod against its Job's `podFailurePolicy`, as upstream's `matchPodFailurePolicy`:
//! the first rule that matches decides. `FailJob` fails the Job at once (reason
//! `PodFailurePolicy`), `Ignore` leaves the failure out of `status.failed` and the back-off,
//! `Count` (and no match) counts it as usual. `FailIndex` needs `backoffLimitPerIndex`,
//! which Flotilla does not implement; it counts like `Count`.

use k8s_openapi::api::batch::v1::{
    Job, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The Job fails; upstream's message says which pod, container or condition and rule.
    FailJob(String),
    Ignore,
    Count,
}

/// What the Job's policy makes of `pod`, a pod in phase Failed; `Count` without a policy.
pub fn verdict(job: &Job, pod: &Pod) -> Verdict {
    let Some(policy) = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref())
    else {
        return Verdict::Count;
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(req) = &rule.on_exit_codes {
            matching_container(pod, req).map(|(c, code)| {
                format!(
                    "Container {c} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                    rule.action
                )
            })
        } else {
            matching_condition(pod, rule).map(|type_| {
                format!(
                    "Pod {ns}/{name} has condition {type_} matching {} rule at index {index}",
                    rule.action
                )
            })
        };
        if let Some(message) = matched {
            return match rule.action.as_str() {
                "FailJob" => Verdict::FailJob(message),
                "Ignore" => Verdict::Ignore,
                _ => Verdict::Count,
            };
        }
    }
    Verdict::Count
}

/// The first terminated container (regular ones, then init ones) with a non-zero exit code
/// the requirement matches, and that code. A zero exit code never matches, as upstream.
fn matching_container(
    pod: &Pod,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(String, i32)> {
    let status = pod.status.as_ref()?;
    let lists: [&Option<Vec<ContainerStatus>>; 2] =
        [&status.container_statuses, &status.init_container_statuses];
    lists.into_iter().flatten().find_map(|list| {
        list.iter().find_map(|c| {
            let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
            let named = req.container_name.as_deref().is_none_or(|n| n == c.name);
            let listed = req.values.contains(&code);
            let operator_ok = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            (named && code != 0 && operator_ok).then(|| (c.name.clone(), code))
        })
    })
}

/// The type of the first pod condition a pattern of the rule matches.
fn matching_condition(pod: &Pod, rule: &PodFailurePolicyRule) -> Option<String> {
    let patterns = rule.on_pod_conditions.as_deref()?;
    let conditions = pod.status.as_ref()?.conditions.as_deref()?;
    conditions.iter().find_map(|c| {
        patterns
            .iter()
            .any(|p| p.type_ == c.type_ && p.status == c.status)
            .then(|| c.type_.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(rules: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "ns"},
            "spec": {"template": {}, "podFailurePolicy": {"rules": rules}}
        }))
        .unwrap()
    }

    fn failed(containers: serde_json::Value, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "containerStatuses": containers,
                       "conditions": conditions}
        }))
        .unwrap()
    }

    fn exited(name: &str, code: i32) -> serde_json::Value {
        json!({"name": name, "image": "x", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": code}}})
    }

    #[test]
    fn exit_codes_fail_the_job_with_upstreams_message() {
        let j = job(json!([
            {"action": "Ignore", "onExitCodes": {"containerName": "side", "operator": "In", "values": [42]}},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
        ]));
        let p = failed(json!([exited("main", 42)]), json!([]));
        assert_eq!(
            verdict(&j, &p),
            Verdict::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        // The named container wins the earlier rule.
        let p = failed(json!([exited("side", 42)]), json!([]));
        assert_eq!(verdict(&j, &p), Verdict::Ignore);
        // No rule matches: counted.
        let p = failed(json!([exited("main", 1)]), json!([]));
        assert_eq!(verdict(&j, &p), Verdict::Count);
    }

    #[test]
    fn not_in_skips_zero_and_running_containers() {
        let j = job(
            json!([{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}}]),
        );
        let running = json!({"name": "r", "image": "x", "imageID": "", "ready": true,
                             "restartCount": 0, "state": {"running": {}}});
        let p = failed(
            json!([exited("ok", 0), running, exited("one", 1)]),
            json!([]),
        );
        assert_eq!(verdict(&j, &p), Verdict::Count);
        let p = failed(json!([exited("ok", 0), exited("boom", 2)]), json!([]));
        assert!(matches!(verdict(&j, &p), Verdict::FailJob(m) if m.contains("Container boom")));
    }

    #[test]
    fn init_containers_and_conditions_match_too() {
        let j = job(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}},
        ]));
        let disrupted = failed(
            json!([exited("main", 3)]),
            json!([{"type": "DisruptionTarget", "status": "True"}]),
        );
        assert_eq!(verdict(&j, &disrupted), Verdict::Ignore, "rules in order");
        let not_disrupted = failed(
            json!([]),
            json!([{"type": "DisruptionTarget", "status": "False"}]),
        );
        assert_eq!(verdict(&j, &not_disrupted), Verdict::Count);
        let mut init = failed(json!([]), json!([]));
        init.status.as_mut().unwrap().init_container_statuses =
            Some(vec![serde_json::from_value(exited("setup", 3)).unwrap()]);
        assert!(matches!(verdict(&j, &init), Verdict::FailJob(m) if m.contains("Container setup")));

        let cond = job(json!([{"action": "FailJob",
            "onPodConditions": [{"type": "ConfigIssue", "status": "True"}]}]));
        let p = failed(
            json!([]),
            json!([{"type": "ConfigIssue", "status": "True"}]),
        );
        assert_eq!(
            verdict(&cond, &p),
            Verdict::FailJob(
                "Pod ns/p has condition ConfigIssue matching FailJob rule at index 0".into()
            )
        );
    }

    #[test]
    fn without_a_policy_every_failure_counts() {
        let j: Job =
            serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {"template": {}}}))
                .unwrap();
        assert_eq!(
            verdict(&j, &failed(json!([exited("main", 42)]), json!([]))),
            Verdict::Count
        );
    }
}
