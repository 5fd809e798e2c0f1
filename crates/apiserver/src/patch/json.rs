//! JSON patch (RFC 6902) and JSON merge patch (RFC 7386) on the `json-patch` crate, and the
//! decoding of patch and apply bodies.

use serde_json::{Map, Value};

use super::{PatchError, MAX_JSON_PATCH_OPERATIONS};

/// Applies an RFC 6902 patch. Malformed bodies are 400; operations that do not apply are 422.
pub(crate) fn apply_json_patch(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let patch: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| PatchError::Invalid(format!("error decoding patch: {e}")))?;
    if patch.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            patch.0.len()
        )));
    }
    let mut doc = original.clone();
    // The document is a private copy that is dropped on failure, so the crate's undo log
    // (needed only to restore a shared document) is skipped.
    json_patch::patch_unsafe(&mut doc, &patch.0).map_err(|e| {
        let op = patch.0.get(e.operation);
        PatchError::Unprocessable(describe_failure(op, &e))
    })?;
    Ok(doc)
}

/// Words a failed operation the way Kubernetes' JSON patch library does.
fn describe_failure(op: Option<&json_patch::PatchOperation>, e: &json_patch::PatchError) -> String {
    use json_patch::{PatchErrorKind, PatchOperation};
    let path = e.path.as_str();
    match (&e.kind, op) {
        (PatchErrorKind::TestFailed, _) => format!("testing value {path} failed: test failed"),
        (PatchErrorKind::InvalidFromPointer, Some(PatchOperation::Move(m))) => format!(
            "move operation does not apply: doc is missing from path: \"{}\": missing value",
            m.from
        ),
        (PatchErrorKind::InvalidFromPointer, Some(PatchOperation::Copy(c))) => format!(
            "copy operation does not apply: doc is missing from path: \"{}\": missing value",
            c.from
        ),
        (PatchErrorKind::CannotMoveInsideItself, _) => {
            format!("move operation does not apply: cannot move {path} into one of its children")
        }
        (_, Some(op)) => format!(
            "{} operation does not apply: doc is missing path: \"{path}\": missing value",
            op_name(op)
        ),
        (kind, None) => format!("operation at {path} does not apply: {kind}"),
    }
}

fn op_name(op: &json_patch::PatchOperation) -> &'static str {
    use json_patch::PatchOperation as Op;
    match op {
        Op::Add(_) => "add",
        Op::Remove(_) => "remove",
        Op::Replace(_) => "replace",
        Op::Move(_) => "move",
        Op::Copy(_) => "copy",
        Op::Test(_) => "test",
    }
}

/// Applies an RFC 7386 merge patch. The patch must be a JSON object: any other value would
/// replace the whole object, which is never a valid Kubernetes object.
pub(crate) fn apply_merge_patch(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let patch = decode_object(body, "merge patch")?;
    let mut doc = original.clone();
    json_patch::merge(&mut doc, &patch);
    Ok(doc)
}

/// Parses a JSON object body (merge and strategic merge patches).
pub(crate) fn decode_object(body: &[u8], what: &str) -> Result<Value, PatchError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| PatchError::Invalid(format!("error decoding {what}: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(PatchError::Invalid(format!(
            "error decoding {what}: the patch must be a JSON object, got {}",
            type_name(&value)
        )))
    }
}

/// Parses a server-side apply body (`application/apply-patch+yaml`), which may be YAML or JSON
/// (JSON is YAML), into an object with `apiVersion` and `kind`.
pub fn decode_apply_body(body: &[u8]) -> Result<Value, PatchError> {
    let value: Value = serde_yaml::from_slice(body)
        .map_err(|e| PatchError::Invalid(format!("error decoding YAML: {e}")))?;
    let obj = value.as_object().ok_or_else(|| {
        PatchError::Invalid(format!(
            "error decoding YAML: the applied configuration must be an object, got {}",
            type_name(&value)
        ))
    })?;
    require_string(obj, "apiVersion")?;
    require_string(obj, "kind")?;
    Ok(value)
}

fn require_string(obj: &Map<String, Value>, key: &str) -> Result<(), PatchError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        _ => Err(PatchError::Invalid(format!(
            "Object '{}' is missing in the applied configuration",
            if key == "kind" { "Kind" } else { key }
        ))),
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1"}
            ]}}}
        })
    }

    fn jp(doc: &Value, patch: Value) -> Result<Value, PatchError> {
        apply_json_patch(doc, patch.to_string().as_bytes())
    }

    #[test]
    fn json_patch_operations() {
        let d = deployment();
        let out = jp(
            &d,
            json!([
                {"op": "test", "path": "/spec/replicas", "value": 2},
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "add", "path": "/spec/template/spec/containers/-",
                 "value": {"name": "side", "image": "busybox"}},
                {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copy"},
                {"op": "move", "from": "/metadata/labels/tier", "path": "/metadata/labels/layer"},
                {"op": "remove", "path": "/metadata/labels/app"}
            ]),
        )
        .expect("applies");
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][1]["name"],
            "side"
        );
        assert_eq!(
            out["metadata"]["labels"],
            json!({"copy": "web", "layer": "front"})
        );
    }

    #[test]
    fn failed_test_is_unprocessable_and_leaves_nothing_half_done() {
        let d = deployment();
        let err = jp(
            &d,
            json!([
                {"op": "replace", "path": "/spec/replicas", "value": 9},
                {"op": "test", "path": "/spec/replicas", "value": 2}
            ]),
        )
        .expect_err("test fails");
        assert_eq!(
            err,
            PatchError::Unprocessable("testing value /spec/replicas failed: test failed".into())
        );
        assert_eq!(d["spec"]["replicas"], 2);
    }

    #[test]
    fn missing_paths_are_unprocessable() {
        let d = deployment();
        for (patch, expected) in [
            (
                json!([{"op": "remove", "path": "/spec/paused"}]),
                "remove operation does not apply: doc is missing path: \"/spec/paused\": missing value",
            ),
            (
                json!([{"op": "replace", "path": "/status/x", "value": 1}]),
                "replace operation does not apply: doc is missing path: \"/status/x\": missing value",
            ),
            (
                json!([{"op": "move", "from": "/nope", "path": "/x"}]),
                "move operation does not apply: doc is missing from path: \"/nope\": missing value",
            ),
        ] {
            assert_eq!(
                jp(&d, patch),
                Err(PatchError::Unprocessable(expected.into()))
            );
        }
    }

    #[test]
    fn malformed_json_patches_are_bad_requests() {
        let d = deployment();
        for body in [
            &b"{"[..],
            b"{\"op\":\"add\"}",
            b"[{\"op\":\"frobnicate\",\"path\":\"/a\"}]",
            b"[{\"op\":\"add\",\"path\":\"no-slash\",\"value\":1}]",
        ] {
            assert!(
                matches!(apply_json_patch(&d, body), Err(PatchError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn too_many_operations_are_refused() {
        let ops: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "/kind", "value": "Deployment"}))
            .collect();
        let err = jp(&deployment(), Value::Array(ops)).expect_err("too many");
        assert!(matches!(err, PatchError::TooLarge(_)));
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let d = deployment();
        let out = apply_merge_patch(
            &d,
            br#"{"metadata":{"labels":{"tier":null,"new":"x"}},"spec":{"replicas":5,"template":{"spec":{"containers":[{"name":"only"}]}}}}"#,
        )
        .expect("applies");
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "new": "x"}));
        assert_eq!(out["spec"]["replicas"], 5);
        // Lists are replaced whole.
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only"}])
        );
    }

    #[test]
    fn merge_patch_bodies_must_be_objects() {
        let d = deployment();
        for body in [&b"[1]"[..], b"null", b"3", b"{"] {
            assert!(matches!(
                apply_merge_patch(&d, body),
                Err(PatchError::Invalid(_))
            ));
        }
    }

    #[test]
    fn apply_bodies_may_be_yaml_or_json() {
        let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n";
        let v = decode_apply_body(yaml).expect("yaml");
        assert_eq!(v["data"]["a"], "1");
        let j = decode_apply_body(br#"{"apiVersion":"v1","kind":"ConfigMap"}"#).expect("json");
        assert_eq!(j["kind"], "ConfigMap");
        assert!(matches!(
            decode_apply_body(b"- a\n- b\n"),
            Err(PatchError::Invalid(_))
        ));
        assert!(matches!(
            decode_apply_body(b"apiVersion: v1\n"),
            Err(PatchError::Invalid(m)) if m.contains("Kind")
        ));
        assert!(matches!(
            decode_apply_body(b"a: [\n"),
            Err(PatchError::Invalid(_))
        ));
    }
}
