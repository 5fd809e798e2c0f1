//! Services and the endpoint kinds. Cluster IP and node port allocation belong to the
//! registry; here are the defaults, the checks, and keeping allocated values across
//! updates that leave them out (as `kubectl apply` does).

use std::net::IpAddr;

use serde_json::{json, Value};

use super::json::{
    array_of, child_mut, default_field, each_mut, i64_of, selector_value, str_of, str_or_empty,
};
use super::pod_spec::{port_name_errors, port_range_errors, validate_protocol};
use crate::field_error::FieldError;
use crate::strategy::Strategy;
use crate::validation::{
    duplicate, forbidden, invalid_each, is_dns1123_label, is_dns1123_subdomain, not_supported,
    validate_labels,
};

pub struct ServiceStrategy;
pub struct EndpointsStrategy;
pub struct EndpointSliceStrategy;

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const IP_MESSAGE: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
/// Kubernetes' default ClientIP affinity timeout (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: i64 = 10800;

fn service_type(spec: &Value) -> &str {
    str_of(spec, "type").unwrap_or("ClusterIP")
}

fn is_headless(spec: &Value) -> bool {
    str_of(spec, "clusterIP") == Some("None")
}

pub(crate) fn is_valid_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// Upstream's `ValidateNonSpecialIP` for endpoint addresses: unspecified, loopback and
/// link-local addresses make no sense as a backend (link-local ones tend to be node
/// services, such as a metadata server).
pub(crate) fn special_ip_error(ip: IpAddr) -> Option<String> {
    // An IPv4-mapped IPv6 address is judged as the IPv4 address it is, as Go's net.IP does.
    let ip = ip.to_canonical();
    let (link_local, link_local_multicast) = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (v4.is_link_local(), o[0] == 224 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (s[0] & 0xffc0 == 0xfe80, s[0] & 0xff0f == 0xff02)
        }
    };
    if ip.is_unspecified() {
        Some(format!("may not be unspecified ({ip})"))
    } else if ip.is_loopback() {
        Some("may not be in the loopback range (127.0.0.0/8, ::1/128)".into())
    } else if link_local {
        Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)".into())
    } else if link_local_multicast {
        Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)".into())
    } else {
        None
    }
}

impl Strategy for ServiceStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = child_mut(obj, "spec") else {
            return;
        };
        default_field(spec, "type", json!("ClusterIP"));
        default_field(spec, "sessionAffinity", json!("None"));
        match str_of(spec, "sessionAffinity") {
            Some("None") => {
                if let Some(map) = spec.as_object_mut() {
                    map.remove("sessionAffinityConfig");
                }
            }
            Some("ClientIP") => default_field(
                spec,
                "sessionAffinityConfig",
                json!({"clientIP": {"timeoutSeconds": DEFAULT_AFFINITY_TIMEOUT}}),
            ),
            _ => {}
        }
        each_mut(spec, "ports", |p| {
            default_field(p, "protocol", json!("TCP"));
            let unset = match p.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            };
            if unset {
                if let (Some(port), Some(map)) = (p.get("port").cloned(), p.as_object_mut()) {
                    map.insert("targetPort".into(), port);
                }
            }
        });
        let t = service_type(spec).to_string();
        if t == "NodePort" || t == "LoadBalancer" {
            default_field(spec, "externalTrafficPolicy", json!("Cluster"));
        }
        if t == "LoadBalancer" {
            default_field(spec, "allocateLoadBalancerNodePorts", json!(true));
        }
        if t != "ExternalName" {
            default_field(spec, "internalTrafficPolicy", json!("Cluster"));
            // Headless services without a selector take every family their endpoints have.
            let selectorless_headless = is_headless(spec)
                && spec
                    .get("selector")
                    .and_then(Value::as_object)
                    .is_none_or(|s| s.is_empty());
            let policy = if selectorless_headless {
                "RequireDualStack"
            } else {
                "SingleStack"
            };
            default_field(spec, "ipFamilyPolicy", json!(policy));
            let family = match str_of(spec, "clusterIP").and_then(|ip| ip.parse::<IpAddr>().ok()) {
                Some(IpAddr::V6(_)) => "IPv6",
                _ => "IPv4",
            };
            default_field(spec, "ipFamilies", json!([family]));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), json!({"loadBalancer": {}}));
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let Some(old_spec) = old.get("spec") else {
            return;
        };
        let Some(new_spec) = child_mut(new, "spec") else {
            return;
        };
        drop_type_dependent_fields(new_spec, old_spec);
        if service_type(new_spec) == "ExternalName" || service_type(old_spec) == "ExternalName" {
            return;
        }
        for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if super::json::is_unset(new_spec, key) {
                if let (Some(v), Some(map)) = (old_spec.get(key), new_spec.as_object_mut()) {
                    map.insert(key.into(), v.clone());
                }
            }
        }
        let keeps_node_ports = matches!(service_type(new_spec), "NodePort" | "LoadBalancer");
        if keeps_node_ports {
            let old_ports = array_of(old_spec, "ports");
            each_mut(new_spec, "ports", |p| {
                if i64_of(p, "nodePort").unwrap_or(0) != 0 {
                    return;
                }
                let same = old_ports.iter().find(|o| {
                    o.get("port") == p.get("port")
                        && str_of(o, "protocol").unwrap_or("TCP")
                            == str_of(p, "protocol").unwrap_or("TCP")
                });
                if let (Some(np), Some(map)) =
                    (same.and_then(|o| o.get("nodePort")), p.as_object_mut())
                {
                    map.insert("nodePort".into(), np.clone());
                }
            });
            if i64_of(new_spec, "healthCheckNodePort").unwrap_or(0) == 0 {
                if let Some(hc) = old_spec.get("healthCheckNodePort").cloned() {
                    default_field(new_spec, "healthCheckNodePort", hc);
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        let t = service_type(spec);
        if !SERVICE_TYPES.contains(&t) {
            errs.push(not_supported("spec.type", json!(t), SERVICE_TYPES));
        }
        let ports = array_of(spec, "ports");
        if ports.is_empty() && !is_headless(spec) && t != "ExternalName" {
            errs.push(FieldError::required("spec.ports", ""));
        }
        let mut names = std::collections::HashSet::new();
        let mut port_keys = std::collections::HashSet::new();
        for (i, p) in ports.iter().enumerate() {
            let pp = format!("spec.ports[{i}]");
            let name = str_or_empty(p, "name");
            if name.is_empty() {
                if ports.len() > 1 {
                    errs.push(FieldError::required(format!("{pp}.name"), ""));
                }
            } else {
                errs.extend(invalid_each(
                    &format!("{pp}.name"),
                    name,
                    is_dns1123_label(name),
                ));
                if !names.insert(name) {
                    errs.push(duplicate(format!("{pp}.name"), json!(name)));
                }
            }
            errs.extend(port_range_errors(
                &format!("{pp}.port"),
                i64_of(p, "port").unwrap_or(0),
            ));
            errs.extend(validate_protocol(p, &pp));
            match p.get("targetPort") {
                Some(Value::Number(n)) => {
                    errs.extend(port_range_errors(
                        &format!("{pp}.targetPort"),
                        n.as_i64().unwrap_or(0),
                    ));
                }
                Some(Value::String(s)) => {
                    errs.extend(invalid_each(
                        &format!("{pp}.targetPort"),
                        s,
                        port_name_errors(s),
                    ));
                }
                _ => {}
            }
            if i64_of(p, "nodePort").unwrap_or(0) != 0 && (t == "ClusterIP" || t == "ExternalName")
            {
                errs.push(forbidden(
                    format!("{pp}.nodePort"),
                    format!("may not be used when `type` is '{t}'"),
                ));
            }
            let key = (i64_of(p, "port"), str_of(p, "protocol").unwrap_or("TCP"));
            if !port_keys.insert(key) {
                errs.push(duplicate(pp, p.clone()));
            }
        }
        if t == "ExternalName" {
            let en = str_or_empty(spec, "externalName");
            if en.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                let trimmed = en.strip_suffix('.').unwrap_or(en);
                errs.extend(invalid_each(
                    "spec.externalName",
                    en,
                    is_dns1123_subdomain(trimmed),
                ));
            }
            if !super::json::is_unset(spec, "clusterIP")
                || !super::json::is_unset(spec, "clusterIPs")
            {
                errs.push(forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                ));
            }
        }
        let cluster_ips: Vec<&str> = match array_of(spec, "clusterIPs") {
            [] => str_of(spec, "clusterIP")
                .filter(|s| !s.is_empty())
                .into_iter()
                .collect(),
            ips => ips.iter().filter_map(Value::as_str).collect(),
        };
        for (i, ip) in cluster_ips.iter().enumerate() {
            if *ip != "None" && !is_valid_ip(ip) {
                errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    json!(ip),
                    IP_MESSAGE,
                ));
            }
        }
        if let Some(a) = str_of(spec, "sessionAffinity") {
            if !["ClientIP", "None"].contains(&a) {
                errs.push(not_supported(
                    "spec.sessionAffinity",
                    json!(a),
                    &["ClientIP", "None"],
                ));
            }
        }
        if let Some(p) = str_of(spec, "externalTrafficPolicy").filter(|p| !p.is_empty()) {
            if !matches!(t, "NodePort" | "LoadBalancer") {
                errs.push(FieldError::invalid(
                    "spec.externalTrafficPolicy",
                    json!(p),
                    "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
                ));
            } else if !["Cluster", "Local"].contains(&p) {
                errs.push(not_supported(
                    "spec.externalTrafficPolicy",
                    json!(p),
                    &["Cluster", "Local"],
                ));
            }
        }
        if let Some(p) = str_of(spec, "internalTrafficPolicy") {
            if !["Cluster", "Local"].contains(&p) {
                errs.push(not_supported(
                    "spec.internalTrafficPolicy",
                    json!(p),
                    &["Cluster", "Local"],
                ));
            }
        }
        if let Some(p) = str_of(spec, "ipFamilyPolicy") {
            let allowed = ["SingleStack", "PreferDualStack", "RequireDualStack"];
            if !allowed.contains(&p) {
                errs.push(not_supported("spec.ipFamilyPolicy", json!(p), &allowed));
            }
        }
        for (i, f) in array_of(spec, "ipFamilies").iter().enumerate() {
            if let Some(f) = f.as_str().filter(|f| !["IPv4", "IPv6"].contains(f)) {
                errs.push(not_supported(
                    format!("spec.ipFamilies[{i}]"),
                    json!(f),
                    &["IPv4", "IPv6"],
                ));
            }
        }
        for (i, ip) in array_of(spec, "externalIPs").iter().enumerate() {
            let ip = ip.as_str().unwrap_or("");
            if !is_valid_ip(ip) {
                errs.push(FieldError::invalid(
                    format!("spec.externalIPs[{i}]"),
                    json!(ip),
                    IP_MESSAGE,
                ));
            }
        }
        errs.extend(validate_labels(spec.get("selector"), "spec.selector"));
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let (Some(new_spec), Some(old_spec)) = (new.get("spec"), old.get("spec")) else {
            return Vec::new();
        };
        // Switching to or from ExternalName releases or allocates the IP.
        if service_type(new_spec) == "ExternalName" || service_type(old_spec) == "ExternalName" {
            return Vec::new();
        }
        let mut errs = Vec::new();
        let old_ip = str_or_empty(old_spec, "clusterIP");
        let new_ip = str_or_empty(new_spec, "clusterIP");
        if !old_ip.is_empty() && old_ip != new_ip {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                new_spec
                    .get("clusterIPs")
                    .cloned()
                    .unwrap_or(json!([new_ip])),
                "may not change once set",
            ));
        }
        let old_family = old_spec.pointer("/ipFamilies/0");
        let new_family = new_spec.pointer("/ipFamilies/0");
        if old_family.is_some() && new_family.is_some() && old_family != new_family {
            errs.push(FieldError::invalid(
                "spec.ipFamilies[0]",
                new_family.cloned().unwrap_or(Value::Null),
                "may not change once set",
            ));
        }
        errs
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "spec.clusterIP" => Some(selector_value(obj.pointer("/spec/clusterIP"), "")),
            "spec.type" => Some(selector_value(obj.pointer("/spec/type"), "")),
            _ => None,
        }
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }
}

/// Clears what the old type needed and the new one does not, when the update merely
/// carried the old value along (as `kubectl apply` of a changed `type` does), like
/// Kubernetes' `dropTypeDependentFields`. A value the client changed is kept, so that
/// validation reports it.
fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let (old_type, new_type) = (service_type(old).to_string(), service_type(new).to_string());
    let needs_node_port = |t: &str| t == "NodePort" || t == "LoadBalancer";
    let drop_if_same = |new: &mut Value, key: &str| {
        if new.get(key).is_some() && new.get(key) == old.get(key) {
            if let Some(map) = new.as_object_mut() {
                map.remove(key);
            }
        }
    };
    if old_type != "ExternalName" && new_type == "ExternalName" {
        for key in [
            "clusterIP",
            "clusterIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "internalTrafficPolicy",
        ] {
            drop_if_same(new, key);
        }
    }
    if needs_node_port(&old_type) && !needs_node_port(&new_type) {
        for key in ["healthCheckNodePort", "externalTrafficPolicy"] {
            drop_if_same(new, key);
        }
        let old_ports = array_of(old, "ports");
        let same_node_ports = array_of(new, "ports").iter().all(|p| {
            p.get("nodePort").is_none_or(|np| {
                old_ports
                    .iter()
                    .any(|o| o.get("port") == p.get("port") && o.get("nodePort") == Some(np))
            })
        });
        if same_node_ports {
            each_mut(new, "ports", |p| {
                if let Some(map) = p.as_object_mut() {
                    map.remove("nodePort");
                }
            });
        }
    }
    if old_type == "LoadBalancer" && new_type != "LoadBalancer" {
        for key in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            drop_if_same(new, key);
        }
    }
}

impl Strategy for EndpointsStrategy {
    fn default(&self, obj: &mut Value) {
        each_mut(obj, "subsets", |s| {
            each_mut(s, "ports", |p| default_field(p, "protocol", json!("TCP")));
        });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (i, s) in array_of(obj, "subsets").iter().enumerate() {
            for list in ["addresses", "notReadyAddresses"] {
                for (j, a) in array_of(s, list).iter().enumerate() {
                    let ip = str_or_empty(a, "ip");
                    let problem = match ip.parse::<IpAddr>() {
                        Err(_) => Some(IP_MESSAGE.to_string()),
                        Ok(addr) => special_ip_error(addr),
                    };
                    if let Some(msg) = problem {
                        errs.push(FieldError::invalid(
                            format!("subsets[{i}].{list}[{j}].ip"),
                            json!(ip),
                            msg,
                        ));
                    }
                }
            }
            for (j, p) in array_of(s, "ports").iter().enumerate() {
                let pp = format!("subsets[{i}].ports[{j}]");
                errs.extend(port_range_errors(
                    &format!("{pp}.port"),
                    i64_of(p, "port").unwrap_or(0),
                ));
                errs.extend(validate_protocol(p, &pp));
            }
        }
        errs
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }
}

impl Strategy for EndpointSliceStrategy {
    fn default(&self, obj: &mut Value) {
        each_mut(obj, "ports", |p| {
            default_field(p, "protocol", json!("TCP"));
            default_field(p, "name", json!(""));
        });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let types = ["IPv4", "IPv6", "FQDN"];
        let address_type = str_or_empty(obj, "addressType");
        if address_type.is_empty() {
            errs.push(FieldError::required("addressType", ""));
        } else if !types.contains(&address_type) {
            errs.push(not_supported("addressType", json!(address_type), &types));
        }
        for (i, e) in array_of(obj, "endpoints").iter().enumerate() {
            let addresses = array_of(e, "addresses");
            if addresses.is_empty() || addresses.len() > 100 {
                errs.push(FieldError::invalid(
                    format!("endpoints[{i}].addresses"),
                    json!(addresses),
                    "must contain at least 1 address but no more than 100 addresses",
                ));
            }
            for (j, a) in addresses.iter().enumerate() {
                let a = a.as_str().unwrap_or("");
                let parsed: Option<Result<IpAddr, ()>> = match address_type {
                    "IPv4" => Some(
                        a.parse::<std::net::Ipv4Addr>()
                            .map(IpAddr::V4)
                            .map_err(drop),
                    ),
                    "IPv6" => Some(
                        a.parse::<std::net::Ipv6Addr>()
                            .map(IpAddr::V6)
                            .map_err(drop),
                    ),
                    _ => None,
                };
                let problem = match parsed {
                    Some(Ok(ip)) => special_ip_error(ip),
                    Some(Err(())) => Some(format!("must be a valid {address_type} address")),
                    None => (!is_dns1123_subdomain(a).is_empty())
                        .then(|| format!("must be a valid {address_type} address")),
                };
                if let Some(msg) = problem {
                    errs.push(FieldError::invalid(
                        format!("endpoints[{i}].addresses[{j}]"),
                        json!(a),
                        msg,
                    ));
                }
            }
        }
        for (i, p) in array_of(obj, "ports").iter().enumerate() {
            let pp = format!("ports[{i}]");
            if let Some(port) = i64_of(p, "port") {
                errs.extend(port_range_errors(&format!("{pp}.port"), port));
            }
            errs.extend(validate_protocol(p, &pp));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::tests_support::messages;

    fn svc(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn service_defaults() {
        let mut s = svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        ServiceStrategy.default(&mut s);
        ServiceStrategy.prepare_for_create(&mut s);
        assert_eq!(
            s["spec"],
            json!({
            "selector": {"app": "web"},
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "type": "ClusterIP", "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack",
            "ipFamilies": ["IPv4"]})
        );
        assert_eq!(s["status"], json!({"loadBalancer": {}}));
        assert!(ServiceStrategy.validate(&s).is_empty());
        let mut lb = svc(
            json!({"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 443, "targetPort": "https"}]}),
        );
        ServiceStrategy.default(&mut lb);
        assert_eq!(lb["spec"]["externalTrafficPolicy"], json!("Cluster"));
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], json!(true));
        assert_eq!(
            lb["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            json!(10800)
        );
        assert_eq!(lb["spec"]["ports"][0]["targetPort"], json!("https"));
    }

    #[test]
    fn service_validation() {
        let s = svc(json!({"type": "Cluster", "ports": []}));
        assert_eq!(messages(&ServiceStrategy.validate(&s)), vec![
            "spec.type: Unsupported value: \"Cluster\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            "spec.ports: Required value",
        ]);
        let mut headless = svc(json!({"clusterIP": "None"}));
        ServiceStrategy.default(&mut headless);
        assert_eq!(
            headless["spec"]["ipFamilyPolicy"],
            json!("RequireDualStack")
        );
        assert!(ServiceStrategy.validate(&headless).is_empty());
        let s = svc(json!({"clusterIP": "10.43.0.300", "ports": [
            {"port": 80, "nodePort": 30080}, {"name": "b", "port": 0, "protocol": "TCP"}]}));
        assert_eq!(messages(&ServiceStrategy.validate(&s)), vec![
            "spec.ports[0].name: Required value",
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
            "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.clusterIPs[0]: Invalid value: \"10.43.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ]);
        let ext = svc(json!({"type": "ExternalName"}));
        assert_eq!(
            messages(&ServiceStrategy.validate(&ext)),
            vec!["spec.externalName: Required value"]
        );
    }

    #[test]
    fn cluster_ip_is_kept_and_immutable() {
        let mut old = svc(
            json!({"ports": [{"port": 80}], "clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"]}),
        );
        ServiceStrategy.default(&mut old);
        let mut new = svc(json!({"ports": [{"port": 81}]}));
        ServiceStrategy.default(&mut new);
        ServiceStrategy.prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], json!("10.43.0.5"));
        assert!(ServiceStrategy.validate_update(&new, &old).is_empty());
        new["spec"]["clusterIP"] = json!("10.43.0.6");
        new["spec"]["clusterIPs"] = json!(["10.43.0.6"]);
        assert_eq!(
            messages(&ServiceStrategy.validate_update(&new, &old)),
            vec!["spec.clusterIPs[0]: Invalid value: [\"10.43.0.6\"]: may not change once set"]
        );
        assert_eq!(
            ServiceStrategy
                .field_value(&old, "spec.clusterIP")
                .as_deref(),
            Some("10.43.0.5")
        );
    }

    #[test]
    fn node_ports_survive_apply() {
        let old = svc(
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30001}]}),
        );
        let mut new = svc(json!({"type": "NodePort", "ports": [{"port": 80}]}));
        ServiceStrategy.default(&mut new);
        ServiceStrategy.prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"]["ports"][0]["nodePort"], json!(30001));
    }

    #[test]
    fn type_changes_drop_what_the_old_type_needed() {
        let mut old = svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}]}));
        ServiceStrategy.default(&mut old);
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        ServiceStrategy.default(&mut new);
        ServiceStrategy.prepare_for_update(&mut new, &old);
        assert_eq!(
            new["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP", "targetPort": 80}])
        );
        assert!(new["spec"].get("externalTrafficPolicy").is_none());
        assert!(ServiceStrategy.validate(&new).is_empty());
        let mut ext = old.clone();
        ext["spec"]["type"] = json!("ExternalName");
        ext["spec"]["externalName"] = json!("example.com");
        ServiceStrategy.prepare_for_update(&mut ext, &old);
        assert!(ext["spec"].get("ipFamilies").is_none());
        assert!(
            ServiceStrategy.validate(&ext).is_empty(),
            "{:?}",
            ServiceStrategy.validate(&ext)
        );
        // A node port the client changed is kept, and validation reports it.
        let mut changed = old.clone();
        changed["spec"]["type"] = json!("ClusterIP");
        changed["spec"]["ports"][0]["nodePort"] = json!(30002);
        ServiceStrategy.prepare_for_update(&mut changed, &old);
        assert_eq!(ServiceStrategy.validate(&changed).len(), 1);
    }

    #[test]
    fn endpoints_and_slices() {
        let mut ep = json!({"subsets": [{"addresses": [{"ip": "10.42.0.5"}, {"ip": "nope"}], "ports": [{"port": 80}]}]});
        EndpointsStrategy.default(&mut ep);
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], json!("TCP"));
        assert_eq!(messages(&EndpointsStrategy.validate(&ep)), vec![
            "subsets[0].addresses[1].ip: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]);
        assert!(EndpointsStrategy.allow_create_on_update());
        let special = json!({"subsets": [{"addresses": [{"ip": "127.0.0.1"}, {"ip": "0.0.0.0"}, {"ip": "::ffff:127.0.0.1"}],
            "notReadyAddresses": [{"ip": "169.254.169.254"}, {"ip": "fe80::1"}, {"ip": "224.0.0.5"},
                {"ip": "ff02::1"}, {"ip": "192.0.2.1"}]}]});
        assert_eq!(messages(&EndpointsStrategy.validate(&special)), vec![
            "subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            "subsets[0].addresses[1].ip: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)",
            "subsets[0].addresses[2].ip: Invalid value: \"::ffff:127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            "subsets[0].notReadyAddresses[0].ip: Invalid value: \"169.254.169.254\": may not be in the link-local range (169.254.0.0/16, fe80::/10)",
            "subsets[0].notReadyAddresses[1].ip: Invalid value: \"fe80::1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)",
            "subsets[0].notReadyAddresses[2].ip: Invalid value: \"224.0.0.5\": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
            "subsets[0].notReadyAddresses[3].ip: Invalid value: \"ff02::1\": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ]);
        let v6 = json!({"addressType": "IPv6", "endpoints": [{"addresses": ["::1"]}, {"addresses": ["2001:db8::1"]}]});
        assert_eq!(
            messages(&EndpointSliceStrategy.validate(&v6)),
            vec!["endpoints[0].addresses[0]: Invalid value: \"::1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"]
        );
        let slice = json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.42.0.5"]}, {"addresses": ["::1"]}]});
        assert_eq!(
            messages(&EndpointSliceStrategy.validate(&slice)),
            vec!["endpoints[1].addresses[0]: Invalid value: \"::1\": must be a valid IPv4 address"]
        );
    }
}
