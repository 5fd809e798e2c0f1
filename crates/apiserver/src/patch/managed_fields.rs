//! managedFields: which manager owns which fields of an object, recorded on every write.
//!
//! An Update (create, update, or a JSON/merge/strategic patch) gives its manager the fields it
//! changed and takes them from every other manager; an Apply gives its manager exactly the
//! fields of the applied configuration (see [`super::apply`]). Field sets are computed with the
//! list types of [`api::patchmeta`] (`k:` items for keyed lists, `v:` for sets, the whole list
//! for atomic ones).

use serde_json::{json, Map, Value};

use super::fieldpath::{lookup, FieldSet, Path, PathElement};
use super::schema::{Cursor, Field, Schema};
use super::Operation;
use api::patchmeta::ListType;

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) manager: String,
    pub(crate) operation: String,
    pub(crate) api_version: String,
    pub(crate) time: Option<String>,
    pub(crate) subresource: String,
    pub(crate) fields: FieldSet,
}

impl Entry {
    pub(crate) fn new(
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: &str,
    ) -> Self {
        Self {
            manager: manager.to_string(),
            operation: operation.as_str().to_string(),
            api_version: api_version.to_string(),
            time: None,
            subresource: subresource.to_string(),
            fields: FieldSet::new(),
        }
    }

    /// Whether two entries are the same manager in Kubernetes' sense: name, operation and
    /// subresource, and for updates also the API version written with.
    pub(crate) fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == "Apply" || self.api_version == other.api_version)
    }

    /// The manager as conflict messages name it: `"kubectl" using apps/v1`.
    pub(crate) fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn from_json(v: &Value) -> Option<Entry> {
        let o = v.as_object()?;
        let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        let fields = match o.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f)?,
            None => FieldSet::new(),
        };
        Some(Entry {
            manager: s("manager").unwrap_or_default(),
            operation: s("operation").unwrap_or_default(),
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource").unwrap_or_default(),
            fields,
        })
    }

    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("manager".into(), json!(self.manager));
        o.insert("operation".into(), json!(self.operation));
        o.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            o.insert("time".into(), json!(t));
        }
        o.insert("fieldsType".into(), json!("FieldsV1"));
        o.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            o.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(o)
    }
}

/// The entries of `obj.metadata.managedFields`; None when they are malformed.
pub(crate) fn read(obj: &Value) -> Option<Vec<Entry>> {
    match obj.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(Entry::from_json).collect(),
        Some(_) => None,
    }
}

/// Writes `entries` (dropping empty ones) into `obj.metadata.managedFields`.
pub(crate) fn write(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_json)
        .collect();
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    let meta = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Now, as managedFields timestamps are written (RFC 3339, seconds).
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Fields no manager owns: identity and server-maintained metadata.
pub(crate) fn is_unowned(path: &[PathElement]) -> bool {
    const META: &[&str] = &[
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "generation",
        "managedFields",
        "resourceVersion",
    ];
    match path {
        [PathElement::Field(f)] => f == "apiVersion" || f == "kind",
        [PathElement::Field(m), PathElement::Field(f), ..] if m == "metadata" => {
            META.contains(&f.as_str())
        }
        _ => false,
    }
}

/// The set of fields `obj` sets (structured-merge-diff's ToFieldSet): scalars, atomic values,
/// keyed list items (with `.`) and their fields, set members.
pub(crate) fn fields_of(obj: &Value, schema: &Schema) -> FieldSet {
    let mut out = FieldSet::new();
    let mut path = Vec::new();
    if let Value::Object(m) = obj {
        walk_object(m, schema.cursor(), &mut path, &mut out);
    }
    out
}

fn walk_object(m: &Map<String, Value>, cur: Cursor<'_>, path: &mut Path, out: &mut FieldSet) {
    for (k, v) in m {
        path.push(PathElement::Field(k.clone()));
        if !is_unowned(path) {
            walk_value(v, &cur.field(k), path, out);
        }
        path.pop();
    }
}

fn walk_value(v: &Value, field: &Field, path: &mut Path, out: &mut FieldSet) {
    match v {
        Value::Null => {}
        Value::Object(m) if !m.is_empty() && !field.atomic_struct() => {
            walk_object(m, field.child(), path, out)
        }
        Value::Array(items) => match field.list_type() {
            ListType::Atomic => out.insert(path),
            ListType::Set => {
                for item in items {
                    path.push(PathElement::value_of(item));
                    out.insert(path);
                    path.pop();
                }
            }
            ListType::Map(keys) => {
                for item in items {
                    path.push(PathElement::key_of(item, keys));
                    out.insert(path);
                    if let Value::Object(m) = item {
                        walk_object(m, field.child(), path, out);
                    }
                    path.pop();
                }
            }
        },
        // The metadata object itself belongs to nobody, even when empty.
        _ if path.len() == 1 && path[0] == PathElement::Field("metadata".into()) => {}
        _ => out.insert(path),
    }
}

/// The fields of `new` that differ from `old` (added or changed).
pub(crate) fn changed_fields(old: Option<&Value>, new: &Value, schema: &Schema) -> FieldSet {
    let Some(old) = old else {
        return fields_of(new, schema);
    };
    let mut out = FieldSet::new();
    let mut path = Vec::new();
    if let (Value::Object(o), Value::Object(n)) = (old, new) {
        diff_object(o, n, schema.cursor(), &mut path, &mut out);
    }
    out
}

fn diff_object(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    cur: Cursor<'_>,
    path: &mut Path,
    out: &mut FieldSet,
) {
    for (k, nv) in new {
        path.push(PathElement::Field(k.clone()));
        if !is_unowned(path) {
            let field = cur.field(k);
            match old.get(k) {
                Some(ov) if ov == nv => {}
                Some(ov) => diff_value(ov, nv, &field, path, out),
                None => walk_value(nv, &field, path, out),
            }
        }
        path.pop();
    }
}

fn diff_value(old: &Value, new: &Value, field: &Field, path: &mut Path, out: &mut FieldSet) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) if !n.is_empty() && !field.atomic_struct() => {
            diff_object(o, n, field.child(), path, out)
        }
        (Value::Array(o), Value::Array(n)) => match field.list_type() {
            ListType::Atomic => out.insert(path),
            ListType::Set => {
                for item in n.iter().filter(|i| !o.contains(i)) {
                    path.push(PathElement::value_of(item));
                    out.insert(path);
                    path.pop();
                }
            }
            ListType::Map(keys) => {
                for item in n {
                    let pe = PathElement::key_of(item, keys);
                    let before = o.iter().find(|i| PathElement::key_of(i, keys) == pe);
                    path.push(pe);
                    match (before, item) {
                        (Some(b), _) if b == item => {}
                        (Some(Value::Object(b)), Value::Object(m)) => {
                            diff_object(b, m, field.child(), path, out)
                        }
                        _ => {
                            out.insert(path);
                            if let Value::Object(m) = item {
                                walk_object(m, field.child(), path, out);
                            }
                        }
                    }
                    path.pop();
                }
            }
        },
        _ => walk_value(new, field, path, out),
    }
}

/// Records in `new.metadata.managedFields` the fields `manager` changed from `old` to
/// `new` by a create, update or non-apply patch: they join the manager's Update entry and
/// leave every other entry. Fields that no longer exist leave every entry. A request that
/// sets managedFields itself (kubectl's migration to server-side apply does) keeps them.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
) {
    let old_entries = old.and_then(read).unwrap_or_default();
    let requested = new.pointer("/metadata/managedFields").cloned();
    let old_raw = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .cloned();
    if requested.is_some() && requested != old_raw {
        match read(new) {
            // An explicitly emptied list resets ownership, as in Kubernetes.
            Some(entries) => {
                let mut entries = entries;
                prune(&mut entries, new);
                write(new, &entries);
            }
            None => {
                tracing::debug!(manager, "ignoring malformed managedFields in the request");
                write(new, &old_entries);
            }
        }
        return;
    }
    let schema = Schema::for_object(new);
    let changed = changed_fields(old, new, &schema);
    let mut entries = old_entries;
    let api_version = new
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let me = Entry::new(
        manager,
        Operation::Update,
        &api_version,
        subresource.unwrap_or(""),
    );
    // A server-side apply has already recorded its ownership; the registry's bookkeeping
    // after it must not give the same changes to an Update entry of the applier too.
    let mut applied_by_me = FieldSet::new();
    for e in entries.iter().filter(|e| {
        e.manager == manager && e.operation == "Apply" && e.subresource == me.subresource
    }) {
        applied_by_me.union(&e.fields);
    }
    let mut not_applied = changed.clone();
    not_applied.difference(&applied_by_me);
    if !changed.is_empty() && not_applied.is_empty() {
        return;
    }
    let before = entries.clone();
    for e in entries.iter_mut().filter(|e| !e.same_manager(&me)) {
        e.fields.difference(&changed);
    }
    if !manager.is_empty() && !changed.is_empty() {
        match entries.iter_mut().find(|e| e.same_manager(&me)) {
            Some(e) => e.fields.union(&changed),
            None => entries.push(Entry {
                fields: changed,
                ..me.clone()
            }),
        }
    }
    prune(&mut entries, new);
    stamp_changed(&mut entries, &before);
    cap_update_managers(&mut entries);
    write(new, &entries);
}

/// Kubernetes keeps at most this many Update entries; older ones fold into one.
const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";

/// Folds the oldest Update entries into an `ancient-changes` entry so that an object written
/// by many managers (every controller, every `kubectl edit`) keeps managedFields bounded.
fn cap_update_managers(entries: &mut Vec<Entry>) {
    let is_update = |e: &Entry| e.operation == "Update";
    if entries.iter().filter(|e| is_update(e)).count() <= MAX_UPDATE_MANAGERS {
        return;
    }
    let (mut updates, mut kept): (Vec<Entry>, Vec<Entry>) =
        entries.drain(..).partition(|e| is_update(e));
    let mut ancient = match updates.iter().position(|e| e.manager == ANCIENT_CHANGES) {
        Some(i) => updates.remove(i),
        None => Entry::new(ANCIENT_CHANGES, Operation::Update, "", ""),
    };
    // Newest first. RFC 3339 UTC timestamps of one format sort as strings, entries without
    // one are oldest, and within one second a later entry in the list is the newer one.
    updates.reverse();
    updates.sort_by(|a, b| b.time.cmp(&a.time));
    for old in updates.split_off(MAX_UPDATE_MANAGERS - 1) {
        ancient.fields.union(&old.fields);
        ancient.time = ancient.time.max(old.time);
    }
    kept.extend(updates);
    kept.push(ancient);
    *entries = kept;
}

/// Drops fields that no longer exist in `obj` from every entry, and empty entries.
pub(crate) fn prune(entries: &mut Vec<Entry>, obj: &Value) {
    for e in entries.iter_mut() {
        e.fields = e.fields.filter(|p| lookup(obj, p).is_some());
    }
    entries.retain(|e| !e.fields.is_empty());
}

/// Gives entries whose field sets changed the current time; unchanged ones keep theirs, so a
/// write that changes no ownership leaves managedFields byte-identical.
pub(crate) fn stamp_changed(entries: &mut [Entry], before: &[Entry]) {
    let now = now();
    for e in entries.iter_mut() {
        let unchanged = before
            .iter()
            .any(|b| b.same_manager(e) && b.fields == e.fields && b.api_version == e.api_version);
        if !unchanged {
            e.time = Some(now.clone());
        }
    }
}

#[cfg(test)]
#[path = "managed_fields_tests.rs"]
mod tests;
