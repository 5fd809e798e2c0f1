//! Patch metadata of the built-in types: which lists merge by which key
//! (`x-kubernetes-patch-merge-key`), which replace or retain keys
//! (`x-kubernetes-patch-strategy`), how server-side apply treats each list
//! (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`), and the part of the type graph
//! (field → child type) needed to reach those fields from a root kind. Strategic merge patch,
//! server-side apply and OpenAPI all read it.
//!
//! Definitions are named as in Kubernetes' OpenAPI (`io.k8s.api.core.v1.PodSpec`). The table
//! lists only the fields that carry metadata and the fields that lead to them: a field the
//! table does not know is a plain value — objects merge key by key, lists are atomic and are
//! replaced whole — which is exactly what Kubernetes does for a field without patch tags.
//! The entries follow the `patchStrategy`/`patchMergeKey` and `+listType`/`+listMapKey`
//! markers of the Kubernetes 1.33 Go types.
//!
//! ```
//! use flotilla_api::patchmeta::{self, FieldType, ListType, PatchStrategy};
//!
//! let pod_spec = "io.k8s.api.core.v1.PodSpec";
//! let info = patchmeta::field_patch_info(pod_spec, "containers").expect("tagged");
//! assert_eq!(info.strategy, PatchStrategy::Merge);
//! assert_eq!(info.merge_key, Some("name"));
//! let deployment = patchmeta::root_definition("apps", "v1", "Deployment").expect("built in");
//! assert_eq!(deployment, "io.k8s.api.apps.v1.Deployment");
//! assert!(matches!(
//!     patchmeta::field_type(pod_spec, "containers"),
//!     Some(FieldType::List { list_type: ListType::Map(&["name"]), .. })
//! ));
//! ```

use std::collections::HashMap;
use std::sync::OnceLock;

/// `x-kubernetes-patch-strategy` of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStrategy {
    /// Lists merge item by item (by `merge_key`, or as a set of primitives without one).
    Merge,
    /// The patch's keys are the only keys kept: fields it leaves out are cleared (used for
    /// unions such as `DeploymentStrategy` and `VolumeSource`).
    RetainKeys,
    /// Both: list items merge by key, and each item keeps only the keys the patch names.
    MergeRetainKeys,
    /// The value is replaced whole, even when it is an object.
    Replace,
}

impl PatchStrategy {
    /// The value of `x-kubernetes-patch-strategy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Merge => "merge",
            Self::RetainKeys => "retainKeys",
            Self::MergeRetainKeys => "merge,retainKeys",
            Self::Replace => "replace",
        }
    }

    /// Whether list items merge rather than replace.
    pub fn merges(self) -> bool {
        matches!(self, Self::Merge | Self::MergeRetainKeys)
    }

    /// Whether a `$retainKeys` directive is honoured on this field.
    pub fn retains_keys(self) -> bool {
        matches!(self, Self::RetainKeys | Self::MergeRetainKeys)
    }
}

/// Strategic-merge-patch tags of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchInfo {
    pub strategy: PatchStrategy,
    /// `x-kubernetes-patch-merge-key`: the item field that identifies a list item. None for a
    /// merged list of primitives (a set, e.g. `finalizers`) and for non-list fields.
    pub merge_key: Option<&'static str>,
}

/// `x-kubernetes-list-type`: how server-side apply identifies list items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// The list is one value, owned and replaced whole.
    Atomic,
    /// A set of distinct primitives, each owned on its own.
    Set,
    /// Objects identified by these key fields (`x-kubernetes-list-map-keys`).
    Map(&'static [&'static str]),
}

/// The type of a list's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    /// A string, number or boolean.
    Scalar,
    /// An object of this definition.
    Struct(&'static str),
}

/// The type of a field, as far as patching needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// An object of this definition.
    Struct(&'static str),
    /// An object that server-side apply owns as one value (`x-kubernetes-map-type: atomic`,
    /// e.g. label selectors); strategic merge still merges it key by key unless its
    /// [`PatchInfo`] says replace.
    AtomicStruct(&'static str),
    /// A list.
    List { item: Elem, list_type: ListType },
}

impl FieldType {
    /// The definition of the field's objects (the item type for a list), if it has one.
    pub fn definition(self) -> Option<&'static str> {
        match self {
            Self::Struct(d) | Self::AtomicStruct(d) => Some(d),
            Self::List {
                item: Elem::Struct(d),
                ..
            } => Some(d),
            Self::List {
                item: Elem::Scalar, ..
            } => None,
        }
    }
}

/// One row of the table: a field of a definition.
#[derive(Debug, Clone, Copy)]
pub struct FieldMeta {
    pub definition: &'static str,
    pub field: &'static str,
    pub ty: FieldType,
    pub patch: Option<PatchInfo>,
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const CONDITION: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Condition";
const LABEL_SELECTOR: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector";

const MERGE: Option<PatchInfo> = Some(PatchInfo {
    strategy: PatchStrategy::Merge,
    merge_key: None,
});

const fn merge_by(key: &'static str) -> Option<PatchInfo> {
    Some(PatchInfo {
        strategy: PatchStrategy::Merge,
        merge_key: Some(key),
    })
}

const fn merge_retain_by(key: &'static str) -> Option<PatchInfo> {
    Some(PatchInfo {
        strategy: PatchStrategy::MergeRetainKeys,
        merge_key: Some(key),
    })
}

const RETAIN_KEYS: Option<PatchInfo> = Some(PatchInfo {
    strategy: PatchStrategy::RetainKeys,
    merge_key: None,
});

const REPLACE: Option<PatchInfo> = Some(PatchInfo {
    strategy: PatchStrategy::Replace,
    merge_key: None,
});

const fn obj(definition: &'static str) -> FieldType {
    FieldType::Struct(definition)
}

const fn map_list(item: &'static str, keys: &'static [&'static str]) -> FieldType {
    FieldType::List {
        item: Elem::Struct(item),
        list_type: ListType::Map(keys),
    }
}

const fn set_list() -> FieldType {
    FieldType::List {
        item: Elem::Scalar,
        list_type: ListType::Set,
    }
}

const fn atomic_list(item: &'static str) -> FieldType {
    FieldType::List {
        item: Elem::Struct(item),
        list_type: ListType::Atomic,
    }
}

macro_rules! rows {
    ($($def:literal . $field:literal : $ty:expr, $patch:expr;)*) => {
        &[$(FieldMeta { definition: $def, field: $field, ty: $ty, patch: $patch },)*]
    };
}

/// Conditions keyed by `type`, merged by `type` (the usual status list).
macro_rules! conditions {
    ($def:literal, $item:expr) => {
        FieldMeta {
            definition: $def,
            field: "conditions",
            ty: map_list($item, &["type"]),
            patch: merge_by("type"),
        }
    };
}

static FIELDS: &[FieldMeta] = rows! {
    // Metadata shared by every object.
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"."finalizers": set_list(), MERGE;
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"."ownerReferences":
        map_list("io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference", &["uid"]), merge_by("uid");
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"."managedFields":
        atomic_list("io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry"), None;

    // core/v1: pods and their templates.
    "io.k8s.api.core.v1.Pod"."spec": obj("io.k8s.api.core.v1.PodSpec"), None;
    "io.k8s.api.core.v1.Pod"."status": obj("io.k8s.api.core.v1.PodStatus"), None;
    "io.k8s.api.core.v1.PodTemplate"."template": obj("io.k8s.api.core.v1.PodTemplateSpec"), None;
    "io.k8s.api.core.v1.PodTemplateSpec"."spec": obj("io.k8s.api.core.v1.PodSpec"), None;
    "io.k8s.api.core.v1.PodSpec"."volumes":
        map_list("io.k8s.api.core.v1.Volume", &["name"]), merge_retain_by("name");
    "io.k8s.api.core.v1.PodSpec"."initContainers":
        map_list("io.k8s.api.core.v1.Container", &["name"]), merge_by("name");
    "io.k8s.api.core.v1.PodSpec"."containers":
        map_list("io.k8s.api.core.v1.Container", &["name"]), merge_by("name");
    "io.k8s.api.core.v1.PodSpec"."ephemeralContainers":
        map_list("io.k8s.api.core.v1.EphemeralContainer", &["name"]), merge_by("name");
    "io.k8s.api.core.v1.PodSpec"."imagePullSecrets":
        map_list("io.k8s.api.core.v1.LocalObjectReference", &["name"]), merge_by("name");
    "io.k8s.api.core.v1.PodSpec"."hostAliases":
        map_list("io.k8s.api.core.v1.HostAlias", &["ip"]), merge_by("ip");
    "io.k8s.api.core.v1.PodSpec"."topologySpreadConstraints":
        map_list("io.k8s.api.core.v1.TopologySpreadConstraint", &["topologyKey", "whenUnsatisfiable"]),
        merge_by("topologyKey");
    "io.k8s.api.core.v1.PodSpec"."schedulingGates":
        map_list("io.k8s.api.core.v1.PodSchedulingGate", &["name"]), merge_by("name");
    "io.k8s.api.core.v1.PodSpec"."resourceClaims":
        map_list("io.k8s.api.core.v1.PodResourceClaim", &["name"]), merge_retain_by("name");
    "io.k8s.api.core.v1.PodSpec"."resources": obj("io.k8s.api.core.v1.ResourceRequirements"), None;
    "io.k8s.api.core.v1.Container"."ports":
        map_list("io.k8s.api.core.v1.ContainerPort", &["containerPort", "protocol"]),
        merge_by("containerPort");
    "io.k8s.api.core.v1.Container"."env":
        map_list("io.k8s.api.core.v1.EnvVar", &["name"]), merge_by("name");
    "io.k8s.api.core.v1.Container"."volumeMounts":
        map_list("io.k8s.api.core.v1.VolumeMount", &["mountPath"]), merge_by("mountPath");
    "io.k8s.api.core.v1.Container"."volumeDevices":
        map_list("io.k8s.api.core.v1.VolumeDevice", &["devicePath"]), merge_by("devicePath");
    "io.k8s.api.core.v1.Container"."resources": obj("io.k8s.api.core.v1.ResourceRequirements"), None;
    "io.k8s.api.core.v1.EphemeralContainer"."ports":
        map_list("io.k8s.api.core.v1.ContainerPort", &["containerPort", "protocol"]),
        merge_by("containerPort");
    "io.k8s.api.core.v1.EphemeralContainer"."env":
        map_list("io.k8s.api.core.v1.EnvVar", &["name"]), merge_by("name");
    "io.k8s.api.core.v1.EphemeralContainer"."volumeMounts":
        map_list("io.k8s.api.core.v1.VolumeMount", &["mountPath"]), merge_by("mountPath");
    "io.k8s.api.core.v1.EphemeralContainer"."volumeDevices":
        map_list("io.k8s.api.core.v1.VolumeDevice", &["devicePath"]), merge_by("devicePath");
    "io.k8s.api.core.v1.EphemeralContainer"."resources":
        obj("io.k8s.api.core.v1.ResourceRequirements"), None;
    "io.k8s.api.core.v1.ResourceRequirements"."claims":
        map_list("io.k8s.api.core.v1.ResourceClaim", &["name"]), None;
    "io.k8s.api.core.v1.VolumeMount"."bindMountOptions": set_list(), None;
    "io.k8s.api.core.v1.PodStatus"."podIPs":
        map_list("io.k8s.api.core.v1.PodIP", &["ip"]), merge_by("ip");
    "io.k8s.api.core.v1.PodStatus"."hostIPs":
        map_list("io.k8s.api.core.v1.HostIP", &["ip"]), merge_by("ip");
    "io.k8s.api.core.v1.PodStatus"."resourceClaimStatuses":
        map_list("io.k8s.api.core.v1.PodResourceClaimStatus", &["name"]), merge_retain_by("name");

    // core/v1: other kinds.
    "io.k8s.api.core.v1.ReplicationController"."spec":
        obj("io.k8s.api.core.v1.ReplicationControllerSpec"), None;
    "io.k8s.api.core.v1.ReplicationController"."status":
        obj("io.k8s.api.core.v1.ReplicationControllerStatus"), None;
    "io.k8s.api.core.v1.ReplicationControllerSpec"."template":
        obj("io.k8s.api.core.v1.PodTemplateSpec"), None;
    "io.k8s.api.core.v1.Service"."spec": obj("io.k8s.api.core.v1.ServiceSpec"), None;
    "io.k8s.api.core.v1.Service"."status": obj("io.k8s.api.core.v1.ServiceStatus"), None;
    "io.k8s.api.core.v1.ServiceSpec"."ports":
        map_list("io.k8s.api.core.v1.ServicePort", &["port", "protocol"]), merge_by("port");
    "io.k8s.api.core.v1.ServiceAccount"."secrets":
        map_list("io.k8s.api.core.v1.ObjectReference", &["name"]), merge_by("name");
    "io.k8s.api.core.v1.Node"."spec": obj("io.k8s.api.core.v1.NodeSpec"), None;
    "io.k8s.api.core.v1.Node"."status": obj("io.k8s.api.core.v1.NodeStatus"), None;
    "io.k8s.api.core.v1.NodeSpec"."podCIDRs": set_list(), MERGE;
    "io.k8s.api.core.v1.NodeStatus"."addresses":
        map_list("io.k8s.api.core.v1.NodeAddress", &["type"]), merge_by("type");
    "io.k8s.api.core.v1.Namespace"."status": obj("io.k8s.api.core.v1.NamespaceStatus"), None;
    "io.k8s.api.core.v1.PersistentVolumeClaim"."status":
        obj("io.k8s.api.core.v1.PersistentVolumeClaimStatus"), None;

    // apps/v1.
    "io.k8s.api.apps.v1.Deployment"."spec": obj("io.k8s.api.apps.v1.DeploymentSpec"), None;
    "io.k8s.api.apps.v1.Deployment"."status": obj("io.k8s.api.apps.v1.DeploymentStatus"), None;
    "io.k8s.api.apps.v1.DeploymentSpec"."template": obj("io.k8s.api.core.v1.PodTemplateSpec"), None;
    "io.k8s.api.apps.v1.DeploymentSpec"."selector": FieldType::AtomicStruct(LABEL_SELECTOR), None;
    "io.k8s.api.apps.v1.DeploymentSpec"."strategy":
        obj("io.k8s.api.apps.v1.DeploymentStrategy"), RETAIN_KEYS;
    "io.k8s.api.apps.v1.ReplicaSet"."spec": obj("io.k8s.api.apps.v1.ReplicaSetSpec"), None;
    "io.k8s.api.apps.v1.ReplicaSet"."status": obj("io.k8s.api.apps.v1.ReplicaSetStatus"), None;
    "io.k8s.api.apps.v1.ReplicaSetSpec"."template": obj("io.k8s.api.core.v1.PodTemplateSpec"), None;
    "io.k8s.api.apps.v1.ReplicaSetSpec"."selector": FieldType::AtomicStruct(LABEL_SELECTOR), None;
    "io.k8s.api.apps.v1.StatefulSet"."spec": obj("io.k8s.api.apps.v1.StatefulSetSpec"), None;
    "io.k8s.api.apps.v1.StatefulSet"."status": obj("io.k8s.api.apps.v1.StatefulSetStatus"), None;
    "io.k8s.api.apps.v1.StatefulSetSpec"."template": obj("io.k8s.api.core.v1.PodTemplateSpec"), None;
    "io.k8s.api.apps.v1.StatefulSetSpec"."selector": FieldType::AtomicStruct(LABEL_SELECTOR), None;
    "io.k8s.api.apps.v1.StatefulSetSpec"."volumeClaimTemplates":
        atomic_list("io.k8s.api.core.v1.PersistentVolumeClaim"), None;
    "io.k8s.api.apps.v1.DaemonSet"."spec": obj("io.k8s.api.apps.v1.DaemonSetSpec"), None;
    "io.k8s.api.apps.v1.DaemonSet"."status": obj("io.k8s.api.apps.v1.DaemonSetStatus"), None;
    "io.k8s.api.apps.v1.DaemonSetSpec"."template": obj("io.k8s.api.core.v1.PodTemplateSpec"), None;
    "io.k8s.api.apps.v1.DaemonSetSpec"."selector": FieldType::AtomicStruct(LABEL_SELECTOR), None;

    // batch/v1.
    "io.k8s.api.batch.v1.Job"."spec": obj("io.k8s.api.batch.v1.JobSpec"), None;
    "io.k8s.api.batch.v1.Job"."status": obj("io.k8s.api.batch.v1.JobStatus"), None;
    "io.k8s.api.batch.v1.JobSpec"."template": obj("io.k8s.api.core.v1.PodTemplateSpec"), None;
    "io.k8s.api.batch.v1.JobStatus"."uncountedTerminatedPods":
        obj("io.k8s.api.batch.v1.UncountedTerminatedPods"), None;
    "io.k8s.api.batch.v1.UncountedTerminatedPods"."succeeded": set_list(), None;
    "io.k8s.api.batch.v1.UncountedTerminatedPods"."failed": set_list(), None;
    "io.k8s.api.batch.v1.CronJob"."spec": obj("io.k8s.api.batch.v1.CronJobSpec"), None;
    "io.k8s.api.batch.v1.CronJobSpec"."jobTemplate": obj("io.k8s.api.batch.v1.JobTemplateSpec"), None;
    "io.k8s.api.batch.v1.JobTemplateSpec"."spec": obj("io.k8s.api.batch.v1.JobSpec"), None;

    // Status of other groups.
    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler"."status":
        obj("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus"), None;
    "io.k8s.api.policy.v1.PodDisruptionBudget"."spec":
        obj("io.k8s.api.policy.v1.PodDisruptionBudgetSpec"), None;
    "io.k8s.api.policy.v1.PodDisruptionBudgetSpec"."selector":
        FieldType::AtomicStruct(LABEL_SELECTOR), REPLACE;
    "io.k8s.api.policy.v1.PodDisruptionBudget"."status":
        obj("io.k8s.api.policy.v1.PodDisruptionBudgetStatus"), None;
    "io.k8s.api.networking.v1.ServiceCIDR"."status":
        obj("io.k8s.api.networking.v1.ServiceCIDRStatus"), None;
    "io.k8s.api.flowcontrol.v1.FlowSchema"."status":
        obj("io.k8s.api.flowcontrol.v1.FlowSchemaStatus"), None;
    "io.k8s.api.flowcontrol.v1.PriorityLevelConfiguration"."status":
        obj("io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus"), None;
    "io.k8s.api.certificates.v1.CertificateSigningRequest"."status":
        obj("io.k8s.api.certificates.v1.CertificateSigningRequestStatus"), None;
    "io.k8s.api.certificates.v1.CertificateSigningRequestStatus"."conditions":
        map_list("io.k8s.api.certificates.v1.CertificateSigningRequestCondition", &["type"]), None;
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"."status":
        obj("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus"), None;
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus"."conditions":
        map_list("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionCondition", &["type"]),
        None;
    "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService"."status":
        obj("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus"), None;

    // storage/v1.
    "io.k8s.api.storage.v1.CSINode"."spec": obj("io.k8s.api.storage.v1.CSINodeSpec"), None;
    "io.k8s.api.storage.v1.CSINodeSpec"."drivers":
        map_list("io.k8s.api.storage.v1.CSINodeDriver", &["name"]), merge_by("name");
    "io.k8s.api.storage.v1.CSIDriver"."spec": obj("io.k8s.api.storage.v1.CSIDriverSpec"), None;
    "io.k8s.api.storage.v1.CSIDriverSpec"."volumeLifecycleModes": set_list(), None;

    // admissionregistration/v1.
    "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration"."webhooks":
        map_list("io.k8s.api.admissionregistration.v1.ValidatingWebhook", &["name"]), merge_by("name");
    "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration"."webhooks":
        map_list("io.k8s.api.admissionregistration.v1.MutatingWebhook", &["name"]), merge_by("name");
    "io.k8s.api.admissionregistration.v1.ValidatingWebhook"."matchConditions":
        map_list("io.k8s.api.admissionregistration.v1.MatchCondition", &["name"]), merge_by("name");
    "io.k8s.api.admissionregistration.v1.MutatingWebhook"."matchConditions":
        map_list("io.k8s.api.admissionregistration.v1.MatchCondition", &["name"]), merge_by("name");
    "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicy"."spec":
        obj("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec"), None;
    "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec"."matchConditions":
        map_list("io.k8s.api.admissionregistration.v1.MatchCondition", &["name"]), merge_by("name");
    "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec"."variables":
        map_list("io.k8s.api.admissionregistration.v1.Variable", &["name"]), merge_by("name");
};

/// Status `conditions` lists, each keyed and merged by `type`.
static CONDITIONS: &[FieldMeta] = &[
    conditions!(
        "io.k8s.api.core.v1.PodStatus",
        "io.k8s.api.core.v1.PodCondition"
    ),
    conditions!(
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "io.k8s.api.core.v1.ReplicationControllerCondition"
    ),
    conditions!("io.k8s.api.core.v1.ServiceStatus", CONDITION),
    conditions!(
        "io.k8s.api.core.v1.NodeStatus",
        "io.k8s.api.core.v1.NodeCondition"
    ),
    conditions!(
        "io.k8s.api.core.v1.NamespaceStatus",
        "io.k8s.api.core.v1.NamespaceCondition"
    ),
    conditions!(
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "io.k8s.api.core.v1.PersistentVolumeClaimCondition"
    ),
    conditions!(
        "io.k8s.api.core.v1.ComponentStatus",
        "io.k8s.api.core.v1.ComponentCondition"
    ),
    conditions!(
        "io.k8s.api.apps.v1.DeploymentStatus",
        "io.k8s.api.apps.v1.DeploymentCondition"
    ),
    conditions!(
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "io.k8s.api.apps.v1.ReplicaSetCondition"
    ),
    conditions!(
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "io.k8s.api.apps.v1.StatefulSetCondition"
    ),
    conditions!(
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "io.k8s.api.apps.v1.DaemonSetCondition"
    ),
    conditions!(
        "io.k8s.api.batch.v1.JobStatus",
        "io.k8s.api.batch.v1.JobCondition"
    ),
    conditions!(
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerCondition"
    ),
    conditions!("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", CONDITION),
    conditions!("io.k8s.api.networking.v1.ServiceCIDRStatus", CONDITION),
    conditions!(
        "io.k8s.api.flowcontrol.v1.FlowSchemaStatus",
        "io.k8s.api.flowcontrol.v1.FlowSchemaCondition"
    ),
    conditions!(
        "io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus",
        "io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationCondition"
    ),
    conditions!(
        "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus",
        "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceCondition"
    ),
];

fn index() -> &'static HashMap<(&'static str, &'static str), FieldMeta> {
    static INDEX: OnceLock<HashMap<(&'static str, &'static str), FieldMeta>> = OnceLock::new();
    INDEX.get_or_init(|| {
        FIELDS
            .iter()
            .chain(CONDITIONS)
            .map(|m| ((m.definition, m.field), *m))
            .collect()
    })
}

/// Every field the table describes, for publishing the `x-kubernetes-*` extensions.
pub fn fields() -> impl Iterator<Item = &'static FieldMeta> {
    FIELDS.iter().chain(CONDITIONS)
}

/// The strategic-merge-patch tags of `definition.field`, if it has any.
pub fn field_patch_info(definition: &str, field: &str) -> Option<PatchInfo> {
    index().get(&(definition, field)).and_then(|m| m.patch)
}

/// The type of `definition.field` when patching needs to know it. Every object's `metadata`
/// is an `ObjectMeta`. None means a plain value: objects merge key by key, lists are atomic.
pub fn field_type(definition: &str, field: &str) -> Option<FieldType> {
    if let Some(m) = index().get(&(definition, field)) {
        return Some(m.ty);
    }
    (field == "metadata").then_some(FieldType::Struct(OBJECT_META))
}

/// The OpenAPI package prefix of each built-in API group.
const GROUP_PACKAGES: &[(&str, &str)] = &[
    ("", "io.k8s.api.core"),
    ("apps", "io.k8s.api.apps"),
    ("batch", "io.k8s.api.batch"),
    ("autoscaling", "io.k8s.api.autoscaling"),
    ("policy", "io.k8s.api.policy"),
    ("networking.k8s.io", "io.k8s.api.networking"),
    ("rbac.authorization.k8s.io", "io.k8s.api.rbac"),
    ("storage.k8s.io", "io.k8s.api.storage"),
    ("coordination.k8s.io", "io.k8s.api.coordination"),
    ("discovery.k8s.io", "io.k8s.api.discovery"),
    ("events.k8s.io", "io.k8s.api.events"),
    ("scheduling.k8s.io", "io.k8s.api.scheduling"),
    ("node.k8s.io", "io.k8s.api.node"),
    ("certificates.k8s.io", "io.k8s.api.certificates"),
    (
        "admissionregistration.k8s.io",
        "io.k8s.api.admissionregistration",
    ),
    ("flowcontrol.apiserver.k8s.io", "io.k8s.api.flowcontrol"),
    ("authentication.k8s.io", "io.k8s.api.authentication"),
    ("authorization.k8s.io", "io.k8s.api.authorization"),
    ("resource.k8s.io", "io.k8s.api.resource"),
    ("storagemigration.k8s.io", "io.k8s.api.storagemigration"),
    ("internal.apiserver.k8s.io", "io.k8s.api.apiserverinternal"),
    (
        "apiextensions.k8s.io",
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
    ),
    (
        "apiregistration.k8s.io",
        "io.k8s.kube-aggregator.pkg.apis.apiregistration",
    ),
];

/// The OpenAPI definition name of a built-in kind ("io.k8s.api.apps.v1.Deployment"), or None
/// for a group Kubernetes does not build in (custom resources, which patch without metadata).
pub fn root_definition(group: &str, version: &str, kind: &str) -> Option<String> {
    let package = GROUP_PACKAGES
        .iter()
        .find(|(g, _)| *g == group)
        .map(|(_, p)| *p)?;
    (is_identifier(version) && is_identifier(kind)).then(|| format!("{package}.{version}.{kind}"))
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_lists_merge_by_their_keys() {
        let c = "io.k8s.api.core.v1.Container";
        assert_eq!(
            field_patch_info(c, "env").and_then(|p| p.merge_key),
            Some("name")
        );
        assert_eq!(
            field_patch_info(c, "ports").and_then(|p| p.merge_key),
            Some("containerPort")
        );
        assert_eq!(
            field_patch_info(c, "volumeMounts").and_then(|p| p.merge_key),
            Some("mountPath")
        );
        assert_eq!(
            field_type(c, "ports"),
            Some(map_list(
                "io.k8s.api.core.v1.ContainerPort",
                &["containerPort", "protocol"]
            ))
        );
        assert_eq!(field_patch_info(c, "command"), None);
        assert_eq!(field_type(c, "command"), None);
    }

    #[test]
    fn unions_retain_keys_and_finalizers_merge_as_a_set() {
        let s = field_patch_info("io.k8s.api.apps.v1.DeploymentSpec", "strategy").expect("tag");
        assert!(s.strategy.retains_keys() && !s.strategy.merges());
        let v = field_patch_info("io.k8s.api.core.v1.PodSpec", "volumes").expect("tag");
        assert_eq!(v.strategy.as_str(), "merge,retainKeys");
        let f = field_patch_info(OBJECT_META, "finalizers").expect("tag");
        assert_eq!((f.strategy, f.merge_key), (PatchStrategy::Merge, None));
        assert_eq!(
            field_type(OBJECT_META, "finalizers"),
            Some(FieldType::List {
                item: Elem::Scalar,
                list_type: ListType::Set
            })
        );
    }

    #[test]
    fn the_graph_reaches_containers_from_every_workload() {
        for (g, k, path) in [
            ("apps", "Deployment", &["spec", "template", "spec"][..]),
            ("apps", "StatefulSet", &["spec", "template", "spec"][..]),
            ("apps", "DaemonSet", &["spec", "template", "spec"][..]),
            ("apps", "ReplicaSet", &["spec", "template", "spec"][..]),
            ("batch", "Job", &["spec", "template", "spec"][..]),
            (
                "batch",
                "CronJob",
                &["spec", "jobTemplate", "spec", "template", "spec"][..],
            ),
            ("", "Pod", &["spec"][..]),
            ("", "PodTemplate", &["template", "spec"][..]),
            (
                "",
                "ReplicationController",
                &["spec", "template", "spec"][..],
            ),
        ] {
            let root = root_definition(g, "v1", k).expect("built in");
            let mut def = root.as_str();
            for field in path {
                def = field_type(def, field)
                    .and_then(FieldType::definition)
                    .unwrap_or_else(|| panic!("{k}: {def}.{field} untyped"));
            }
            assert_eq!(def, "io.k8s.api.core.v1.PodSpec", "{k}");
        }
    }

    #[test]
    fn every_definition_gets_object_meta_and_custom_groups_have_none() {
        assert_eq!(
            field_type("io.k8s.api.core.v1.ConfigMap", "metadata"),
            Some(FieldType::Struct(OBJECT_META))
        );
        assert_eq!(root_definition("example.com", "v1", "Widget"), None);
        assert_eq!(root_definition("", "v1", "../x"), None);
        assert_eq!(
            root_definition("", "v1", "Pod").as_deref(),
            Some("io.k8s.api.core.v1.Pod")
        );
        assert_eq!(
            root_definition("apiextensions.k8s.io", "v1", "CustomResourceDefinition").as_deref(),
            Some(
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"
            )
        );
    }

    #[test]
    fn every_merge_key_is_a_list_map_key_of_an_object_list() {
        for m in fields() {
            if let Some(key) = m.patch.and_then(|p| p.merge_key) {
                match m.ty {
                    FieldType::List {
                        item: Elem::Struct(_),
                        list_type: ListType::Map(keys),
                    } => assert!(keys.contains(&key), "{}.{}", m.definition, m.field),
                    other => panic!("{}.{}: {other:?}", m.definition, m.field),
                }
            }
        }
    }
}
