//! Storage: PersistentVolumes, PersistentVolumeClaims and StorageClasses.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::columns::{col, wide, AGE, NAME};
use super::fields::{age, list_at, name, opt_bool_at, opt_str_at, str_at};
use crate::table::{Column, TablePrinter};

/// The annotation that named a volume's class before `storageClassName` existed; it still
/// wins over the field.
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// RWO, ROX, RWX, RWOP in that order, each once.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

fn storage_class(obj: &Value) -> &str {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(obj, "/spec/storageClassName"))
}

/// The phase, or "Terminating" while the object is being deleted.
fn phase(obj: &Value) -> &str {
    if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating"
    } else {
        str_at(obj, "/status/phase")
    }
}

/// A quantity as stored, or "0" (the zero Quantity) when unset.
fn quantity<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    opt_str_at(obj, pointer).unwrap_or("0")
}

pub struct PersistentVolumePrinter;

const PV_COLUMNS: &[Column] = &[
    NAME,
    col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
    col("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
    col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated)."),
    col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
    col("StorageClass", "string", "StorageClass of the pv"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
    col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec."),
];

impl TablePrinter for PersistentVolumePrinter {
    fn columns(&self) -> Vec<Column> {
        PV_COLUMNS.to_vec()
    }

    fn cells(&self, pv: &Value, now: Timestamp) -> Vec<Value> {
        let claim = match pv.pointer("/spec/claimRef") {
            Some(c) if c.is_object() => {
                format!("{}/{}", str_at(c, "/namespace"), str_at(c, "/name"))
            }
            _ => String::new(),
        };
        vec![
            name(pv),
            json!(quantity(pv, "/spec/capacity/storage")),
            json!(access_modes(list_at(pv, "/spec/accessModes"))),
            json!(str_at(pv, "/spec/persistentVolumeReclaimPolicy")),
            json!(phase(pv)),
            json!(claim),
            json!(storage_class(pv)),
            json!(opt_str_at(pv, "/spec/volumeAttributesClassName").unwrap_or("<unset>")),
            json!(str_at(pv, "/status/reason")),
            age(pv, now),
            json!(opt_str_at(pv, "/spec/volumeMode").unwrap_or("<unset>")),
        ]
    }
}

pub struct PersistentVolumeClaimPrinter;

const PVC_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
    col("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
    col("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
    col("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has."),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec."),
];

impl TablePrinter for PersistentVolumeClaimPrinter {
    fn columns(&self) -> Vec<Column> {
        PVC_COLUMNS.to_vec()
    }

    fn cells(&self, pvc: &Value, now: Timestamp) -> Vec<Value> {
        let volume = str_at(pvc, "/spec/volumeName");
        // Capacity and modes are the bound volume's, so they show only once bound.
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                quantity(pvc, "/status/capacity/storage").to_string(),
                access_modes(list_at(pvc, "/status/accessModes")),
            )
        };
        vec![
            name(pvc),
            json!(phase(pvc)),
            json!(volume),
            json!(capacity),
            json!(modes),
            json!(storage_class(pvc)),
            json!(opt_str_at(pvc, "/spec/volumeAttributesClassName").unwrap_or("<unset>")),
            age(pvc, now),
            json!(opt_str_at(pvc, "/spec/volumeMode").unwrap_or("<unset>")),
        ]
    }
}

pub struct StorageClassPrinter;

const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Provisioner", "string", "provisioner indicates the type of the provisioner."),
    col("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."),
    col("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used."),
    col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
    AGE,
];

/// Whether the class is marked as the cluster's default.
fn is_default_class(sc: &Value) -> bool {
    let annotations = sc.pointer("/metadata/annotations");
    [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|key| {
        annotations
            .and_then(|a| a.get(*key))
            .and_then(Value::as_str)
            == Some("true")
    })
}

impl TablePrinter for StorageClassPrinter {
    fn columns(&self) -> Vec<Column> {
        STORAGE_CLASS_COLUMNS.to_vec()
    }

    fn cells(&self, sc: &Value, now: Timestamp) -> Vec<Value> {
        let mut display = str_at(sc, "/metadata/name").to_string();
        if is_default_class(sc) {
            display.push_str(" (default)");
        }
        vec![
            json!(display),
            json!(str_at(sc, "/provisioner")),
            json!(opt_str_at(sc, "/reclaimPolicy").unwrap_or("Delete")),
            json!(opt_str_at(sc, "/volumeBindingMode").unwrap_or("Immediate")),
            json!(opt_bool_at(sc, "/allowVolumeExpansion").unwrap_or(false)),
            age(sc, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-06-01T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn bound_volume_and_claim() {
        let pv = json!({
            "metadata": {"name": "pv1", "creationTimestamp": "2024-06-01T11:00:00Z"},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local",
                     "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"},
        });
        assert_eq!(
            PersistentVolumePrinter.cells(&pv, now()),
            [
                json!("pv1"),
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("local"),
                json!("<unset>"),
                json!(""),
                json!("60m"),
                json!("Filesystem")
            ]
        );

        let pvc = json!({
            "metadata": {"name": "data", "annotations": {BETA_CLASS_ANNOTATION: "legacy"}},
            "spec": {"volumeName": "pv1", "storageClassName": "local", "resources": {"requests": {"storage": "5Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOncePod"]},
        });
        let c = PersistentVolumeClaimPrinter.cells(&pvc, now());
        assert_eq!(
            &c[1..7],
            &[
                json!("Bound"),
                json!("pv1"),
                json!("10Gi"),
                json!("RWOP"),
                json!("legacy"),
                json!("<unset>")
            ]
        );
    }

    #[test]
    fn pending_claim_and_terminating_volume() {
        let pvc = json!({"spec": {"storageClassName": "local"}, "status": {"phase": "Pending"}});
        let c = PersistentVolumeClaimPrinter.cells(&pvc, now());
        assert_eq!(
            &c[1..6],
            &[
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("local")
            ]
        );
        let pv = json!({"metadata": {"deletionTimestamp": "2024-06-01T11:00:00Z"}, "status": {"phase": "Released"}});
        let c = PersistentVolumePrinter.cells(&pv, now());
        assert_eq!(
            (&c[1], &c[4], &c[5]),
            (&json!("0"), &json!("Terminating"), &json!(""))
        );
    }

    #[test]
    fn default_storage_class() {
        let sc = json!({"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            &StorageClassPrinter.cells(&sc, now())[..5],
            &[
                json!("local-path (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false)
            ]
        );
    }
}
