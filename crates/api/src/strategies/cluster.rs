//! Cluster-scoped kinds with their own rules: Namespaces (phase and the `kubernetes`
//! finalizer), Nodes (taints, pod CIDRs that are set once), PriorityClasses and
//! StorageClasses.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::json::{
    array_of, child_mut, default_field, i64_of, selector_value, str_of, str_or_empty,
};
use crate::field_error::FieldError;
use crate::strategy::Strategy;
use crate::validation::{duplicate, forbidden, invalid_each, is_qualified_name, not_supported};

pub struct NamespaceStrategy;
pub struct NodeStrategy;
pub struct PriorityClassStrategy;
pub struct StorageClassStrategy;

/// The label Kubernetes puts on every namespace so selectors can pick namespaces by name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const CIDR_MESSAGE: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

impl Strategy for NamespaceStrategy {
    fn default(&self, obj: &mut Value) {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let (Some(name), Some(labels)) = (
            name.filter(|n| !n.is_empty()),
            child_mut(obj, "metadata").and_then(|m| child_mut(m, "labels")),
        ) {
            if let Some(map) = labels.as_object_mut() {
                map.insert(NAMESPACE_NAME_LABEL.into(), json!(name));
            }
        }
        if let Some(status) = child_mut(obj, "status") {
            default_field(status, "phase", json!("Active"));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
            map.insert("status".into(), json!({"phase": "Active"}));
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // spec.finalizers change only through the finalize subresource.
        let finalizers = old.pointer("/spec/finalizers").cloned();
        if let Some(spec) = child_mut(new, "spec").and_then(Value::as_object_mut) {
            match finalizers {
                Some(f) => spec.insert("finalizers".into(), f),
                None => spec.remove("finalizers"),
            };
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for f in array_of(obj.get("spec").unwrap_or(&Value::Null), "finalizers") {
            let f = f.as_str().unwrap_or("");
            errs.extend(invalid_each("spec.finalizers", f, is_qualified_name(f)));
        }
        errs
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.phase").then(|| selector_value(obj.pointer("/status/phase"), ""))
    }
}

pub(crate) fn is_valid_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

impl Strategy for NodeStrategy {
    fn default(&self, obj: &mut Value) {
        // Allocatable defaults to capacity (SetDefaults_NodeStatus).
        let capacity = obj.pointer("/status/capacity").cloned();
        if let (Some(capacity), Some(status)) = (capacity, obj.get_mut("status")) {
            default_field(status, "allocatable", capacity);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        let mut seen = HashSet::new();
        for (i, t) in array_of(spec, "taints").iter().enumerate() {
            let p = format!("spec.taints[{i}]");
            let key = str_or_empty(t, "key");
            errs.extend(invalid_each(
                &format!("{p}.key"),
                key,
                is_qualified_name(key),
            ));
            let effect = str_or_empty(t, "effect");
            if effect.is_empty() {
                errs.push(FieldError::required(format!("{p}.effect"), ""));
            } else if !TAINT_EFFECTS.contains(&effect) {
                errs.push(not_supported(
                    format!("{p}.effect"),
                    json!(effect),
                    TAINT_EFFECTS,
                ));
            }
            if !seen.insert((key, effect)) {
                errs.push(duplicate(p, t.clone()));
            }
        }
        let cidrs: Vec<&str> = match array_of(spec, "podCIDRs") {
            [] => str_of(spec, "podCIDR")
                .filter(|c| !c.is_empty())
                .into_iter()
                .collect(),
            list => list.iter().filter_map(Value::as_str).collect(),
        };
        for (i, c) in cidrs.iter().enumerate() {
            if !is_valid_cidr(c) {
                errs.push(FieldError::invalid(
                    format!("spec.podCIDRs[{i}]"),
                    json!(c),
                    CIDR_MESSAGE,
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (key, what) in [("podCIDR", "podCIDR"), ("providerID", "providerID")] {
            let o = old
                .pointer(&format!("/spec/{key}"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let n = new
                .pointer(&format!("/spec/{key}"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !o.is_empty() && o != n {
                let field = if key == "podCIDR" {
                    "spec.podCIDRs"
                } else {
                    "spec.providerID"
                };
                errs.push(forbidden(
                    field,
                    format!("node updates may not change {what} except from \"\" to valid"),
                ));
            }
        }
        errs
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "spec.unschedulable")
            .then(|| selector_value(obj.pointer("/spec/unschedulable"), "false"))
    }

    fn allow_unconditional_update(&self) -> bool {
        false
    }
}

impl Strategy for PriorityClassStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let system = ["system-node-critical", "system-cluster-critical"];
        if name.starts_with("system-") && !system.contains(&name) {
            errs.push(FieldError::invalid(
                "metadata.name",
                json!(name),
                "priority class names with 'system-' prefix are reserved",
            ));
        }
        if let Some(p) = str_of(obj, "preemptionPolicy") {
            let allowed = ["Never", "PreemptLowerPriority"];
            if !allowed.contains(&p) {
                errs.push(not_supported("preemptionPolicy", json!(p), &allowed));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if i64_of(new, "value") != i64_of(old, "value") {
            errs.push(forbidden("value", "may not be changed in an update."));
        }
        if new.get("preemptionPolicy") != old.get("preemptionPolicy") {
            errs.push(FieldError {
                value: new.get("preemptionPolicy").cloned(),
                ..FieldError::immutable("preemptionPolicy")
            });
        }
        errs
    }
}

impl Strategy for StorageClassStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "reclaimPolicy", json!("Delete"));
        default_field(obj, "volumeBindingMode", json!("Immediate"));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let provisioner = str_or_empty(obj, "provisioner");
        if provisioner.is_empty() {
            errs.push(FieldError::required("provisioner", ""));
        } else {
            errs.extend(invalid_each(
                "provisioner",
                provisioner,
                is_qualified_name(&provisioner.to_lowercase()),
            ));
        }
        if let Some(p) = str_of(obj, "reclaimPolicy").filter(|p| !["Delete", "Retain"].contains(p))
        {
            errs.push(not_supported(
                "reclaimPolicy",
                json!(p),
                &["Delete", "Retain"],
            ));
        }
        let modes = ["Immediate", "WaitForFirstConsumer"];
        if let Some(m) = str_of(obj, "volumeBindingMode").filter(|m| !modes.contains(m)) {
            errs.push(not_supported("volumeBindingMode", json!(m), &modes));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for key in ["parameters", "provisioner", "reclaimPolicy"] {
            if new.get(key) != old.get(key) {
                errs.push(forbidden(key, format!("updates to {key} are forbidden.")));
            }
        }
        if new.get("volumeBindingMode") != old.get("volumeBindingMode") {
            errs.push(FieldError {
                value: new.get("volumeBindingMode").cloned(),
                ..FieldError::immutable("volumeBindingMode")
            });
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::tests_support::messages;

    #[test]
    fn namespace_lifecycle_fields() {
        let mut ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}});
        NamespaceStrategy.default(&mut ns);
        NamespaceStrategy.prepare_for_create(&mut ns);
        assert_eq!(
            ns["metadata"]["labels"],
            json!({NAMESPACE_NAME_LABEL: "team-a"})
        );
        assert_eq!(ns["spec"], json!({"finalizers": ["kubernetes"]}));
        assert_eq!(ns["status"], json!({"phase": "Active"}));
        assert_eq!(
            NamespaceStrategy
                .field_value(&ns, "status.phase")
                .as_deref(),
            Some("Active")
        );
        let mut update = json!({"metadata": {"name": "team-a"}, "spec": {"finalizers": []}});
        NamespaceStrategy.prepare_for_update(&mut update, &ns);
        assert_eq!(update["spec"]["finalizers"], json!(["kubernetes"]));
    }

    #[test]
    fn node_rules() {
        let node = json!({"spec": {"podCIDR": "10.42.0.0/33", "taints": [
            {"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}, {"key": "b"}]}});
        let msgs = messages(&NodeStrategy.validate(&node));
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].starts_with("spec.taints[1]: Duplicate value"));
        assert_eq!(msgs[1], "spec.taints[2].effect: Required value");
        assert_eq!(msgs[2], "spec.podCIDRs[0]: Invalid value: \"10.42.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)");
        let old = json!({"spec": {"podCIDR": "10.42.1.0/24"}});
        let new = json!({"spec": {"podCIDR": "10.42.2.0/24"}});
        assert_eq!(messages(&NodeStrategy.validate_update(&new, &old)),
            vec!["spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"]);
        assert!(NodeStrategy
            .validate_update(&old, &json!({"spec": {}}))
            .is_empty());
        assert_eq!(
            NodeStrategy
                .field_value(&old, "spec.unschedulable")
                .as_deref(),
            Some("false")
        );
        let mut with_status = json!({"status": {"capacity": {"cpu": "2"}}});
        NodeStrategy.default(&mut with_status);
        assert_eq!(with_status["status"]["allocatable"], json!({"cpu": "2"}));
    }

    #[test]
    fn priority_and_storage_classes() {
        let mut pc = json!({"metadata": {"name": "system-x"}, "value": 10});
        PriorityClassStrategy.default(&mut pc);
        assert_eq!(pc["preemptionPolicy"], json!("PreemptLowerPriority"));
        assert_eq!(messages(&PriorityClassStrategy.validate(&pc)).len(), 1);
        let changed = json!({"metadata": {"name": "system-x"}, "value": 11, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            messages(&PriorityClassStrategy.validate_update(&changed, &pc)),
            vec!["value: Forbidden: may not be changed in an update."]
        );
        let mut sc = json!({"provisioner": "rancher.io/local-path"});
        StorageClassStrategy.default(&mut sc);
        assert_eq!(
            (&sc["reclaimPolicy"], &sc["volumeBindingMode"]),
            (&json!("Delete"), &json!("Immediate"))
        );
        assert!(StorageClassStrategy.validate(&sc).is_empty());
        assert_eq!(
            messages(&StorageClassStrategy.validate(&json!({}))),
            vec!["provisioner: Required value"]
        );
    }
}
