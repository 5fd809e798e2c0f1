//! Field selectors: `metadata.name=x,status.phase!=Running`. `metadata.name` and
//! `metadata.namespace` work for every kind; anything else must be a field the kind's
//! strategy knows, or the request fails with `field label not supported: X`.

use api::Strategy;
use serde_json::Value;

use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    field: String,
    value: String,
    equal: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<Term>,
}

impl FieldSelector {
    /// Parses `input`, checking every field against `strategy`.
    pub fn parse(input: &str, strategy: &dyn Strategy) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for raw in input.split(',') {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = raw.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = raw.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = raw.split_once('=') {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: invalid selector: '{input}'; can't understand '{raw}'"
                )));
            };
            let field = field.trim();
            if !is_generic(field) && !supported(strategy, field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push(Term {
                field: field.to_string(),
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(Self { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The name this selector pins (`metadata.name=x`), which lets a watch or list skip
    /// every other object.
    pub fn name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.equal && t.field == "metadata.name")
            .map(|t| t.value.as_str())
    }

    /// Whether every term is on metadata.name or metadata.namespace, which a cached object
    /// answers without being decoded.
    pub fn is_generic(&self) -> bool {
        self.terms.iter().all(|t| is_generic(&t.field))
    }

    /// As [`Self::matches`] for a generic selector ([`Self::is_generic`]), from the name
    /// and namespace alone; other terms never match here.
    pub fn matches_name(&self, name: &str, namespace: &str) -> bool {
        self.terms.iter().all(|t| {
            let actual = match t.field.as_str() {
                "metadata.name" => name,
                "metadata.namespace" => namespace,
                _ => return false,
            };
            (actual == t.value) == t.equal
        })
    }

    pub fn matches(&self, obj: &Value, strategy: &dyn Strategy) -> bool {
        self.terms.iter().all(|t| {
            let actual = match t.field.as_str() {
                "metadata.name" => str_at(obj, "/metadata/name"),
                "metadata.namespace" => str_at(obj, "/metadata/namespace"),
                other => strategy.field_value(obj, other).unwrap_or_default(),
            };
            (actual == t.value) == t.equal
        })
    }
}

fn is_generic(field: &str) -> bool {
    matches!(field, "metadata.name" | "metadata.namespace")
}

/// A strategy supports a field when it yields a value for it on a bare object of its kind
/// (Kubernetes' field sets always carry every supported field, empty when unset).
fn supported(strategy: &dyn Strategy, field: &str) -> bool {
    let skeleton = serde_json::json!({"metadata": {}, "spec": {}, "status": {}});
    strategy.field_value(&skeleton, field).is_some()
}

fn str_at(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Phase;
    impl Strategy for Phase {
        fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
            (field == "status.phase").then(|| str_at(obj, "/status/phase"))
        }
    }

    #[test]
    fn name_namespace_and_strategy_fields() {
        let o =
            json!({"metadata": {"name": "a", "namespace": "ns"}, "status": {"phase": "Running"}});
        let s = FieldSelector::parse("metadata.name=a,status.phase!=Pending", &Phase).unwrap();
        assert!(s.matches(&o, &Phase));
        assert_eq!(s.name(), Some("a"));
        let s = FieldSelector::parse("metadata.namespace==other", &Phase).unwrap();
        assert!(!s.matches(&o, &Phase));
    }

    #[test]
    fn generic_selectors_match_from_name_and_namespace_alone() {
        let o = json!({"metadata": {"name": "a", "namespace": "ns"}});
        for input in [
            "metadata.name=a",
            "metadata.name!=a",
            "metadata.namespace=ns,metadata.name=b",
            "metadata.namespace!=other",
            "",
        ] {
            let s = FieldSelector::parse(input, &Phase).unwrap();
            assert!(s.is_generic(), "{input}");
            assert_eq!(s.matches_name("a", "ns"), s.matches(&o, &Phase), "{input}");
        }
        let s = FieldSelector::parse("metadata.name=a,status.phase=Running", &Phase).unwrap();
        assert!(!s.is_generic());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = FieldSelector::parse("spec.foo=x", &Phase).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(e.message, "field label not supported: spec.foo");
        assert_eq!(
            FieldSelector::parse("nonsense", &Phase).unwrap_err().code,
            400
        );
    }
}
