//! Which k8s-openapi type describes each group/version/kind, so that a catalogue entry can
//! be turned into a schema generated from the type itself.

use std::borrow::Cow;
use std::sync::LazyLock;

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration;
use k8s_openapi::Resource;
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// A group/version/kind and the typed schema behind it.
#[derive(Clone, Copy)]
pub struct KnownKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The Kubernetes definition name (`io.k8s.api.apps.v1.Deployment`).
    pub definition: fn() -> Cow<'static, str>,
    /// Adds the type (and everything it references) to the generator and returns a `$ref`.
    pub subschema: fn(&mut SchemaGenerator) -> Schema,
}

fn subschema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

impl KnownKind {
    fn of<T: Resource + JsonSchema>() -> Self {
        Self {
            group: T::GROUP,
            version: T::VERSION,
            kind: T::KIND,
            definition: T::schema_name,
            subschema: subschema_of::<T>,
        }
    }
}

impl std::fmt::Debug for KnownKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownKind")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("definition", &(self.definition)())
            .finish()
    }
}

macro_rules! kinds {
    ($($module:path => [$($ty:ident),+ $(,)?]),+ $(,)?) => {
        vec![$($({
            use $module as m;
            KnownKind::of::<m::$ty>()
        }),+),+]
    };
}

/// Every top-level kind k8s-openapi knows for Kubernetes v1.33.
fn all_kinds() -> Vec<KnownKind> {
    kinds![
        api::admissionregistration::v1 => [
            MutatingWebhookConfiguration, ValidatingAdmissionPolicy,
            ValidatingAdmissionPolicyBinding, ValidatingWebhookConfiguration,
        ],
        api::admissionregistration::v1alpha1 => [
            MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding,
        ],
        api::admissionregistration::v1beta1 => [
            ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
        ],
        api::apiserverinternal::v1alpha1 => [StorageVersion],
        api::apps::v1 => [ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet],
        api::authentication::v1 => [SelfSubjectReview, TokenRequest, TokenReview],
        api::authorization::v1 => [
            LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview,
            SubjectAccessReview,
        ],
        api::autoscaling::v1 => [HorizontalPodAutoscaler, Scale],
        api::autoscaling::v2 => [HorizontalPodAutoscaler],
        api::batch::v1 => [CronJob, Job],
        api::certificates::v1 => [CertificateSigningRequest],
        api::certificates::v1alpha1 => [ClusterTrustBundle],
        api::certificates::v1beta1 => [ClusterTrustBundle],
        api::coordination::v1 => [Lease],
        api::coordination::v1alpha2 => [LeaseCandidate],
        api::coordination::v1beta1 => [LeaseCandidate],
        api::core::v1 => [
            Binding, ComponentStatus, ConfigMap, Endpoints, Event, LimitRange, Namespace, Node,
            PersistentVolume, PersistentVolumeClaim, Pod, PodTemplate, ReplicationController,
            ResourceQuota, Secret, Service, ServiceAccount,
        ],
        api::discovery::v1 => [EndpointSlice],
        api::events::v1 => [Event],
        api::flowcontrol::v1 => [FlowSchema, PriorityLevelConfiguration],
        api::networking::v1 => [IPAddress, Ingress, IngressClass, NetworkPolicy, ServiceCIDR],
        api::networking::v1beta1 => [IPAddress, ServiceCIDR],
        api::node::v1 => [RuntimeClass],
        api::policy::v1 => [Eviction, PodDisruptionBudget],
        api::rbac::v1 => [ClusterRole, ClusterRoleBinding, Role, RoleBinding],
        api::resource::v1alpha3 => [
            DeviceClass, DeviceTaintRule, ResourceClaim, ResourceClaimTemplate, ResourceSlice,
        ],
        api::resource::v1beta1 => [DeviceClass, ResourceClaim, ResourceClaimTemplate, ResourceSlice],
        api::resource::v1beta2 => [DeviceClass, ResourceClaim, ResourceClaimTemplate, ResourceSlice],
        api::scheduling::v1 => [PriorityClass],
        api::storage::v1 => [CSIDriver, CSINode, CSIStorageCapacity, StorageClass, VolumeAttachment],
        api::storage::v1alpha1 => [VolumeAttributesClass],
        api::storage::v1beta1 => [VolumeAttributesClass],
        api::storagemigration::v1alpha1 => [StorageVersionMigration],
        apiextensions::v1 => [CustomResourceDefinition],
        apiregistration::v1 => [APIService],
        meta::v1 => [APIGroup, APIGroupList, APIResourceList, APIVersions, Status],
    ]
}

static KINDS: LazyLock<Vec<KnownKind>> = LazyLock::new(all_kinds);

/// The typed schema for a group/version/kind, if k8s-openapi has one.
pub fn lookup(group: &str, version: &str, kind: &str) -> Option<&'static KnownKind> {
    // About a hundred entries, consulted a few times per document build.
    KINDS
        .iter()
        .find(|k| k.kind == kind && k.version == version && k.group == group)
}

/// Shared apimachinery types every group-version's operations refer to.
pub struct Meta;

impl Meta {
    pub fn status(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<meta::v1::Status>()
    }
    pub fn delete_options(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<meta::v1::DeleteOptions>()
    }
    pub fn watch_event(generator: &mut SchemaGenerator) -> Schema {
        // The payload type does not change the schema: `object` is a RawExtension.
        generator.subschema_for::<meta::v1::WatchEvent<()>>()
    }
    pub fn patch(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<meta::v1::Patch>()
    }
    pub fn list_meta(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<meta::v1::ListMeta>()
    }
    pub fn object_meta(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<meta::v1::ObjectMeta>()
    }
    pub fn api_resource_list(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<meta::v1::APIResourceList>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_kinds_by_group_version_kind() {
        let d = lookup("apps", "v1", "Deployment").expect("deployment");
        assert_eq!((d.definition)(), "io.k8s.api.apps.v1.Deployment");
        let p = lookup("", "v1", "Pod").expect("pod");
        assert_eq!((p.definition)(), "io.k8s.api.core.v1.Pod");
        assert!(lookup("apps", "v1", "Pod").is_none());
        assert!(lookup("", "v1", "Status").is_some());
    }

    #[test]
    fn every_kind_is_registered_once() {
        let all = all_kinds();
        let unique: std::collections::HashSet<_> =
            all.iter().map(|k| (k.group, k.version, k.kind)).collect();
        assert_eq!(all.len(), unique.len(), "duplicate group/version/kind");
        assert!(all.len() > 90);
    }
}
