//! Decision logic of the Endpoints controller, as pure functions: a Service and its pods
//! in, the `subsets` (packed, sorted, truncated), labels and annotations out.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::ports::{
    endpoint_ip, find_port, hostname_for, is_headless, is_pod_ready, publish_not_ready,
    should_pod_be_in_endpoints,
};

/// The most addresses one Endpoints object carries; beyond it the controller truncates
/// and says so with [`OVER_CAPACITY`].
pub const MAX_CAPACITY: usize = 1000;
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const HEADLESS: &str = "service.kubernetes.io/headless";
/// Marks Endpoints this controller made, so that only those are deleted with their Service.
pub const MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpoint-controller";
/// Endpoints used as a leader-election lock (old clients) are never garbage here.
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// A port's identity: name, number, protocol, appProtocol.
type PortId = (String, i32, String, String);
/// A port before packing; `None`: a headless Service without ports, whose addresses are
/// published bare.
type PortKey = Option<PortId>;
/// An address's identity: IP and pod UID.
type AddressKey = (String, String);
/// Addresses and their readiness for one port.
type AddressSet = BTreeMap<AddressKey, bool>;

fn port_key(p: &EndpointPort) -> PortId {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

fn address_key(a: &EndpointAddress) -> AddressKey {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

fn address_for(svc: &Service, pod: &Pod, ip: &str) -> EndpointAddress {
    EndpointAddress {
        ip: ip.to_string(),
        hostname: hostname_for(svc, pod).map(str::to_string),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
    }
}

/// The Service's subsets from the pods its selector matches: one subset per distinct set
/// of addresses, carrying every port those addresses serve (so pods that resolve a named
/// targetPort to different numbers land in different subsets). Ready pods go to
/// `addresses`, the others to `notReadyAddresses`; with `publishNotReadyAddresses` every
/// pod counts as ready and terminating pods stay.
pub fn build_subsets(svc: &Service, pods: &[Pod]) -> Vec<EndpointSubset> {
    let tolerate_unready = publish_not_ready(svc);
    let svc_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    // port → address → ready; an address both ready and not for one port counts as ready.
    let mut by_port: BTreeMap<PortKey, (Option<EndpointPort>, AddressSet)> = BTreeMap::new();
    let mut addresses: HashMap<AddressKey, EndpointAddress> = HashMap::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(ip) = endpoint_ip(svc, pod) else {
            continue;
        };
        let address = address_for(svc, pod, ip);
        let key = address_key(&address);
        addresses.entry(key.clone()).or_insert(address);
        let ready = tolerate_unready || is_pod_ready(pod);
        let mut add = |port: Option<EndpointPort>| {
            let entry = by_port
                .entry(port.as_ref().map(port_key))
                .or_insert_with(|| (port, BTreeMap::new()));
            let r = entry.1.entry(key.clone()).or_insert(ready);
            *r = *r || ready;
        };
        if svc_ports.is_empty() {
            if is_headless(svc) {
                add(None);
            }
            continue;
        }
        for sp in svc_ports {
            let Some(number) = find_port(pod, sp) else {
                continue;
            };
            add(Some(EndpointPort {
                name: sp.name.clone().filter(|n| !n.is_empty()),
                port: number,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            }));
        }
    }
    // Group ports by the exact set of (address, ready) they map to.
    let mut by_addresses: BTreeMap<Vec<(AddressKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (_, (port, addrs)) in by_port {
        let set: Vec<(AddressKey, bool)> = addrs.into_iter().collect();
        let ports = by_addresses.entry(set).or_default();
        ports.extend(port);
    }
    let mut subsets: Vec<EndpointSubset> = by_addresses
        .into_iter()
        .map(|(set, ports)| {
            let mut ready = Vec::new();
            let mut not_ready = Vec::new();
            for (key, is_ready) in set {
                let Some(a) = addresses.get(&key).cloned() else {
                    continue;
                };
                if is_ready {
                    ready.push(a);
                } else {
                    not_ready.push(a);
                }
            }
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    sort_subsets(&mut subsets);
    subsets
}

/// A deterministic order: addresses by IP then pod UID, ports by name, number, protocol,
/// subsets by their first address then ports, so that an unchanged state compares equal.
pub fn sort_subsets(subsets: &mut [EndpointSubset]) {
    for s in subsets.iter_mut() {
        for list in [&mut s.addresses, &mut s.not_ready_addresses] {
            if let Some(l) = list.as_mut() {
                l.sort_by_key(address_key);
            }
        }
        if let Some(p) = s.ports.as_mut() {
            p.sort_by_key(port_key);
        }
    }
    subsets.sort_by_key(subset_key);
}

fn subset_key(s: &EndpointSubset) -> (Vec<AddressKey>, Vec<PortId>) {
    let addrs = s
        .addresses
        .iter()
        .chain(s.not_ready_addresses.iter())
        .flatten()
        .map(address_key)
        .collect();
    let ports = s.ports.iter().flatten().map(port_key).collect();
    (addrs, ports)
}

fn count(subsets: &[EndpointSubset]) -> (usize, usize) {
    subsets.iter().fold((0, 0), |(r, n), s| {
        (
            r + s.addresses.as_ref().map_or(0, Vec::len),
            n + s.not_ready_addresses.as_ref().map_or(0, Vec::len),
        )
    })
}

/// Cuts the subsets down to [`MAX_CAPACITY`] addresses, as upstream does: not-ready
/// addresses go first; when the ready ones alone are over, only ready ones are kept. Each
/// subset keeps its proportional share (rounded up, the last ones take what is left).
/// Returns whether anything was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let (ready, not_ready) = count(subsets);
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, not_ready)
    };
    let mut left = max;
    for s in subsets.iter_mut() {
        let list = if truncate_ready {
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        let n = list.as_ref().map_or(0, Vec::len);
        let share = (n * max).div_ceil(total.max(1)).min(left);
        if let Some(l) = list.as_mut() {
            l.truncate(share);
        }
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
        left -= share.min(n);
        if truncate_ready {
            s.not_ready_addresses = None;
        }
    }
    true
}

/// The Endpoints' labels: the Service's, plus the headless marker for headless Services
/// and the managed-by marker.
pub fn desired_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS);
    if is_headless(svc) {
        labels.insert(HEADLESS.into(), String::new());
    }
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

/// What the controller last saw per Service, to tell which pod changes are new.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerState {
    /// Pod name → the lastTransitionTime of its Ready condition.
    pub pods: HashMap<String, Option<Time>>,
}

/// The `last-change-trigger-time`: the earliest time of a change not yet reflected — the
/// Service's creation for a Service seen for the first time, else the Ready transitions of
/// pods that are new or changed since the last sync. `None` when nothing changed.
pub fn last_change_trigger_time(
    previous: Option<&TriggerState>,
    svc: &Service,
    pods: &[Pod],
) -> (Option<Time>, TriggerState) {
    let mut state = TriggerState::default();
    let mut earliest: Option<Time> = None;
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let time = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.clone());
        let changed = previous.is_some_and(|p| p.pods.get(&name) != Some(&time));
        if changed {
            if let Some(t) = &time {
                if earliest.as_ref().is_none_or(|e| t.0 < e.0) {
                    earliest = Some(t.clone());
                }
            }
        }
        state.pods.insert(name, time);
    }
    if previous.is_none() {
        earliest = svc.metadata.creation_timestamp.clone();
    }
    (earliest, state)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{json, Value};

    fn svc(spec: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "n",
            "labels": {"app": "web"}, "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec}))
        .unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, http_port: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "n", "uid": format!("uid-{name}")},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": http_port}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                    "lastTransitionTime": "2026-01-01T00:00:01Z"}]}
        }))
        .unwrap()
    }

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        list.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_and_not_ready_share_a_subset() {
        let s = svc(
            json!({"clusterIP": "10.43.0.9", "ports": [{"name": "web", "port": 80, "targetPort": 8080}]}),
        );
        let pods = vec![
            pod("b", "10.42.0.3", true, 1),
            pod("a", "10.42.0.2", true, 1),
            pod("c", "10.42.0.4", false, 1),
        ];
        let subsets = build_subsets(&s, &pods);
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.2", "10.42.0.3"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.42.0.4"]);
        let port = &subsets[0].ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some("web"), 8080, Some("TCP"))
        );
        let a = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("node-1"));
        let r = a.target_ref.as_ref().unwrap();
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("Pod"), Some("a"), Some("uid-a"))
        );
        // Same input in another order: the same result.
        let mut reversed = pods.clone();
        reversed.reverse();
        assert_eq!(build_subsets(&s, &reversed), subsets);
    }

    #[test]
    fn named_target_port_splits_subsets_by_number() {
        let s = svc(json!({"clusterIP": "10.43.0.9", "ports": [
            {"name": "web", "port": 80, "targetPort": "http", "appProtocol": "http"},
            {"name": "metrics", "port": 9090, "targetPort": 9090}]}));
        let pods = vec![
            pod("a", "10.42.0.2", true, 8080),
            pod("b", "10.42.0.3", true, 8081),
            pod("c", "10.42.0.4", true, 8080),
        ];
        let subsets = build_subsets(&s, &pods);
        type Shape<'a> = (Vec<&'a str>, Vec<(i32, Option<&'a str>)>);
        let shape: Vec<Shape> = subsets
            .iter()
            .map(|s| {
                let ports = s
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| (p.port, p.app_protocol.as_deref()))
                    .collect();
                (ips(&s.addresses), ports)
            })
            .collect();
        // Subsets group addresses that serve exactly the same ports.
        assert_eq!(
            shape,
            [
                (
                    vec!["10.42.0.2", "10.42.0.3", "10.42.0.4"],
                    vec![(9090, None)]
                ),
                (vec!["10.42.0.2", "10.42.0.4"], vec![(8080, Some("http"))]),
                (vec!["10.42.0.3"], vec![(8081, Some("http"))]),
            ]
        );
    }

    #[test]
    fn a_port_the_pod_lacks_leaves_it_out_of_that_port_only() {
        let s = svc(json!({"clusterIP": "10.43.0.9", "ports": [
            {"name": "web", "port": 80, "targetPort": "nope"}]}));
        assert!(build_subsets(&s, &[pod("a", "10.42.0.2", true, 8080)]).is_empty());
    }

    #[test]
    fn terminating_ip_less_and_publish_not_ready() {
        let s = svc(json!({"clusterIP": "10.43.0.9", "ports": [{"port": 80}]}));
        let mut terminating = pod("t", "10.42.0.9", true, 1);
        terminating.metadata.deletion_timestamp =
            Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        let mut no_ip = pod("x", "10.42.0.8", true, 1);
        no_ip.status.as_mut().unwrap().pod_ip = None;
        no_ip.status.as_mut().unwrap().pod_ips = None;
        let pods = vec![pod("a", "10.42.0.2", false, 1), terminating.clone(), no_ip];
        let subsets = build_subsets(&s, &pods);
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.42.0.2"]);
        assert!(subsets[0].addresses.is_none());

        let publish = svc(
            json!({"clusterIP": "10.43.0.9", "publishNotReadyAddresses": true, "ports": [{"port": 80}]}),
        );
        let subsets = build_subsets(&publish, &pods);
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.2", "10.42.0.9"]);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn headless_without_ports_publishes_bare_addresses() {
        let headless = svc(json!({"clusterIP": "None"}));
        let subsets = build_subsets(&headless, &[pod("a", "10.42.0.2", true, 1)]);
        assert_eq!(subsets.len(), 1);
        assert!(subsets[0].ports.is_none());
        let headful = svc(json!({"clusterIP": "10.43.0.9"}));
        assert!(build_subsets(&headful, &[pod("a", "10.42.0.2", true, 1)]).is_empty());
        let labels = desired_labels(&headless);
        assert_eq!(labels.get(HEADLESS).map(String::as_str), Some(""));
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert!(!desired_labels(&headful).contains_key(HEADLESS));
        assert_eq!(
            desired_labels(&headful).get(MANAGED_BY).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
    }

    fn addresses(prefix: &str, n: usize) -> Option<Vec<EndpointAddress>> {
        Some(
            (0..n)
                .map(|i| EndpointAddress {
                    ip: format!("{prefix}.{}.{}", i / 250, i % 250),
                    ..Default::default()
                })
                .collect(),
        )
    }

    #[test]
    fn truncation_drops_not_ready_first_then_keeps_ready_proportionally() {
        let mut small = vec![EndpointSubset {
            addresses: addresses("10.1", 10),
            ..Default::default()
        }];
        assert!(!truncate(&mut small));

        let mut s = vec![
            EndpointSubset {
                addresses: addresses("10.1", 900),
                not_ready_addresses: addresses("10.2", 150),
                ..Default::default()
            },
            EndpointSubset {
                addresses: addresses("10.3", 50),
                not_ready_addresses: addresses("10.4", 50),
                ..Default::default()
            },
        ];
        assert!(truncate(&mut s));
        let (r, n) = count(&s);
        assert_eq!((r, n), (950, 50));
        // 150/200 of the 50 not-ready slots, rounded up, then what is left.
        assert_eq!(s[0].not_ready_addresses.as_ref().unwrap().len(), 38);
        assert_eq!(s[1].not_ready_addresses.as_ref().unwrap().len(), 12);

        let mut over = vec![
            EndpointSubset {
                addresses: addresses("10.1", 700),
                not_ready_addresses: addresses("10.2", 5),
                ..Default::default()
            },
            EndpointSubset {
                addresses: addresses("10.3", 700),
                ..Default::default()
            },
        ];
        assert!(truncate(&mut over));
        assert_eq!(count(&over), (1000, 0));
        assert_eq!(over[0].addresses.as_ref().unwrap().len(), 500);
    }

    #[test]
    fn trigger_time() {
        let s = svc(json!({"ports": [{"port": 80}]}));
        let pods = vec![pod("a", "10.42.0.2", true, 1)];
        let (t, state) = last_change_trigger_time(None, &s, &pods);
        assert_eq!(t, s.metadata.creation_timestamp);
        let (t, state) = last_change_trigger_time(Some(&state), &s, &pods);
        assert_eq!(t, None);
        let mut changed = pods.clone();
        changed[0]
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .last_transition_time = Some(Time("2026-01-01T00:00:05Z".parse().unwrap()));
        changed.push(pod("b", "10.42.0.3", true, 1));
        let (t, _) = last_change_trigger_time(Some(&state), &s, &changed);
        assert_eq!(t, Some(Time("2026-01-01T00:00:01Z".parse().unwrap())));
    }
}
