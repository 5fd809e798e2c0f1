//! networking.k8s.io/v1: NetworkPolicies (peers, ports, policy types), Ingresses
//! (rules, paths, backends) and IngressClasses.

use serde_json::{json, Value};

use super::cluster::is_valid_cidr;
use super::json::{array_of, child_mut, default_field, each_mut, i64_of, str_of, str_or_empty};
use super::pod_spec::{port_name_errors, port_range_errors, validate_protocol};
use super::selector;
use crate::field_error::FieldError;
use crate::strategy::Strategy;
use crate::validation::{
    forbidden, invalid_each, is_dns1035_label, is_dns1123_subdomain, not_supported,
};

pub struct NetworkPolicyStrategy;
pub struct IngressStrategy;
pub struct IngressClassStrategy;

const RULE_KINDS: [(&str, &str); 2] = [("ingress", "from"), ("egress", "to")];
const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];

impl Strategy for NetworkPolicyStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = child_mut(obj, "spec") else {
            return;
        };
        for (rules, _) in RULE_KINDS {
            each_mut(spec, rules, |rule| {
                each_mut(rule, "ports", |p| {
                    default_field(p, "protocol", json!("TCP"))
                });
            });
        }
        let has_egress = !array_of(spec, "egress").is_empty();
        if array_of(spec, "policyTypes").is_empty() {
            let types = if has_egress {
                json!(["Ingress", "Egress"])
            } else {
                json!(["Ingress"])
            };
            if let Some(map) = spec.as_object_mut() {
                map.insert("policyTypes".into(), types);
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        if let Some(sel) = spec.get("podSelector") {
            errs.extend(selector::validate(sel, "spec.podSelector"));
        }
        for (rules, peers) in RULE_KINDS {
            for (i, rule) in array_of(spec, rules).iter().enumerate() {
                let rp = format!("spec.{rules}[{i}]");
                for (j, p) in array_of(rule, "ports").iter().enumerate() {
                    validate_policy_port(p, &format!("{rp}.ports[{j}]"), &mut errs);
                }
                for (j, peer) in array_of(rule, peers).iter().enumerate() {
                    validate_peer(peer, &format!("{rp}.{peers}[{j}]"), &mut errs);
                }
            }
        }
        let types = array_of(spec, "policyTypes");
        for (i, t) in types.iter().enumerate() {
            let t = t.as_str().unwrap_or("");
            if !["Ingress", "Egress"].contains(&t) {
                errs.push(not_supported(
                    format!("spec.policyTypes[{i}]"),
                    json!(t),
                    &["Ingress", "Egress"],
                ));
            }
        }
        if types.len() > 2 {
            errs.push(FieldError::invalid(
                "spec.policyTypes",
                json!(types),
                "may not specify more than two policyTypes",
            ));
        }
        errs
    }
}

fn validate_policy_port(p: &Value, path: &str, errs: &mut Vec<FieldError>) {
    errs.extend(validate_protocol(p, path));
    match p.get("port") {
        Some(Value::Number(n)) => {
            let port = n.as_i64().unwrap_or(0);
            errs.extend(port_range_errors(&format!("{path}.port"), port));
            if let Some(end) = i64_of(p, "endPort") {
                if end < port {
                    errs.push(FieldError::invalid(
                        format!("{path}.endPort"),
                        json!(end),
                        "must be greater than or equal to `port`",
                    ));
                }
            }
        }
        Some(Value::String(s)) => {
            errs.extend(invalid_each(
                &format!("{path}.port"),
                s,
                port_name_errors(s),
            ));
            if i64_of(p, "endPort").is_some() {
                errs.push(forbidden(
                    format!("{path}.endPort"),
                    "may not be specified when `port` is non-numeric",
                ));
            }
        }
        _ => {
            if i64_of(p, "endPort").is_some() {
                errs.push(forbidden(
                    format!("{path}.endPort"),
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
}

fn validate_peer(peer: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let kinds = ["podSelector", "namespaceSelector", "ipBlock"];
    let present = kinds
        .iter()
        .filter(|k| peer.get(**k).is_some_and(|v| !v.is_null()))
        .count();
    if present == 0 {
        errs.push(FieldError::required(path, "must specify a peer"));
    } else if present > 1 && peer.get("ipBlock").is_some_and(|v| !v.is_null()) {
        errs.push(forbidden(
            path,
            "may not specify both ipBlock and another peer",
        ));
    }
    for key in ["podSelector", "namespaceSelector"] {
        if let Some(sel) = peer.get(key).filter(|s| s.is_object()) {
            errs.extend(selector::validate(sel, &format!("{path}.{key}")));
        }
    }
    if let Some(block) = peer.get("ipBlock").filter(|b| b.is_object()) {
        let cidr = str_or_empty(block, "cidr");
        if cidr.is_empty() {
            errs.push(FieldError::required(format!("{path}.ipBlock.cidr"), ""));
        } else if !is_valid_cidr(cidr) {
            errs.push(FieldError::invalid(
                format!("{path}.ipBlock.cidr"),
                json!(cidr),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
        for (i, e) in array_of(block, "except").iter().enumerate() {
            let e = e.as_str().unwrap_or("");
            if !is_valid_cidr(e) {
                errs.push(FieldError::invalid(
                    format!("{path}.ipBlock.except[{i}]"),
                    json!(e),
                    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                ));
            }
        }
    }
}

fn validate_backend(backend: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let resource = backend.get("resource").is_some_and(|v| !v.is_null());
    let service = backend.get("service").filter(|v| !v.is_null());
    match (resource, service) {
        (true, Some(_)) => errs.push(FieldError::invalid(
            path,
            json!(""),
            "cannot set both resource and service backends",
        )),
        (true, None) => {
            let r = backend.get("resource").unwrap_or(&Value::Null);
            for key in ["kind", "name"] {
                if str_or_empty(r, key).is_empty() {
                    errs.push(FieldError::required(format!("{path}.resource.{key}"), ""));
                }
            }
        }
        (false, Some(svc)) => {
            let name = str_or_empty(svc, "name");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{path}.service.name"), ""));
            } else {
                errs.extend(invalid_each(
                    &format!("{path}.service.name"),
                    name,
                    is_dns1035_label(name),
                ));
            }
            let port = svc.get("port").unwrap_or(&Value::Null);
            let port_name = str_or_empty(port, "name");
            let number = i64_of(port, "number").unwrap_or(0);
            match (port_name.is_empty(), number) {
                (false, n) if n != 0 => errs.push(FieldError::invalid(
                    path,
                    json!(""),
                    "cannot set both port name & port number",
                )),
                (false, _) => errs.extend(invalid_each(
                    &format!("{path}.service.port.name"),
                    port_name,
                    port_name_errors(port_name),
                )),
                (true, 0) => errs.push(FieldError::required(
                    path,
                    "port name or number is required",
                )),
                (true, n) => {
                    errs.extend(port_range_errors(&format!("{path}.service.port.number"), n))
                }
            }
        }
        (false, None) => errs.push(FieldError::invalid(
            path,
            json!(""),
            "resource or service backend is required",
        )),
    }
}

fn host_errors(host: &str) -> Vec<String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return vec!["must be a DNS name, not an IP address".to_string()];
    }
    match host.strip_prefix("*.") {
        Some(rest) => is_dns1123_subdomain(rest),
        None => is_dns1123_subdomain(host),
    }
}

impl Strategy for IngressStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), json!({"loadBalancer": {}}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        let rules = array_of(spec, "rules");
        let default_backend = spec.get("defaultBackend").filter(|b| !b.is_null());
        if rules.is_empty() && default_backend.is_none() {
            errs.push(FieldError::invalid(
                "spec",
                json!(rules),
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        if let Some(b) = default_backend {
            validate_backend(b, "spec.defaultBackend", &mut errs);
        }
        if let Some(class) = str_of(spec, "ingressClassName") {
            errs.extend(invalid_each(
                "spec.ingressClassName",
                class,
                is_dns1123_subdomain(class),
            ));
        }
        for (i, rule) in rules.iter().enumerate() {
            let rp = format!("spec.rules[{i}]");
            if let Some(host) = str_of(rule, "host").filter(|h| !h.is_empty()) {
                errs.extend(invalid_each(&format!("{rp}.host"), host, host_errors(host)));
            }
            let Some(http) = rule.get("http").filter(|h| !h.is_null()) else {
                continue;
            };
            let paths = array_of(http, "paths");
            if paths.is_empty() {
                errs.push(FieldError::required(format!("{rp}.http.paths"), ""));
            }
            for (j, p) in paths.iter().enumerate() {
                let pp = format!("{rp}.http.paths[{j}]");
                let path_type = str_or_empty(p, "pathType");
                if path_type.is_empty() {
                    errs.push(FieldError::required(
                        format!("{pp}.pathType"),
                        "pathType must be specified",
                    ));
                } else if !PATH_TYPES.contains(&path_type) {
                    errs.push(not_supported(
                        format!("{pp}.pathType"),
                        json!(path_type),
                        PATH_TYPES,
                    ));
                }
                let path = str_or_empty(p, "path");
                if (path_type == "Exact" || path_type == "Prefix") && !path.starts_with('/') {
                    errs.push(FieldError::invalid(
                        format!("{pp}.path"),
                        json!(path),
                        "must be an absolute path",
                    ));
                }
                validate_backend(
                    p.get("backend").unwrap_or(&Value::Null),
                    &format!("{pp}.backend"),
                    &mut errs,
                );
            }
        }
        for (i, tls) in array_of(spec, "tls").iter().enumerate() {
            for (j, h) in array_of(tls, "hosts").iter().enumerate() {
                let h = h.as_str().unwrap_or("");
                errs.extend(invalid_each(
                    &format!("spec.tls[{i}].hosts[{j}]"),
                    h,
                    host_errors(h),
                ));
            }
        }
        errs
    }
}

impl Strategy for IngressClassStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let controller = obj
            .pointer("/spec/controller")
            .and_then(Value::as_str)
            .unwrap_or("");
        if controller.is_empty() {
            return vec![FieldError::required("spec.controller", "")];
        }
        Vec::new()
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let (n, o) = (
            new.pointer("/spec/controller"),
            old.pointer("/spec/controller"),
        );
        if n == o {
            return Vec::new();
        }
        vec![FieldError {
            value: n.cloned(),
            ..FieldError::immutable("spec.controller")
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::tests_support::messages;

    #[test]
    fn network_policy_defaults_and_checks() {
        let mut np = json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}],
            "ingress": [{"from": [{}, {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}],
                         "ports": [{"port": 80, "endPort": 79}]}]}});
        NetworkPolicyStrategy.default(&mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(
            np["spec"]["egress"][0]["ports"][0]["protocol"],
            json!("TCP")
        );
        assert_eq!(messages(&NetworkPolicyStrategy.validate(&np)), vec![
            "spec.ingress[0].ports[0].endPort: Invalid value: 79: must be greater than or equal to `port`",
            "spec.ingress[0].from[0]: Required value: must specify a peer",
            "spec.ingress[0].from[1]: Forbidden: may not specify both ipBlock and another peer",
        ]);
    }

    #[test]
    fn ingress_rules() {
        let ing = json!({"spec": {"rules": [{"host": "10.0.0.1", "http": {"paths": [
            {"path": "api", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"number": 80}}}},
            {"path": "/", "backend": {"service": {"name": "web", "port": {}}}}]}}]}});
        assert_eq!(messages(&IngressStrategy.validate(&ing)), vec![
            "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
            "spec.rules[0].http.paths[0].path: Invalid value: \"api\": must be an absolute path",
            "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified",
            "spec.rules[0].http.paths[1].backend: Required value: port name or number is required",
        ]);
        assert_eq!(
            messages(&IngressStrategy.validate(&json!({"spec": {}}))),
            vec!["spec: Invalid value: []: either `defaultBackend` or `rules` must be specified"]
        );
        let old = json!({"spec": {"controller": "a.io/x"}});
        let new = json!({"spec": {"controller": "b.io/x"}});
        assert_eq!(
            messages(&IngressClassStrategy.validate_update(&new, &old)),
            vec!["spec.controller: Invalid value: \"b.io/x\": field is immutable"]
        );
    }
}
