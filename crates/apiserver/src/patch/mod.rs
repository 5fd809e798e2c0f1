//! Patch engines: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch,
//! and server-side apply with managedFields.

use api::ResourceInfo;
use serde_json::Value;

use crate::status::{ApiError, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchType {
    /// The patch type of a PATCH request's Content-Type, or None if it is not one.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().map(str::trim) {
            Some("application/json-patch+json") => Some(Self::Json),
            Some("application/merge-patch+json") => Some(Self::Merge),
            Some("application/strategic-merge-patch+json") => Some(Self::StrategicMerge),
            Some("application/apply-patch+yaml") | Some("application/apply-patch+json") => {
                Some(Self::Apply)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The patch document cannot be parsed or applied.
    #[error("{0}")]
    Invalid(String),
}

impl PatchError {
    pub fn into_api_error(self, _target: Target<'_>) -> ApiError {
        match self {
            PatchError::Invalid(m) => ApiError::bad_request(m),
        }
    }
}

/// Applies a JSON, merge or strategic merge patch to `original`.
pub fn apply_patch(
    _patch_type: PatchType,
    _original: &Value,
    _patch: &[u8],
    _info: &ResourceInfo,
) -> Result<Value, PatchError> {
    Err(PatchError::Invalid("patching is being built".into()))
}

/// Who applies, and whether conflicts are overridden.
#[derive(Debug, Clone)]
pub struct ApplyOptions<'a> {
    pub field_manager: &'a str,
    pub force: bool,
}

/// Server-side apply of `applied` onto `live` (None: create), recording managedFields.
pub fn server_side_apply(
    _live: Option<&Value>,
    _applied: &Value,
    _options: &ApplyOptions<'_>,
    _info: &ResourceInfo,
) -> Result<Value, PatchError> {
    Err(PatchError::Invalid(
        "server-side apply is being built".into(),
    ))
}

/// The operation recorded in a managedFields entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Update,
    Apply,
}

/// Records in `new.metadata.managedFields` the fields `manager` changed from `old` to
/// `new` by a create, update or non-apply patch.
pub fn record_update(
    _old: Option<&Value>,
    _new: &mut Value,
    _manager: &str,
    _subresource: Option<&str>,
) {
}
