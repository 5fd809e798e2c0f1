//! Checks that are the same for every kind: names, namespaces, labels, annotations,
//! finalizers and owner references, with Kubernetes' exact messages (apimachinery's
//! `util/validation` and `api/validation`), plus the small name/format checkers the per-kind
//! strategies share.

use serde_json::Value;

use crate::catalogue::ResourceInfo;
use crate::field_error::{FieldError, FieldErrorType};

/// A name checker: `(name, prefix)` → messages. `prefix` means the name is a generateName
/// prefix, whose trailing dashes are allowed since a random suffix follows.
pub type NameValidator = fn(&str, bool) -> Vec<String>;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
/// Kubernetes' `TotalAnnotationSizeLimitB`.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

/// Builds Kubernetes' "... (e.g. 'a',  or 'b', regex used for validation is 'R')" message;
/// the double space after each comma is Kubernetes' own.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = String::from(msg);
    if !examples.is_empty() {
        out.push_str(" (e.g. ");
        for (i, e) in examples.iter().enumerate() {
            if i > 0 {
                out.push_str(" or ");
            }
            out.push('\'');
            out.push_str(e);
            out.push_str("', ");
        }
        out.push_str("regex used for validation is '");
    } else {
        out.push_str(" (regex used for validation is '");
    }
    out.push_str(fmt);
    out.push_str("')");
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            is_lower_alnum(f)
                && is_lower_alnum(l)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// RFC 1123 label: namespaces, container names, port names' host part.
pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !matches_dns1123_label(s) {
        errs.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// RFC 1123 subdomain: the name rule of most kinds.
pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if s.is_empty() || !s.split('.').all(matches_dns1123_label) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// RFC 1035 label: service names (they become DNS labels that must not start with a digit).
pub fn is_dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    let ok = s.as_bytes().first().is_some_and(u8::is_ascii_lowercase) && matches_dns1123_label(s);
    if !ok {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
        }
        _ => false,
    }
}

const QUALIFIED_NAME_ERR: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// A qualified name (`[prefix/]name`): label keys, annotation keys, finalizers.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            name
        }
        _ => {
            errs.push(
                regex_error(
                    &format!("a qualified name {QUALIFIED_NAME_ERR}"),
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"],
                ) + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
            );
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(regex_error(
            &format!("name part {QUALIFIED_NAME_ERR}"),
            QUALIFIED_NAME_FMT,
            &["MyName", "my.name", "123-abc"],
        ));
    }
    errs
}

/// A label value: empty, or a qualified-name part of at most 63 characters.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        errs.push(max_len_error(LABEL_VALUE_MAX));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Kubernetes' `maskTrailingDash`: a generateName prefix may end in '-'.
fn mask_trailing_dash(name: &str) -> String {
    match name.strip_suffix('-') {
        Some(rest) if !rest.is_empty() => format!("{rest}a"),
        _ => name.to_string(),
    }
}

/// `NameIsDNSSubdomain`.
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    let name = if prefix {
        mask_trailing_dash(name)
    } else {
        name.to_string()
    };
    is_dns1123_subdomain(&name)
}

/// `NameIsDNSLabel`.
pub fn name_is_dns_label(name: &str, prefix: bool) -> Vec<String> {
    let name = if prefix {
        mask_trailing_dash(name)
    } else {
        name.to_string()
    };
    is_dns1123_label(&name)
}

/// `NameIsDNS1035Label`.
pub fn name_is_dns1035_label(name: &str, prefix: bool) -> Vec<String> {
    let name = if prefix {
        mask_trailing_dash(name)
    } else {
        name.to_string()
    };
    is_dns1035_label(&name)
}

/// `ValidatePathSegmentName`: names that only have to be usable in a URL path (RBAC kinds).
pub fn name_is_path_segment(name: &str, prefix: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if !prefix && (name == "." || name == "..") {
        errs.push(format!("may not be '{name}'"));
    }
    if name.contains('/') {
        errs.push("may not contain '/'".to_string());
    }
    if name.contains('%') {
        errs.push("may not contain '%'".to_string());
    }
    errs
}

/// The name rule of a kind, by group and kind (as Kubernetes' per-kind `ValidateXName`).
pub fn name_validator_for(group: &str, kind: &str) -> NameValidator {
    match (group, kind) {
        ("", "Namespace") => name_is_dns_label,
        ("", "Service") => name_is_dns1035_label,
        ("rbac.authorization.k8s.io", _) => name_is_path_segment,
        _ => name_is_dns_subdomain,
    }
}

/// The name rule for a resource of the catalogue.
pub fn name_validator(info: &ResourceInfo) -> NameValidator {
    name_validator_for(info.group, info.kind)
}

pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

pub fn not_supported(field: impl Into<String>, value: Value, valid: &[&str]) -> FieldError {
    let quoted: Vec<String> = valid.iter().map(|v| format!("{v:?}")).collect();
    FieldError {
        kind: FieldErrorType::NotSupported,
        field: field.into(),
        value: Some(value),
        detail: if valid.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        },
    }
}

pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
    FieldError::new(FieldErrorType::Forbidden, field, detail)
}

pub fn duplicate(field: impl Into<String>, value: Value) -> FieldError {
    FieldError {
        value: Some(value),
        ..FieldError::new(FieldErrorType::Duplicate, field, "")
    }
}

pub fn too_long(field: impl Into<String>, max: usize) -> FieldError {
    FieldError::new(
        FieldErrorType::TooLong,
        field,
        format!("must have at most {max} bytes"),
    )
}

/// One `Invalid` error per message of a checker.
pub fn invalid_each(field: &str, value: &str, msgs: Vec<String>) -> Vec<FieldError> {
    msgs.into_iter()
        .map(|m| FieldError::invalid(field, Value::String(value.to_string()), m))
        .collect()
}

/// Splits `apiVersion` into (group, version).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// Validates `metadata` of an object about to be stored. `namespaced` says whether the
/// kind lives in a namespace. The name rule is the one of the object's own kind (read
/// from its apiVersion and kind, which the registry has set).
pub fn validate_object_meta(obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let group = group_of(str_at(obj, "/apiVersion").unwrap_or(""));
    let kind = str_at(obj, "/kind").unwrap_or("");
    if is_review(group) {
        // Reviews (SelfSubjectAccessReview, TokenReview, ...) are never stored and are
        // sent without a name; only their labels and annotations mean anything.
        let meta = obj.get("metadata").unwrap_or(&Value::Null);
        let mut errs = validate_labels(meta.get("labels"), "metadata.labels");
        errs.extend(validate_annotations(
            meta.get("annotations"),
            "metadata.annotations",
        ));
        return errs;
    }
    validate_object_meta_with(obj, namespaced, name_validator_for(group, kind))
}

/// The groups whose kinds are create-only questions answered in the response.
fn is_review(group: &str) -> bool {
    matches!(group, "authorization.k8s.io" | "authentication.k8s.io")
}

/// [`validate_object_meta`] with an explicit name rule.
pub fn validate_object_meta_with(
    obj: &Value,
    namespaced: bool,
    name_fn: NameValidator,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    let generate_name = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or("");

    if !generate_name.is_empty() {
        errs.extend(invalid_each(
            "metadata.generateName",
            generate_name,
            name_fn(generate_name, true),
        ));
    }
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        errs.extend(invalid_each("metadata.name", name, name_fn(name, false)));
    }

    let namespace = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            errs.extend(invalid_each(
                "metadata.namespace",
                namespace,
                is_dns1123_label(namespace),
            ));
        }
    } else if !namespace.is_empty() {
        errs.push(forbidden("metadata.namespace", "not allowed on this type"));
    }

    if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
        if g < 0 {
            errs.push(FieldError::invalid(
                "metadata.generation",
                Value::from(g),
                "must be greater than or equal to 0",
            ));
        }
    }
    errs.extend(validate_labels(meta.get("labels"), "metadata.labels"));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        "metadata.annotations",
    ));
    errs.extend(validate_finalizers(meta.get("finalizers")));
    errs.extend(validate_owner_references(meta.get("ownerReferences")));
    errs
}

/// `ValidateLabels`: keys are qualified names, values label values; all errors at `path`.
pub fn validate_labels(labels: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = labels.and_then(Value::as_object) else {
        return errs;
    };
    for (k, v) in map {
        errs.extend(invalid_each(path, k, is_qualified_name(k)));
        let v = v.as_str().unwrap_or("");
        errs.extend(invalid_each(path, v, is_valid_label_value(v)));
    }
    errs
}

/// `ValidateAnnotations`: lower-cased keys are qualified names; total size ≤ 256 KiB.
pub fn validate_annotations(annotations: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = annotations.and_then(Value::as_object) else {
        return errs;
    };
    let mut total = 0usize;
    for (k, v) in map {
        errs.extend(invalid_each(path, k, is_qualified_name(&k.to_lowercase())));
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

fn validate_finalizers(finalizers: Option<&Value>) -> Vec<FieldError> {
    const PATH: &str = "metadata.finalizers";
    let mut errs = Vec::new();
    let Some(list) = finalizers.and_then(Value::as_array) else {
        return errs;
    };
    let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    for f in &names {
        let msgs = is_qualified_name(f);
        let had_errors = !msgs.is_empty();
        errs.extend(invalid_each(PATH, f, msgs));
        if !had_errors && !f.contains('/') && !STANDARD_FINALIZERS.contains(f) {
            errs.push(FieldError::invalid(
                PATH,
                Value::String((*f).to_string()),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            PATH,
            Value::Array(list.clone()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

fn validate_owner_references(refs: Option<&Value>) -> Vec<FieldError> {
    const PATH: &str = "metadata.ownerReferences";
    let mut errs = Vec::new();
    let Some(list) = refs.and_then(Value::as_array) else {
        return errs;
    };
    let mut controllers = Vec::new();
    for r in list {
        for (key, what) in [
            ("apiVersion", "version"),
            ("kind", "kind"),
            ("name", "name"),
            ("uid", "uid"),
        ] {
            let v = r.get(key).and_then(Value::as_str).unwrap_or("");
            if v.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{PATH}.{key}"),
                    Value::String(String::new()),
                    format!("{what} must not be empty"),
                ));
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers.push(format!(
                "{}/{}",
                r.get("kind").and_then(Value::as_str).unwrap_or(""),
                r.get("name").and_then(Value::as_str).unwrap_or("")
            ));
        }
    }
    if controllers.len() > 1 {
        errs.push(FieldError::invalid(
            PATH,
            Value::Array(list.clone()),
            format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                controllers.join(" and ")
            ),
        ));
    }
    errs
}

/// Checks what may not change in `metadata` on update (`ValidateObjectMetaUpdate`): name,
/// namespace, uid and creationTimestamp, and then the new metadata as on create.
pub fn validate_object_meta_update(new: &Value, old: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in ["name", "namespace", "uid", "creationTimestamp"] {
        let ptr = format!("/metadata/{key}");
        let (n, o) = (new.pointer(&ptr), old.pointer(&ptr));
        let unset = |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v == "");
        if n != o && !(unset(n) && unset(o)) {
            errs.push(FieldError {
                value: n.cloned(),
                ..FieldError::immutable(format!("metadata.{key}"))
            });
        }
    }
    errs.extend(validate_object_meta(new, namespaced));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn bad_subdomain_name_has_kubernetes_message() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "Bad_Name", "namespace": "default"}});
        let errs = validate_object_meta(&obj, true);
        assert_eq!(
            messages(&errs),
            vec![
                r#"metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
            ]
        );
    }

    #[test]
    fn missing_name_is_required() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "default"}});
        assert_eq!(
            messages(&validate_object_meta(&obj, true)),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        let gen = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "namespace": "default"}});
        assert!(validate_object_meta(&gen, true).is_empty());
    }

    #[test]
    fn namespaces_use_labels_and_services_dns1035() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}});
        let errs = messages(&validate_object_meta(&ns, false));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with(
            r#"metadata.name: Invalid value: "a.b": a lowercase RFC 1123 label must consist of"#
        ));
        assert!(errs[0].contains("(e.g. 'my-name',  or '123-abc', regex"));
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "1web", "namespace": "default"}});
        let errs = messages(&validate_object_meta(&svc, true));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("a DNS-1035 label must consist of"));
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "system:admin"}});
        assert!(validate_object_meta(&role, false).is_empty());
    }

    #[test]
    fn long_names_report_length() {
        let long = "a".repeat(64);
        assert_eq!(
            is_dns1123_label(&long),
            vec!["must be no more than 63 characters"]
        );
        assert!(is_dns1123_subdomain(&long).is_empty());
        assert_eq!(is_dns1123_subdomain(&"a".repeat(254)).len(), 1);
    }

    #[test]
    fn generate_name_may_end_with_dash() {
        assert!(name_is_dns_subdomain("web-", true).is_empty());
        assert!(!name_is_dns_subdomain("web-", false).is_empty());
        assert!(!name_is_dns_subdomain("Web-", true).is_empty());
    }

    #[test]
    fn namespace_required_or_forbidden() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        assert_eq!(
            messages(&validate_object_meta(&obj, true)),
            vec!["metadata.namespace: Required value"]
        );
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n", "namespace": "x"}});
        assert_eq!(
            messages(&validate_object_meta(&node, false)),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn labels_keys_and_values() {
        let labels = json!({"app": "web", "example.com/tier": "front", "bad key": "x",
            "v": "a".repeat(64), "-x": "ok"});
        let errs = messages(&validate_labels(Some(&labels), "metadata.labels"));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with(
            r#"metadata.labels: Invalid value: "bad key": name part must consist of alphanumeric characters"#
        )));
        assert!(errs
            .iter()
            .any(|e| e.ends_with(": must be no more than 63 characters")));
        assert!(errs.iter().any(|e| e.contains(r#""-x""#)));
        assert_eq!(
            is_qualified_name("a/b/c").len(),
            1,
            "too many slashes is one error"
        );
        assert_eq!(
            is_qualified_name("/b"),
            vec!["prefix part must be non-empty"]
        );
        assert!(is_valid_label_value("").is_empty());
    }

    #[test]
    fn annotations_total_size() {
        let big = json!({"a": "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT)});
        assert_eq!(
            messages(&validate_annotations(Some(&big), "metadata.annotations")),
            vec!["metadata.annotations: Too long: must have at most 262144 bytes"]
        );
        let upper = json!({"Example.com/Key": "v"});
        assert!(validate_annotations(Some(&upper), "metadata.annotations").is_empty());
    }

    #[test]
    fn finalizers_and_owner_references() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "p", "namespace": "d",
        "finalizers": ["kubernetes", "example.com/x", "custom"],
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true},
            {"apiVersion": "", "kind": "X", "name": "c", "uid": "3"}
        ]}});
        let errs = messages(&validate_object_meta(&obj, true));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(
            errs[0],
            r#"metadata.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified"#
        );
        assert_eq!(
            errs[1],
            r#"metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty"#
        );
        assert!(errs[2].contains("Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/a and ReplicaSet/b"));
    }

    #[test]
    fn reviews_need_no_name() {
        let ssar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "metadata": {}, "spec": {}});
        assert!(validate_object_meta(&ssar, false).is_empty());
        let bad = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "metadata": {"labels": {"a b": "c"}}});
        assert_eq!(validate_object_meta(&bad, false).len(), 1);
    }

    #[test]
    fn path_segment_names() {
        assert_eq!(name_is_path_segment("..", false), vec!["may not be '..'"]);
        assert_eq!(
            name_is_path_segment("a/b", false),
            vec!["may not contain '/'"]
        );
        assert!(name_is_path_segment("system:node", false).is_empty());
    }

    #[test]
    fn meta_update_immutables() {
        let old = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "d", "uid": "u1"}});
        let new = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "d", "uid": "u2"}});
        assert_eq!(
            messages(&validate_object_meta_update(&new, &old, true)),
            vec![r#"metadata.uid: Invalid value: "u2": field is immutable"#]
        );
        assert!(validate_object_meta_update(&old, &old, true).is_empty());
    }
}
