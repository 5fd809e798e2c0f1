//! DefaultStorageClass admission: a PersistentVolumeClaim created without
//! `spec.storageClassName` (absent, not "": "" asks for no class) gets the cluster's default
//! StorageClass, the one annotated `storageclass.kubernetes.io/is-default-class: "true"`;
//! with several defaults, the newest wins (ties: the name first in order), as upstream.

use serde_json::{json, Value};

use super::{ListParams, Registry};
use crate::status::ApiError;

pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The class annotation that predates `spec.storageClassName`; a claim carrying it has
/// chosen its class.
const ANN_BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// Whether admission should fill the claim's class.
pub fn wants_default(pvc: &Value) -> bool {
    let has_beta = pvc
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(ANN_BETA_CLASS));
    let set = pvc
        .pointer("/spec/storageClassName")
        .is_some_and(|v| !v.is_null());
    !set && !has_beta
}

/// The default class's name among `classes`, if any class is marked default.
pub fn default_class<'a>(classes: impl IntoIterator<Item = &'a Value>) -> Option<String> {
    classes
        .into_iter()
        .filter(|c| {
            c.pointer("/metadata/annotations")
                .and_then(|a| a.get(ANN_DEFAULT_CLASS))
                .and_then(Value::as_str)
                == Some("true")
        })
        .filter_map(|c| {
            let name = c.pointer("/metadata/name")?.as_str()?;
            // RFC 3339 in UTC ("Z") sorts as text in time order.
            let created = c
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or("");
            Some((created, name))
        })
        .max_by(|a, b| a.0.cmp(b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, name)| name.to_string())
}

impl Registry {
    /// Fills a new claim's storageClassName with the default class, if there is one.
    pub(super) async fn admit_default_storage_class(
        &self,
        pvc: &mut Value,
    ) -> Result<(), ApiError> {
        if !wants_default(pvc) {
            return Ok(());
        }
        let Some(info) = self.info("storage.k8s.io", "StorageClass") else {
            return Ok(());
        };
        let classes = self.list(info, None, &ListParams::default()).await?;
        let classes: Vec<Value> = classes.items.iter().map(|c| c.value()).collect();
        let Some(name) = default_class(classes.iter()) else {
            return Ok(());
        };
        if let Some(spec) = pvc
            .as_object_mut()
            .map(|o| o.entry("spec").or_insert_with(|| json!({})))
        {
            if let Some(spec) = spec.as_object_mut() {
                spec.insert("storageClassName".into(), json!(name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, created: &str, default: Option<&str>) -> Value {
        let mut c = json!({"metadata": {"name": name, "creationTimestamp": created}});
        if let Some(d) = default {
            c["metadata"]["annotations"] = json!({ANN_DEFAULT_CLASS: d});
        }
        c
    }

    #[test]
    fn only_an_absent_class_is_defaulted() {
        assert!(wants_default(&json!({"spec": {}})));
        assert!(wants_default(&json!({"spec": {"storageClassName": null}})));
        assert!(!wants_default(&json!({"spec": {"storageClassName": ""}})));
        assert!(!wants_default(
            &json!({"spec": {"storageClassName": "fast"}})
        ));
        assert!(!wants_default(&json!({
            "metadata": {"annotations": {ANN_BETA_CLASS: "slow"}},
            "spec": {}
        })));
    }

    #[test]
    fn the_newest_default_class_wins() {
        let classes = [
            class("old", "2026-01-01T00:00:00Z", Some("true")),
            class("new", "2026-06-01T00:00:00Z", Some("true")),
            class("newest-not-default", "2026-09-01T00:00:00Z", Some("false")),
            class("plain", "2026-10-01T00:00:00Z", None),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("new"));
        assert_eq!(default_class(&classes[2..]), None);
        let tie = [
            class("b", "2026-01-01T00:00:00Z", Some("true")),
            class("a", "2026-01-01T00:00:00Z", Some("true")),
        ];
        assert_eq!(default_class(&tie).as_deref(), Some("a"));
    }
}
