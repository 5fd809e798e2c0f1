//! Formatting shared by several printers: label maps, label selectors and container lists,
//! as apimachinery's `labels.FormatLabels`, `metav1.FormatLabelSelector` and the printers'
//! `layoutContainerCells`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::fields::{list_at, str_at};

/// `k1=v1,k2=v2` sorted by key, or `<none>`.
pub fn labels(map: Option<&Map<String, Value>>) -> String {
    let Some(map) = map.filter(|m| !m.is_empty()) else {
        return "<none>".to_string();
    };
    // Sorted explicitly: with serde_json's `preserve_order` (which any crate in the build
    // may switch on) the map keeps insertion order.
    let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a label selector cannot be turned into a selector string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("{0:?} is not a valid label selector operator")]
    Operator(String),
    #[error("values must be empty for operator {0}")]
    ValuesNotAllowed(&'static str),
    #[error("values must be non-empty for operator {0}")]
    ValuesRequired(&'static str),
}

/// A LabelSelector (`matchLabels` and `matchExpressions`) in selector syntax, requirements
/// sorted by key: `app=web,tier in (a,b),!legacy`. An empty or missing selector gives "".
pub fn selector(sel: Option<&Value>) -> Result<String, SelectorError> {
    let Some(sel) = sel else {
        return Ok(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for expr in list_at(sel, "/matchExpressions") {
        let key = str_at(expr, "/key");
        let values: BTreeSet<&str> = list_at(expr, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let joined = values.iter().copied().collect::<Vec<_>>().join(",");
        let text = match str_at(expr, "/operator") {
            "In" if values.is_empty() => return Err(SelectorError::ValuesRequired("In")),
            "NotIn" if values.is_empty() => return Err(SelectorError::ValuesRequired("NotIn")),
            "In" => format!("{key} in ({joined})"),
            "NotIn" => format!("{key} notin ({joined})"),
            "Exists" if !values.is_empty() => {
                return Err(SelectorError::ValuesNotAllowed("Exists"))
            }
            "DoesNotExist" if !values.is_empty() => {
                return Err(SelectorError::ValuesNotAllowed("DoesNotExist"))
            }
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => return Err(SelectorError::Operator(other.to_string())),
        };
        reqs.push((key.to_string(), text));
    }
    // A stable sort by key, as apimachinery's selector keeps its requirements.
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join(","))
}

/// `metav1.FormatLabelSelector`: the selector, `<none>` when empty, `<error>` when invalid.
pub fn label_selector(sel: Option<&Value>) -> String {
    match selector(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(_) => "<error>".to_string(),
    }
}

/// The comma-joined names and images of a list of containers.
pub fn containers(containers: &[Value]) -> (String, String) {
    let names = containers
        .iter()
        .map(|c| str_at(c, "/name"))
        .collect::<Vec<_>>()
        .join(",");
    let images = containers
        .iter()
        .map(|c| str_at(c, "/image"))
        .collect::<Vec<_>>()
        .join(",");
    (names, images)
}

/// Joins at most `max` items with ",", then ` + N more...`; `<unset>` when there are none
/// (the printers' `listWithMoreString`).
pub fn list_with_more(items: &[String], total: usize, max: usize) -> String {
    let shown = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if total > max {
        return format!("{shown} + {} more...", total - max);
    }
    if shown.is_empty() {
        return "<unset>".to_string();
    }
    shown
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn label_maps() {
        let m = json!({"tier": "web", "app": "shop", "app-x": "1"});
        assert_eq!(labels(m.as_object()), "app=shop,app-x=1,tier=web");
        assert_eq!(labels(json!({}).as_object()), "<none>");
        assert_eq!(labels(None), "<none>");
    }

    #[test]
    fn selectors_sort_requirements_by_key() {
        let sel = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "canary", "operator": "Exists"},
            ],
        });
        assert_eq!(
            selector(Some(&sel)),
            Ok("app=web,canary,env notin (prod),!legacy,tier in (a,b)".to_string())
        );
        assert_eq!(label_selector(Some(&json!({}))), "<none>");
        assert_eq!(label_selector(None), "<none>");
    }

    #[test]
    fn invalid_selectors() {
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Like"}]});
        assert_eq!(
            selector(Some(&bad)),
            Err(SelectorError::Operator("Like".into()))
        );
        assert_eq!(label_selector(Some(&bad)), "<error>");
        let empty_in = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert!(selector(Some(&empty_in)).is_err());
    }

    #[test]
    fn container_cells_and_lists() {
        let cs = json!([{"name": "app", "image": "nginx:1"}, {"name": "side", "image": "busybox"}]);
        let (names, images) = containers(cs.as_array().expect("list"));
        assert_eq!(
            (names.as_str(), images.as_str()),
            ("app,side", "nginx:1,busybox")
        );
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(list_with_more(&items, 5, 3), "a,b,c + 2 more...");
        assert_eq!(list_with_more(&items[..2], 2, 3), "a,b");
        assert_eq!(list_with_more(&[], 0, 3), "<unset>");
    }
}
