//! The field table of the Kubernetes protobuf messages: for each message, its field numbers
//! with their JSON names and types. `schema.txt` is generated from the upstream
//! `generated.proto` files by `gen_schema.py`; the decoder walks the wire format with it.

use std::collections::HashMap;
use std::sync::LazyLock;

/// A protobuf scalar type, as the Kubernetes protos use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Double,
    Float,
    Fixed32,
    Fixed64,
}

impl Scalar {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Self::String,
            "bytes" => Self::Bytes,
            "bool" => Self::Bool,
            "int32" => Self::Int32,
            "int64" => Self::Int64,
            "uint32" => Self::Uint32,
            "uint64" => Self::Uint64,
            "sint32" => Self::Sint32,
            "sint64" => Self::Sint64,
            "double" => Self::Double,
            "float" => Self::Float,
            "fixed32" => Self::Fixed32,
            "fixed64" => Self::Fixed64,
            _ => return None,
        })
    }
}

/// What a single value of a field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Scalar(Scalar),
    /// A message, by its fully qualified name (`api.core.v1.PodSpec`).
    Message(&'static str),
}

impl ValueType {
    fn parse(s: &'static str) -> Self {
        Scalar::parse(s).map_or(Self::Message(s), Self::Scalar)
    }
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    Single,
    Repeated,
    /// `map<key, value>`: repeated entry messages {1: key, 2: value}.
    Map(Scalar),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub json_name: &'static str,
    pub cardinality: Cardinality,
    pub value: ValueType,
}

#[derive(Debug, Default)]
pub struct Message {
    fields: HashMap<u32, Field>,
}

impl Message {
    pub fn field(&self, number: u32) -> Option<&Field> {
        self.fields.get(&number)
    }
}

/// Every message the decoder knows, by fully qualified name.
pub struct Schema {
    messages: HashMap<&'static str, Message>,
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    Schema::parse(include_str!("schema.txt")).expect("the generated schema.txt is well formed")
});

impl Schema {
    pub fn builtin() -> &'static Schema {
        &SCHEMA
    }

    pub fn message(&self, name: &str) -> Option<&Message> {
        self.messages.get(name)
    }

    fn parse(text: &'static str) -> Result<Self, String> {
        let mut messages: HashMap<&'static str, Message> = HashMap::new();
        let mut current: Option<&'static str> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || format!("schema.txt line {}: {line:?}", n + 1);
            if let Some(name) = line.strip_prefix("M ") {
                messages.insert(name, Message::default());
                current = Some(name);
                continue;
            }
            let mut parts = line.split(' ');
            let (Some(number), Some(json_name), Some(ty), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let number: u32 = number.parse().map_err(|_| bad())?;
            let (cardinality, value) = if let Some(elem) = ty.strip_prefix("[]") {
                (Cardinality::Repeated, ValueType::parse(elem))
            } else if let Some(rest) = ty.strip_prefix("map[") {
                let (key, value) = rest.split_once(']').ok_or_else(bad)?;
                let key = Scalar::parse(key).ok_or_else(bad)?;
                (Cardinality::Map(key), ValueType::parse(value))
            } else {
                (Cardinality::Single, ValueType::parse(ty))
            };
            let message = current.and_then(|m| messages.get_mut(m)).ok_or_else(bad)?;
            message.fields.insert(
                number,
                Field {
                    json_name,
                    cardinality,
                    value,
                },
            );
        }
        Ok(Self { messages })
    }

    /// The message that carries `kind` of `api_version` ("apps/v1", "v1", "meta.k8s.io/v1").
    pub fn message_for_kind(&self, api_version: &str, kind: &str) -> Option<&'static str> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let mut candidates = Vec::with_capacity(2);
        match group {
            "" => candidates.push(format!("api.core.{version}.{kind}")),
            "meta.k8s.io" => {}
            "apiextensions.k8s.io" => candidates.push(format!(
                "apiextensions_apiserver.pkg.apis.apiextensions.{version}.{kind}"
            )),
            // The proto package is the group's first label: rbac.authorization.k8s.io → rbac.
            _ => {
                let package = group.split('.').next().unwrap_or(group);
                candidates.push(format!("api.{package}.{version}.{kind}"));
            }
        }
        // Options and Status are shared meta types that clients send under any group.
        candidates.push(format!("apimachinery.pkg.apis.meta.{version}.{kind}"));
        candidates
            .iter()
            .find_map(|c| self.messages.get_key_value(c.as_str()).map(|(k, _)| *k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses_and_resolves_every_referenced_message() {
        let schema = Schema::builtin();
        assert!(schema.messages.len() > 300);
        for (name, message) in &schema.messages {
            for field in message.fields.values() {
                if let ValueType::Message(m) = field.value {
                    assert!(
                        schema.message(m).is_some(),
                        "{name}.{} → {m}",
                        field.json_name
                    );
                }
            }
        }
    }

    #[test]
    fn kinds_resolve_to_their_messages() {
        let s = Schema::builtin();
        let cases = [
            ("v1", "ConfigMap", "api.core.v1.ConfigMap"),
            ("apps/v1", "Deployment", "api.apps.v1.Deployment"),
            (
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                "api.rbac.v1.ClusterRole",
            ),
            (
                "authorization.k8s.io/v1",
                "SelfSubjectAccessReview",
                "api.authorization.v1.SelfSubjectAccessReview",
            ),
            ("policy/v1", "Eviction", "api.policy.v1.Eviction"),
            ("autoscaling/v1", "Scale", "api.autoscaling.v1.Scale"),
            (
                "meta.k8s.io/v1",
                "DeleteOptions",
                "apimachinery.pkg.apis.meta.v1.DeleteOptions",
            ),
            (
                "v1",
                "DeleteOptions",
                "apimachinery.pkg.apis.meta.v1.DeleteOptions",
            ),
            (
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
            ),
        ];
        for (api_version, kind, want) in cases {
            assert_eq!(s.message_for_kind(api_version, kind), Some(want));
        }
        assert_eq!(s.message_for_kind("apps/v1", "Nope"), None);
    }

    #[test]
    fn catalogue_kinds_all_have_messages() {
        let s = Schema::builtin();
        for info in api::Catalogue::builtin().iter() {
            assert!(
                s.message_for_kind(&info.api_version(), info.kind).is_some(),
                "{} {}",
                info.api_version(),
                info.kind
            );
        }
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(Schema::parse("1 name string\n").is_err());
        assert!(Schema::parse("M a\nx name string\n").is_err());
        assert!(Schema::parse("M a\n1 name map[nope]string\n").is_err());
        assert!(Schema::parse("M a\n1 name\n").is_err());
    }
}
