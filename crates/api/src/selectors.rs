//! Label and node selector matching over k8s-openapi types, as apimachinery's
//! `labels.Selector` (from `metav1.LabelSelectorAsSelector`) and component-helpers'
//! `nodeaffinity` evaluate them. One copy for the controllers that select objects.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy a metav1.LabelSelector: every matchLabels pair and every
/// expression holds. An empty selector matches everything; an unknown operator nothing.
pub fn label_selector_matches(
    sel: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let value = |key: &str| labels.and_then(|l| l.get(key));
    sel.match_labels
        .iter()
        .flatten()
        .all(|(k, v)| value(k) == Some(v))
        && sel.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let got = value(&e.key);
            match e.operator.as_str() {
                "In" => got.is_some_and(|v| values.contains(v)),
                "NotIn" => got.is_none_or(|v| !values.contains(v)),
                "Exists" => got.is_some(),
                "DoesNotExist" => got.is_none(),
                _ => false,
            }
        })
}

/// One node selector requirement against the value of its key (None: the label is absent).
/// `Gt`/`Lt` compare integers; a value or bound that is not one fails them.
pub fn node_requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => match (
            value.and_then(number),
            values.first().and_then(|b| number(b)),
        ) {
            (Some(v), Some(bound)) if r.operator == "Gt" => v > bound,
            (Some(v), Some(bound)) => v < bound,
            _ => false,
        },
        _ => false,
    }
}

/// One NodeSelectorTerm: every label expression and field (only `metadata.name` is
/// supported) must hold; an empty term matches nothing.
pub fn node_term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let name = node.metadata.name.as_deref();
    exprs.iter().all(|r| {
        node_requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str))
    }) && fields
        .iter()
        .all(|r| r.key == "metadata.name" && node_requirement_matches(r, name))
}

/// A NodeSelector: its terms are ORed, so one matching term admits the node (no terms
/// admit none).
pub fn node_selector_matches(sel: &NodeSelector, node: &Node) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| node_term_matches(t, node))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selector(v: serde_json::Value) -> LabelSelector {
        serde_json::from_value(v).unwrap()
    }

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn term(v: serde_json::Value) -> NodeSelectorTerm {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn label_selector_labels_and_expressions() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(label_selector_matches(&selector(json!({})), Some(&l)));
        assert!(label_selector_matches(&selector(json!({})), None));
        assert!(label_selector_matches(
            &selector(json!({"matchLabels": {"app": "web"}})),
            Some(&l)
        ));
        assert!(!label_selector_matches(
            &selector(json!({"matchLabels": {"app": "db"}})),
            Some(&l)
        ));
        assert!(!label_selector_matches(
            &selector(json!({"matchLabels": {"app": "web"}})),
            None
        ));
        let expr = |op: &str, values: &[&str]| {
            selector(
                json!({"matchExpressions": [{"key": "tier", "operator": op, "values": values}]}),
            )
        };
        assert!(label_selector_matches(
            &expr("In", &["front", "back"]),
            Some(&l)
        ));
        assert!(!label_selector_matches(&expr("In", &["back"]), Some(&l)));
        assert!(label_selector_matches(&expr("NotIn", &["back"]), Some(&l)));
        assert!(label_selector_matches(&expr("NotIn", &["back"]), None));
        assert!(label_selector_matches(&expr("Exists", &[]), Some(&l)));
        assert!(!label_selector_matches(
            &expr("DoesNotExist", &[]),
            Some(&l)
        ));
        assert!(!label_selector_matches(&expr("Gt", &["1"]), Some(&l)));
    }

    #[test]
    fn node_terms_expressions_fields_and_numbers() {
        let n = node(json!({"metadata": {"name": "n1", "labels": {"zone": "a", "cpus": "8"}}}));
        assert!(!node_term_matches(&term(json!({})), &n));
        assert!(node_term_matches(
            &term(
                json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]})
            ),
            &n
        ));
        assert!(node_term_matches(
            &term(
                json!({"matchExpressions": [{"key": "cpus", "operator": "Gt", "values": ["4"]}]})
            ),
            &n
        ));
        assert!(!node_term_matches(
            &term(
                json!({"matchExpressions": [{"key": "cpus", "operator": "Lt", "values": ["4"]}]})
            ),
            &n
        ));
        assert!(!node_term_matches(
            &term(
                json!({"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["4"]}]})
            ),
            &n
        ));
        assert!(node_term_matches(
            &term(
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})
            ),
            &n
        ));
        assert!(!node_term_matches(
            &term(json!({"matchFields": [{"key": "spec.podCIDR", "operator": "Exists"}]})),
            &n
        ));
        let sel: NodeSelector = serde_json::from_value(json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]}
        ]}))
        .unwrap();
        assert!(node_selector_matches(&sel, &n));
        assert!(!node_selector_matches(
            &NodeSelector {
                node_selector_terms: vec![]
            },
            &n
        ));
    }
}
