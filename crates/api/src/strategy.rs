//! Per-kind behaviour for the generic registry, as kube-apiserver's `RESTCreateStrategy` /
//! `RESTUpdateStrategy`: defaults, server-owned fields, validation and field selectors.
//!
//! The registry does what is the same for every kind (uid, creationTimestamp, generation,
//! resourceVersion, keeping `status` apart from the main resource); a strategy does only
//! what differs by kind.

use serde_json::Value;

use crate::catalogue::ResourceInfo;
use crate::field_error::FieldError;

pub trait Strategy: Send + Sync {
    /// Fills in Kubernetes' defaults (a pod's restartPolicy, a Deployment's strategy, ...).
    /// Runs on every create and update, before validation. Must be idempotent.
    fn default(&self, _obj: &mut Value) {}

    /// Resets what a client may not set on create (for most kinds: `status`).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Adjusts an update of the main resource against the stored object (for most kinds the
    /// registry already restores `status` from `old`).
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Checks a new object. Metadata (name, namespace, labels, annotations) is checked by
    /// the registry for every kind; this checks the rest.
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Checks an update: immutable fields, allowed transitions. Runs after `validate(new)`.
    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// The value of a field-selector field (`status.phase`, `spec.nodeName`, ...), or None
    /// when the kind does not support selecting by that field. `metadata.name` and
    /// `metadata.namespace` are handled by the registry.
    fn field_value(&self, _obj: &Value, _field: &str) -> Option<String> {
        None
    }

    /// Whether a PUT of a missing object creates it (true for nodes, leases, endpoints...).
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Whether an update with no resourceVersion is accepted unconditionally.
    fn allow_unconditional_update(&self) -> bool {
        true
    }
}

/// A strategy with no kind-specific rules.
pub struct DefaultStrategy;

impl Strategy for DefaultStrategy {}

/// The strategy for a resource of the catalogue.
pub fn for_resource(info: &ResourceInfo) -> &'static dyn Strategy {
    crate::strategies::for_kind(info.group, info.kind)
}
