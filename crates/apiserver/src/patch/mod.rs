//! Patch engines: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch,
//! and server-side apply with managedFields.
//!
//! Every engine works on `serde_json::Value` objects. The built-in kinds' patch metadata
//! (merge keys, patch strategies, list types) comes from [`api::patchmeta`]; kinds it does not
//! know (custom resources) patch with merge semantics and atomic lists, as Kubernetes does for
//! schemaless objects.
//!
//! Failures map to the Status Kubernetes answers: a body that cannot be parsed is 400
//! BadRequest, a well-formed JSON patch that does not apply (a failed `test`, a missing path)
//! is 422 Invalid, and an apply that would take fields from another manager is 409 Conflict
//! with one `FieldManagerConflict` cause per field.

mod apply;
mod fieldpath;
mod json;
mod managed_fields;
mod schema;
mod strategic;

#[cfg(test)]
mod proptests;

use api::ResourceInfo;
use serde_json::Value;

use crate::status::{ApiError, Cause, Details, Target};

pub use apply::server_side_apply;
pub use fieldpath::{FieldSet, PathElement};
pub use json::decode_apply_body;
pub use managed_fields::record_update;

/// Kubernetes refuses JSON patches with more operations than this (413).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

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

/// A field another manager owns with a different value than the applied configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager as Kubernetes prints it: `"kubectl-client-side-apply" using apps/v1`.
    pub manager: String,
    /// The field path as Kubernetes prints it: `.spec.replicas`,
    /// `.spec.containers[name="web"].image`.
    pub field: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The patch document cannot be parsed (400 BadRequest).
    #[error("{0}")]
    Invalid(String),
    /// The patch is well formed but does not apply to the object: a failed `test`, a path
    /// that does not exist (422 Invalid, as kube-apiserver answers).
    #[error("{0}")]
    Unprocessable(String),
    /// More JSON patch operations than Kubernetes accepts (413).
    #[error("{0}")]
    TooLarge(String),
    /// Server-side apply would change fields other managers own (409 Conflict).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
}

impl PatchError {
    pub fn into_api_error(self, _target: Target<'_>) -> ApiError {
        match self {
            PatchError::Invalid(m) => ApiError::bad_request(m),
            PatchError::Unprocessable(m) => ApiError::new(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
            )
            .with_details(Details {
                causes: vec![Cause {
                    reason: String::new(),
                    message: m,
                    field: None,
                }],
                ..Details::default()
            }),
            PatchError::TooLarge(m) => ApiError::request_entity_too_large(m),
            PatchError::Conflicts(conflicts) => {
                let message = conflict_message(&conflicts);
                let causes = conflicts
                    .into_iter()
                    .map(|c| Cause {
                        reason: "FieldManagerConflict".into(),
                        message: format!("conflict with {}", c.manager),
                        field: Some(c.field),
                    })
                    .collect();
                ApiError::new(409, "Conflict", message).with_details(Details {
                    causes,
                    ..Details::default()
                })
            }
        }
    }
}

/// "Apply failed with N conflict(s): ..." worded as kube-apiserver words it: one conflict on
/// one line, several grouped by manager (managers sorted) with one `- path` line each.
fn conflict_message(conflicts: &[Conflict]) -> String {
    let n = conflicts.len();
    let plural = if n == 1 { "" } else { "s" };
    let body = match conflicts {
        [one] => format!("conflict with {}: {}", one.manager, one.field),
        many => {
            let mut managers: Vec<&str> = many.iter().map(|c| c.manager.as_str()).collect();
            managers.sort_unstable();
            managers.dedup();
            let mut lines = Vec::new();
            for m in managers {
                lines.push(format!("conflicts with {m}:"));
                lines.extend(
                    many.iter()
                        .filter(|c| c.manager == m)
                        .map(|c| format!("- {}", c.field)),
                );
            }
            lines.join("\n")
        }
    };
    format!("Apply failed with {n} conflict{plural}: {body}")
}

/// Applies a JSON, merge or strategic merge patch to `original`.
pub fn apply_patch(
    patch_type: PatchType,
    original: &Value,
    patch: &[u8],
    info: &ResourceInfo,
) -> Result<Value, PatchError> {
    let patched = match patch_type {
        PatchType::Json => json::apply_json_patch(original, patch)?,
        PatchType::Merge => json::apply_merge_patch(original, patch)?,
        PatchType::StrategicMerge => {
            let patch = json::decode_object(patch, "strategic merge patch")?;
            let root = schema::Schema::for_resource(info);
            strategic::apply(original, &patch, root.cursor())?
        }
        PatchType::Apply => {
            return Err(PatchError::Invalid(
                "apply patches are served by server-side apply".into(),
            ))
        }
    };
    if !patched.is_object() {
        return Err(PatchError::Unprocessable(
            "the patched document is not a JSON object".into(),
        ));
    }
    Ok(patched)
}

/// Who applies, and whether conflicts are overridden.
#[derive(Debug, Clone)]
pub struct ApplyOptions<'a> {
    pub field_manager: &'a str,
    pub force: bool,
}

/// The operation recorded in a managedFields entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Update,
    Apply,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Update => "Update",
            Self::Apply => "Apply",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target<'static> {
        Target {
            group: "apps",
            resource: "deployments",
            name: "web",
        }
    }

    #[test]
    fn one_conflict_reads_like_kubernetes() {
        let e = PatchError::Conflicts(vec![Conflict {
            manager: "\"kubectl-client-side-apply\" using apps/v1".into(),
            field: ".spec.replicas".into(),
        }])
        .into_api_error(target());
        assert_eq!(e.code, 409);
        assert_eq!(e.reason, "Conflict");
        assert_eq!(
            e.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        let causes = &e.details.as_ref().expect("details").causes;
        assert_eq!(causes[0].reason, "FieldManagerConflict");
        assert_eq!(causes[0].field.as_deref(), Some(".spec.replicas"));
        assert_eq!(
            causes[0].message,
            "conflict with \"kubectl-client-side-apply\" using apps/v1"
        );
    }

    #[test]
    fn several_conflicts_group_by_manager() {
        let c = |m: &str, f: &str| Conflict {
            manager: format!("\"{m}\""),
            field: f.into(),
        };
        let e = PatchError::Conflicts(vec![c("b", ".x"), c("a", ".y"), c("b", ".z")]);
        assert_eq!(
            e.to_string(),
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .y\nconflicts with \"b\":\n- .x\n- .z"
        );
    }

    #[test]
    fn patch_errors_are_client_errors() {
        let bad = PatchError::Invalid("x".into()).into_api_error(target());
        assert_eq!((bad.code, bad.reason), (400, "BadRequest"));
        let e =
            PatchError::Unprocessable("testing value /a failed".into()).into_api_error(target());
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        let big = PatchError::TooLarge("x".into()).into_api_error(target());
        assert_eq!(big.code, 413);
    }

    #[test]
    fn content_types_select_the_engine() {
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json; charset=utf-8"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }
}
