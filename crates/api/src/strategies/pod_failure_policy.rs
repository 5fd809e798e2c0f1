//! A Job's `spec.podFailurePolicy`: its defaults and validation, as upstream's
//! `SetDefaults_Job` and `validatePodFailurePolicy`.

use serde_json::{json, Value};

use super::json::str_of;
use crate::field_error::{FieldError, FieldErrorType};
use crate::validation::{duplicate, is_qualified_name, not_supported};

const MAX_RULES: usize = 20;
const MAX_CONDITION_PATTERNS: usize = 20;
const MAX_EXIT_CODES: usize = 255;
const ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];
const OPERATORS: &[&str] = &["In", "NotIn"];
const STATUSES: &[&str] = &["False", "True", "Unknown"];

/// A condition pattern without a status matches the condition being True.
pub fn default(spec: &mut Value) {
    let Some(rules) = spec
        .pointer_mut("/podFailurePolicy/rules")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for rule in rules {
        let Some(patterns) = rule
            .get_mut("onPodConditions")
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for p in patterns.iter_mut().filter_map(Value::as_object_mut) {
            // "" too: typed clients (Go's zero value, k8s-openapi's String) send it for unset.
            if p.get("status").is_none_or(|v| v.is_null() || v == "") {
                p.insert("status".into(), json!("True"));
            }
        }
    }
}

/// The errors of `spec.podFailurePolicy`, none when it is absent.
pub fn validate(spec: &Value, path: &str) -> Vec<FieldError> {
    let Some(policy) = spec.get("podFailurePolicy").filter(|v| !v.is_null()) else {
        return Vec::new();
    };
    let mut errs = Vec::new();
    let restart = spec
        .pointer("/template/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if restart != "Never" {
        errs.push(FieldError::invalid(
            format!("{path}.template.spec.restartPolicy"),
            json!(restart),
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
    let path = format!("{path}.podFailurePolicy.rules");
    let rules = policy
        .get("rules")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if rules.len() > MAX_RULES {
        errs.push(too_many(&path, rules.len(), MAX_RULES));
    }
    let containers: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.pointer(&format!("/template/spec/{k}"))?.as_array())
        .flatten()
        .filter_map(|c| str_of(c, "name"))
        .collect();
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    for (i, rule) in rules.iter().enumerate() {
        validate_rule(
            rule,
            &format!("{path}[{i}]"),
            &containers,
            per_index,
            &mut errs,
        );
    }
    errs
}

fn validate_rule(
    rule: &Value,
    path: &str,
    containers: &[&str],
    per_index: bool,
    errs: &mut Vec<FieldError>,
) {
    let action_path = format!("{path}.action");
    match str_of(rule, "action") {
        None | Some("") => errs.push(FieldError::required(
            action_path,
            format!("valid values: {}", quoted(ACTIONS)),
        )),
        Some("FailIndex") if !per_index => errs.push(FieldError::invalid(
            action_path,
            json!("FailIndex"),
            "requires the backoffLimitPerIndex to be set",
        )),
        Some(a) if !ACTIONS.contains(&a) => {
            errs.push(not_supported(action_path, json!(a), ACTIONS))
        }
        Some(_) => {}
    }
    let exit_codes = rule.get("onExitCodes").filter(|v| !v.is_null());
    let conditions = rule
        .get("onPodConditions")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    if let Some(req) = exit_codes {
        validate_exit_codes(req, &format!("{path}.onExitCodes"), containers, errs);
    }
    if let Some(patterns) = conditions {
        validate_conditions(patterns, &format!("{path}.onPodConditions"), errs);
    }
    match (exit_codes, conditions) {
        (Some(_), Some(_)) => errs.push(FieldError::new(
            FieldErrorType::Invalid,
            path,
            "specifying both OnExitCodes and OnPodConditions is not supported",
        )),
        (None, None) => errs.push(FieldError::new(
            FieldErrorType::Invalid,
            path,
            "specifying one of OnExitCodes and OnPodConditions is required",
        )),
        _ => {}
    }
}

fn validate_exit_codes(req: &Value, path: &str, containers: &[&str], errs: &mut Vec<FieldError>) {
    let operator = str_of(req, "operator").unwrap_or("");
    if operator.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.operator"),
            format!("valid values: {}", quoted(OPERATORS)),
        ));
    } else if !OPERATORS.contains(&operator) {
        errs.push(not_supported(
            format!("{path}.operator"),
            json!(operator),
            OPERATORS,
        ));
    }
    if let Some(name) = str_of(req, "containerName") {
        if !containers.contains(&name) {
            errs.push(FieldError::invalid(
                format!("{path}.containerName"),
                json!(name),
                "must be one of the container or initContainer names in the pod template",
            ));
        }
    }
    let values_path = format!("{path}.values");
    let raw = req.get("values").cloned().unwrap_or(json!([]));
    let values: Vec<i64> = raw
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    if values.is_empty() {
        errs.push(FieldError::invalid(
            values_path,
            raw,
            "at least one value is required",
        ));
        return;
    }
    if values.len() > MAX_EXIT_CODES {
        errs.push(too_many(&values_path, values.len(), MAX_EXIT_CODES));
        return;
    }
    let mut seen = std::collections::BTreeSet::new();
    for (j, v) in values.iter().enumerate() {
        let at = format!("{values_path}[{j}]");
        if operator == "In" && *v == 0 {
            errs.push(FieldError::invalid(
                at.clone(),
                json!(v),
                "must not be 0 for the In operator",
            ));
        }
        if !seen.insert(*v) {
            errs.push(duplicate(at, json!(v)));
        }
    }
    if values.windows(2).any(|w| w[0] > w[1]) {
        errs.push(FieldError::invalid(values_path, raw, "must be ordered"));
    }
}

fn validate_conditions(patterns: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    if patterns.len() > MAX_CONDITION_PATTERNS {
        errs.push(too_many(path, patterns.len(), MAX_CONDITION_PATTERNS));
    }
    for (j, p) in patterns.iter().enumerate() {
        let at = format!("{path}[{j}]");
        let type_ = str_of(p, "type").unwrap_or("");
        for msg in is_qualified_name(type_) {
            errs.push(FieldError::invalid(format!("{at}.type"), json!(type_), msg));
        }
        match str_of(p, "status") {
            None | Some("") => errs.push(FieldError::required(
                format!("{at}.status"),
                format!("valid values: {}", quoted(STATUSES)),
            )),
            Some(s) if !STATUSES.contains(&s) => {
                errs.push(not_supported(format!("{at}.status"), json!(s), STATUSES))
            }
            Some(_) => {}
        }
    }
}

/// Printed as upstream's `Too many: 21: must have at most 20 items`.
fn too_many(path: &str, actual: usize, max: usize) -> FieldError {
    FieldError::new(
        FieldErrorType::TooMany,
        path,
        format!("{actual}: must have at most {max} items"),
    )
}

/// Go's `%q` of a string list: `["a" "b"]`.
fn quoted(values: &[&str]) -> String {
    let q: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", q.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(policy: Value) -> Value {
        json!({
            "podFailurePolicy": policy,
            "template": {"spec": {"restartPolicy": "Never",
                "initContainers": [{"name": "setup"}],
                "containers": [{"name": "main"}]}}
        })
    }

    fn messages(spec: &Value) -> Vec<String> {
        validate(spec, "spec")
            .iter()
            .map(FieldError::message)
            .collect()
    }

    #[test]
    fn a_valid_policy_passes_and_condition_status_defaults_to_true() {
        let mut s = spec(json!({"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [1, 42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}},
            {"action": "Ignore", "onPodConditions": [{"type": "Other", "status": ""}]},
        ]}));
        default(&mut s);
        for rule in [1, 3] {
            assert_eq!(
                s.pointer(&format!(
                    "/podFailurePolicy/rules/{rule}/onPodConditions/0/status"
                )),
                Some(&json!("True"))
            );
        }
        assert!(messages(&s).is_empty(), "{:?}", messages(&s));
        assert!(validate(&json!({}), "spec").is_empty());
    }

    #[test]
    fn bad_policies_get_upstreams_errors() {
        let s = spec(json!({"rules": [
            {"onExitCodes": {"containerName": "nope", "operator": "Maybe", "values": [0, 3, 3, 2]}},
            {"action": "FailIndex", "onPodConditions": [{"type": "Bad Type", "status": "Yes"}]},
            {"action": "Count"},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [0]},
             "onPodConditions": [{"type": "X", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": []}},
        ]}));
        let m = messages(&s);
        let has = |needle: &str| m.iter().any(|x| x.contains(needle));
        assert!(
            has("spec.podFailurePolicy.rules[0].action: Required value"),
            "{m:?}"
        );
        assert!(
            has("rules[0].onExitCodes.operator: Unsupported value: \"Maybe\""),
            "{m:?}"
        );
        assert!(
            has("rules[0].onExitCodes.containerName: Invalid value: \"nope\""),
            "{m:?}"
        );
        assert!(
            has("rules[0].onExitCodes.values[2]: Duplicate value: 3"),
            "{m:?}"
        );
        assert!(
            has("rules[0].onExitCodes.values: Invalid value: [0,3,3,2]: must be ordered"),
            "{m:?}"
        );
        assert!(has("requires the backoffLimitPerIndex to be set"), "{m:?}");
        assert!(
            has("rules[1].onPodConditions[0].type: Invalid value: \"Bad Type\""),
            "{m:?}"
        );
        assert!(
            has("rules[1].onPodConditions[0].status: Unsupported value: \"Yes\""),
            "{m:?}"
        );
        assert!(
            has("rules[2]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required"),
            "{m:?}"
        );
        assert!(
            has("specifying both OnExitCodes and OnPodConditions is not supported"),
            "{m:?}"
        );
        assert!(has("rules[3].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator"), "{m:?}");
        assert!(
            has("rules[4].onExitCodes.values: Invalid value: []: at least one value is required"),
            "{m:?}"
        );
    }

    #[test]
    fn only_restart_policy_never_and_at_most_twenty_rules() {
        let mut s = spec(json!({"rules": []}));
        s["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        let m = messages(&s);
        assert_eq!(
            m,
            ["spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified"]
        );
        let rule =
            json!({"action": "Ignore", "onPodConditions": [{"type": "X", "status": "True"}]});
        let s = spec(json!({"rules": vec![rule; 21]}));
        assert!(messages(&s)
            .iter()
            .any(|x| x == "spec.podFailurePolicy.rules: Too many: 21: must have at most 20 items"));
    }
}
