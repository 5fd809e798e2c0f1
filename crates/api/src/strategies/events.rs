//! Events, in both their core/v1 shape (involvedObject, source, reportingComponent) and
//! their events.k8s.io/v1 shape (regarding, deprecatedSource, reportingController). Field
//! selectors use the core names for both, as Kubernetes' shared event storage does.

use serde_json::{json, Value};

use super::json::{selector_value, str_or_empty};
use crate::field_error::FieldError;
use crate::strategy::Strategy;
use crate::validation::not_supported;

pub struct EventStrategy;

/// The referenced object, whichever shape the event has.
fn regarding(obj: &Value) -> Option<&Value> {
    obj.get("involvedObject")
        .filter(|v| v.is_object())
        .or_else(|| obj.get("regarding").filter(|v| v.is_object()))
}

fn first<'a>(obj: &'a Value, pointers: &[&str]) -> Option<&'a Value> {
    pointers
        .iter()
        .find_map(|p| obj.pointer(p).filter(|v| !v.is_null()))
}

impl Strategy for EventStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let (path, object) = if obj.get("involvedObject").is_some() {
            ("involvedObject", regarding(obj))
        } else {
            ("regarding", regarding(obj))
        };
        if let Some(object) = object {
            let object_ns = str_or_empty(object, "namespace");
            if !object_ns.is_empty() && !ns.is_empty() && object_ns != ns {
                errs.push(FieldError::invalid(
                    format!("{path}.namespace"),
                    json!(object_ns),
                    "does not match event.namespace",
                ));
            }
        }
        // events.k8s.io requires a known type; core/v1 accepts any.
        if obj.get("regarding").is_some() || obj.get("reportingController").is_some() {
            let t = str_or_empty(obj, "type");
            if !["Normal", "Warning"].contains(&t) {
                errs.push(not_supported("type", json!(t), &["Normal", "Warning"]));
            }
        }
        errs
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let object_field =
            |key: &str| Some(selector_value(regarding(obj).and_then(|o| o.get(key)), ""));
        match field {
            "involvedObject.kind" | "regarding.kind" => object_field("kind"),
            "involvedObject.namespace" | "regarding.namespace" => object_field("namespace"),
            "involvedObject.name" | "regarding.name" => object_field("name"),
            "involvedObject.uid" | "regarding.uid" => object_field("uid"),
            "involvedObject.apiVersion" | "regarding.apiVersion" => object_field("apiVersion"),
            "involvedObject.resourceVersion" | "regarding.resourceVersion" => {
                object_field("resourceVersion")
            }
            "involvedObject.fieldPath" | "regarding.fieldPath" => object_field("fieldPath"),
            "reason" => Some(selector_value(obj.get("reason"), "")),
            "type" => Some(selector_value(obj.get("type"), "")),
            "reportingComponent" | "reportingController" => Some(selector_value(
                first(obj, &["/reportingComponent", "/reportingController"]),
                "",
            )),
            "source" | "deprecatedSource.component" => Some(selector_value(
                first(obj, &["/source/component", "/deprecatedSource/component"]),
                "",
            )),
            _ => None,
        }
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::tests_support::messages;

    #[test]
    fn field_selectors_for_both_shapes() {
        let core = json!({"metadata": {"namespace": "default"}, "reason": "Scheduled", "type": "Normal",
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"},
            "source": {"component": "default-scheduler"}});
        let s = &EventStrategy;
        assert_eq!(
            s.field_value(&core, "involvedObject.name").as_deref(),
            Some("web")
        );
        assert_eq!(
            s.field_value(&core, "involvedObject.uid").as_deref(),
            Some("u1")
        );
        assert_eq!(
            s.field_value(&core, "involvedObject.fieldPath").as_deref(),
            Some("")
        );
        assert_eq!(
            s.field_value(&core, "source").as_deref(),
            Some("default-scheduler")
        );
        assert_eq!(s.field_value(&core, "reason").as_deref(), Some("Scheduled"));
        assert_eq!(s.field_value(&core, "message"), None);
        let v1 = json!({"regarding": {"kind": "Node", "name": "n1"}, "reportingController": "kubelet", "type": "Normal"});
        assert_eq!(
            s.field_value(&v1, "involvedObject.kind").as_deref(),
            Some("Node")
        );
        assert_eq!(
            s.field_value(&v1, "reportingComponent").as_deref(),
            Some("kubelet")
        );
        assert!(s.validate(&v1).is_empty());
    }

    #[test]
    fn namespace_must_match() {
        let e = json!({"metadata": {"namespace": "a"}, "involvedObject": {"namespace": "b"}});
        assert_eq!(
            messages(&EventStrategy.validate(&e)),
            vec!["involvedObject.namespace: Invalid value: \"b\": does not match event.namespace"]
        );
    }
}
