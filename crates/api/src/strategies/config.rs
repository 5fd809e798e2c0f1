//! ConfigMaps, Secrets and ServiceAccounts: key names, size limits, the per-type rules of
//! Secrets, and immutability once `immutable: true` is set.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::json::{bool_of, default_field, selector_value, str_or_empty};
use crate::field_error::FieldError;
use crate::strategy::Strategy;
use crate::validation::{forbidden, too_long};

pub struct ConfigMapStrategy;
pub struct SecretStrategy;
pub struct ServiceAccountStrategy;

/// Kubernetes' `MaxSecretSize`, which also bounds ConfigMaps.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;
const CONFIG_KEY_MAX: usize = 253;

/// `IsConfigMapKey`: the rule for keys of ConfigMap and Secret data.
pub fn config_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > CONFIG_KEY_MAX {
        errs.push(format!("must be no more than {CONFIG_KEY_MAX} characters"));
    }
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    if key == "." {
        errs.push("must not be '.'".to_string());
    } else if key == ".." {
        errs.push("must not be '..'".to_string());
    } else if key.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// Checks the keys of `data` and `binaryData` (or `stringData`) and returns the bytes held.
fn validate_keys(obj: &Value, fields: &[&str], errs: &mut Vec<FieldError>) -> usize {
    let mut total = 0;
    for field in fields {
        let Some(map) = obj.get(*field).and_then(Value::as_object) else {
            continue;
        };
        for (k, v) in map {
            let path = format!("{field}[{k}]");
            for msg in config_key_errors(k) {
                errs.push(FieldError::invalid(path.clone(), json!(k), msg));
            }
            total += v.as_str().map_or(0, str::len);
            let other = fields
                .iter()
                .find(|f| *f != field && obj.pointer(&format!("/{f}/{k}")).is_some());
            if let (Some(other), true) = (other, *field == "data") {
                errs.push(FieldError::invalid(
                    path,
                    json!(k),
                    format!("duplicate of key present in {other}"),
                ));
            }
        }
    }
    total
}

/// Once `immutable` is true, neither the data nor the flag may change.
fn validate_immutable(new: &Value, old: &Value, data_fields: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if bool_of(old, "immutable") != Some(true) {
        return errs;
    }
    if bool_of(new, "immutable") != Some(true) {
        errs.push(forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for field in data_fields {
        let empty = |v: Option<&Value>| {
            v.is_none_or(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty))
        };
        let (n, o) = (new.get(*field), old.get(*field));
        if n != o && !(empty(n) && empty(o)) {
            errs.push(forbidden(
                *field,
                "field is immutable when `immutable` is set",
            ));
        }
    }
    errs
}

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let text = validate_keys(obj, &["data", "binaryData"], &mut errs);
        if text > MAX_DATA_SIZE {
            errs.push(too_long("data", MAX_DATA_SIZE));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_immutable(new, old, &["data", "binaryData"])
    }
}

/// Keys each built-in Secret type requires in `data`.
fn required_keys(secret_type: &str) -> &'static [&'static str] {
    match secret_type {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        _ => &[],
    }
}

impl Strategy for SecretStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "type", json!("Opaque"));
        // stringData is a write-only convenience: Kubernetes folds it into data.
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        let Some(Value::Object(string_data)) = map.remove("stringData") else {
            return;
        };
        let data = map.entry("data").or_insert_with(|| json!({}));
        if data.is_null() {
            *data = json!({});
        }
        if let Some(data) = data.as_object_mut() {
            for (k, v) in string_data {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""));
                data.insert(k, Value::String(encoded));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let encoded = validate_keys(obj, &["data", "stringData"], &mut errs);
        // data holds base64; the limit is on the decoded bytes.
        if encoded / 4 * 3 > MAX_DATA_SIZE {
            errs.push(too_long("data", MAX_DATA_SIZE));
        }
        let t = str_or_empty(obj, "type");
        let has = |k: &str| obj.pointer(&format!("/data/{k}")).is_some();
        match t {
            "kubernetes.io/service-account-token" => {
                let sa = obj
                    .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if sa.is_empty() {
                    errs.push(FieldError::required(
                        "metadata.annotations[kubernetes.io/service-account.name]",
                        "",
                    ));
                }
            }
            "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
                errs.push(FieldError::required("data[username]", ""));
                errs.push(FieldError::required("data[password]", ""));
            }
            _ => {
                for key in required_keys(t) {
                    if !has(key) {
                        errs.push(FieldError::required(format!("data[{key}]"), ""));
                    }
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let (nt, ot) = (str_or_empty(new, "type"), str_or_empty(old, "type"));
        if nt != ot {
            errs.push(FieldError {
                value: Some(json!(nt)),
                ..FieldError::immutable("type")
            });
        }
        errs.extend(validate_immutable(new, old, &["data"]));
        errs
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "type").then(|| selector_value(obj.get("type"), ""))
    }
}

impl Strategy for ServiceAccountStrategy {
    fn allow_create_on_update(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::tests_support::messages;

    #[test]
    fn config_keys() {
        let cm = json!({"data": {"good.key": "v", "bad key": "v", "..x": "v"}, "binaryData": {"good.key": "dg=="}});
        let mut msgs = messages(&ConfigMapStrategy.validate(&cm));
        msgs.sort();
        assert_eq!(msgs, vec![
            "data[..x]: Invalid value: \"..x\": must not start with '..'",
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            "data[good.key]: Invalid value: \"good.key\": duplicate of key present in binaryData",
        ]);
        let big = json!({"data": {"a": "x".repeat(MAX_DATA_SIZE + 1)}});
        assert_eq!(
            messages(&ConfigMapStrategy.validate(&big)),
            vec!["data: Too long: must have at most 1048576 bytes"]
        );
    }

    #[test]
    fn immutable_config_maps() {
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": false, "data": {"a": "2"}});
        assert_eq!(
            messages(&ConfigMapStrategy.validate_update(&new, &old)),
            vec![
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set",
            ]
        );
        assert!(ConfigMapStrategy
            .validate_update(&new, &json!({"data": {}}))
            .is_empty());
    }

    #[test]
    fn secrets() {
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"user": "admin"}});
        SecretStrategy.default(&mut s);
        assert_eq!(
            s,
            json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"user": "YWRtaW4="}})
        );
        assert_eq!(
            SecretStrategy.field_value(&s, "type").as_deref(),
            Some("Opaque")
        );
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        assert_eq!(
            messages(&SecretStrategy.validate(&tls)),
            vec!["data[tls.key]: Required value"]
        );
        let changed = json!({"type": "kubernetes.io/ssh-auth"});
        assert_eq!(
            messages(&SecretStrategy.validate_update(&changed, &s)),
            vec!["type: Invalid value: \"kubernetes.io/ssh-auth\": field is immutable"]
        );
        let token =
            json!({"type": "kubernetes.io/service-account-token", "metadata": {"annotations": {}}});
        assert_eq!(
            messages(&SecretStrategy.validate(&token)),
            vec!["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
    }
}
