//! Reading an object's fields for printing. Printers see objects as JSON; a missing or
//! mistyped field reads as Go's zero value (empty string, 0, false, empty list), which is
//! what Kubernetes' printers see for an unset field of the typed object.

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::duration;

static EMPTY_LIST: Vec<Value> = Vec::new();

/// The string at a JSON pointer, or "".
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The string at a JSON pointer, or None when unset (Go's `*string`).
pub fn opt_str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

/// The integer at a JSON pointer, or 0.
pub fn int_at(obj: &Value, pointer: &str) -> i64 {
    opt_int_at(obj, pointer).unwrap_or(0)
}

/// The integer at a JSON pointer, or None when unset (Go's `*int32`).
pub fn opt_int_at(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

/// The boolean at a JSON pointer, or None when unset.
pub fn opt_bool_at(obj: &Value, pointer: &str) -> Option<bool> {
    obj.pointer(pointer).and_then(Value::as_bool)
}

/// The list at a JSON pointer, or an empty one.
pub fn list_at<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(EMPTY_LIST.as_slice(), Vec::as_slice)
}

/// The map at a JSON pointer, or None.
pub fn map_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    obj.pointer(pointer).and_then(Value::as_object)
}

/// The number of entries of the map at a JSON pointer.
pub fn map_len(obj: &Value, pointer: &str) -> usize {
    map_at(obj, pointer).map_or(0, Map::len)
}

/// The RFC 3339 time at a JSON pointer, or None when unset or unparseable.
pub fn time_at(obj: &Value, pointer: &str) -> Option<Timestamp> {
    opt_str_at(obj, pointer).and_then(|s| s.parse().ok())
}

/// The time elapsed since the time at a JSON pointer, or `<unknown>`.
pub fn since_at(obj: &Value, pointer: &str, now: Timestamp) -> String {
    duration::since(time_at(obj, pointer), now)
}

/// The object's name as a cell.
pub fn name(obj: &Value) -> Value {
    Value::String(str_at(obj, "/metadata/name").to_string())
}

/// The object's age as a cell.
pub fn age(obj: &Value, now: Timestamp) -> Value {
    Value::String(since_at(obj, "/metadata/creationTimestamp", now))
}

/// A `<none>`-style placeholder when `s` is empty.
pub fn or(s: &str, placeholder: &str) -> String {
    if s.is_empty() {
        placeholder.to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn missing_and_mistyped_fields_read_as_zero_values() {
        let obj = json!({"spec": {"replicas": "three", "name": 5, "items": {}}});
        assert_eq!(int_at(&obj, "/spec/replicas"), 0);
        assert_eq!(str_at(&obj, "/spec/name"), "");
        assert!(list_at(&obj, "/spec/items").is_empty());
        assert!(list_at(&obj, "/nope").is_empty());
        assert_eq!(map_len(&obj, "/spec"), 3);
        assert_eq!(time_at(&obj, "/spec/name"), None);
    }

    #[test]
    fn age_of_an_object() {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2024-05-01T10:00:00Z"}});
        let now: Timestamp = "2024-05-01T14:30:00Z".parse().expect("time");
        assert_eq!(age(&obj, now), json!("4h30m"));
        assert_eq!(name(&obj), json!("x"));
        assert_eq!(age(&json!({}), now), json!("<unknown>"));
    }
}
