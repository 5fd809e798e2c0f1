//! Decision logic of the EndpointSlice controller, as pure functions: the endpoints a
//! Service should have (grouped by address type and port set), and the plan that turns the
//! existing slices into them with as few writes as possible, as upstream's reconciler does:
//!
//! 1. Each existing slice keeps the desired endpoints it already holds (updated in place
//!    when they changed) and drops the rest; a slice left empty is deleted.
//! 2. Endpoints still to place go first into slices that are being updated anyway (fullest
//!    first), so no extra slice is written.
//! 3. What remains goes into the one unchanged slice that fits it all most tightly, else
//!    into new slices of at most `max_per_slice`.
//!
//! A Service with no endpoints at all keeps one empty placeholder slice.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::endpoints::ports::{
    find_port, hostname_for, is_pod_ready, is_terminating, pod_ips, publish_not_ready,
    service_families, should_pod_be_in_endpoints, IpFamily,
};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// A slice's identity for packing: its address type and its sorted ports.
pub type PortKey = (String, Vec<(String, i32, String, String)>);

/// An endpoint's identity (upstream's endpoint hash): addresses, hostname and the pod.
type EndpointKey = (Vec<String>, String, String, String);

fn endpoint_key(e: &Endpoint) -> EndpointKey {
    let mut addrs = e.addresses.clone();
    addrs.sort();
    let r = e.target_ref.as_ref();
    (
        addrs,
        e.hostname.clone().unwrap_or_default(),
        r.and_then(|r| r.namespace.clone()).unwrap_or_default(),
        r.and_then(|r| r.name.clone()).unwrap_or_default(),
    )
}

pub fn port_key(address_type: &str, ports: &[EndpointPort]) -> PortKey {
    let mut key: Vec<(String, i32, String, String)> = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    key.sort();
    (address_type.to_string(), key)
}

/// The endpoints of one address type and port set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub ports: Vec<EndpointPort>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
}

impl Group {
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

/// The endpoints the Service should have: per address type (its IP families) and port set,
/// every pod with an IP of that family, terminating ones included with their conditions.
/// `zone_of` names a node's `topology.kubernetes.io/zone`.
pub fn desired_groups(
    svc: &Service,
    pods: &[Pod],
    zone_of: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<PortKey, Group> {
    let mut groups: BTreeMap<PortKey, Group> = BTreeMap::new();
    let svc_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let publish = publish_not_ready(svc);
    for family in service_families(svc) {
        let address_type = family.address_type();
        for pod in pods {
            if !should_pod_be_in_endpoints(pod, true) {
                continue;
            }
            let addresses: Vec<String> = pod_ips(pod)
                .into_iter()
                .filter(|ip| IpFamily::of(ip) == Some(family))
                .map(str::to_string)
                .collect();
            if addresses.is_empty() {
                continue;
            }
            let ports: Vec<EndpointPort> = svc_ports
                .iter()
                .filter_map(|sp| {
                    let number = find_port(pod, sp)?;
                    Some(EndpointPort {
                        name: Some(sp.name.clone().unwrap_or_default()),
                        port: Some(number),
                        protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                        app_protocol: sp.app_protocol.clone(),
                    })
                })
                .collect();
            let serving = is_pod_ready(pod);
            let terminating = is_terminating(pod);
            // Never "ready" while terminating, unless the Service publishes everything.
            let ready = publish || (serving && !terminating);
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty());
            let endpoint = Endpoint {
                addresses,
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(serving),
                    terminating: Some(terminating),
                }),
                hostname: hostname_for(svc, pod).map(str::to_string),
                zone: node.as_deref().and_then(zone_of),
                node_name: node,
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: pod.metadata.namespace.clone(),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let group = groups
                .entry(port_key(address_type, &ports))
                .or_insert_with(|| Group {
                    ports,
                    endpoints: BTreeMap::new(),
                });
            group.endpoints.insert(endpoint_key(&endpoint), endpoint);
        }
    }
    groups
}

/// The labels every slice of the Service carries: the Service's (minus the two reserved
/// keys), the service name, the manager, and the headless marker for `clusterIP: None`.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != SERVICE_NAME_LABEL && k != MANAGED_BY_LABEL)
        .collect();
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// Whether the slice is owned (as controller) by this very Service object.
pub fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == svc.metadata.uid.as_ref())
}

/// A new slice for the Service (named by the API server from `<service>-`).
pub fn new_slice(svc: &Service, address_type: &str, ports: Vec<EndpointPort>) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    // generateName leaves room for the 5-character suffix within 63 characters.
    let mut prefix: String = name.chars().take(57).collect();
    prefix.push('-');
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name,
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: address_type.to_string(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// The writes that bring the slices to the desired state.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

fn is_placeholder(slice: &EndpointSlice, address_type: &str) -> bool {
    slice.endpoints.is_empty()
        && slice.ports.as_ref().is_none_or(Vec::is_empty)
        && slice.address_type == address_type
}

/// Plans the writes from `existing` (this Service's managed slices) to `desired`.
pub fn plan(
    svc: &Service,
    existing: &[EndpointSlice],
    desired: BTreeMap<PortKey, Group>,
    max_per_slice: usize,
) -> Plan {
    let labels = slice_labels(svc);
    let mut plan = Plan::default();
    let mut by_key: HashMap<PortKey, Vec<EndpointSlice>> = HashMap::new();
    for slice in existing {
        if !owned_by(slice, svc) {
            plan.delete.push(slice.clone());
            continue;
        }
        let key = port_key(
            &slice.address_type,
            slice.ports.as_deref().unwrap_or_default(),
        );
        by_key.entry(key).or_default().push(slice.clone());
    }
    // Slices of port sets (or address types) nobody wants any more.
    let mut stale: Vec<PortKey> = by_key
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .cloned()
        .collect();
    stale.sort();
    for key in stale {
        plan.delete.extend(by_key.remove(&key).unwrap_or_default());
    }
    for (key, group) in desired {
        let slices = by_key.remove(&key).unwrap_or_default();
        pack(
            svc,
            &labels,
            &key.0,
            slices,
            group,
            max_per_slice,
            &mut plan,
        );
    }
    // A Service without endpoints keeps one empty placeholder slice.
    if plan.create.is_empty() && plan.update.is_empty() && existing.len() == plan.delete.len() {
        let address_type = service_families(svc)
            .first()
            .copied()
            .unwrap_or(IpFamily::V4)
            .address_type();
        let kept = plan.delete.iter().position(|s| {
            owned_by(s, svc)
                && is_placeholder(s, address_type)
                && s.metadata.labels.as_ref() == Some(&labels)
        });
        match kept {
            Some(i) => {
                plan.delete.remove(i);
            }
            None => plan.create.push(new_slice(svc, address_type, Vec::new())),
        }
    }
    plan
}

fn pack(
    svc: &Service,
    labels: &BTreeMap<String, String>,
    address_type: &str,
    slices: Vec<EndpointSlice>,
    group: Group,
    max_per_slice: usize,
    plan: &mut Plan,
) {
    let Group {
        ports,
        endpoints: mut remaining,
    } = group;
    let mut updating: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<EndpointSlice> = Vec::new();
    for mut slice in slices {
        let mut kept = Vec::new();
        let mut changed = false;
        for e in &slice.endpoints {
            if let Some(want) = remaining.remove(&endpoint_key(e)) {
                changed |= want != *e;
                kept.push(want);
            }
        }
        changed |= kept.len() != slice.endpoints.len();
        let labels_changed = slice.metadata.labels.as_ref() != Some(labels);
        if kept.is_empty() {
            plan.delete.push(slice);
        } else if changed || labels_changed {
            slice.endpoints = kept;
            slice.metadata.labels = Some(labels.clone());
            updating.push(slice);
        } else {
            unchanged.push(slice);
        }
    }
    // 2. Top up slices that are written anyway, fullest first.
    updating.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
    for slice in &mut updating {
        fill(slice, &mut remaining, max_per_slice);
    }
    // 3. One unchanged slice that takes all the rest, the tightest fit; else new slices.
    if !remaining.is_empty() {
        let best = unchanged
            .iter()
            .enumerate()
            .filter(|(_, s)| s.endpoints.len() + remaining.len() <= max_per_slice)
            .max_by_key(|(_, s)| s.endpoints.len())
            .map(|(i, _)| i);
        if let Some(i) = best {
            let mut slice = unchanged.swap_remove(i);
            fill(&mut slice, &mut remaining, max_per_slice);
            updating.push(slice);
        }
    }
    while !remaining.is_empty() {
        let mut slice = new_slice(svc, address_type, ports.clone());
        fill(&mut slice, &mut remaining, max_per_slice);
        plan.create.push(slice);
    }
    plan.update.extend(updating);
}

fn fill(slice: &mut EndpointSlice, remaining: &mut BTreeMap<EndpointKey, Endpoint>, max: usize) {
    while slice.endpoints.len() < max {
        let Some((_, e)) = remaining.pop_first() else {
            break;
        };
        slice.endpoints.push(e);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{json, Value};

    fn svc(spec: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "n",
            "uid": "svc-uid", "labels": {"tier": "front"}}, "spec": spec}))
        .unwrap()
    }

    fn web() -> Service {
        svc(json!({"clusterIP": "10.43.0.9", "ipFamilies": ["IPv4"],
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}))
    }

    fn pod(i: usize, port: i32, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("p{i}"), "namespace": "n", "uid": format!("u{i}")},
            "spec": {"nodeName": format!("node-{}", i % 2), "containers": [{"name": "c",
                "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": format!("10.42.{}.{}", i / 200, i % 200 + 1),
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    fn zone(node: &str) -> Option<String> {
        Some(format!("zone-{node}"))
    }

    fn apply(plan: Plan, existing: &[EndpointSlice]) -> Vec<EndpointSlice> {
        let mut out: Vec<EndpointSlice> = existing
            .iter()
            .filter(|s| {
                !plan
                    .delete
                    .iter()
                    .any(|d| d.metadata.name == s.metadata.name)
            })
            .filter(|s| {
                !plan
                    .update
                    .iter()
                    .any(|u| u.metadata.name == s.metadata.name)
            })
            .cloned()
            .collect();
        out.extend(plan.update);
        for (i, mut s) in plan.create.into_iter().enumerate() {
            s.metadata.name = Some(format!("web-new{i}-{}", out.len()));
            out.push(s);
        }
        out
    }

    #[test]
    fn endpoints_carry_conditions_zone_and_ports() {
        let mut terminating = pod(3, 8080, true);
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().unwrap(),
            ));
        let pods = vec![pod(0, 8080, true), pod(1, 8080, false), terminating];
        let groups = desired_groups(&web(), &pods, &zone);
        assert_eq!(groups.len(), 1);
        let (key, group) = groups.iter().next().unwrap();
        assert_eq!(key.0, "IPv4");
        assert_eq!(group.ports[0].port, Some(8080));
        let conds: Vec<(bool, bool, bool)> = group
            .endpoints
            .values()
            .map(|e| {
                let c = e.conditions.as_ref().unwrap();
                (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
            })
            .collect();
        assert_eq!(
            conds,
            [
                (true, true, false),
                (false, false, false),
                (false, true, true)
            ]
        );
        let first = group.endpoints.values().next().unwrap();
        assert_eq!(first.zone.as_deref(), Some("zone-node-0"));
        assert_eq!(first.node_name.as_deref(), Some("node-0"));
    }

    #[test]
    fn different_port_numbers_make_different_slices() {
        let pods = vec![pod(0, 8080, true), pod(1, 8081, true), pod(2, 8080, true)];
        let groups = desired_groups(&web(), &pods, &zone);
        let sizes: Vec<usize> = groups.values().map(Group::len).collect();
        assert_eq!(sizes, [2, 1]);
        let p = plan(&web(), &[], groups, 100);
        assert_eq!(p.create.len(), 2);
        let s = &p.create[0];
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MANAGED_BY_LABEL], CONTROLLER_NAME);
        assert_eq!(labels["tier"], "front");
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Service", "svc-uid")
        );
    }

    #[test]
    fn packs_at_most_max_per_slice_and_is_stable() {
        let pods: Vec<Pod> = (0..250).map(|i| pod(i, 8080, true)).collect();
        let p = plan(&web(), &[], desired_groups(&web(), &pods, &zone), 100);
        let sizes: Vec<usize> = p.create.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let slices = apply(p, &[]);
        // Nothing changed: nothing to write.
        let again = plan(&web(), &slices, desired_groups(&web(), &pods, &zone), 100);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn changes_touch_as_few_slices_as_possible() {
        let pods: Vec<Pod> = (0..250).map(|i| pod(i, 8080, true)).collect();
        let slices = apply(
            plan(&web(), &[], desired_groups(&web(), &pods, &zone), 100),
            &[],
        );
        // One pod turns not ready: only its slice is rewritten.
        let mut changed = pods.clone();
        changed[7] = pod(7, 8080, false);
        let p = plan(
            &web(),
            &slices,
            desired_groups(&web(), &changed, &zone),
            100,
        );
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        // Two new pods go into the slice with room (the tightest fit), not a new one.
        let mut more = pods.clone();
        more.push(pod(250, 8080, true));
        more.push(pod(251, 8080, true));
        let p = plan(&web(), &slices, desired_groups(&web(), &more, &zone), 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        assert_eq!(p.update[0].endpoints.len(), 52);
        // A removed pod plus a new one: the updated slice takes the new one.
        let mut swap = pods.clone();
        swap[0] = pod(300, 8080, true);
        let p = plan(&web(), &slices, desired_groups(&web(), &swap, &zone), 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        assert_eq!(p.update[0].endpoints.len(), 100);
    }

    #[test]
    fn no_endpoints_leaves_one_placeholder() {
        let p = plan(&web(), &[], BTreeMap::new(), 100);
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty());
        assert_eq!(p.create[0].address_type, "IPv4");
        let placeholder = apply(p, &[]);
        assert!(plan(&web(), &placeholder, BTreeMap::new(), 100).is_empty());
        // Pods appear: the placeholder goes, a real slice comes.
        let groups = desired_groups(&web(), &[pod(0, 8080, true)], &zone);
        let p = plan(&web(), &placeholder, groups, 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (1, 0, 1));
        // All pods go: the emptied slice is deleted and a placeholder made.
        let slices = apply(p, &placeholder);
        let p = plan(&web(), &slices, BTreeMap::new(), 100);
        assert_eq!((p.create.len(), p.delete.len()), (1, 1));
    }

    #[test]
    fn labels_follow_the_service_and_foreign_slices_go() {
        let pods = vec![pod(0, 8080, true)];
        let slices = apply(
            plan(&web(), &[], desired_groups(&web(), &pods, &zone), 100),
            &[],
        );
        let mut relabelled = web();
        relabelled.metadata.labels = Some([("tier".to_string(), "back".to_string())].into());
        let p = plan(
            &relabelled,
            &slices,
            desired_groups(&relabelled, &pods, &zone),
            100,
        );
        assert_eq!(p.update.len(), 1);
        assert_eq!(
            p.update[0].metadata.labels.as_ref().unwrap()["tier"],
            "back"
        );
        // A slice left by an earlier Service of the same name is replaced.
        let mut recreated = web();
        recreated.metadata.uid = Some("other-uid".into());
        let p = plan(
            &recreated,
            &slices,
            desired_groups(&recreated, &pods, &zone),
            100,
        );
        assert_eq!((p.create.len(), p.delete.len()), (1, 1));
        let headless = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        assert_eq!(slice_labels(&headless)[HEADLESS_LABEL], "");
    }

    #[test]
    fn dual_stack_pods_get_a_slice_per_family() {
        let dual = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        let mut p = pod(0, 80, true);
        p.status.as_mut().unwrap().pod_ips = Some(vec![
            serde_json::from_value(json!({"ip": "10.42.0.1"})).unwrap(),
            serde_json::from_value(json!({"ip": "fd00::1"})).unwrap(),
        ]);
        let groups = desired_groups(&dual, &[p], &zone);
        let types: Vec<&str> = groups.keys().map(|k| k.0.as_str()).collect();
        assert_eq!(types, ["IPv4", "IPv6"]);
    }
}
