//! What the Endpoints and EndpointSlice controllers both decide about a pod: whether it
//! belongs in a Service's endpoints at all, which of its IPs serve the Service, and which
//! container port a Service port's targetPort names on it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// An IP family, as Services (`spec.ipFamilies`) and EndpointSlices (`addressType`) name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    /// The EndpointSlice `addressType`.
    pub fn address_type(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }

    pub fn of(ip: &str) -> Option<IpFamily> {
        match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(_) => Some(IpFamily::V4),
            IpAddr::V6(_) => Some(IpFamily::V6),
        }
    }

    fn parse(name: &str) -> Option<IpFamily> {
        match name {
            "IPv4" => Some(IpFamily::V4),
            "IPv6" => Some(IpFamily::V6),
            _ => None,
        }
    }
}

/// The Service's selector when this controller builds its endpoints: Services without one
/// (endpoints managed by hand) and ExternalName Services (a DNS alias) get none.
pub fn managed_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref()
}

/// Whether `labels` carry every key/value of `selector` (a Service's equality selector;
/// an empty selector selects every pod, as `labels.Set{}.AsSelector()` does).
pub fn selects(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The list selector string (`k=v,…`) for a Service selector.
pub fn label_selector(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_none_or(|ip| ip.is_empty() || ip == "None")
}

pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

pub use crate::controller_utils::is_pod_ready;

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Whether a pod appears in a Service's endpoints at all (ready or not): finished pods
/// (Succeeded/Failed) and pods without an IP never do; terminating pods only when
/// `include_terminating`.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    if matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    if pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || !is_terminating(pod)
}

/// The pod's IPs (`status.podIPs`, else `status.podIP`).
pub fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let ips: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    status
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .into_iter()
        .collect()
}

/// The Service's IP families in order: `spec.ipFamilies`, else guessed from the cluster IP;
/// a headless Service without either serves both.
pub fn service_families(svc: &Service) -> Vec<IpFamily> {
    let spec = svc.spec.as_ref();
    let declared: Vec<IpFamily> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| IpFamily::parse(f))
        .collect();
    if !declared.is_empty() {
        return declared;
    }
    match spec
        .and_then(|s| s.cluster_ip.as_deref())
        .and_then(IpFamily::of)
    {
        Some(f) => vec![f],
        None => vec![IpFamily::V4, IpFamily::V6],
    }
}

/// The one IP a core/v1 Endpoints address gets for this pod: the first of the Service's
/// primary family (for a headless Service without families, the family of `status.podIP`).
pub fn endpoint_ip<'a>(svc: &Service, pod: &'a Pod) -> Option<&'a str> {
    let spec = svc.spec.as_ref();
    let family = spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .and_then(|f| IpFamily::parse(f))
        .or_else(|| {
            spec.and_then(|s| s.cluster_ip.as_deref())
                .and_then(IpFamily::of)
        })
        .or_else(|| {
            pod.status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(IpFamily::of)
        })
        .unwrap_or(IpFamily::V4);
    pod_ips(pod)
        .into_iter()
        .find(|ip| IpFamily::of(ip) == Some(family))
}

/// The hostname an endpoint gets: a pod with `spec.hostname` whose `spec.subdomain` is
/// this Service (StatefulSet pods under their governing Service).
pub fn hostname_for<'a>(svc: &Service, pod: &'a Pod) -> Option<&'a str> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_ns = svc.metadata.namespace == pod.metadata.namespace;
    (same_ns && spec.subdomain.as_deref() == svc.metadata.name.as_deref()).then_some(hostname)
}

fn protocol(p: Option<&str>) -> &str {
    p.filter(|p| !p.is_empty()).unwrap_or("TCP")
}

/// The port number a Service port's targetPort means on this pod: a number as it is; a
/// name looked up among the pod's container ports of the same protocol (then its sidecar
/// init containers'). `None` when the name is not found: the pod does not serve that port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            let want = protocol(port.protocol.as_deref());
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && protocol(p.protocol.as_deref()) == want
                })
                .map(|p| p.container_port)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn svc_port(v: serde_json::Value) -> ServicePort {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn named_target_port_resolves_per_pod_and_protocol() {
        let p = pod(json!({"metadata": {"name": "a"}, "spec": {
            "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}],
            "initContainers": [
                {"name": "once", "ports": [{"name": "side", "containerPort": 1}]},
                {"name": "proxy", "restartPolicy": "Always",
                 "ports": [{"name": "side", "containerPort": 9000}]}]}}));
        let named = |name: &str, proto: &str| {
            svc_port(json!({"port": 80, "targetPort": name, "protocol": proto}))
        };
        assert_eq!(find_port(&p, &named("http", "TCP")), Some(8080));
        assert_eq!(find_port(&p, &named("http", "UDP")), None);
        assert_eq!(find_port(&p, &named("dns", "UDP")), Some(53));
        assert_eq!(find_port(&p, &named("side", "TCP")), Some(9000));
        assert_eq!(find_port(&p, &named("nope", "TCP")), None);
        assert_eq!(
            find_port(&p, &svc_port(json!({"port": 80, "targetPort": 9376}))),
            Some(9376)
        );
        assert_eq!(find_port(&p, &svc_port(json!({"port": 80}))), Some(80));
    }

    #[test]
    fn which_pods_belong() {
        let running = json!({"phase": "Running", "podIP": "10.42.0.5"});
        assert!(should_pod_be_in_endpoints(
            &pod(json!({"status": running})),
            false
        ));
        assert!(!should_pod_be_in_endpoints(
            &pod(json!({"status": {"phase": "Pending"}})),
            true
        ));
        assert!(!should_pod_be_in_endpoints(
            &pod(json!({"status": {"phase": "Succeeded", "podIP": "10.42.0.5"}})),
            true
        ));
        let terminating = pod(
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": running}),
        );
        assert!(!should_pod_be_in_endpoints(&terminating, false));
        assert!(should_pod_be_in_endpoints(&terminating, true));
    }

    #[test]
    fn endpoint_ip_follows_the_service_family() {
        let p = pod(json!({"status": {"podIP": "10.42.0.5",
            "podIPs": [{"ip": "10.42.0.5"}, {"ip": "fd00::5"}]}}));
        let svc = |spec: serde_json::Value| -> Service {
            serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": spec})).unwrap()
        };
        assert_eq!(
            endpoint_ip(&svc(json!({"ipFamilies": ["IPv6"]})), &p),
            Some("fd00::5")
        );
        assert_eq!(
            endpoint_ip(&svc(json!({"clusterIP": "10.43.0.9"})), &p),
            Some("10.42.0.5")
        );
        assert_eq!(
            endpoint_ip(&svc(json!({"clusterIP": "None"})), &p),
            Some("10.42.0.5")
        );
        assert_eq!(
            service_families(&svc(json!({"clusterIP": "None"}))),
            vec![IpFamily::V4, IpFamily::V6]
        );
        assert!(is_headless(&svc(json!({"clusterIP": "None"}))));
        assert!(!is_headless(&svc(json!({"clusterIP": "10.43.0.9"}))));
    }

    #[test]
    fn hostname_only_under_the_governing_service() {
        let svc: Service = serde_json::from_value(
            json!({"metadata": {"name": "db", "namespace": "n"}, "spec": {}}),
        )
        .unwrap();
        let p = |sub: &str| {
            pod(json!({"metadata": {"namespace": "n"},
                "spec": {"containers": [], "hostname": "db-0", "subdomain": sub}}))
        };
        assert_eq!(hostname_for(&svc, &p("db")), Some("db-0"));
        assert_eq!(hostname_for(&svc, &p("other")), None);
    }

    #[test]
    fn selectors() {
        let sel: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("x".to_string(), "y".to_string()),
        ]
        .into();
        assert!(selects(&sel, Some(&labels)));
        assert!(!selects(&sel, None));
        assert!(selects(&BTreeMap::new(), None));
        assert_eq!(label_selector(&sel), "app=web");
    }
}
