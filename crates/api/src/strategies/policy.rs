//! Smaller namespaced kinds that shape how others run: Leases (heartbeats and leader
//! election), LimitRanges (per-container defaults) and ResourceQuotas.

use serde_json::{json, Value};

use super::json::{array_of, child_mut, default_field, each_mut, i64_of, str_or_empty};
use super::quantity;
use crate::field_error::FieldError;
use crate::strategy::Strategy;
use crate::validation::not_supported;

pub struct LeaseStrategy;
pub struct LimitRangeStrategy;
pub struct ResourceQuotaStrategy;

const LIMIT_TYPES: &[&str] = &["Container", "PersistentVolumeClaim", "Pod"];

impl Strategy for LeaseStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        if let Some(d) = i64_of(spec, "leaseDurationSeconds").filter(|d| *d <= 0) {
            errs.push(FieldError::invalid(
                "spec.leaseDurationSeconds",
                json!(d),
                "must be greater than 0",
            ));
        }
        if let Some(t) = i64_of(spec, "leaseTransitions").filter(|t| *t < 0) {
            errs.push(FieldError::invalid(
                "spec.leaseTransitions",
                json!(t),
                "must be greater than or equal to 0",
            ));
        }
        errs
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }
}

/// Copies the entries of `from` that `to` lacks (both resource maps of one limit item).
fn fill_missing(item: &mut Value, from: &str, to: &str) {
    let Some(source) = item.get(from).and_then(Value::as_object).cloned() else {
        return;
    };
    if let Some(target) = child_mut(item, to) {
        for (k, v) in source {
            default_field(target, &k, v);
        }
    }
}

impl Strategy for LimitRangeStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = child_mut(obj, "spec") else {
            return;
        };
        each_mut(spec, "limits", |item| {
            if str_or_empty(item, "type") != "Container" {
                return;
            }
            // The default limit falls back to max; the default request to the default
            // limit, then to min (SetDefaults_LimitRangeItem).
            fill_missing(item, "max", "default");
            fill_missing(item, "default", "defaultRequest");
            fill_missing(item, "min", "defaultRequest");
        });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (i, item) in array_of(obj.get("spec").unwrap_or(&Value::Null), "limits")
            .iter()
            .enumerate()
        {
            let t = str_or_empty(item, "type");
            if !LIMIT_TYPES.contains(&t) {
                errs.push(not_supported(
                    format!("spec.limits[{i}].type"),
                    json!(t),
                    LIMIT_TYPES,
                ));
            }
            for part in [
                "max",
                "min",
                "default",
                "defaultRequest",
                "maxLimitRequestRatio",
            ] {
                validate_quantities(
                    item.get(part),
                    &format!("spec.limits[{i}].{part}"),
                    &mut errs,
                );
            }
        }
        errs
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }
}

fn validate_quantities(map: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(map) = map.and_then(Value::as_object) else {
        return;
    };
    for (name, q) in map {
        match q.as_str().and_then(quantity::parse) {
            Some(v) if v >= 0.0 => {}
            Some(_) => errs.push(FieldError::invalid(
                format!("{path}[{name}]"),
                q.clone(),
                "must be greater than or equal to 0",
            )),
            None => errs.push(FieldError::invalid(
                format!("{path}[{name}]"),
                q.clone(),
                "must be a valid resource quantity",
            )),
        }
    }
}

impl Strategy for ResourceQuotaStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), json!({}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        validate_quantities(spec.get("hard"), "spec.hard", &mut errs);
        let scopes = [
            "Terminating",
            "NotTerminating",
            "BestEffort",
            "NotBestEffort",
            "PriorityClass",
            "CrossNamespacePodAffinity",
        ];
        for (i, s) in array_of(spec, "scopes").iter().enumerate() {
            let s = s.as_str().unwrap_or("");
            if !scopes.contains(&s) {
                errs.push(not_supported(
                    format!("spec.scopes[{i}]"),
                    json!(s),
                    &scopes,
                ));
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::tests_support::messages;

    #[test]
    fn leases() {
        let l = json!({"spec": {"holderIdentity": "n1", "leaseDurationSeconds": 0}});
        assert_eq!(
            messages(&LeaseStrategy.validate(&l)),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
        assert!(LeaseStrategy.allow_create_on_update());
    }

    #[test]
    fn limit_range_defaults() {
        let mut lr = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}}]}});
        LimitRangeStrategy.default(&mut lr);
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            lr["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "2", "memory": "64Mi"})
        );
        assert!(LimitRangeStrategy.validate(&lr).is_empty());
        let bad = json!({"spec": {"limits": [{"type": "Node", "max": {"cpu": "x"}}]}});
        assert_eq!(messages(&LimitRangeStrategy.validate(&bad)).len(), 2);
    }

    #[test]
    fn quotas() {
        let q = json!({"spec": {"hard": {"pods": "10", "cpu": "-1"}}});
        assert_eq!(
            messages(&ResourceQuotaStrategy.validate(&q)),
            vec!["spec.hard[cpu]: Invalid value: \"-1\": must be greater than or equal to 0"]
        );
    }
}
