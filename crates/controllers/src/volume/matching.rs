//! Which PersistentVolume satisfies which claim: the persistentvolume controller's
//! `findMatchingVolume` and `checkVolumeSatisfyClaim`, as pure functions over the API types.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use api::selectors::{label_selector_matches, node_selector_matches};

/// The class a claim asks for; "" (or unset, once admission has run) means "no class".
pub fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// `storage` of a resource list in bytes, rounded up as `Quantity.Value()` does.
pub fn storage_bytes(list: Option<&BTreeMap<String, Quantity>>) -> Option<i64> {
    let q = list?.get("storage")?;
    api::quantity::parse(&q.0).ok().map(|q| q.value())
}

pub fn requested_bytes(pvc: &PersistentVolumeClaim) -> Option<i64> {
    storage_bytes(
        pvc.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
}

pub fn capacity_bytes(pv: &PersistentVolume) -> Option<i64> {
    storage_bytes(pv.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

/// Filesystem unless Block is said (the API server defaults it, old objects may lack it).
fn volume_mode(mode: Option<&String>) -> &str {
    mode.map(String::as_str).unwrap_or("Filesystem")
}

/// The claim reference a volume bound to `pvc` carries.
pub fn claim_ref(pvc: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: pvc.metadata.name.clone(),
        namespace: pvc.metadata.namespace.clone(),
        uid: pvc.metadata.uid.clone(),
        resource_version: pvc.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The volume's claimRef names this claim (by name and namespace, and by uid when the
/// reference has one: a pre-bound reference without uid binds to whichever claim of that
/// name comes).
pub fn is_bound_to(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name == pvc.metadata.name
        && r.namespace.as_deref().unwrap_or("default")
            == pvc.metadata.namespace.as_deref().unwrap_or("default")
        && r.uid
            .as_deref()
            .filter(|u| !u.is_empty())
            .is_none_or(|u| Some(u) == pvc.metadata.uid.as_deref())
}

/// The volume's required node affinity admits `node` (no affinity admits every node).
pub fn node_affinity_admits(pv: &PersistentVolume, node: &Node) -> bool {
    let required = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref());
    required.is_none_or(|sel| node_selector_matches(sel, node))
}

/// Why a volume cannot serve a claim (for the VolumeMismatch event), or None if it can.
pub fn mismatch(pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> Option<String> {
    let (Some(cs), Some(vs)) = (pvc.spec.as_ref(), pv.spec.as_ref()) else {
        return Some("volume or claim has no spec".into());
    };
    if claim_class(pvc) != volume_class(pv) {
        return Some("storageClassName does not match".into());
    }
    let have = vs.access_modes.as_deref().unwrap_or_default();
    if !cs.access_modes.iter().flatten().all(|m| have.contains(m)) {
        return Some("incompatible accessMode".into());
    }
    match (requested_bytes(pvc), capacity_bytes(pv)) {
        (Some(want), Some(have)) if have >= want => {}
        _ => return Some("requested PV is too small".into()),
    }
    if volume_mode(cs.volume_mode.as_ref()) != volume_mode(vs.volume_mode.as_ref()) {
        return Some("incompatible volumeMode".into());
    }
    if let Some(sel) = &cs.selector {
        if !label_selector_matches(sel, pv.metadata.labels.as_ref()) {
            return Some("volume labels do not match the claim's selector".into());
        }
    }
    None
}

/// The volume a claim should bind to: a volume pre-bound to it wins; otherwise the
/// smallest Available, unclaimed volume that satisfies it. With `node`, the volume's node
/// affinity must also admit that node (delayed binding: the scheduler chose the node).
/// `pre_bound_only` is for delayed-binding claims whose node is not chosen yet.
pub fn find_match<'a>(
    pvc: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node: Option<&Node>,
    pre_bound_only: bool,
) -> Option<&'a PersistentVolume> {
    let mut best: Option<(&PersistentVolume, i64)> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some() || mismatch(pvc, pv).is_some() {
            continue;
        }
        if node.is_some_and(|n| !node_affinity_admits(pv, n)) {
            continue;
        }
        let claimed = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some();
        if claimed {
            if is_bound_to(pv, pvc) {
                return Some(pv);
            }
            continue;
        }
        let available = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
        if pre_bound_only || !available {
            continue;
        }
        let size = capacity_bytes(pv).unwrap_or(i64::MAX);
        if best.is_none_or(|(_, s)| size < s) {
            best = Some((pv, size));
        }
    }
    best.map(|(pv, _)| pv)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaimSpec,
        PersistentVolumeSpec, PersistentVolumeStatus, VolumeNodeAffinity,
        VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    pub fn claim(name: &str, class: &str, size: &str, modes: &[&str]) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some(class.into()),
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    pub fn volume(name: &str, class: &str, size: &str, modes: &[&str]) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                storage_class_name: Some(class.into()),
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                capacity: Some([("storage".to_string(), Quantity(size.into()))].into()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Available".into()),
                ..Default::default()
            }),
        }
    }

    fn node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn pinned(mut pv: PersistentVolume, node: &str) -> PersistentVolume {
        pv.spec.as_mut().unwrap().node_affinity = Some(VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "kubernetes.io/hostname".into(),
                        operator: "In".into(),
                        values: Some(vec![node.into()]),
                    }]),
                    match_fields: None,
                }],
            }),
        });
        pv
    }

    #[test]
    fn the_smallest_fitting_volume_of_the_same_class_wins() {
        let c = claim("c", "fast", "1Gi", &["ReadWriteOnce"]);
        let vols = [
            volume("big", "fast", "10Gi", &["ReadWriteOnce"]),
            volume("small", "fast", "2Gi", &["ReadWriteOnce", "ReadOnlyMany"]),
            volume("tiny", "fast", "512Mi", &["ReadWriteOnce"]),
            volume("other-class", "slow", "1Gi", &["ReadWriteOnce"]),
            volume("wrong-mode", "fast", "1Gi", &["ReadOnlyMany"]),
        ];
        let got = find_match(&c, &vols, None, false).unwrap();
        assert_eq!(got.metadata.name.as_deref(), Some("small"));
        assert_eq!(
            mismatch(&c, &vols[2]).as_deref(),
            Some("requested PV is too small")
        );
        assert_eq!(
            mismatch(&c, &vols[3]).as_deref(),
            Some("storageClassName does not match")
        );
        assert_eq!(
            mismatch(&c, &vols[4]).as_deref(),
            Some("incompatible accessMode")
        );
    }

    #[test]
    fn binary_and_decimal_units_compare_by_bytes() {
        let c = claim("c", "", "1G", &["ReadWriteOnce"]);
        // 1Gi = 1073741824 ≥ 1G = 10^9.
        assert!(mismatch(&c, &volume("v", "", "1Gi", &["ReadWriteOnce"])).is_none());
        let c = claim("c", "", "1Gi", &["ReadWriteOnce"]);
        assert!(mismatch(&c, &volume("v", "", "1G", &["ReadWriteOnce"])).is_some());
    }

    #[test]
    fn selectors_volume_modes_and_claimed_or_unavailable_volumes() {
        let mut c = claim("c", "", "1Gi", &["ReadWriteOnce"]);
        c.spec.as_mut().unwrap().selector = Some(LabelSelector {
            match_labels: Some([("tier".to_string(), "gold".to_string())].into()),
            ..Default::default()
        });
        let mut gold = volume("gold", "", "1Gi", &["ReadWriteOnce"]);
        gold.metadata.labels = Some([("tier".to_string(), "gold".to_string())].into());
        let plain = volume("plain", "", "1Gi", &["ReadWriteOnce"]);
        assert_eq!(
            find_match(&c, [&plain, &gold], None, false).and_then(|v| v.metadata.name.as_deref()),
            Some("gold")
        );
        let mut block = gold.clone();
        block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        assert_eq!(
            mismatch(&c, &block).as_deref(),
            Some("incompatible volumeMode")
        );
        let mut released = gold.clone();
        released.status.as_mut().unwrap().phase = Some("Released".into());
        assert!(find_match(&c, [&released], None, false).is_none());
        let mut taken = gold.clone();
        taken.spec.as_mut().unwrap().claim_ref = Some(claim_ref(&claim("x", "", "1Gi", &[])));
        assert!(find_match(&c, [&taken], None, false).is_none());
    }

    #[test]
    fn a_pre_bound_volume_wins_even_when_larger_and_binds_by_name_without_uid() {
        let c = claim("c", "", "1Gi", &["ReadWriteOnce"]);
        let small = volume("small", "", "1Gi", &["ReadWriteOnce"]);
        let mut pre = volume("pre", "", "5Gi", &["ReadWriteOnce"]);
        pre.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("c".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        });
        let got = find_match(&c, [&small, &pre], None, false).unwrap();
        assert_eq!(got.metadata.name.as_deref(), Some("pre"));
        assert_eq!(
            find_match(&c, [&small, &pre], None, true).and_then(|v| v.metadata.name.as_deref()),
            Some("pre"),
            "delayed binding without a node still honours pre-binding"
        );
        assert!(find_match(&c, [&small], None, true).is_none());
        // A reference to an older claim of the same name does not bind the new one.
        pre.spec.as_mut().unwrap().claim_ref.as_mut().unwrap().uid = Some("old".into());
        assert!(!is_bound_to(&pre, &c));
    }

    #[test]
    fn node_affinity_limits_delayed_binding() {
        let c = claim("c", "local", "1Gi", &["ReadWriteOnce"]);
        let on_a = pinned(volume("on-a", "local", "1Gi", &["ReadWriteOnce"]), "a");
        assert!(node_affinity_admits(&on_a, &node("a")));
        assert!(!node_affinity_admits(&on_a, &node("b")));
        assert!(find_match(&c, [&on_a], Some(&node("b")), false).is_none());
        assert!(find_match(&c, [&on_a], Some(&node("a")), false).is_some());
        assert!(node_affinity_admits(
            &volume("free", "", "1", &[]),
            &node("b")
        ));
    }
}
