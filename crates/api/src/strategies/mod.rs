//! The per-kind strategies, one module per kind or family, and the table that maps a
//! resource of the catalogue to its strategy.

pub mod batch;
pub mod cluster;
pub mod config;
pub mod events;
pub mod json;
pub mod pod;
pub mod pod_spec;
pub mod quantity;
pub mod selector;
pub mod service;
pub mod storage;
pub mod workloads;

use crate::strategy::{DefaultStrategy, Strategy};

/// The strategy of a kind, by group and kind (versions of one kind share it).
pub fn for_kind(group: &str, kind: &str) -> &'static dyn Strategy {
    match (group, kind) {
        ("", "Pod") => &pod::PodStrategy,
        ("apps", "Deployment") => &workloads::DeploymentStrategy,
        ("apps", "ReplicaSet") => &workloads::ReplicaSetStrategy,
        ("apps", "StatefulSet") => &workloads::StatefulSetStrategy,
        ("apps", "DaemonSet") => &workloads::DaemonSetStrategy,
        ("batch", "Job") => &batch::JobStrategy,
        ("batch", "CronJob") => &batch::CronJobStrategy,
        ("", "Service") => &service::ServiceStrategy,
        ("", "Endpoints") => &service::EndpointsStrategy,
        ("discovery.k8s.io", "EndpointSlice") => &service::EndpointSliceStrategy,
        ("", "ConfigMap") => &config::ConfigMapStrategy,
        ("", "Secret") => &config::SecretStrategy,
        ("", "ServiceAccount") => &config::ServiceAccountStrategy,
        ("", "Namespace") => &cluster::NamespaceStrategy,
        ("", "Node") => &cluster::NodeStrategy,
        ("scheduling.k8s.io", "PriorityClass") => &cluster::PriorityClassStrategy,
        ("storage.k8s.io", "StorageClass") => &cluster::StorageClassStrategy,
        ("", "PersistentVolumeClaim") => &storage::PersistentVolumeClaimStrategy,
        ("", "PersistentVolume") => &storage::PersistentVolumeStrategy,
        ("", "Event") | ("events.k8s.io", "Event") => &events::EventStrategy,
        _ => &DefaultStrategy,
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use crate::field_error::FieldError;

    pub fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }
}
