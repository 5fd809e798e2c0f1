//! apps/v1 workloads: Deployments, ReplicaSets, StatefulSets and DaemonSets. Each has a
//! selector that must select its pod template and may not change, replicas ≥ 0, and its
//! own rollout settings.

use serde_json::{json, Value};

use super::json::{child_mut, default_field, each_mut, i64_of, selector_value, str_of};
use super::pod_spec::{default_pod_template, validate_pod_template};
use super::selector;
use crate::field_error::FieldError;
use crate::strategy::Strategy;
use crate::validation::{forbidden, not_supported};

pub struct DeploymentStrategy;
pub struct ReplicaSetStrategy;
pub struct StatefulSetStrategy;
pub struct DaemonSetStrategy;
pub struct ControllerRevisionStrategy;

pub(crate) fn non_negative(spec: &Value, key: &str, path: &str) -> Option<FieldError> {
    let v = i64_of(spec, key)?;
    (v < 0).then(|| {
        FieldError::invalid(
            format!("{path}.{key}"),
            json!(v),
            "must be greater than or equal to 0",
        )
    })
}

/// Resets status to what Kubernetes' empty status serialises as.
pub(crate) fn reset_status(obj: &mut Value, status: Value) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("status".into(), status);
    }
}

/// The checks every selector-owning workload shares: selector present, non-empty, valid
/// and matching the template's labels; the template itself; replicas and
/// minReadySeconds/revisionHistoryLimit non-negative.
pub(crate) fn validate_selector_and_template(
    spec: &Value,
    what: &str,
    restart_policies: &[&str],
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in ["replicas", "minReadySeconds", "revisionHistoryLimit"] {
        errs.extend(non_negative(spec, key, "spec"));
    }
    match spec.get("selector").filter(|s| s.is_object()) {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) if selector::is_empty(sel) => errs.push(FieldError::invalid(
            "spec.selector",
            sel.clone(),
            format!("empty selector is invalid for {what}"),
        )),
        Some(sel) => {
            errs.extend(selector::validate(sel, "spec.selector"));
            let labels = spec.pointer("/template/metadata/labels");
            if spec.get("template").is_some() && !selector::matches(sel, labels) {
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    labels.cloned().unwrap_or(json!({})),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    errs.extend(validate_pod_template(
        spec.get("template"),
        "spec.template",
        restart_policies,
    ));
    errs
}

/// The selector of apps/v1 kinds may not change.
pub(crate) fn selector_immutable(new: &Value, old: &Value) -> Vec<FieldError> {
    let (n, o) = (new.pointer("/spec/selector"), old.pointer("/spec/selector"));
    if n == o {
        return Vec::new();
    }
    vec![FieldError {
        value: n.cloned(),
        ..FieldError::immutable("spec.selector")
    }]
}

fn validate_int_or_percent(v: &Value, path: &str) -> Option<FieldError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .filter(|i| *i < 0)
            .map(|i| FieldError::invalid(path, json!(i), "must be greater than or equal to 0")),
        Value::String(s) => {
            let pct = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok());
            match pct {
                None => Some(FieldError::invalid(
                    path,
                    v.clone(),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )),
                Some(p) if p > 100 => Some(FieldError::invalid(
                    path,
                    v.clone(),
                    "must not be greater than 100%",
                )),
                Some(_) => None,
            }
        }
        _ => None,
    }
}

fn is_zero(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Number(n)) if n.as_i64() == Some(0))
        || matches!(v, Some(Value::String(s)) if s == "0%")
}

impl Strategy for DeploymentStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = child_mut(obj, "spec") else {
            return;
        };
        default_field(spec, "replicas", json!(1));
        default_field(spec, "revisionHistoryLimit", json!(10));
        default_field(spec, "progressDeadlineSeconds", json!(600));
        if let Some(strategy) = child_mut(spec, "strategy") {
            default_field(strategy, "type", json!("RollingUpdate"));
            if str_of(strategy, "type") == Some("RollingUpdate") {
                if let Some(ru) = child_mut(strategy, "rollingUpdate") {
                    default_field(ru, "maxUnavailable", json!("25%"));
                    default_field(ru, "maxSurge", json!("25%"));
                }
            }
        }
        default_pod_template(spec);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = validate_selector_and_template(spec, "deployment", &["Always"]);
        if let Some(strategy) = spec.get("strategy") {
            let t = str_of(strategy, "type").unwrap_or("");
            if !["Recreate", "RollingUpdate"].contains(&t) {
                errs.push(not_supported(
                    "spec.strategy.type",
                    json!(t),
                    &["Recreate", "RollingUpdate"],
                ));
            }
            let ru = strategy.get("rollingUpdate").filter(|r| !r.is_null());
            if t == "Recreate" && ru.is_some() {
                errs.push(forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
            if let Some(ru) = ru {
                let p = "spec.strategy.rollingUpdate";
                for key in ["maxUnavailable", "maxSurge"] {
                    if let Some(v) = ru.get(key) {
                        errs.extend(validate_int_or_percent(v, &format!("{p}.{key}")));
                    }
                }
                if is_zero(ru.get("maxUnavailable")) && is_zero(ru.get("maxSurge")) {
                    errs.push(FieldError::invalid(
                        format!("{p}.maxUnavailable"),
                        ru.get("maxUnavailable").cloned().unwrap_or(json!(0)),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
        }
        if let Some(deadline) = i64_of(spec, "progressDeadlineSeconds") {
            errs.extend(non_negative(spec, "progressDeadlineSeconds", "spec"));
            if deadline <= i64_of(spec, "minReadySeconds").unwrap_or(0) {
                errs.push(FieldError::invalid(
                    "spec.progressDeadlineSeconds",
                    json!(deadline),
                    "must be greater than minReadySeconds",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        selector_immutable(new, old)
    }
}

impl Strategy for ReplicaSetStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = child_mut(obj, "spec") else {
            return;
        };
        default_field(spec, "replicas", json!(1));
        default_pod_template(spec);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({"replicas": 0}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        validate_selector_and_template(spec, "deployment", &["Always"])
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        selector_immutable(new, old)
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.replicas").then(|| selector_value(obj.pointer("/status/replicas"), "0"))
    }
}

const STATEFULSET_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

impl Strategy for StatefulSetStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = child_mut(obj, "spec") else {
            return;
        };
        default_field(spec, "replicas", json!(1));
        default_field(spec, "podManagementPolicy", json!("OrderedReady"));
        default_field(spec, "revisionHistoryLimit", json!(10));
        if let Some(us) = child_mut(spec, "updateStrategy") {
            default_field(us, "type", json!("RollingUpdate"));
            if str_of(us, "type") == Some("RollingUpdate") {
                if let Some(ru) = child_mut(us, "rollingUpdate") {
                    default_field(ru, "partition", json!(0));
                }
            }
        }
        if let Some(policy) = child_mut(spec, "persistentVolumeClaimRetentionPolicy") {
            default_field(policy, "whenDeleted", json!("Retain"));
            default_field(policy, "whenScaled", json!("Retain"));
        }
        each_mut(spec, "volumeClaimTemplates", |pvc| {
            default_field(pvc, "apiVersion", json!("v1"));
            default_field(pvc, "kind", json!("PersistentVolumeClaim"));
            if let Some(s) = child_mut(pvc, "spec") {
                default_field(s, "volumeMode", json!("Filesystem"));
            }
            if let Some(s) = child_mut(pvc, "status") {
                default_field(s, "phase", json!("Pending"));
            }
        });
        default_pod_template(spec);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({"replicas": 0, "availableReplicas": 0}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = validate_selector_and_template(
            &with_claim_template_volumes(spec),
            "statefulset",
            &["Always"],
        );
        if let Some(p) = str_of(spec, "podManagementPolicy") {
            if !["OrderedReady", "Parallel"].contains(&p) {
                errs.push(not_supported(
                    "spec.podManagementPolicy",
                    json!(p),
                    &["OrderedReady", "Parallel"],
                ));
            }
        }
        if let Some(t) = spec.pointer("/updateStrategy/type").and_then(Value::as_str) {
            if !["RollingUpdate", "OnDelete"].contains(&t) {
                errs.push(not_supported(
                    "spec.updateStrategy.type",
                    json!(t),
                    &["RollingUpdate", "OnDelete"],
                ));
            }
        }
        if let Some(ru) = spec.pointer("/updateStrategy/rollingUpdate") {
            errs.extend(non_negative(
                ru,
                "partition",
                "spec.updateStrategy.rollingUpdate",
            ));
        }
        if let Some(policy) = spec.get("persistentVolumeClaimRetentionPolicy") {
            for key in ["whenDeleted", "whenScaled"] {
                if let Some(v) = str_of(policy, key).filter(|v| !["Retain", "Delete"].contains(v)) {
                    errs.push(not_supported(
                        format!("spec.persistentVolumeClaimRetentionPolicy.{key}"),
                        json!(v),
                        &["Retain", "Delete"],
                    ));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = selector_immutable(new, old);
        let strip = |v: &Value| -> Value {
            let mut spec = v.get("spec").cloned().unwrap_or(json!({}));
            if let Some(map) = spec.as_object_mut() {
                for key in STATEFULSET_MUTABLE.iter().chain(&["selector"]) {
                    map.remove(*key);
                }
            }
            spec
        };
        if strip(new) != strip(old) {
            errs.push(forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
        errs
    }
}

/// The spec with a volume for each volumeClaimTemplate the template does not already
/// declare: the controller adds those volumes to every pod, so mounts may name them (the
/// union of volumes and claims, as upstream's StatefulSet validation intends).
fn with_claim_template_volumes(spec: &Value) -> Value {
    let mut spec = spec.clone();
    let names: Vec<Value> = spec
        .get("volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/metadata/name").cloned())
        .collect();
    if names.is_empty() {
        return spec;
    }
    if let Some(pod) = spec
        .pointer_mut("/template/spec")
        .and_then(Value::as_object_mut)
    {
        let volumes = pod.entry("volumes").or_insert_with(|| json!([]));
        if let Some(list) = volumes.as_array_mut() {
            for name in names {
                if !list.iter().any(|v| v.get("name") == Some(&name)) {
                    list.push(json!({"name": name, "persistentVolumeClaim": {"claimName": name}}));
                }
            }
        }
    }
    spec
}

impl Strategy for DaemonSetStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = child_mut(obj, "spec") else {
            return;
        };
        default_field(spec, "revisionHistoryLimit", json!(10));
        if let Some(us) = child_mut(spec, "updateStrategy") {
            default_field(us, "type", json!("RollingUpdate"));
            if str_of(us, "type") == Some("RollingUpdate") {
                if let Some(ru) = child_mut(us, "rollingUpdate") {
                    default_field(ru, "maxUnavailable", json!(1));
                    default_field(ru, "maxSurge", json!(0));
                }
            }
        }
        default_pod_template(spec);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(
            obj,
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
                   "desiredNumberScheduled": 0, "numberReady": 0}),
        );
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = validate_selector_and_template(spec, "daemonset", &["Always"]);
        if let Some(t) = spec.pointer("/updateStrategy/type").and_then(Value::as_str) {
            if !["RollingUpdate", "OnDelete"].contains(&t) {
                errs.push(not_supported(
                    "spec.updateStrategy.type",
                    json!(t),
                    &["RollingUpdate", "OnDelete"],
                ));
            }
        }
        if let Some(ru) = spec.pointer("/updateStrategy/rollingUpdate") {
            let p = "spec.updateStrategy.rollingUpdate";
            for key in ["maxUnavailable", "maxSurge"] {
                if let Some(v) = ru.get(key) {
                    errs.extend(validate_int_or_percent(v, &format!("{p}.{key}")));
                }
            }
            if is_zero(ru.get("maxUnavailable")) && is_zero(ru.get("maxSurge")) {
                errs.push(FieldError::invalid(
                    format!("{p}.maxUnavailable"),
                    ru.get("maxUnavailable").cloned().unwrap_or(json!(0)),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        selector_immutable(new, old)
    }
}

impl Strategy for ControllerRevisionStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs: Vec<FieldError> = non_negative(obj, "revision", "").into_iter().collect();
        for e in &mut errs {
            e.field = "revision".into();
        }
        if obj.get("data").is_none_or(Value::is_null) {
            errs.push(FieldError::required("data", "data is mandatory"));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        if new.get("data") == old.get("data") {
            return Vec::new();
        }
        vec![FieldError {
            value: new.get("data").cloned(),
            ..FieldError::immutable("data")
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::tests_support::messages;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}}})
    }

    #[test]
    fn minimal_deployment_gains_the_full_defaulted_spec() {
        let mut d = deployment();
        DeploymentStrategy.default(&mut d);
        DeploymentStrategy.prepare_for_create(&mut d);
        assert_eq!(
            d["spec"],
            json!({
                "replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "containers": [{"name": "nginx", "image": "nginx:1.25",
                        "imagePullPolicy": "IfNotPresent", "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File"}],
                    "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                    "schedulerName": "default-scheduler", "securityContext": {},
                    "terminationGracePeriodSeconds": 30}}
            })
        );
        assert_eq!(d["status"], json!({}));
        assert!(DeploymentStrategy.validate(&d).is_empty());
    }

    #[test]
    fn selector_must_match_template_and_cannot_change() {
        let mut d = deployment();
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let msgs = messages(&DeploymentStrategy.validate(&d));
        assert_eq!(msgs, vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
        ]);
        let old = deployment();
        let mut new = deployment();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "x"}});
        assert_eq!(
            messages(&DeploymentStrategy.validate_update(&new, &old)),
            vec!["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"x\"}}: field is immutable"]
        );
        let mut none = deployment();
        none["spec"].as_object_mut().map(|m| m.remove("selector"));
        assert!(messages(&DeploymentStrategy.validate(&none))
            .contains(&"spec.selector: Required value".to_string()));
    }

    #[test]
    fn rolling_update_limits() {
        let mut d = deployment();
        d["spec"]["strategy"] =
            json!({"type": "Recreate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}});
        let msgs = messages(&DeploymentStrategy.validate(&d));
        assert_eq!(msgs, vec![
            "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
        ]);
    }

    #[test]
    fn statefulset_defaults_and_forbidden_updates() {
        let mut s = deployment();
        s["kind"] = json!("StatefulSet");
        s["spec"]["serviceName"] = json!("web");
        StatefulSetStrategy.default(&mut s);
        assert_eq!(s["spec"]["podManagementPolicy"], json!("OrderedReady"));
        assert_eq!(
            s["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            s["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert!(StatefulSetStrategy.validate(&s).is_empty());
        let mut new = s.clone();
        new["spec"]["replicas"] = json!(3);
        assert!(StatefulSetStrategy.validate_update(&new, &s).is_empty());
        new["spec"]["serviceName"] = json!("other");
        assert_eq!(StatefulSetStrategy.validate_update(&new, &s).len(), 1);

        // Mounts may name a volumeClaimTemplate; other unknown volumes are still refused.
        s["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/data"}]);
        assert_eq!(StatefulSetStrategy.validate(&s).len(), 1);
        s["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"}, "spec": {}}]);
        assert!(StatefulSetStrategy.validate(&s).is_empty());
    }

    #[test]
    fn daemonset_and_replicaset() {
        let mut ds = deployment();
        DaemonSetStrategy.default(&mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        let mut rs = deployment();
        ReplicaSetStrategy.default(&mut rs);
        ReplicaSetStrategy.prepare_for_create(&mut rs);
        assert_eq!(
            ReplicaSetStrategy
                .field_value(&rs, "status.replicas")
                .as_deref(),
            Some("0")
        );
        assert_eq!(ReplicaSetStrategy.field_value(&rs, "spec.replicas"), None);
    }

    #[test]
    fn controller_revisions() {
        let rev = json!({"revision": -1});
        assert_eq!(
            messages(&ControllerRevisionStrategy.validate(&rev)),
            vec![
                "revision: Invalid value: -1: must be greater than or equal to 0",
                "data: Required value: data is mandatory",
            ]
        );
        let old = json!({"revision": 1, "data": {"a": 1}});
        let new = json!({"revision": 2, "data": {"a": 2}});
        assert_eq!(
            messages(&ControllerRevisionStrategy.validate_update(&new, &old)),
            vec!["data: Invalid value: {\"a\":2}: field is immutable"]
        );
    }
}
