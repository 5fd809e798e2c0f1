//! Small helpers for reading and defaulting fields of `serde_json::Value` objects, so the
//! per-kind strategies read like Kubernetes' `SetDefaults_*` and `Validate*` functions.

use serde_json::{Map, Value};

/// Sets `obj[key]` to `value` when it is absent or null. No-op when `obj` is not an object.
pub fn default_field(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        let slot = map.entry(key).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

/// The object at `obj[key]`, created empty when absent or null. Returns None when `obj` is
/// not an object or `obj[key]` holds a non-object (which validation/decoding report).
pub fn child_mut<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let map = obj.as_object_mut()?;
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.is_object().then_some(slot)
}

/// The object at `obj[key]` if it exists (never created).
pub fn existing_mut<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    obj.get_mut(key).filter(|v| v.is_object())
}

/// Each element of the array at `obj[key]`.
pub fn each_mut(obj: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = obj.get_mut(key).and_then(Value::as_array_mut) {
        items.iter_mut().for_each(&mut f);
    }
}

pub fn str_of<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

pub fn str_or_empty<'a>(obj: &'a Value, key: &str) -> &'a str {
    str_of(obj, key).unwrap_or("")
}

pub fn i64_of(obj: &Value, key: &str) -> Option<i64> {
    obj.get(key).and_then(Value::as_i64)
}

pub fn bool_of(obj: &Value, key: &str) -> Option<bool> {
    obj.get(key).and_then(Value::as_bool)
}

/// The elements of the array at `obj[key]` (empty when absent).
pub fn array_of<'a>(obj: &'a Value, key: &str) -> &'a [Value] {
    obj.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Whether `obj[key]` is absent, null, or an empty string/array/object.
pub fn is_unset(obj: &Value, key: &str) -> bool {
    match obj.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

/// Field-selector rendering of a scalar, as Kubernetes' `fields.Set` holds it: strings as
/// they are, numbers and booleans in decimal/`true`/`false`, missing as `default`.
pub fn selector_value(v: Option<&Value>, default: &str) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => default.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_fill_only_missing_or_null() {
        let mut v = json!({"a": 1, "b": null});
        default_field(&mut v, "a", json!(2));
        default_field(&mut v, "b", json!(3));
        default_field(&mut v, "c", json!(4));
        assert_eq!(v, json!({"a": 1, "b": 3, "c": 4}));
        let mut s = json!("x");
        default_field(&mut s, "a", json!(1));
        assert_eq!(s, json!("x"));
    }

    #[test]
    fn child_is_created_but_never_replaces_non_objects() {
        let mut v = json!({"spec": "bad"});
        assert!(child_mut(&mut v, "spec").is_none());
        assert!(child_mut(&mut v, "status").is_some());
        assert_eq!(v, json!({"spec": "bad", "status": {}}));
    }
}
