//! PersistentVolumeClaims and PersistentVolumes: access modes, the storage request, and
//! a claim spec that is fixed after creation except for growing its request.

use serde_json::{json, Value};

use super::json::{array_of, child_mut, default_field, str_of, str_or_empty};
use super::quantity;
use crate::field_error::FieldError;
use crate::strategy::Strategy;
use crate::validation::{forbidden, not_supported};

pub struct PersistentVolumeClaimStrategy;
pub struct PersistentVolumeStrategy;

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];

fn validate_access_modes(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let modes = array_of(spec, "accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.accessModes"),
            "at least 1 access mode is required",
        ));
    }
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.push(not_supported(
                format!("{path}.accessModes"),
                json!(m),
                ACCESS_MODES,
            ));
        }
    }
    if let Some(m) = str_of(spec, "volumeMode").filter(|m| !VOLUME_MODES.contains(m)) {
        errs.push(not_supported(
            format!("{path}.volumeMode"),
            json!(m),
            VOLUME_MODES,
        ));
    }
}

impl Strategy for PersistentVolumeClaimStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = child_mut(obj, "spec") {
            default_field(spec, "volumeMode", json!("Filesystem"));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), json!({"phase": "Pending"}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        validate_access_modes(spec, "spec", &mut errs);
        let storage = spec
            .pointer("/resources/requests/storage")
            .and_then(Value::as_str);
        match storage.map(|s| (s, quantity::parse(s))) {
            None => errs.push(FieldError::required("spec.resources[storage]", "")),
            Some((s, Some(v))) if v <= 0.0 => errs.push(FieldError::invalid(
                "spec.resources[storage]",
                json!(s),
                "must be greater than zero",
            )),
            _ => {}
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let strip = |v: &Value| {
            let mut spec = v.get("spec").cloned().unwrap_or(json!({}));
            if let Some(map) = spec.as_object_mut() {
                if let Some(requests) = map.get_mut("resources").and_then(|r| r.as_object_mut()) {
                    requests.remove("requests");
                }
                map.remove("volumeAttributesClassName");
            }
            spec
        };
        let (mut n, o) = (strip(new), strip(old));
        // The binder fills volumeName once.
        if str_or_empty(&o, "volumeName").is_empty() {
            if let Some(map) = n.as_object_mut() {
                match o.get("volumeName") {
                    Some(v) => map.insert("volumeName".into(), v.clone()),
                    None => map.remove("volumeName"),
                };
            }
        }
        // Retroactive default StorageClass: a claim created without a class may get one
        // once (never a change from "" or from another class).
        if o.get("storageClassName").is_none_or(Value::is_null) {
            if let Some(map) = n.as_object_mut() {
                map.remove("storageClassName");
            }
        }
        if n != o {
            errs.push(forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        let size = |v: &Value| {
            v.pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(quantity::parse)
        };
        if let (Some(ns), Some(os)) = (size(new), size(old)) {
            if ns < os {
                errs.push(forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than status.capacity",
                ));
            }
        }
        errs
    }
}

impl Strategy for PersistentVolumeStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = child_mut(obj, "spec") {
            default_field(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            default_field(spec, "volumeMode", json!("Filesystem"));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), json!({"phase": "Pending"}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        validate_access_modes(spec, "spec", &mut errs);
        if spec.pointer("/capacity/storage").is_none() {
            errs.push(FieldError::required("spec.capacity", ""));
        }
        let policies = ["Delete", "Recycle", "Retain"];
        if let Some(p) =
            str_of(spec, "persistentVolumeReclaimPolicy").filter(|p| !policies.contains(p))
        {
            errs.push(not_supported(
                "spec.persistentVolumeReclaimPolicy",
                json!(p),
                &policies,
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::tests_support::messages;

    fn claim(size: &str) -> Value {
        json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}})
    }

    #[test]
    fn claims() {
        let mut c = claim("1Gi");
        PersistentVolumeClaimStrategy.default(&mut c);
        PersistentVolumeClaimStrategy.prepare_for_create(&mut c);
        assert_eq!(c["spec"]["volumeMode"], json!("Filesystem"));
        assert_eq!(c["status"], json!({"phase": "Pending"}));
        assert!(PersistentVolumeClaimStrategy.validate(&c).is_empty());
        assert_eq!(
            messages(&PersistentVolumeClaimStrategy.validate(&json!({"spec": {}}))),
            vec![
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ]
        );
        let mut bigger = claim("2Gi");
        PersistentVolumeClaimStrategy.default(&mut bigger);
        bigger["spec"]["volumeName"] = json!("pv-1");
        assert!(PersistentVolumeClaimStrategy
            .validate_update(&bigger, &c)
            .is_empty());
        let mut other = bigger.clone();
        other["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert_eq!(
            messages(&PersistentVolumeClaimStrategy.validate_update(&other, &bigger)).len(),
            1
        );
        let mut classed = bigger.clone();
        classed["spec"]["storageClassName"] = json!("local-path");
        assert!(
            PersistentVolumeClaimStrategy
                .validate_update(&classed, &bigger)
                .is_empty(),
            "a class-less claim gets the default class retroactively"
        );
        let mut reclassed = classed.clone();
        reclassed["spec"]["storageClassName"] = json!("other");
        assert_eq!(
            messages(&PersistentVolumeClaimStrategy.validate_update(&reclassed, &classed)).len(),
            1
        );
        let mut smaller = bigger.clone();
        smaller["spec"]["resources"]["requests"]["storage"] = json!("1Gi");
        assert_eq!(
            messages(&PersistentVolumeClaimStrategy.validate_update(&smaller, &bigger)),
            vec!["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
        );
    }

    #[test]
    fn volumes() {
        let mut pv = json!({"spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/d"}}});
        PersistentVolumeStrategy.default(&mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], json!("Retain"));
        assert!(PersistentVolumeStrategy.validate(&pv).is_empty());
    }
}
