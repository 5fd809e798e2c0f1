//! Decoding request objects against the typed schema of their kind (k8s-openapi): wrong
//! types are refused, and unknown fields are found for fieldValidation Strict/Warn.
//!
//! Objects are checked by deserialising them into their kind's k8s-openapi struct through
//! two serde adapters: `serde_path_to_error` names the field where a type does not fit,
//! and `serde_ignored` reports every key the struct skipped, which is exactly the set of
//! fields its schema does not have. Map-typed fields (labels, data) keep all their keys,
//! so free-form keys are never reported.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::catalogue::ResourceInfo;

/// What decoding found besides the object itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Paths of fields the schema does not know, as Kubernetes reports them inside
    /// `unknown field "spec.foo"`: `spec.foo`, `spec.containers[0].imagePullPolicyy`.
    pub unknown_fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The object does not fit its kind's schema (a string where a number goes, ...), in
    /// Kubernetes' words: `Pod in version "v1" cannot be handled as a Pod: json: cannot
    /// unmarshal string into Go struct field Pod.spec.containers of type array`.
    #[error("{0}")]
    WrongType(String),
}

type Checker = fn(&Value) -> Result<Decoded, DecodeError>;

macro_rules! typed_kinds {
    ($( ($group:literal, $version:literal, $kind:literal) => $ty:ty, )*) => {
        fn checker(group: &str, version: &str, kind: &str) -> Option<Checker> {
            match (group, version, kind) {
                $( ($group, $version, $kind) => Some(check::<$ty> as Checker), )*
                _ => None,
            }
        }

        /// Every (group, version, kind) with a typed schema.
        pub fn typed_kinds() -> &'static [(&'static str, &'static str, &'static str)] {
            &[ $( ($group, $version, $kind), )* ]
        }
    };
}

use k8s_openapi::api as k;

typed_kinds! {
    ("", "v1", "Binding") => k::core::v1::Binding,
    ("", "v1", "ConfigMap") => k::core::v1::ConfigMap,
    ("", "v1", "Endpoints") => k::core::v1::Endpoints,
    ("", "v1", "Event") => k::core::v1::Event,
    ("", "v1", "LimitRange") => k::core::v1::LimitRange,
    ("", "v1", "Namespace") => k::core::v1::Namespace,
    ("", "v1", "Node") => k::core::v1::Node,
    ("", "v1", "PersistentVolume") => k::core::v1::PersistentVolume,
    ("", "v1", "PersistentVolumeClaim") => k::core::v1::PersistentVolumeClaim,
    ("", "v1", "Pod") => k::core::v1::Pod,
    ("", "v1", "PodTemplate") => k::core::v1::PodTemplate,
    ("", "v1", "ReplicationController") => k::core::v1::ReplicationController,
    ("", "v1", "ResourceQuota") => k::core::v1::ResourceQuota,
    ("", "v1", "Secret") => k::core::v1::Secret,
    ("", "v1", "Service") => k::core::v1::Service,
    ("", "v1", "ServiceAccount") => k::core::v1::ServiceAccount,
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration") => k::admissionregistration::v1::MutatingWebhookConfiguration,
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration") => k::admissionregistration::v1::ValidatingWebhookConfiguration,
    ("apps", "v1", "ControllerRevision") => k::apps::v1::ControllerRevision,
    ("apps", "v1", "DaemonSet") => k::apps::v1::DaemonSet,
    ("apps", "v1", "Deployment") => k::apps::v1::Deployment,
    ("apps", "v1", "ReplicaSet") => k::apps::v1::ReplicaSet,
    ("apps", "v1", "StatefulSet") => k::apps::v1::StatefulSet,
    ("authentication.k8s.io", "v1", "SelfSubjectReview") => k::authentication::v1::SelfSubjectReview,
    ("authentication.k8s.io", "v1", "TokenRequest") => k::authentication::v1::TokenRequest,
    ("authentication.k8s.io", "v1", "TokenReview") => k::authentication::v1::TokenReview,
    ("authorization.k8s.io", "v1", "LocalSubjectAccessReview") => k::authorization::v1::LocalSubjectAccessReview,
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => k::authorization::v1::SelfSubjectAccessReview,
    ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => k::authorization::v1::SelfSubjectRulesReview,
    ("authorization.k8s.io", "v1", "SubjectAccessReview") => k::authorization::v1::SubjectAccessReview,
    ("autoscaling", "v1", "HorizontalPodAutoscaler") => k::autoscaling::v1::HorizontalPodAutoscaler,
    ("autoscaling", "v1", "Scale") => k::autoscaling::v1::Scale,
    ("autoscaling", "v2", "HorizontalPodAutoscaler") => k::autoscaling::v2::HorizontalPodAutoscaler,
    ("batch", "v1", "CronJob") => k::batch::v1::CronJob,
    ("batch", "v1", "Job") => k::batch::v1::Job,
    ("certificates.k8s.io", "v1", "CertificateSigningRequest") => k::certificates::v1::CertificateSigningRequest,
    ("coordination.k8s.io", "v1", "Lease") => k::coordination::v1::Lease,
    ("discovery.k8s.io", "v1", "EndpointSlice") => k::discovery::v1::EndpointSlice,
    ("events.k8s.io", "v1", "Event") => k::events::v1::Event,
    ("networking.k8s.io", "v1", "Ingress") => k::networking::v1::Ingress,
    ("networking.k8s.io", "v1", "IngressClass") => k::networking::v1::IngressClass,
    ("networking.k8s.io", "v1", "NetworkPolicy") => k::networking::v1::NetworkPolicy,
    ("node.k8s.io", "v1", "RuntimeClass") => k::node::v1::RuntimeClass,
    ("policy", "v1", "Eviction") => k::policy::v1::Eviction,
    ("policy", "v1", "PodDisruptionBudget") => k::policy::v1::PodDisruptionBudget,
    ("rbac.authorization.k8s.io", "v1", "ClusterRole") => k::rbac::v1::ClusterRole,
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => k::rbac::v1::ClusterRoleBinding,
    ("rbac.authorization.k8s.io", "v1", "Role") => k::rbac::v1::Role,
    ("rbac.authorization.k8s.io", "v1", "RoleBinding") => k::rbac::v1::RoleBinding,
    ("scheduling.k8s.io", "v1", "PriorityClass") => k::scheduling::v1::PriorityClass,
    ("storage.k8s.io", "v1", "CSIDriver") => k::storage::v1::CSIDriver,
    ("storage.k8s.io", "v1", "CSINode") => k::storage::v1::CSINode,
    ("storage.k8s.io", "v1", "StorageClass") => k::storage::v1::StorageClass,
    ("storage.k8s.io", "v1", "VolumeAttachment") => k::storage::v1::VolumeAttachment,
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
}

/// Whether `info`'s kind has a typed schema that [`decode`] checks against.
pub fn has_schema(info: &ResourceInfo) -> bool {
    checker(info.group, info.version, info.kind).is_some()
}

/// Checks `obj` against the typed schema of `info`'s kind. Kinds without a schema (custom
/// resources) decode with no findings.
pub fn decode(info: &ResourceInfo, obj: &Value) -> Result<Decoded, DecodeError> {
    decode_gvk(info.group, info.version, info.kind, obj)
}

/// [`decode`] by group, version and kind (for subresource bodies such as Scale or Eviction).
pub fn decode_gvk(
    group: &str,
    version: &str,
    kind: &str,
    obj: &Value,
) -> Result<Decoded, DecodeError> {
    match checker(group, version, kind) {
        Some(check) => check(obj),
        None => {
            tracing::trace!(group, version, kind, "no typed schema; decoding skipped");
            Ok(Decoded::default())
        }
    }
}

fn check<T: DeserializeOwned + k8s_openapi::Resource>(obj: &Value) -> Result<Decoded, DecodeError> {
    // The registry checks apiVersion/kind against the URL; here they must not make the typed
    // decoder fail, so a mismatching pair is dropped from a copy.
    let mismatched = |key: &str, want: &str| obj.get(key).is_some_and(|v| v != want);
    if mismatched("apiVersion", T::API_VERSION) || mismatched("kind", T::KIND) {
        let mut copy = obj.clone();
        if let Some(map) = copy.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
        }
        return check_nulls_tolerated::<T>(&copy);
    }
    check_nulls_tolerated::<T>(obj)
}

/// Go's JSON decoder treats `null` as "leave the zero value", so a null where serde wants a
/// value is not a type error: retry without the nulls (the rare path pays for the copy).
fn check_nulls_tolerated<T: DeserializeOwned + k8s_openapi::Resource>(
    obj: &Value,
) -> Result<Decoded, DecodeError> {
    match check_once::<T>(obj) {
        Err(e) if e.null => {
            let mut copy = obj.clone();
            strip_nulls(&mut copy);
            check_once::<T>(&copy).map_err(|e| e.error)
        }
        other => other.map_err(|e| e.error),
    }
}

struct Failure {
    error: DecodeError,
    /// The value that did not fit was `null`.
    null: bool,
}

fn check_once<T: DeserializeOwned + k8s_openapi::Resource>(
    obj: &Value,
) -> Result<Decoded, Failure> {
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result = {
        let tracked = serde_path_to_error::Deserializer::new(obj, &mut track);
        serde_ignored::deserialize(tracked, |path| unknown.push(ignored_path(&path))).map(|_: T| ())
    };
    match result {
        Ok(()) => Ok(Decoded {
            unknown_fields: unknown,
        }),
        Err(e) => {
            let path = track.path().to_string();
            let message = e.to_string();
            Err(Failure {
                null: message.starts_with("invalid type: null"),
                error: DecodeError::WrongType(format!(
                    "{kind} in version {version:?} cannot be handled as a {kind}: {detail}",
                    kind = T::KIND,
                    version = T::VERSION,
                    detail = go_style_message(T::KIND, &path, &message)
                )),
            })
        }
    }
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// `spec.containers[0].foo` from serde_ignored's path (whose Some/newtype steps are not
/// part of the JSON path).
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let p = ignored_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// Turns serde's "invalid type: string \"x\", expected a sequence" into the shape of Go's
/// `json: cannot unmarshal string into Go struct field Pod.spec.containers of type array`.
fn go_style_message(kind: &str, path: &str, serde_message: &str) -> String {
    let Some(rest) = serde_message.strip_prefix("invalid type: ") else {
        return if path == "." {
            format!("json: {serde_message}")
        } else {
            format!("json: {serde_message} for field {kind}.{path}")
        };
    };
    let (got, expected) = rest.rsplit_once(", expected ").unwrap_or((rest, ""));
    let got = match got.split_whitespace().next().unwrap_or("") {
        "string" => "string",
        "integer" | "floating" => "number",
        "boolean" => "bool",
        "sequence" => "array",
        "map" => "object",
        other => other,
    };
    let expected = match expected {
        "a sequence" => "array",
        "a map" => "map",
        "a string" | "string" => "string",
        "a boolean" => "bool",
        "i32" => "int32",
        "i64" => "int64",
        "u32" => "uint32",
        "u64" => "uint64",
        "f64" => "float64",
        other => other,
    };
    if path == "." {
        format!("json: cannot unmarshal {got} into Go value of type {expected}")
    } else {
        format!(
            "json: cannot unmarshal {got} into Go struct field {kind}.{path} of type {expected}"
        )
    }
}

/// Keys that occur twice in one JSON object of `raw_json`, as Kubernetes' strict decoding
/// reports them inside `duplicate field "metadata.name"`. Not-JSON input yields nothing
/// (the decoder reports that itself).
pub fn find_duplicate_fields(raw_json: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut path = String::new();
    let mut de = serde_json::Deserializer::from_slice(raw_json);
    let scan = DuplicateScan {
        path: &mut path,
        found: &mut found,
    };
    if let Err(e) = scan.deserialize(&mut de) {
        tracing::trace!(error = %e, "duplicate-field scan stopped on malformed JSON");
    }
    found
}

/// The same scan over a YAML body: Kubernetes' strict YAML decoding refuses a mapping key
/// defined twice, which a YAML-to-JSON conversion would silently resolve (the last wins).
pub fn find_duplicate_fields_yaml(raw_yaml: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut path = String::new();
    let scan = DuplicateScan {
        path: &mut path,
        found: &mut found,
    };
    if let Err(e) = scan.deserialize(serde_yaml::Deserializer::from_slice(raw_yaml)) {
        tracing::trace!(error = %e, "duplicate-field scan stopped on malformed YAML");
    }
    found
}

/// Walks one JSON value, remembering the keys of each object it meets. `path` is one
/// buffer extended and truncated on the way down and up, so that a scan allocates only
/// for escaped keys and large objects.
struct DuplicateScan<'a> {
    path: &'a mut String,
    found: &'a mut Vec<String>,
}

/// Above this many keys an object's keys go into a hash set instead of a linear list.
const LINEAR_KEYS: usize = 16;

/// An object key, borrowed from the input unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> DeserializeSeed<'de> for DuplicateScan<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DuplicateScan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut linear: Vec<Cow<'de, str>> = Vec::new();
        let mut hashed: HashSet<Cow<'de, str>> = HashSet::new();
        let base = self.path.len();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if base > 0 {
                self.path.push('.');
            }
            self.path.push_str(&key);
            let seen = if hashed.is_empty() && linear.len() < LINEAR_KEYS {
                let seen = linear.contains(&key);
                if !seen {
                    linear.push(key);
                }
                seen
            } else {
                hashed.extend(linear.drain(..));
                !hashed.insert(key)
            };
            if seen {
                self.found.push(self.path.clone());
            }
            map.next_value_seed(DuplicateScan {
                path: &mut *self.path,
                found: &mut *self.found,
            })?;
            self.path.truncate(base);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let base = self.path.len();
        let mut index = 0usize;
        loop {
            use std::fmt::Write as _;
            let _ = write!(self.path, "[{index}]");
            let more = seq
                .next_element_seed(DuplicateScan {
                    path: &mut *self.path,
                    found: &mut *self.found,
                })?
                .is_some();
            self.path.truncate(base);
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_yaml_keys_are_found_with_their_paths() {
        let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\ndata:\n  k: x\n  k: y\n  other: z\nitems:\n- n: 1\n  n: 2\n";
        assert_eq!(
            find_duplicate_fields_yaml(yaml),
            vec!["metadata.name", "data.k", "items[0].n"]
        );
        assert!(find_duplicate_fields_yaml(b"a: 1\nb: {c: 2, d: [1, 2]}\nn: ~\n").is_empty());
        // Malformed YAML yields nothing; the decoder reports it.
        assert!(find_duplicate_fields_yaml(b"a: [1\n").is_empty());
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"any-key": "v"}}, "spec": spec})
    }

    #[test]
    fn valid_pod_has_no_findings() {
        let obj = pod(json!({"containers": [{"name": "c", "image": "nginx",
            "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}}}]}));
        assert_eq!(decode_gvk("", "v1", "Pod", &obj), Ok(Decoded::default()));
    }

    #[test]
    fn unknown_fields_are_reported_with_paths() {
        let mut obj = pod(json!({"foo": 1, "containers": [
            {"name": "c", "image": "nginx"},
            {"name": "d", "image": "nginx", "imagePullPolicyy": "Always"}]}));
        obj["bar"] = json!({"x": 1});
        let decoded = decode_gvk("", "v1", "Pod", &obj).expect("decodes");
        let mut fields = decoded.unknown_fields;
        fields.sort();
        assert_eq!(
            fields,
            vec!["bar", "spec.containers[1].imagePullPolicyy", "spec.foo"]
        );
    }

    #[test]
    fn free_form_maps_are_not_unknown() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
            "annotations": {"a/b": "c"}}, "data": {"anything": "goes"}});
        assert_eq!(
            decode_gvk("", "v1", "ConfigMap", &cm),
            Ok(Decoded::default())
        );
        let crd_like = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod"}, "series": {"count": 2}});
        assert_eq!(
            decode_gvk("", "v1", "Event", &crd_like),
            Ok(Decoded::default())
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let obj = pod(json!({"containers": "nginx"}));
        assert_eq!(
            decode_gvk("", "v1", "Pod", &obj),
            Err(DecodeError::WrongType(
                "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal string into Go struct field Pod.spec.containers of type array"
                    .into()
            ))
        );
        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": "3", "selector": {}, "template": {}}});
        assert_eq!(
            decode_gvk("apps", "v1", "Deployment", &dep),
            Err(DecodeError::WrongType(
                "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field Deployment.spec.replicas of type int32"
                    .into()
            ))
        );
        let nested = pod(json!({"containers": [{"name": "c", "ports": [{"containerPort": "x"}]}]}));
        let Err(DecodeError::WrongType(msg)) = decode_gvk("", "v1", "Pod", &nested) else {
            panic!("expected a type error");
        };
        assert!(
            msg.contains("Pod.spec.containers[0].ports[0].containerPort of type int32"),
            "{msg}"
        );
    }

    #[test]
    fn nulls_are_zero_values_not_errors() {
        let obj = pod(
            json!({"containers": [{"name": "c", "image": "x", "args": null}],
            "nodeSelector": {"a": null}}),
        );
        assert_eq!(decode_gvk("", "v1", "Pod", &obj), Ok(Decoded::default()));
    }

    #[test]
    fn other_api_version_does_not_fail_the_schema_check() {
        let obj =
            json!({"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "d"}});
        assert_eq!(
            decode_gvk("apps", "v1", "Deployment", &obj),
            Ok(Decoded::default())
        );
    }

    #[test]
    fn access_reviews_and_unknown_kinds() {
        let ssar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "bogus": 1}}});
        let d = decode_gvk(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            &ssar,
        )
        .expect("decodes");
        assert_eq!(d.unknown_fields, vec!["spec.resourceAttributes.bogus"]);
        assert_eq!(
            decode_gvk("example.com", "v1", "Widget", &json!({"x": 1})),
            Ok(Decoded::default())
        );
        assert!(typed_kinds().contains(&("apps", "v1", "Deployment")));
    }

    #[test]
    fn bad_base64_in_secret_is_refused() {
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"k": "!!!"}});
        assert!(matches!(
            decode_gvk("", "v1", "Secret", &s),
            Err(DecodeError::WrongType(_))
        ));
    }

    #[test]
    fn duplicate_fields_found_at_every_depth() {
        let raw = br#"{"metadata":{"name":"a","name":"b"},"spec":{"containers":[{"name":"c","image":"x","image":"y"}]},"spec":{}}"#;
        assert_eq!(
            find_duplicate_fields(raw),
            vec!["metadata.name", "spec.containers[0].image", "spec"]
        );
        assert!(find_duplicate_fields(br#"{"a":[1,{"b":2}],"c":"d"}"#).is_empty());
        assert!(find_duplicate_fields(b"{not json").is_empty());
        // Escaped keys compare by their text, and large objects switch to hashing.
        assert_eq!(
            find_duplicate_fields(br#"{"a\u0062":1,"ab":2}"#),
            vec!["ab"]
        );
        let mut big: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        big.push_str("\"k3\":0,\"k39\":1");
        assert_eq!(
            find_duplicate_fields(format!("{{{big}}}").as_bytes()),
            vec!["k3", "k39"]
        );
        assert_eq!(
            find_duplicate_fields(br#"[{"x":[{"y":1,"y":2}]}]"#),
            vec!["[0].x[0].y"]
        );
    }
}
