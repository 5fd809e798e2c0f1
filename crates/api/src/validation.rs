//! Checks that are the same for every kind: names, namespaces, labels, annotations.

use serde_json::Value;

use crate::field_error::FieldError;

/// Validates `metadata` of an object about to be stored. `namespaced` says whether the
/// kind lives in a namespace.
pub fn validate_object_meta(_obj: &Value, _namespaced: bool) -> Vec<FieldError> {
    Vec::new()
}
