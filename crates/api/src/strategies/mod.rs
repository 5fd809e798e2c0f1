//! The per-kind strategies, one module per kind or family, and the table that maps a
//! resource of the catalogue to its strategy.

pub mod batch;
pub mod cluster;
pub mod config;
pub mod disruption;
pub mod events;
pub mod json;
pub mod networking;
pub mod pod;
pub mod pod_failure_policy;
pub mod pod_spec;
pub mod policy;
pub mod quantity;
pub mod rbac;
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
        ("apps", "ControllerRevision") => &workloads::ControllerRevisionStrategy,
        ("networking.k8s.io", "NetworkPolicy") => &networking::NetworkPolicyStrategy,
        ("networking.k8s.io", "Ingress") => &networking::IngressStrategy,
        ("networking.k8s.io", "IngressClass") => &networking::IngressClassStrategy,
        ("coordination.k8s.io", "Lease") => &policy::LeaseStrategy,
        ("", "LimitRange") => &policy::LimitRangeStrategy,
        ("", "ResourceQuota") => &policy::ResourceQuotaStrategy,
        ("policy", "PodDisruptionBudget") => &disruption::PodDisruptionBudgetStrategy,
        ("rbac.authorization.k8s.io", "Role") => &rbac::RoleStrategy { namespaced: true },
        ("rbac.authorization.k8s.io", "ClusterRole") => &rbac::RoleStrategy { namespaced: false },
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            &rbac::RoleBindingStrategy { namespaced: true }
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            &rbac::RoleBindingStrategy { namespaced: false }
        }
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

#[cfg(test)]
mod tests {
    use super::tests_support;
    use crate::catalogue::Catalogue;
    use crate::strategy::for_resource;
    use serde_json::json;

    #[test]
    fn every_catalogue_kind_has_a_schema_and_a_strategy() {
        let catalogue = Catalogue::builtin();
        for info in catalogue.iter() {
            assert!(
                crate::typed::has_schema(info),
                "{} {} has no typed schema",
                info.api_version(),
                info.kind
            );
            // Every strategy must cope with an empty object without panicking.
            let s = for_resource(info);
            let mut obj = json!({"apiVersion": info.api_version(), "kind": info.kind, "metadata": {"name": "x"}});
            s.default(&mut obj);
            s.prepare_for_create(&mut obj);
            let _ = s.validate(&obj);
            let _ = s.validate_update(&obj, &obj);
        }
    }

    #[test]
    fn create_on_update_as_kubernetes() {
        let allowed: Vec<(&str, &str)> = Catalogue::builtin()
            .iter()
            .filter(|i| for_resource(i).allow_create_on_update())
            .map(|i| (i.group, i.kind))
            .collect();
        for expected in [
            ("", "Service"),
            ("", "Endpoints"),
            ("", "Event"),
            ("", "ServiceAccount"),
            ("", "LimitRange"),
            ("coordination.k8s.io", "Lease"),
        ] {
            assert!(
                allowed.contains(&expected),
                "{expected:?} should allow create on update"
            );
        }
        for refused in [
            ("", "Pod"),
            ("", "Node"),
            ("apps", "Deployment"),
            ("discovery.k8s.io", "EndpointSlice"),
        ] {
            assert!(
                !allowed.contains(&refused),
                "{refused:?} should not allow create on update"
            );
        }
    }

    #[test]
    fn bad_shapes_never_panic() {
        let shapes = [
            json!(null),
            json!("x"),
            json!([1]),
            json!({"spec": "x"}),
            json!({"spec": {"containers": "x", "template": 3, "ports": {"a": 1}, "selector": []}}),
            json!({"spec": {"template": {"spec": {"containers": [1, "x", null]}}}}),
        ];
        for info in Catalogue::builtin().iter() {
            let s = for_resource(info);
            for shape in &shapes {
                let mut obj = shape.clone();
                s.default(&mut obj);
                s.prepare_for_create(&mut obj);
                let _ = s.validate(&obj);
                let _ = s.validate_update(&obj, shape);
                let mut upd = obj.clone();
                s.prepare_for_update(&mut upd, shape);
                let _ = s.field_value(&obj, "status.phase");
            }
        }
        let pod = crate::strategies::for_kind("", "Pod");
        let mut garbage = json!({"spec": {"containers": "x"}});
        pod.default(&mut garbage);
        assert_eq!(
            tests_support::messages(&pod.validate(&garbage)),
            vec!["spec.containers: Required value"]
        );
    }
}
