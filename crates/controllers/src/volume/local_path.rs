//! The local-path provisioner's decisions: the default StorageClass, where a claim's
//! directory lives on its node, and the PersistentVolume that describes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::matching::claim_ref;
use super::{
    ANN_DEFAULT_CLASS, ANN_PROVISIONED_BY, CLEANUP_FINALIZER, DEFAULT_CLASS, DEFAULT_ROOT,
    NODE_DIR_ANNOTATION, PROVISIONED_NODE_ANNOTATION, PROVISIONER,
};

const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Access modes one node-local directory can honour.
const SUPPORTED_MODES: &[&str] = &["ReadWriteOnce", "ReadWriteOncePod"];

/// The StorageClass the controller creates at start when absent.
pub fn default_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(DEFAULT_CLASS.into()),
            annotations: Some([(ANN_DEFAULT_CLASS.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    }
}

/// The directory under which a node keeps its local-path volumes: the node's own
/// annotation (each agent's data dir), else the class's `nodePath` parameter, else the
/// system default.
pub fn node_root(node: &Node, class: &StorageClass) -> String {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NODE_DIR_ANNOTATION))
        .or_else(|| class.parameters.as_ref().and_then(|p| p.get("nodePath")))
        .filter(|p| !p.is_empty())
        .cloned()
        .unwrap_or_else(|| DEFAULT_ROOT.to_string())
}

/// `pvc-<claim uid>`, as upstream provisioners name volumes.
pub fn volume_name(pvc: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", pvc.metadata.uid.as_deref().unwrap_or(""))
}

/// `<root>/pvc-<uid>_<namespace>_<name>`: unique per claim, readable by an operator.
pub fn volume_dir(root: &str, pvc: &PersistentVolumeClaim) -> PathBuf {
    Path::new(root).join(format!(
        "{}_{}_{}",
        volume_name(pvc),
        pvc.metadata.namespace.as_deref().unwrap_or("default"),
        pvc.metadata.name.as_deref().unwrap_or("")
    ))
}

/// Why this provisioner cannot serve the claim, if it cannot.
pub fn unsupported(pvc: &PersistentVolumeClaim) -> Option<String> {
    let spec = pvc.spec.as_ref()?;
    if spec.volume_mode.as_deref() == Some("Block") {
        return Some("local-path volumes support volumeMode Filesystem only".into());
    }
    if let Some(m) = spec
        .access_modes
        .iter()
        .flatten()
        .find(|m| !SUPPORTED_MODES.contains(&m.as_str()))
    {
        return Some(format!(
            "local-path volumes support ReadWriteOnce and ReadWriteOncePod only, not {m}"
        ));
    }
    if spec.selector.is_some() {
        return Some("claim selector is not supported".into());
    }
    None
}

/// The PersistentVolume for `pvc` on `node`: a hostPath directory the agent creates on
/// first mount, pinned to the node, pre-bound to the claim. With reclaimPolicy Delete it
/// carries the cleanup finalizer the node's agent removes once the directory is gone.
pub fn provisioned_volume(
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &Node,
) -> PersistentVolume {
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let hostname = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HOSTNAME_LABEL))
        .cloned()
        .unwrap_or_else(|| node_name.clone());
    let root = node_root(node, class);
    let spec = pvc.spec.clone().unwrap_or_default();
    let reclaim = class
        .reclaim_policy
        .clone()
        .unwrap_or_else(|| "Delete".into());
    let capacity: BTreeMap<String, Quantity> = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| [("storage".to_string(), q.clone())].into())
        .unwrap_or_default();
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(volume_name(pvc)),
            annotations: Some(
                [
                    (ANN_PROVISIONED_BY.to_string(), PROVISIONER.to_string()),
                    (PROVISIONED_NODE_ANNOTATION.to_string(), node_name),
                ]
                .into(),
            ),
            finalizers: (reclaim == "Delete").then(|| vec![CLEANUP_FINALIZER.to_string()]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: Some(capacity),
            claim_ref: Some(claim_ref(pvc)),
            host_path: Some(HostPathVolumeSource {
                path: volume_dir(&root, pvc).to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            mount_options: class.mount_options.clone(),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![hostname]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(reclaim),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some(
                spec.volume_mode
                    .clone()
                    .unwrap_or_else(|| "Filesystem".into()),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// A node an Immediate claim's volume may live on: Ready and schedulable, chosen by the
/// claim's uid so that claims spread over nodes.
pub fn pick_node<'a>(nodes: &'a [Node], pvc: &PersistentVolumeClaim) -> Option<&'a Node> {
    let mut usable: Vec<&Node> = nodes
        .iter()
        .filter(|n| {
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True");
            let cordoned = n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
            ready && !cordoned && n.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if usable.is_empty() {
        return None;
    }
    usable.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let seed = pvc
        .metadata
        .uid
        .as_deref()
        .unwrap_or("")
        .bytes()
        .fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
    usable.get(seed % usable.len()).copied()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::volume::matching::{is_bound_to, node_affinity_admits};
    use k8s_openapi::api::core::v1::{
        NodeCondition, NodeStatus, PersistentVolumeClaimSpec, VolumeResourceRequirements,
    };

    fn claim() -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("shop".into()),
                uid: Some("1234".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some(DEFAULT_CLASS.into()),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn node(name: &str, dir: Option<&str>, ready: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(HOSTNAME_LABEL.to_string(), name.to_string())].into()),
                annotations: dir.map(|d| [(NODE_DIR_ANNOTATION.to_string(), d.to_string())].into()),
                ..Default::default()
            },
            spec: None,
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_default_class_is_wait_for_first_consumer_and_marked_default() {
        let c = default_class();
        assert_eq!(c.provisioner, "flotilla.io/local-path");
        assert_eq!(
            c.volume_binding_mode.as_deref(),
            Some("WaitForFirstConsumer")
        );
        assert_eq!(c.reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(c.metadata.annotations.unwrap()[ANN_DEFAULT_CLASS], "true");
    }

    #[test]
    fn the_root_comes_from_the_node_then_the_class_then_the_default() {
        let mut class = default_class();
        assert_eq!(
            node_root(&node("a", Some("/d/a/storage"), true), &class),
            "/d/a/storage"
        );
        assert_eq!(node_root(&node("a", None, true), &class), DEFAULT_ROOT);
        class.parameters = Some([("nodePath".to_string(), "/srv/vol".to_string())].into());
        assert_eq!(node_root(&node("a", None, true), &class), "/srv/vol");
    }

    #[test]
    fn the_volume_is_pinned_pre_bound_and_sized_to_the_request() {
        let pvc = claim();
        let n = node("n1", Some("/data/n1/storage"), true);
        let pv = provisioned_volume(&pvc, &default_class(), &n);
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-1234"));
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(
            spec.host_path.as_ref().unwrap().path,
            "/data/n1/storage/pvc-1234_shop_data"
        );
        assert_eq!(
            spec.host_path.as_ref().unwrap().type_.as_deref(),
            Some("DirectoryOrCreate")
        );
        assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "1Gi");
        assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert!(is_bound_to(&pv, &pvc));
        assert!(node_affinity_admits(&pv, &n));
        assert!(!node_affinity_admits(&pv, &node("n2", None, true)));
        let ann = pv.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[ANN_PROVISIONED_BY], PROVISIONER);
        assert_eq!(ann[PROVISIONED_NODE_ANNOTATION], "n1");
        assert_eq!(
            pv.metadata.finalizers.as_deref(),
            Some(&[CLEANUP_FINALIZER.to_string()][..])
        );

        let mut retain = default_class();
        retain.reclaim_policy = Some("Retain".into());
        assert!(provisioned_volume(&pvc, &retain, &n)
            .metadata
            .finalizers
            .is_none());
    }

    #[test]
    fn unsupported_claims_and_node_choice() {
        let mut pvc = claim();
        assert!(unsupported(&pvc).is_none());
        pvc.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteMany".into()]);
        assert!(unsupported(&pvc).unwrap().contains("ReadWriteMany"));
        let nodes = [node("down", None, false), node("up", None, true)];
        assert_eq!(
            pick_node(&nodes, &pvc).and_then(|n| n.metadata.name.as_deref()),
            Some("up")
        );
        assert!(pick_node(&nodes[..1], &pvc).is_none());
    }
}
