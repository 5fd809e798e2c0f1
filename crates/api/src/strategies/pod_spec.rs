//! Defaults and validation of a PodSpec, shared by Pods and every kind with a pod template
//! (Kubernetes' `SetDefaults_PodSpec`, `SetDefaults_Container`, ... and `ValidatePodSpec`).

use std::collections::HashSet;

use serde_json::{json, Value};

use super::json::{array_of, child_mut, default_field, each_mut, i64_of, str_of, str_or_empty};
use super::quantity;
use crate::field_error::{FieldError, FieldErrorType};
use crate::validation::{
    duplicate, forbidden, invalid_each, is_dns1123_label, is_dns1123_subdomain, not_supported,
    validate_labels,
};

/// The default mode of secret, configMap, downwardAPI and projected volumes (0644).
const DEFAULT_VOLUME_MODE: i64 = 0o644;

/// The volume source fields; a volume must have exactly one.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// Defaults of a PodSpec wherever it appears (pods and templates).
pub fn default_pod_spec(spec: &mut Value) {
    default_field(spec, "dnsPolicy", json!("ClusterFirst"));
    default_field(spec, "restartPolicy", json!("Always"));
    default_field(spec, "terminationGracePeriodSeconds", json!(30));
    default_field(spec, "securityContext", json!({}));
    default_field(spec, "schedulerName", json!("default-scheduler"));
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        each_mut(spec, list, default_container);
    }
    each_mut(spec, "volumes", default_volume);
}

/// Defaults that Kubernetes applies to Pod objects only (`SetDefaults_Pod`), not templates.
pub fn default_pod_only(spec: &mut Value) {
    default_field(spec, "enableServiceLinks", json!(true));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in ["initContainers", "containers"] {
        each_mut(spec, list, |c| {
            requests_from_limits(c);
            if host_network {
                each_mut(c, "ports", |p| {
                    if let Some(port) = p.get("containerPort").cloned() {
                        default_field(p, "hostPort", port);
                    }
                });
            }
        });
    }
}

/// Requests default to limits, resource by resource.
fn requests_from_limits(container: &mut Value) {
    let Some(resources) = child_mut(container, "resources") else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if let Some(requests) = child_mut(resources, "requests") {
        for (name, q) in limits {
            default_field(requests, &name, q);
        }
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn default_container(c: &mut Value) {
    let policy = default_pull_policy(str_or_empty(c, "image"));
    default_field(c, "imagePullPolicy", json!(policy));
    default_field(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_field(c, "terminationMessagePolicy", json!("File"));
    default_field(c, "resources", json!({}));
    each_mut(c, "ports", |p| default_field(p, "protocol", json!("TCP")));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            default_field(p, "timeoutSeconds", json!(1));
            default_field(p, "periodSeconds", json!(10));
            default_field(p, "successThreshold", json!(1));
            default_field(p, "failureThreshold", json!(3));
            default_http_get(p);
        }
    }
    if let Some(lifecycle) = c.get_mut("lifecycle").filter(|l| l.is_object()) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lifecycle.get_mut(hook) {
                default_http_get(h);
            }
        }
    }
    each_mut(c, "env", |e| {
        if let Some(field_ref) = e.pointer_mut("/valueFrom/fieldRef") {
            default_field(field_ref, "apiVersion", json!("v1"));
        }
    });
}

fn default_http_get(handler: &mut Value) {
    if let Some(h) = handler.get_mut("httpGet").filter(|h| h.is_object()) {
        default_field(h, "path", json!("/"));
        default_field(h, "scheme", json!("HTTP"));
    }
}

fn default_volume(v: &mut Value) {
    let has_source = VOLUME_SOURCES
        .iter()
        .any(|s| v.get(*s).is_some_and(|x| !x.is_null()));
    if !has_source {
        default_field(v, "emptyDir", json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(source).filter(|s| s.is_object()) {
            default_field(s, "defaultMode", json!(DEFAULT_VOLUME_MODE));
        }
    }
    if let Some(items) = v
        .pointer_mut("/downwardAPI/items")
        .and_then(Value::as_array_mut)
    {
        for item in items {
            if let Some(f) = item.get_mut("fieldRef") {
                default_field(f, "apiVersion", json!("v1"));
            }
        }
    }
    if let Some(h) = v.get_mut("hostPath").filter(|h| h.is_object()) {
        default_field(h, "type", json!(""));
    }
}

pub(crate) fn port_range_errors(path: &str, port: i64) -> Option<FieldError> {
    (!(1..=65535).contains(&port))
        .then(|| FieldError::invalid(path, json!(port), "must be between 1 and 65535, inclusive"))
}

/// `IsValidPortName` (IANA_SVC_NAME).
pub(crate) fn port_name_errors(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

pub(crate) fn validate_protocol(p: &Value, path: &str) -> Option<FieldError> {
    let proto = str_of(p, "protocol")?;
    (!["SCTP", "TCP", "UDP"].contains(&proto)).then(|| {
        not_supported(
            format!("{path}.protocol"),
            json!(proto),
            &["SCTP", "TCP", "UDP"],
        )
    })
}

fn enum_check(obj: &Value, key: &str, path: &str, allowed: &[&str]) -> Option<FieldError> {
    let v = str_of(obj, key)?;
    (!allowed.contains(&v)).then(|| not_supported(format!("{path}.{key}"), json!(v), allowed))
}

fn non_negative(obj: &Value, key: &str, path: &str) -> Option<FieldError> {
    let v = i64_of(obj, key)?;
    (v < 0).then(|| {
        FieldError::invalid(
            format!("{path}.{key}"),
            json!(v),
            "must be greater than or equal to 0",
        )
    })
}

fn validate_container(c: &Value, path: &str, volumes: &HashSet<&str>, errs: &mut Vec<FieldError>) {
    let name = str_or_empty(c, "name");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        errs.extend(invalid_each(
            &format!("{path}.name"),
            name,
            is_dns1123_label(name),
        ));
    }
    if str_or_empty(c, "image").trim().is_empty() {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    }
    errs.extend(enum_check(
        c,
        "imagePullPolicy",
        path,
        &["Always", "IfNotPresent", "Never"],
    ));
    errs.extend(enum_check(
        c,
        "terminationMessagePolicy",
        path,
        &["File", "FallbackToLogsOnError"],
    ));
    for (i, p) in array_of(c, "ports").iter().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        match i64_of(p, "containerPort") {
            None | Some(0) => errs.push(FieldError::required(format!("{pp}.containerPort"), "")),
            Some(port) => errs.extend(port_range_errors(&format!("{pp}.containerPort"), port)),
        }
        if let Some(host) = i64_of(p, "hostPort").filter(|h| *h != 0) {
            errs.extend(port_range_errors(&format!("{pp}.hostPort"), host));
        }
        if let Some(n) = str_of(p, "name").filter(|n| !n.is_empty()) {
            errs.extend(invalid_each(&format!("{pp}.name"), n, port_name_errors(n)));
        }
        errs.extend(validate_protocol(p, &pp));
    }
    for (i, e) in array_of(c, "env").iter().enumerate() {
        let name = str_or_empty(e, "name");
        let ep = format!("{path}.env[{i}].name");
        if name.is_empty() {
            errs.push(FieldError::required(ep, ""));
        } else if !name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
        {
            errs.push(FieldError::invalid(ep, json!(name),
                "a valid environment variable name must consist only of printable ASCII characters other than '='"));
        }
    }
    for (i, m) in array_of(c, "volumeMounts").iter().enumerate() {
        let mp = format!("{path}.volumeMounts[{i}]");
        let name = str_or_empty(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{mp}.name"), ""));
        } else if !volumes.contains(name) {
            errs.push(FieldError {
                value: Some(json!(name)),
                ..FieldError::new(
                    FieldErrorType::NotFound,
                    format!("{mp}.name"),
                    format!("{name:?}"),
                )
            });
        }
        if str_or_empty(m, "mountPath").is_empty() {
            errs.push(FieldError::required(format!("{mp}.mountPath"), ""));
        }
    }
    validate_resources(c.get("resources"), &format!("{path}.resources"), errs);
}

const PROBE_HANDLERS: &[&str] = &["exec", "httpGet", "tcpSocket", "grpc"];

/// Sidecar rules (only init containers may set `restartPolicy: Always`, and only those
/// may have probes) and the shape of each probe.
fn validate_restart_and_probes(c: &Value, path: &str, init: bool, errs: &mut Vec<FieldError>) {
    let restart = str_of(c, "restartPolicy");
    let sidecar = restart == Some("Always");
    match (init, restart) {
        (_, None) => {}
        (true, Some(r)) if r != "Always" => {
            errs.push(not_supported(
                format!("{path}.restartPolicy"),
                json!(r),
                &["Always"],
            ));
        }
        (false, Some(_)) => errs.push(forbidden(
            format!("{path}.restartPolicy"),
            "may not be set for non-init containers",
        )),
        _ => {}
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(p) = c.get(probe).filter(|p| !p.is_null()) else {
            continue;
        };
        let pp = format!("{path}.{probe}");
        if init && !sidecar {
            errs.push(forbidden(
                pp,
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        let handlers = PROBE_HANDLERS
            .iter()
            .filter(|h| p.get(**h).is_some_and(|v| !v.is_null()))
            .count();
        if handlers == 0 {
            errs.push(FieldError::required(
                pp.clone(),
                "must specify a handler type",
            ));
        } else if handlers > 1 {
            errs.push(forbidden(
                pp.clone(),
                "may not specify more than 1 handler type",
            ));
        }
        for key in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            errs.extend(non_negative(p, key, &pp));
        }
        if probe != "readinessProbe" {
            if let Some(t) = i64_of(p, "successThreshold").filter(|t| *t != 1) {
                errs.push(FieldError::invalid(
                    format!("{pp}.successThreshold"),
                    json!(t),
                    "must be 1",
                ));
            }
        }
        if let Some(http) = p.get("httpGet").filter(|h| h.is_object()) {
            let hp = format!("{pp}.httpGet");
            match http.get("port") {
                Some(Value::Number(n)) => {
                    errs.extend(port_range_errors(
                        &format!("{hp}.port"),
                        n.as_i64().unwrap_or(0),
                    ));
                }
                Some(Value::String(s)) => {
                    errs.extend(invalid_each(&format!("{hp}.port"), s, port_name_errors(s)));
                }
                _ => errs.push(FieldError::required(format!("{hp}.port"), "")),
            }
            errs.extend(enum_check(http, "scheme", &hp, &["HTTP", "HTTPS"]));
        }
    }
}

fn validate_resources(resources: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(resources) = resources else { return };
    for part in ["limits", "requests"] {
        let Some(map) = resources.get(part).and_then(Value::as_object) else {
            continue;
        };
        for (name, q) in map {
            let qp = format!("{path}.{part}[{name}]");
            match q.as_str().and_then(quantity::parse) {
                None => errs.push(FieldError::invalid(qp, q.clone(),
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")),
                Some(v) if v < 0.0 => errs.push(FieldError::invalid(qp, q.clone(), "must be greater than or equal to 0")),
                Some(_) => {}
            }
        }
    }
    let (Some(limits), Some(requests)) = (
        resources.get("limits").and_then(Value::as_object),
        resources.get("requests").and_then(Value::as_object),
    ) else {
        return;
    };
    for (name, req) in requests {
        let (Some(r), Some(l)) = (req.as_str(), limits.get(name).and_then(Value::as_str)) else {
            continue;
        };
        if let (Some(rv), Some(lv)) = (quantity::parse(r), quantity::parse(l)) {
            if rv > lv && !quantity::same(r, l) {
                errs.push(FieldError::invalid(
                    format!("{path}.requests[{name}]"),
                    json!(r),
                    format!("must be less than or equal to {name} limit of {l}"),
                ));
            }
        }
    }
}

fn validate_volumes<'a>(
    spec: &'a Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for (i, v) in array_of(spec, "volumes").iter().enumerate() {
        let vp = format!("{path}.volumes[{i}]");
        let name = str_or_empty(v, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{vp}.name"), ""));
        } else {
            errs.extend(invalid_each(
                &format!("{vp}.name"),
                name,
                is_dns1123_label(name),
            ));
            if !names.insert(name) {
                errs.push(duplicate(format!("{vp}.name"), json!(name)));
            }
        }
        let sources = VOLUME_SOURCES
            .iter()
            .filter(|s| v.get(**s).is_some_and(|x| !x.is_null()))
            .count();
        if sources == 0 {
            errs.push(FieldError::required(vp, "must specify a volume type"));
        } else if sources > 1 {
            errs.push(forbidden(vp, "may not specify more than 1 volume type"));
        }
    }
    names
}

/// `ValidatePodSpec` essentials. `path` is the spec's path (`spec`, `spec.template.spec`).
pub fn validate_pod_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = validate_volumes(spec, path, &mut errs);
    if array_of(spec, "containers").is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names = HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in array_of(spec, list).iter().enumerate() {
            let cp = format!("{path}.{list}[{i}]");
            validate_container(c, &cp, &volumes, &mut errs);
            validate_restart_and_probes(c, &cp, list == "initContainers", &mut errs);
            let name = str_or_empty(c, "name");
            if !name.is_empty() && !names.insert(name) {
                errs.push(duplicate(format!("{cp}.name"), json!(name)));
            }
        }
    }
    errs.extend(enum_check(
        spec,
        "restartPolicy",
        path,
        &["Always", "OnFailure", "Never"],
    ));
    errs.extend(enum_check(
        spec,
        "dnsPolicy",
        path,
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    ));
    errs.extend(validate_labels(
        spec.get("nodeSelector"),
        &format!("{path}.nodeSelector"),
    ));
    for key in ["serviceAccountName", "priorityClassName"] {
        if let Some(v) = str_of(spec, key).filter(|v| !v.is_empty()) {
            errs.extend(invalid_each(
                &format!("{path}.{key}"),
                v,
                is_dns1123_subdomain(v),
            ));
        }
    }
    for key in ["hostname", "subdomain"] {
        if let Some(v) = str_of(spec, key).filter(|v| !v.is_empty()) {
            errs.extend(invalid_each(
                &format!("{path}.{key}"),
                v,
                is_dns1123_label(v),
            ));
        }
    }
    if let Some(d) = i64_of(spec, "activeDeadlineSeconds") {
        if !(1..=i64::from(i32::MAX)).contains(&d) {
            errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                json!(d),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    errs.extend(non_negative(spec, "terminationGracePeriodSeconds", path));
    for (i, t) in array_of(spec, "tolerations").iter().enumerate() {
        let tp = format!("{path}.tolerations[{i}]");
        errs.extend(enum_check(t, "operator", &tp, &["Equal", "Exists"]));
        if str_of(t, "effect").is_some_and(|e| !e.is_empty()) {
            errs.extend(enum_check(
                t,
                "effect",
                &tp,
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            ));
        }
        if str_of(t, "operator") == Some("Exists") && !str_or_empty(t, "value").is_empty() {
            errs.push(FieldError::invalid(
                format!("{tp}.operator"),
                json!(str_or_empty(t, "value")),
                "value must be empty when `operator` is 'Exists'",
            ));
        }
    }
    errs
}

/// Validates a pod template (`spec.template`): its labels, and its spec with the restart
/// policies the owning kind allows.
pub fn validate_pod_template(
    template: Option<&Value>,
    path: &str,
    restart_policies: &[&str],
) -> Vec<FieldError> {
    let Some(template) = template.filter(|t| t.is_object()) else {
        return vec![FieldError::required(path, "")];
    };
    let mut errs = validate_labels(
        template.pointer("/metadata/labels"),
        &format!("{path}.metadata.labels"),
    );
    let spec = template.get("spec").unwrap_or(&Value::Null);
    let spec_path = format!("{path}.spec");
    errs.extend(validate_pod_spec(spec, &spec_path));
    if let Some(policy) = str_of(spec, "restartPolicy") {
        if !restart_policies.contains(&policy) {
            errs.retain(|e| e.field != format!("{spec_path}.restartPolicy"));
            errs.push(not_supported(
                format!("{spec_path}.restartPolicy"),
                json!(policy),
                restart_policies,
            ));
        }
    }
    errs
}

/// Defaults of the pod template at `spec.template` of a workload's `spec`.
pub fn default_pod_template(spec: &mut Value) {
    if let Some(pod_spec) = spec.get_mut("template").and_then(|t| child_mut(t, "spec")) {
        default_pod_spec(pod_spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(
            default_pull_policy("localhost:5000/nginx:1"),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn port_names() {
        assert!(port_name_errors("http").is_empty());
        assert_eq!(
            port_name_errors("123"),
            vec!["must contain at least one letter (a-z)"]
        );
        assert_eq!(
            port_name_errors("a--b"),
            vec!["must not contain consecutive hyphens"]
        );
    }
}
