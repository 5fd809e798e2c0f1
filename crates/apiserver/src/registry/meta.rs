//! Reading and writing the `metadata` every object carries, and the object's stored form.
//!
//! Objects are stored as JSON without `metadata.resourceVersion`: the store's mod revision
//! IS the resourceVersion, filled in on the way out, so a value never disagrees with its key.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use store::{KeyValue, Revision};

use crate::status::ApiError;

pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

pub fn name(obj: &Value) -> Option<&str> {
    str_at(obj, "/metadata/name").filter(|n| !n.is_empty())
}

pub fn namespace(obj: &Value) -> Option<&str> {
    str_at(obj, "/metadata/namespace").filter(|n| !n.is_empty())
}

pub fn uid(obj: &Value) -> Option<&str> {
    str_at(obj, "/metadata/uid")
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    str_at(obj, "/metadata/resourceVersion").filter(|v| !v.is_empty())
}

pub fn deletion_timestamp(obj: &Value) -> Option<&str> {
    str_at(obj, "/metadata/deletionTimestamp")
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata` as a mutable map, created when missing or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let Value::Object(map) = obj else {
        unreachable!("obj was just made an object")
    };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

pub fn set_finalizers(obj: &mut Value, finalizers: &[String]) {
    let meta = metadata_mut(obj);
    if finalizers.is_empty() {
        meta.remove("finalizers");
    } else {
        meta.insert("finalizers".into(), json!(finalizers));
    }
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn rfc3339_in(seconds: i64) -> String {
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Decodes a stored object and stamps its resourceVersion.
pub fn decode_kv(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object at {} is corrupt: {e}", kv.key)))?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

pub fn set_resource_version(obj: &mut Value, rev: Revision) {
    metadata_mut(obj).insert("resourceVersion".into(), json!(rev.to_string()));
}

/// The stored form of an object: JSON without resourceVersion.
pub fn encode_for_store(obj: &Value) -> Result<Bytes, ApiError> {
    let mut copy = obj.clone();
    metadata_mut(&mut copy).remove("resourceVersion");
    serde_json::to_vec(&copy)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("cannot encode object: {e}")))
}

/// [`encode_for_store`] without copying the object: resourceVersion is taken out of `obj`
/// for the encoding (the caller sets the new one after the write).
pub fn encode_for_store_in_place(obj: &mut Value) -> Result<Bytes, ApiError> {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(obj)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("cannot encode object: {e}")))
}

/// Parses a resourceVersion given by a client; anything but a decimal revision is a 400.
pub fn parse_resource_version(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

/// Whether anything but metadata and status changed, which bumps `metadata.generation`.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Value::Object(m) = &mut v {
            for k in ["metadata", "status", "apiVersion", "kind"] {
                m.remove(k);
            }
        }
        v
    };
    strip(old) != strip(new)
}

/// The field manager of a request without `fieldManager`: the program name from the
/// User-Agent ("kubectl/v1.33.0 (linux/amd64)" → "kubectl"), as Kubernetes does.
pub fn manager_from_user_agent(user_agent: Option<&str>) -> String {
    let ua = user_agent.unwrap_or_default();
    let program: String = ua
        .split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(128)
        .collect();
    if program.is_empty() {
        "unknown".to_string()
    } else {
        program
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_ignores_metadata_and_status() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"y": 1}});
        let mut b = a.clone();
        b["metadata"]["labels"]["a"] = json!("2");
        b["status"]["y"] = json!(2);
        assert!(!spec_changed(&a, &b));
        b["spec"]["x"] = json!(2);
        assert!(spec_changed(&a, &b));
    }

    #[test]
    fn stored_form_has_no_resource_version() {
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let bytes = encode_for_store(&obj).unwrap();
        let kv = KeyValue {
            key: "/registry/x/a".into(),
            value: bytes.clone(),
            create_revision: 3,
            mod_revision: 9,
            version: 2,
        };
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        assert_eq!(decode_kv(&kv).unwrap()["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn manager_is_the_program_name() {
        assert_eq!(
            manager_from_user_agent(Some("kubectl/v1.33.0 (linux/amd64) kubernetes/abc")),
            "kubectl"
        );
        assert_eq!(manager_from_user_agent(None), "unknown");
    }
}
