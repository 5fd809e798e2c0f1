//! Create: defaults, server-set metadata, validation, then a store create that fails when
//! the key exists. `generateName` retries with a new suffix on a clash.

use rand::Rng;
use serde_json::{json, Value};
use store::StoreError;
use tracing::debug;

use super::{meta, ObjectRef, Registry, WriteOptions};
use crate::patch;
use crate::status::ApiError;
use api::ResourceInfo;

/// Kubernetes' alphabet for generated names: no vowels (no words), no look-alikes.
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const GENERATE_ATTEMPTS: usize = 8;

fn random_suffix() -> String {
    let mut rng = rand::rng();
    (0..5)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect()
}

impl Registry {
    /// Creates `obj` (already checked against the URL) in `namespace`.
    pub async fn create(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if info.namespaced {
            let ns = namespace.ok_or_else(|| {
                ApiError::bad_request("the namespace of the object must be given")
            })?;
            meta::metadata_mut(&mut obj).insert("namespace".into(), json!(ns));
            self.check_namespace_accepts(ns).await?;
        } else {
            meta::metadata_mut(&mut obj).remove("namespace");
        }
        if info.group.is_empty() && info.plural == "persistentvolumeclaims" {
            self.admit_default_storage_class(&mut obj).await?;
        }
        let generate = meta::name(&obj).is_none();
        let base = meta::str_at(&obj, "/metadata/generateName").map(str::to_string);
        if generate && base.as_deref().is_none_or(str::is_empty) {
            let kind = info.kind;
            return Err(ApiError::invalid(
                info.group,
                kind,
                "",
                &[api::FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        for attempt in 0..GENERATE_ATTEMPTS {
            let mut candidate = obj.clone();
            if generate {
                let name = format!("{}{}", base.as_deref().unwrap_or_default(), random_suffix());
                meta::metadata_mut(&mut candidate).insert("name".into(), json!(name));
            }
            match self.create_once(info, namespace, candidate, opts).await {
                Err(e) if generate && e.reason == "AlreadyExists" => {
                    debug!(attempt, "generated name clashed; retrying");
                }
                other => return other,
            }
        }
        Err(ApiError::new(
            504,
            "AlreadyExists",
            "could not generate a unique name; try again",
        ))
    }

    async fn create_once(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let name = meta::name(&obj).unwrap_or_default().to_string();
        let r = ObjectRef::new(info, namespace, &name);
        let strategy = r.strategy();
        // The uid comes first: strategies derive from it (a Job's generated selector).
        stamp_new_metadata(&mut obj);
        strategy.default(&mut obj);
        strategy.prepare_for_create(&mut obj);
        if info.group.is_empty() && info.plural == "namespaces" {
            prepare_namespace(&mut obj);
        }
        patch::record_update(None, &mut obj, &opts.field_manager, None);
        let mut errors = api::validation::validate_object_meta(&obj, info.namespaced);
        errors.extend(strategy.validate(&obj));
        if !errors.is_empty() {
            return Err(ApiError::invalid(info.group, info.kind, &name, &errors));
        }
        let charges = match namespace.filter(|_| info.namespaced) {
            Some(ns) => Some(self.admit_quota(info, ns, &obj, opts.dry_run).await?),
            None => None,
        };
        if opts.dry_run {
            if is_service(info) {
                self.preview_service_allocation(&mut obj)?;
            }
            return Ok(obj);
        }
        let written = self.write_new(r, &mut obj).await;
        if let Some(charges) = charges {
            self.finish_charges(charges, written.is_ok()).await;
        }
        written
    }

    async fn write_new(&self, r: ObjectRef<'_>, obj: &mut Value) -> Result<Value, ApiError> {
        let key = r.key();
        let kv = if is_service(r.info) {
            self.create_service(&key, obj, r).await?
        } else {
            let bytes = meta::encode_for_store(obj)?;
            self.store.create(&key, bytes).await.map_err(|e| match e {
                StoreError::AlreadyExists { .. } => ApiError::already_exists(r.target()),
                other => ApiError::from_store(other, r.target()),
            })?
        };
        meta::decode_kv(&kv)
    }

    /// A namespaced object may only be created in a namespace that exists and is not
    /// being deleted.
    pub(crate) async fn check_namespace_accepts(&self, ns: &str) -> Result<(), ApiError> {
        let key = format!("/registry/namespaces/{ns}");
        let target = crate::status::Target {
            group: "",
            resource: "namespaces",
            name: ns,
        };
        let (obj, _) = self.read_current(&key, target).await?;
        if meta::deletion_timestamp(&obj).is_some()
            || meta::str_at(&obj, "/status/phase") == Some("Terminating")
        {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ))
            .with_details(crate::status::Details {
                causes: vec![crate::status::Cause {
                    reason: "NamespaceTerminating".into(),
                    message: format!("namespace {ns} is being terminated"),
                    field: Some("metadata.namespace".into()),
                }],
                ..Default::default()
            }));
        }
        Ok(())
    }
}

pub(super) fn is_service(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.plural == "services"
}

/// Fields the server owns on a new object.
fn stamp_new_metadata(obj: &mut Value) {
    let m = meta::metadata_mut(obj);
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
    m.insert("generation".into(), json!(1));
    for k in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        m.remove(k);
    }
}

/// A new namespace is Active and carries the `kubernetes` finalizer the namespace
/// controller removes once the namespace is empty.
fn prepare_namespace(obj: &mut Value) {
    obj["status"] = json!({"phase": "Active"});
    let spec = obj
        .as_object_mut()
        .map(|o| o.entry("spec").or_insert_with(|| json!({})));
    if let Some(spec) = spec {
        if !spec.is_object() {
            *spec = json!({});
        }
        let has = spec
            .get("finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == "kubernetes"));
        if !has {
            let mut list: Vec<Value> = spec
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            list.push(json!("kubernetes"));
            spec["finalizers"] = Value::Array(list);
        }
    }
    let name = meta::name(obj).unwrap_or_default().to_string();
    let m = meta::metadata_mut(obj);
    let labels = m.entry("labels").or_insert_with(|| json!({}));
    if let Some(l) = labels.as_object_mut() {
        l.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_use_the_kubernetes_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| SUFFIX_ALPHABET.contains(&b)));
    }

    #[test]
    fn namespaces_get_the_kubernetes_finalizer() {
        let mut ns = json!({"metadata": {"name": "x"}});
        prepare_namespace(&mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "x");
    }
}
