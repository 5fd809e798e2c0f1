//! Update: `guaranteed_update`, the compare-and-swap loop every read-modify-write goes
//! through (PUT, PATCH, status and scale writes, deletion marks), and the rules that keep
//! server-owned fields, `status` and `generation` right.

use serde_json::{json, Value};
use store::StoreError;
use tracing::debug;

use super::{create::is_service, meta, ObjectRef, Registry, WriteOptions};
use crate::patch;
use crate::status::ApiError;

/// How many lost races an update retries before giving up with 409.
const MAX_ATTEMPTS: usize = 32;

/// Which part of the object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// The main resource: everything but `status` (for kinds with a status subresource).
    Main,
    /// The `status` subresource: only `status`.
    Status,
}

/// What an update step decided for the object it was given.
#[derive(Debug)]
pub enum Transition {
    Write(Value),
    /// Nothing changed: no write, no new resourceVersion.
    Unchanged(Value),
    /// The last finalizer of a deleting object is gone: remove it.
    Delete(Value),
}

/// Conditions the stored object must meet (DeleteOptions.preconditions, and the
/// resourceVersion of an update body).
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl Preconditions {
    pub fn check(&self, old: &Value, r: ObjectRef<'_>) -> Result<(), ApiError> {
        if let Some(uid) = &self.uid {
            let actual = meta::uid(old).unwrap_or_default();
            if actual != uid {
                return Err(ApiError::conflict_with(
                    r.target(),
                    &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                ));
            }
        }
        if let Some(rv) = &self.resource_version {
            if meta::resource_version(old) != Some(rv.as_str()) {
                return Err(ApiError::conflict(r.target()));
            }
        }
        Ok(())
    }
}

impl Registry {
    /// Writes `obj` over the stored revision `expected` (compare-and-swap) and returns it as
    /// stored, with its new resourceVersion.
    ///
    /// The object written is the object returned: re-decoding the stored bytes would only
    /// parse back what was just serialised (a third of a binding's server-side CPU went to
    /// JSON), so the value is kept and given the write's revision.
    pub(super) async fn write_at(
        &self,
        key: &str,
        expected: store::Revision,
        mut obj: Value,
    ) -> Result<Result<Value, StoreError>, ApiError> {
        let bytes = meta::encode_for_store_in_place(&mut obj)?;
        Ok(self.store.update(key, bytes, expected).await.map(|kv| {
            meta::set_resource_version(&mut obj, kv.mod_revision);
            obj
        }))
    }

    /// Removes the object stored at revision `expected`; returns it with the revision of
    /// the delete as its resourceVersion.
    pub(super) async fn delete_at(
        &self,
        key: &str,
        expected: store::Revision,
        mut obj: Value,
    ) -> Result<Value, StoreError> {
        self.store
            .delete(key, Some(expected))
            .await
            .map(|(_, rev)| {
                meta::set_resource_version(&mut obj, rev);
                obj
            })
    }

    /// Reads the object, lets `try_update` decide, and writes with compare-and-swap,
    /// retrying from a fresh read when another writer got there first.
    pub async fn guaranteed_update(
        &self,
        r: ObjectRef<'_>,
        preconditions: &Preconditions,
        dry_run: bool,
        try_update: impl FnMut(Value) -> Result<Transition, ApiError>,
    ) -> Result<Value, ApiError> {
        self.guaranteed_update_from(r, preconditions, dry_run, None, try_update)
            .await
    }

    /// [`Self::guaranteed_update`] whose first attempt starts from `suggestion`, the object
    /// as a cache last saw it (with its resourceVersion), instead of reading and parsing
    /// the store's copy; as upstream's GuaranteedUpdate does with the watch cache's object.
    /// The compare-and-swap on the suggestion's resourceVersion makes a stale copy lose the
    /// race harmlessly; and since a stale copy must not decide the answer either, anything
    /// but a write from it (a failed precondition, a refusal, no change, a dry run) is done
    /// again from the store.
    pub async fn guaranteed_update_from(
        &self,
        r: ObjectRef<'_>,
        preconditions: &Preconditions,
        dry_run: bool,
        suggestion: Option<Value>,
        mut try_update: impl FnMut(Value) -> Result<Transition, ApiError>,
    ) -> Result<Value, ApiError> {
        let key = r.key();
        let mut suggestion = suggestion.and_then(|v| {
            let rev = meta::resource_version(&v)?
                .parse::<store::Revision>()
                .ok()?;
            Some((v, rev))
        });
        for attempt in 0..MAX_ATTEMPTS {
            let (old, revision, current) = match suggestion.take() {
                Some((v, rev)) => (v, rev, false),
                None => {
                    let (old, revision) = self.read_current(&key, r.target()).await?;
                    (old, revision, true)
                }
            };
            let decided = preconditions.check(&old, r).and_then(|()| try_update(old));
            let writes = matches!(decided, Ok(Transition::Write(_) | Transition::Delete(_)));
            if !current && (dry_run || !writes) {
                continue;
            }
            let transition = decided?;
            let removed = matches!(transition, Transition::Delete(_));
            let result = match transition {
                Transition::Unchanged(v) => return Ok(v),
                Transition::Write(v) if dry_run => return Ok(v),
                Transition::Delete(v) if dry_run => return Ok(v),
                Transition::Write(v) => self.write_at(&key, revision, v).await?,
                Transition::Delete(v) => self.delete_at(&key, revision, v).await,
            };
            match result {
                Ok(v) => {
                    if removed && is_service(r.info) {
                        self.release_service(&v).await;
                    }
                    return Ok(v);
                }
                Err(StoreError::Conflict { .. }) => {
                    debug!(%key, attempt, "update lost a race; retrying");
                }
                Err(e) => return Err(ApiError::from_store(e, r.target())),
            }
        }
        Err(ApiError::conflict(r.target()))
    }

    /// PUT and PATCH: `produce` turns the stored object (None when missing) into the
    /// client's desired object; the registry then keeps what the client may not change.
    /// A missing object is created when `create_if_missing` (PUT of kinds that allow it,
    /// server-side apply). Returns the object and whether it was created.
    pub async fn update_object(
        &self,
        r: ObjectRef<'_>,
        mode: UpdateMode,
        opts: &WriteOptions,
        preconditions: &Preconditions,
        create_if_missing: bool,
        mut produce: impl FnMut(Option<&Value>) -> Result<Value, ApiError>,
    ) -> Result<(Value, bool), ApiError> {
        for _ in 0..2 {
            let (kv, _) = self
                .store
                .get(&r.key(), None)
                .await
                .map_err(|e| ApiError::from_store(e, r.target()))?;
            if kv.is_none() {
                if mode == UpdateMode::Main && create_if_missing {
                    let obj = produce(None)?;
                    match self.create(r.info, r.namespace, obj, opts).await {
                        Err(e) if e.reason == "AlreadyExists" => continue,
                        other => return other.map(|o| (o, true)),
                    }
                }
                return Err(ApiError::not_found(r.target()));
            }
            let manager = opts.field_manager.clone();
            let obj = self
                .guaranteed_update(r, preconditions, opts.dry_run, |old| {
                    let desired = produce(Some(&old))?;
                    prepare_update(r, mode, old, desired, &manager)
                })
                .await?;
            return Ok((obj, false));
        }
        Err(ApiError::conflict(r.target()))
    }
}

/// The update rules shared by every kind; the strategy adds its own.
pub fn prepare_update(
    r: ObjectRef<'_>,
    mode: UpdateMode,
    old: Value,
    desired: Value,
    manager: &str,
) -> Result<Transition, ApiError> {
    let strategy = r.strategy();
    let mut new = match mode {
        UpdateMode::Main => {
            let mut new = desired;
            keep_server_metadata(&old, &mut new);
            if r.info.subresource("status").is_some() {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            if is_service(r.info) {
                keep_service_allocations(&old, &mut new);
            }
            strategy.default(&mut new);
            strategy.prepare_for_update(&mut new, &old);
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let generation = if meta::spec_changed(&old, &new) {
                generation + 1
            } else {
                generation
            };
            meta::metadata_mut(&mut new).insert("generation".into(), json!(generation));
            new
        }
        UpdateMode::Status => {
            let mut new = old.clone();
            match desired.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            new
        }
    };
    if without_volatile(&new) == without_volatile(&old) {
        return Ok(Transition::Unchanged(old));
    }
    let sub = (mode == UpdateMode::Status).then_some("status");
    patch::record_update(Some(&old), &mut new, manager, sub);
    let mut errors = api::validation::validate_object_meta(&new, r.info.namespaced);
    errors.extend(strategy.validate(&new));
    errors.extend(strategy.validate_update(&new, &old));
    if !errors.is_empty() {
        return Err(ApiError::invalid(
            r.info.group,
            r.info.kind,
            r.name,
            &errors,
        ));
    }
    let grace = new
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if meta::deletion_timestamp(&new).is_some() && meta::finalizers(&new).is_empty() && grace == 0 {
        return Ok(Transition::Delete(new));
    }
    Ok(Transition::Write(new))
}

/// The object without what changes on every write (resourceVersion, managedFields), for
/// spotting no-op updates.
fn without_volatile(v: &Value) -> Value {
    let mut v = v.clone();
    let m = meta::metadata_mut(&mut v);
    m.remove("resourceVersion");
    m.remove("managedFields");
    v
}

/// Server-owned metadata survives whatever the client sent.
fn keep_server_metadata(old: &Value, new: &mut Value) {
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let m = meta::metadata_mut(new);
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match old_meta.get(k) {
            Some(v) => {
                m.insert(k.into(), v.clone());
            }
            None => {
                m.remove(k);
            }
        }
    }
    // A deleting object may lose finalizers but not gain new ones (as Kubernetes).
    if old_meta.get("deletionTimestamp").is_some() {
        let old_f: Vec<Value> = old_meta
            .get("finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Array(f)) = m.get_mut("finalizers") {
            f.retain(|x| old_f.contains(x));
        }
    }
}

/// A service keeps the clusterIP and nodePorts it was given unless the client sets them.
fn keep_service_allocations(old: &Value, new: &mut Value) {
    for field in ["clusterIP", "clusterIPs"] {
        if new.pointer(&format!("/spec/{field}")).is_none() {
            if let (Some(v), Some(spec)) = (
                old.pointer(&format!("/spec/{field}")).cloned(),
                new.get_mut("spec").and_then(Value::as_object_mut),
            ) {
                spec.insert(field.into(), v);
            }
        }
    }
    let old_ports = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned();
    if let (Some(old_ports), Some(Value::Array(ports))) =
        (old_ports, new.pointer_mut("/spec/ports"))
    {
        for p in ports.iter_mut() {
            if p.get("nodePort").is_some() {
                continue;
            }
            let same = old_ports.iter().find(|o| {
                o.get("port") == p.get("port")
                    && o.get("protocol").unwrap_or(&json!("TCP"))
                        == p.get("protocol").unwrap_or(&json!("TCP"))
            });
            if let (Some(np), Some(obj)) = (same.and_then(|o| o.get("nodePort")), p.as_object_mut())
            {
                obj.insert("nodePort".into(), np.clone());
            }
        }
    }
}
