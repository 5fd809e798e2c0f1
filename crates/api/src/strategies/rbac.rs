//! rbac.authorization.k8s.io/v1: Roles and ClusterRoles (rule shapes) and their bindings
//! (roleRef fixed after creation, subject kinds and groups). All four may be created by
//! PUT, as Kubernetes allows for bootstrap reconciliation.

use serde_json::{json, Value};

use super::json::{array_of, child_mut, default_field, each_mut, str_of, str_or_empty};
use crate::field_error::FieldError;
use crate::strategy::Strategy;
use crate::validation::not_supported;

pub struct RoleStrategy {
    pub namespaced: bool,
}
pub struct RoleBindingStrategy {
    pub namespaced: bool,
}

pub const GROUP: &str = "rbac.authorization.k8s.io";

impl Strategy for RoleStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (i, rule) in array_of(obj, "rules").iter().enumerate() {
            let p = format!("rules[{i}]");
            if array_of(rule, "verbs").is_empty() {
                errs.push(FieldError::required(
                    format!("{p}.verbs"),
                    "verbs must contain at least one value",
                ));
            }
            let urls = array_of(rule, "nonResourceURLs");
            if !urls.is_empty() {
                if self.namespaced {
                    errs.push(FieldError::invalid(
                        format!("{p}.nonResourceURLs"),
                        json!(urls),
                        "namespaced rules cannot apply to non-resource URLs",
                    ));
                }
                if !array_of(rule, "apiGroups").is_empty()
                    || !array_of(rule, "resources").is_empty()
                {
                    errs.push(FieldError::invalid(
                        format!("{p}.nonResourceURLs"),
                        json!(urls),
                        "rules cannot apply to both regular resources and non-resource URLs",
                    ));
                }
                continue;
            }
            if array_of(rule, "apiGroups").is_empty() {
                errs.push(FieldError::required(
                    format!("{p}.apiGroups"),
                    "resource rules must supply at least one api group",
                ));
            }
            if array_of(rule, "resources").is_empty() {
                errs.push(FieldError::required(
                    format!("{p}.resources"),
                    "resource rules must supply at least one resource",
                ));
            }
        }
        errs
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }
}

impl Strategy for RoleBindingStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(role_ref) = child_mut(obj, "roleRef") {
            if str_or_empty(role_ref, "apiGroup").is_empty() {
                if let Some(map) = role_ref.as_object_mut() {
                    map.insert("apiGroup".into(), json!(GROUP));
                }
            }
        }
        each_mut(obj, "subjects", |s| {
            let group = if str_of(s, "kind") == Some("ServiceAccount") {
                ""
            } else {
                GROUP
            };
            default_field(s, "apiGroup", json!(group));
        });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let role_ref = obj.get("roleRef").unwrap_or(&Value::Null);
        let kinds: &[&str] = if self.namespaced {
            &["Role", "ClusterRole"]
        } else {
            &["ClusterRole"]
        };
        let kind = str_or_empty(role_ref, "kind");
        if !kinds.contains(&kind) {
            errs.push(not_supported("roleRef.kind", json!(kind), kinds));
        }
        let group = str_or_empty(role_ref, "apiGroup");
        if group != GROUP {
            errs.push(not_supported("roleRef.apiGroup", json!(group), &[GROUP]));
        }
        if str_or_empty(role_ref, "name").is_empty() {
            errs.push(FieldError::required("roleRef.name", ""));
        }
        for (i, s) in array_of(obj, "subjects").iter().enumerate() {
            let p = format!("subjects[{i}]");
            if str_or_empty(s, "name").is_empty() {
                errs.push(FieldError::required(format!("{p}.name"), ""));
            }
            let group = str_or_empty(s, "apiGroup");
            match str_or_empty(s, "kind") {
                "ServiceAccount" => {
                    if !group.is_empty() {
                        errs.push(not_supported(format!("{p}.apiGroup"), json!(group), &[""]));
                    }
                    if !self.namespaced && str_or_empty(s, "namespace").is_empty() {
                        errs.push(FieldError::required(format!("{p}.namespace"), ""));
                    }
                }
                "User" | "Group" => {
                    if group != GROUP {
                        errs.push(not_supported(
                            format!("{p}.apiGroup"),
                            json!(group),
                            &[GROUP],
                        ));
                    }
                }
                other => errs.push(not_supported(
                    format!("{p}.kind"),
                    json!(other),
                    &["ServiceAccount", "User", "Group"],
                )),
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        if new.get("roleRef") == old.get("roleRef") {
            return Vec::new();
        }
        vec![FieldError::invalid(
            "roleRef",
            new.get("roleRef").cloned().unwrap_or(Value::Null),
            "cannot change roleRef",
        )]
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
    fn role_rules() {
        let role = json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
            {"verbs": [], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        let s = RoleStrategy { namespaced: true };
        assert_eq!(messages(&s.validate(&role)), vec![
            "rules[1].verbs: Required value: verbs must contain at least one value",
            "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
            "rules[2].nonResourceURLs: Invalid value: [\"/healthz\"]: namespaced rules cannot apply to non-resource URLs",
        ]);
        assert!(RoleStrategy { namespaced: false }
            .validate(&json!({"rules": [role["rules"][2]]}))
            .is_empty());
    }

    #[test]
    fn bindings() {
        let s = RoleBindingStrategy { namespaced: false };
        let mut b = json!({"roleRef": {"kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa"}]});
        s.default(&mut b);
        assert_eq!(b["roleRef"]["apiGroup"], json!(GROUP));
        assert_eq!(b["subjects"][0]["apiGroup"], json!(GROUP));
        assert_eq!(b["subjects"][1]["apiGroup"], json!(""));
        assert_eq!(
            messages(&s.validate(&b)),
            vec!["subjects[1].namespace: Required value"]
        );
        let mut changed = b.clone();
        changed["roleRef"]["name"] = json!("view");
        assert_eq!(s.validate_update(&changed, &b).len(), 1);
    }
}
