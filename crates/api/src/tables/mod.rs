//! The per-kind printers behind [`crate::table::printer_for`]: one module per kind or
//! family, each computing its cells from the object as Kubernetes' printers
//! (pkg/printers/internalversion) do. The server always prints every column, `-o wide` ones
//! included; kubectl hides priority-1 columns unless asked.

mod batch;
pub(crate) mod columns;
mod config;
pub mod duration;
mod event;
pub(crate) mod fields;
pub(crate) mod format;
mod networking;
mod node;
mod pod;
mod storage;
mod workloads;

use crate::table::TablePrinter;

/// The printer for a kind, or None when Kubernetes has none (the default NAME, CREATED AT
/// table applies: limitranges, bindings, reviews).
pub(crate) fn printer(group: &str, kind: &str) -> Option<&'static dyn TablePrinter> {
    let printer: &'static dyn TablePrinter = match (group, kind) {
        ("", "Pod") => &pod::PodPrinter,
        ("", "Node") => &node::NodePrinter,
        ("", "Namespace") => &config::NamespacePrinter,
        ("", "ConfigMap") => &config::ConfigMapPrinter,
        ("", "Secret") => &config::SecretPrinter,
        ("", "ServiceAccount") => &config::ServiceAccountPrinter,
        ("", "ResourceQuota") => &config::ResourceQuotaPrinter,
        ("policy", "PodDisruptionBudget") => &config::PodDisruptionBudgetPrinter,
        ("", "Service") => &networking::ServicePrinter,
        ("", "Endpoints") => &networking::EndpointsPrinter,
        ("", "Event") => &event::CORE_EVENTS,
        ("events.k8s.io", "Event") => &event::EVENTS_K8S_IO,
        ("", "PersistentVolume") => &storage::PersistentVolumePrinter,
        ("", "PersistentVolumeClaim") => &storage::PersistentVolumeClaimPrinter,
        ("apps", "Deployment") => &workloads::DeploymentPrinter,
        ("apps", "ReplicaSet") => &workloads::ReplicaSetPrinter,
        ("apps", "StatefulSet") => &workloads::StatefulSetPrinter,
        ("apps", "DaemonSet") => &workloads::DaemonSetPrinter,
        ("apps", "ControllerRevision") => &workloads::ControllerRevisionPrinter,
        ("batch", "Job") => &batch::JobPrinter,
        ("batch", "CronJob") => &batch::CronJobPrinter,
        ("coordination.k8s.io", "Lease") => &config::LeasePrinter,
        ("discovery.k8s.io", "EndpointSlice") => &networking::EndpointSlicePrinter,
        ("networking.k8s.io", "Ingress") => &networking::IngressPrinter,
        ("networking.k8s.io", "IngressClass") => &networking::IngressClassPrinter,
        ("networking.k8s.io", "NetworkPolicy") => &networking::NetworkPolicyPrinter,
        ("scheduling.k8s.io", "PriorityClass") => &config::PriorityClassPrinter,
        ("storage.k8s.io", "StorageClass") => &storage::StorageClassPrinter,
        ("autoscaling", "Scale") => &workloads::ScalePrinter,
        _ => return None,
    };
    Some(printer)
}
