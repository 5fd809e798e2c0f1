//! `metav1.LabelSelector`: validation (`ValidateLabelSelector`) and matching against a
//! label set, as the workload kinds need to check that a selector selects its template.

use serde_json::Value;

use super::json::{array_of, str_or_empty};
use crate::field_error::FieldError;
use crate::validation::{invalid_each, is_qualified_name, validate_labels};

/// Validates a LabelSelector at `path` (e.g. `spec.selector`).
pub fn validate(selector: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = validate_labels(selector.get("matchLabels"), &format!("{path}.matchLabels"));
    for (i, req) in array_of(selector, "matchExpressions").iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let op = str_or_empty(req, "operator");
        let values = array_of(req, "values");
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        format!("{p}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(crate::validation::forbidden(
                        format!("{p}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                format!("{p}.operator"),
                Value::String(other.to_string()),
                "not a valid selector operator",
            )),
        }
        let key = str_or_empty(req, "key");
        errs.extend(invalid_each(
            &format!("{p}.key"),
            key,
            is_qualified_name(key),
        ));
    }
    errs
}

/// Whether the selector has no requirement at all (selects everything).
pub fn is_empty(selector: &Value) -> bool {
    selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
        && array_of(selector, "matchExpressions").is_empty()
}

/// Whether `labels` (a JSON object of strings, or absent) satisfy the selector.
pub fn matches(selector: &Value, labels: Option<&Value>) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let match_labels_ok = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    match_labels_ok
        && array_of(selector, "matchExpressions").iter().all(|req| {
            let have = label(str_or_empty(req, "key"));
            let values = array_of(req, "values");
            let listed = || have.is_some_and(|h| values.iter().any(|v| v.as_str() == Some(h)));
            match str_or_empty(req, "operator") {
                "In" => listed(),
                "NotIn" => !listed(),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matching_labels_and_expressions() {
        let sel = json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                 {"key": "x", "operator": "DoesNotExist"}]});
        assert!(matches(&sel, Some(&json!({"app": "web", "tier": "a"}))));
        assert!(!matches(&sel, Some(&json!({"app": "web", "tier": "c"}))));
        assert!(!matches(
            &sel,
            Some(&json!({"app": "web", "tier": "a", "x": ""}))
        ));
        assert!(!matches(&sel, None));
        assert!(is_empty(&json!({})));
    }

    #[test]
    fn invalid_expressions() {
        let sel = json!({"matchExpressions": [{"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Near"}]});
        let msgs: Vec<String> = validate(&sel, "spec.selector")
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(
            msgs,
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Near\": not a valid selector operator",
            ]
        );
    }
}
