//! Pods: defaults (including what Kubernetes' default admission plugins add), the initial
//! status with the QoS class, validation, the narrow set of mutable spec fields, and the
//! field selectors the scheduler, kubelet and kubectl use.

use serde_json::{json, Value};

use super::json::{array_of, child_mut, default_field, selector_value, str_of};
use super::pod_spec::{default_pod_only, default_pod_spec, validate_pod_spec};
use super::quantity;
use crate::field_error::FieldError;
use crate::strategy::Strategy;
use crate::validation::forbidden;

pub struct PodStrategy;

/// Tolerations the DefaultTolerationSeconds admission plugin gives every pod.
const DEFAULT_TOLERATION_KEYS: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

const UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

impl Strategy for PodStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = child_mut(obj, "spec") {
            default_pod_spec(spec);
            default_pod_only(spec);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(spec) = child_mut(obj, "spec") {
            admit_defaults(spec);
        }
        let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
        if let Some(map) = obj.as_object_mut() {
            map.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec")
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let (Some(new_spec), Some(old_spec)) = (new.get("spec"), old.get("spec")) else {
            return Vec::new();
        };
        let mut munged = old_spec.clone();
        allow_mutable_fields(&mut munged, new_spec);
        if &munged == new_spec {
            Vec::new()
        } else {
            vec![forbidden("spec", UPDATE_FORBIDDEN)]
        }
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let (ptr, default) = match field {
            "spec.nodeName" => ("/spec/nodeName", ""),
            "spec.restartPolicy" => ("/spec/restartPolicy", ""),
            "spec.schedulerName" => ("/spec/schedulerName", ""),
            "spec.serviceAccountName" => ("/spec/serviceAccountName", ""),
            "spec.hostNetwork" => ("/spec/hostNetwork", "false"),
            "status.phase" => ("/status/phase", ""),
            "status.podIP" => ("/status/podIP", ""),
            "status.nominatedNodeName" => ("/status/nominatedNodeName", ""),
            _ => return None,
        };
        Some(selector_value(obj.pointer(ptr), default))
    }
}

/// What the ServiceAccount, Priority and DefaultTolerationSeconds admission plugins set.
fn admit_defaults(spec: &mut Value) {
    let sa = str_of(spec, "serviceAccountName")
        .filter(|s| !s.is_empty())
        .or_else(|| str_of(spec, "serviceAccount").filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_string();
    default_field(spec, "serviceAccountName", json!(sa));
    default_field(spec, "serviceAccount", json!(sa));
    if str_of(spec, "priorityClassName").is_none_or(str::is_empty) {
        default_field(spec, "priority", json!(0));
    }
    default_field(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    let tolerations = array_of(spec, "tolerations");
    let missing: Vec<&str> = DEFAULT_TOLERATION_KEYS
        .iter()
        .copied()
        .filter(|key| {
            !tolerations.iter().any(|t| {
                let effect = str_of(t, "effect").unwrap_or("");
                let tolerates_key = str_of(t, "key") == Some(key)
                    || (str_of(t, "key").is_none_or(str::is_empty)
                        && str_of(t, "operator") == Some("Exists"));
                tolerates_key && (effect.is_empty() || effect == "NoExecute")
            })
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    default_field(spec, "tolerations", json!([]));
    if let Some(list) = spec.get_mut("tolerations").and_then(Value::as_array_mut) {
        for key in missing {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 300}),
            );
        }
    }
}

/// `GetPodQOS`: Guaranteed when every container limits cpu and memory and requests equal
/// limits; BestEffort when nothing is requested or limited; Burstable otherwise.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = array_of(spec, "containers")
        .iter()
        .chain(array_of(spec, "initContainers"));
    for c in containers {
        let get = |part: &str, r: &str| {
            c.pointer(&format!("/resources/{part}/{r}"))
                .and_then(Value::as_str)
                .filter(|q| quantity::parse(q).is_some_and(|v| v != 0.0))
        };
        for r in ["cpu", "memory"] {
            let (req, lim) = (get("requests", r), get("limits", r));
            any |= req.is_some() || lim.is_some();
            match (req, lim) {
                (_, None) => guaranteed = false,
                (Some(req), Some(lim)) if !quantity::same(req, lim) => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Copies onto `old` (a clone of the stored spec) the changes Kubernetes allows, so that
/// any remaining difference from `new` is a forbidden change.
fn allow_mutable_fields(old: &mut Value, new: &Value) {
    for list in ["containers", "initContainers"] {
        let new_items = array_of(new, list);
        if let Some(old_items) = old.get_mut(list).and_then(Value::as_array_mut) {
            if old_items.len() == new_items.len() {
                for (o, n) in old_items.iter_mut().zip(new_items) {
                    if let (Some(o), Some(image)) = (o.as_object_mut(), n.get("image")) {
                        o.insert("image".into(), image.clone());
                    }
                }
            }
        }
    }
    let Some(map) = old.as_object_mut() else {
        return;
    };
    let mut copy = |key: &str| match new.get(key) {
        Some(v) => {
            map.insert(key.to_string(), v.clone());
        }
        None => {
            map.remove(key);
        }
    };
    copy("activeDeadlineSeconds");
    copy("ephemeralContainers");
    let old_tolerations = array_of(old, "tolerations").to_vec();
    let new_tolerations = array_of(new, "tolerations");
    let old_grace = old
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    let old_gates = array_of(old, "schedulingGates").to_vec();
    let Some(map) = old.as_object_mut() else {
        return;
    };
    if old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        if let Some(t) = new.get("tolerations") {
            map.insert("tolerations".into(), t.clone());
        }
    }
    if old_grace.is_some_and(|g| g < 0)
        && new.get("terminationGracePeriodSeconds") == Some(&json!(1))
    {
        map.insert("terminationGracePeriodSeconds".into(), json!(1));
    }
    if array_of(new, "schedulingGates")
        .iter()
        .all(|g| old_gates.contains(g))
    {
        match new.get("schedulingGates") {
            Some(g) => map.insert("schedulingGates".into(), g.clone()),
            None => map.remove("schedulingGates"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::tests_support::messages;

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn minimal_pod_gains_kubernetes_defaults() {
        let mut obj = pod(json!({"containers": [{"name": "web", "image": "nginx",
            "ports": [{"containerPort": 80}],
            "readinessProbe": {"httpGet": {"port": 80}}}]}));
        PodStrategy.default(&mut obj);
        PodStrategy.prepare_for_create(&mut obj);
        assert_eq!(
            obj["spec"],
            json!({
                "containers": [{"name": "web", "image": "nginx", "imagePullPolicy": "Always",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                        "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                        "failureThreshold": 3},
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"}],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30, "securityContext": {},
                "schedulerName": "default-scheduler", "enableServiceLinks": true,
                "serviceAccountName": "default", "serviceAccount": "default",
                "priority": 0, "preemptionPolicy": "PreemptLowerPriority",
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                     "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                     "effect": "NoExecute", "tolerationSeconds": 300}]
            })
        );
        assert_eq!(
            obj["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
        let again = obj.clone();
        PodStrategy.default(&mut obj);
        assert_eq!(obj, again, "defaulting is idempotent");
    }

    #[test]
    fn qos_classes() {
        let mut g = pod(json!({"containers": [{"name": "c", "image": "x",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}));
        PodStrategy.default(&mut g);
        assert_eq!(qos_class(&g["spec"]), "Guaranteed");
        let b = json!({"containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "100m"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
        let mixed = json!({"containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                          "limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&mixed), "Burstable");
    }

    #[test]
    fn validation_messages() {
        let obj = pod(json!({"restartPolicy": "Sometimes", "containers": [
            {"name": "Web", "image": "x", "ports": [{"containerPort": 70000, "protocol": "tcp"}]},
            {"name": "b", "volumeMounts": [{"name": "data", "mountPath": "/d"}]},
            {"name": "b", "image": "y", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}));
        let msgs = messages(&PodStrategy.validate(&obj));
        let expect = [
            "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of",
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[0].protocol: Unsupported value: \"tcp\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[1].image: Required value",
            "spec.containers[1].volumeMounts[0].name: Not found: \"data\"",
            "spec.containers[2].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            "spec.containers[2].name: Duplicate value: \"b\"",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ];
        assert_eq!(msgs.len(), expect.len(), "{msgs:#?}");
        for (m, e) in msgs.iter().zip(expect) {
            assert!(m.starts_with(e), "{m} !~ {e}");
        }
        let probes = pod(json!({"initContainers": [
                {"name": "init", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}}},
                {"name": "sidecar", "image": "x", "restartPolicy": "Always",
                 "startupProbe": {"successThreshold": 2, "httpGet": {"port": "web-port-name-too-long"}}}],
            "containers": [{"name": "c", "image": "x", "restartPolicy": "Never",
                "livenessProbe": {"exec": {}, "tcpSocket": {"port": 1}}}]}));
        assert_eq!(messages(&PodStrategy.validate(&probes)), vec![
            "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            "spec.initContainers[1].startupProbe.successThreshold: Invalid value: 2: must be 1",
            "spec.initContainers[1].startupProbe.httpGet.port: Invalid value: \"web-port-name-too-long\": must be no more than 15 characters",
            "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",
            "spec.containers[0].livenessProbe: Forbidden: may not specify more than 1 handler type",
        ]);
        let empty = pod(json!({}));
        assert_eq!(
            messages(&PodStrategy.validate(&empty)),
            vec!["spec.containers: Required value"]
        );
    }

    #[test]
    fn only_images_and_a_few_fields_may_change() {
        let mut old = pod(json!({"containers": [{"name": "c", "image": "a:1"}]}));
        PodStrategy.default(&mut old);
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("a:2");
        new["spec"]["activeDeadlineSeconds"] = json!(30);
        new["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        assert!(PodStrategy.validate_update(&new, &old).is_empty());
        new["spec"]["restartPolicy"] = json!("Never");
        let errs = messages(&PodStrategy.validate_update(&new, &old));
        assert_eq!(errs, vec![format!("spec: Forbidden: {UPDATE_FORBIDDEN}")]);
    }

    #[test]
    fn field_selectors() {
        let obj = pod(json!({"nodeName": "n1", "containers": []}));
        assert_eq!(
            PodStrategy.field_value(&obj, "spec.nodeName").as_deref(),
            Some("n1")
        );
        assert_eq!(
            PodStrategy.field_value(&obj, "status.phase").as_deref(),
            Some("")
        );
        assert_eq!(
            PodStrategy.field_value(&obj, "spec.hostNetwork").as_deref(),
            Some("false")
        );
        assert_eq!(PodStrategy.field_value(&obj, "spec.containers"), None);
    }
}
