//! policy/v1 PodDisruptionBudgets: a new budget starts with an empty status (the disruption
//! controller fills it), and its spec is validated as upstream's
//! `ValidatePodDisruptionBudgetSpec`.

use serde_json::{json, Value};

use super::selector;
use super::workloads::reset_status;
use crate::field_error::FieldError;
use crate::strategy::Strategy;
use crate::validation::not_supported;

pub struct PodDisruptionBudgetStrategy;

const EVICTION_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

/// An int-or-percent that must be non-negative and at most 100%.
fn int_or_percent_errors(v: &Value, path: &str) -> Vec<FieldError> {
    match v {
        Value::Number(n) if n.as_i64().is_some_and(|i| i < 0) => vec![FieldError::invalid(
            path,
            v.clone(),
            "must be greater than or equal to 0",
        )],
        Value::Number(_) => Vec::new(),
        Value::String(s) => {
            let pct = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            match pct.map(|d| d.parse::<u64>()) {
                Some(Ok(p)) if p <= 100 => Vec::new(),
                Some(_) => vec![FieldError::invalid(path, v.clone(), "must not be greater than 100%")],
                None => vec![FieldError::invalid(
                    path,
                    v.clone(),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )],
            }
        }
        _ => Vec::new(),
    }
}

impl Strategy for PodDisruptionBudgetStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(
            obj,
            json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
        );
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        let min = spec.get("minAvailable").filter(|v| !v.is_null());
        let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
        if min.is_some() && max.is_some() {
            errs.push(FieldError::invalid(
                "spec",
                spec.clone(),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        if let Some(v) = min {
            errs.extend(int_or_percent_errors(v, "spec.minAvailable"));
        }
        if let Some(v) = max {
            errs.extend(int_or_percent_errors(v, "spec.maxUnavailable"));
        }
        if let Some(sel) = spec.get("selector").filter(|s| s.is_object()) {
            errs.extend(selector::validate(sel, "spec.selector"));
        }
        if let Some(p) = spec
            .get("unhealthyPodEvictionPolicy")
            .and_then(Value::as_str)
        {
            if !EVICTION_POLICIES.contains(&p) {
                errs.push(not_supported(
                    "spec.unhealthyPodEvictionPolicy",
                    json!(p),
                    EVICTION_POLICIES,
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::tests_support::messages;

    fn pdb(spec: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn a_new_budget_starts_empty_and_good_specs_pass() {
        let mut b =
            pdb(json!({"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}));
        PodDisruptionBudgetStrategy.prepare_for_create(&mut b);
        assert_eq!(b["status"]["disruptionsAllowed"], json!(0));
        assert!(PodDisruptionBudgetStrategy.validate(&b).is_empty());
        assert!(PodDisruptionBudgetStrategy
            .validate(&pdb(
                json!({"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow"})
            ))
            .is_empty());
    }

    #[test]
    fn bad_budgets_get_upstreams_errors() {
        let m = |spec: Value| messages(&PodDisruptionBudgetStrategy.validate(&pdb(spec)));
        assert_eq!(
            m(json!({"minAvailable": 1, "maxUnavailable": 1})),
            ["spec: Invalid value: {\"maxUnavailable\":1,\"minAvailable\":1}: minAvailable and maxUnavailable cannot be both set"]
        );
        assert_eq!(
            m(json!({"minAvailable": -1})),
            ["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            m(json!({"maxUnavailable": "120%"})),
            ["spec.maxUnavailable: Invalid value: \"120%\": must not be greater than 100%"]
        );
        assert!(m(json!({"maxUnavailable": "half"}))[0].contains("a valid percent string"));
        assert_eq!(
            m(json!({"unhealthyPodEvictionPolicy": "Sometimes"})),
            ["spec.unhealthyPodEvictionPolicy: Unsupported value: \"Sometimes\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\""]
        );
    }
}
