//! Server-side apply: merge an applied configuration into the live object by field manager.
//!
//! The manager's Apply entry in managedFields becomes exactly the fields of the applied
//! configuration. Fields it applied before but leaves out now are removed from the object
//! unless another manager also owns them. Applying a value to a field another manager owns
//! with a different value is a conflict, unless `force`, which takes the field over.

use api::patchmeta::ListType;
use api::ResourceInfo;
use serde_json::{Map, Value};

use super::fieldpath::{lookup, matches_key, path_string, FieldSet, PathElement};
use super::managed_fields::{fields_of, prune, read, stamp_changed, write, Entry};
use super::schema::{Cursor, Field, Schema};
use super::{ApplyOptions, Conflict, Operation, PatchError};

/// Server-side apply of `applied` onto `live` (None: create), recording managedFields.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    options: &ApplyOptions<'_>,
    info: &ResourceInfo,
) -> Result<Value, PatchError> {
    if options.field_manager.is_empty() {
        return Err(PatchError::Invalid(
            "PATCH requests with an apply patch must have a fieldManager".into(),
        ));
    }
    let config = clean_config(applied, info)?;
    let schema = Schema::for_resource(info);
    if let Value::Object(m) = &config {
        check_duplicates(m, schema.cursor(), &mut Vec::new())?;
    }
    let applied_set = fields_of(&config, &schema);

    let live = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let mut entries = read(&live).unwrap_or_else(|| {
        tracing::debug!("live object has malformed managedFields; starting afresh");
        Vec::new()
    });
    let before = entries.clone();
    let original = live.clone();
    let me = Entry::new(
        options.field_manager,
        Operation::Apply,
        &info.api_version(),
        "",
    );

    let mut conflicts = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.same_manager(&me) {
            continue;
        }
        for path in e.fields.intersection(&applied_set).paths() {
            if differs(&live, &config, &path) {
                conflicts.push((i, path));
            }
        }
    }
    if !conflicts.is_empty() {
        if !options.force {
            let mut out: Vec<Conflict> = conflicts
                .iter()
                .map(|(i, path)| Conflict {
                    manager: entries[*i].describe(),
                    field: path_string(path),
                })
                .collect();
            out.sort_by(|a, b| (&a.manager, &a.field).cmp(&(&b.manager, &b.field)));
            return Err(PatchError::Conflicts(out));
        }
        for (i, path) in &conflicts {
            let mut taken = FieldSet::new();
            taken.insert(path);
            entries[*i].fields.difference(&taken);
        }
    }

    let previous = entries
        .iter()
        .find(|e| e.same_manager(&me))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut others = FieldSet::new();
    for e in entries.iter().filter(|e| !e.same_manager(&me)) {
        others.union(&e.fields);
    }
    let mut removed = previous;
    removed.difference(&applied_set);

    let mut result = live;
    for path in removed.paths() {
        // A field (or list item) stays while another manager owns it or anything in it.
        if !others.has_prefix(&path) {
            remove_path(&mut result, &path);
        }
    }
    result = merge_root(result, &config, &schema);

    match entries.iter_mut().find(|e| e.same_manager(&me)) {
        Some(e) => {
            e.fields = applied_set;
            e.api_version = me.api_version.clone();
        }
        None => entries.push(Entry {
            fields: applied_set,
            ..me.clone()
        }),
    }
    prune(&mut entries, &result);
    stamp_changed(&mut entries, &before);
    if without_managed_fields(&result) != without_managed_fields(&original) {
        // The apply changed the object: its entry records when, as in Kubernetes.
        if let Some(e) = entries.iter_mut().find(|e| e.same_manager(&me)) {
            e.time = Some(super::managed_fields::now());
        }
    }
    write(&mut result, &entries);
    Ok(result)
}

/// The applied configuration without managedFields and without nulls (a null sets
/// nothing), after checking it is an object of the requested kind.
fn clean_config(applied: &Value, info: &ResourceInfo) -> Result<Value, PatchError> {
    let Value::Object(m) = applied else {
        return Err(PatchError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    };
    let api_version = m.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
    let expected = info.api_version();
    if api_version != expected || kind != info.kind {
        return Err(PatchError::Invalid(format!(
            "the applied configuration is {api_version}, Kind={kind} but this endpoint serves {expected}, Kind={}",
            info.kind
        )));
    }
    let mut config = drop_nulls(applied);
    if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    Ok(config)
}

/// Keyed lists and sets in an applied configuration may not repeat an item: ownership could
/// not say which one a manager owns.
fn check_duplicates(
    m: &Map<String, Value>,
    cur: Cursor<'_>,
    path: &mut Vec<PathElement>,
) -> Result<(), PatchError> {
    for (k, v) in m {
        let field = cur.field(k);
        path.push(PathElement::Field(k.clone()));
        match v {
            Value::Object(child) if !field.atomic_struct() => {
                check_duplicates(child, field.child(), path)?
            }
            Value::Array(items) => {
                let ids: Vec<PathElement> = match field.list_type() {
                    ListType::Atomic => Vec::new(),
                    ListType::Set => items.iter().map(PathElement::value_of).collect(),
                    ListType::Map(keys) => {
                        items.iter().map(|i| PathElement::key_of(i, keys)).collect()
                    }
                };
                for (i, id) in ids.iter().enumerate() {
                    if ids[..i].contains(id) {
                        return Err(PatchError::Invalid(format!(
                            "{}: duplicate entries for key {id}",
                            path_string(path)
                        )));
                    }
                }
                if let ListType::Map(_) = field.list_type() {
                    for item in items {
                        if let Value::Object(child) = item {
                            check_duplicates(child, field.child(), path)?;
                        }
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
    Ok(())
}

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    v
}

fn drop_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), drop_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(drop_nulls).collect()),
        other => other.clone(),
    }
}

/// Whether `path` holds different values in the live object and the configuration. A list
/// item or set member is owned for its existence only, so it never differs by itself.
fn differs(live: &Value, config: &Value, path: &[PathElement]) -> bool {
    if matches!(
        path.last(),
        Some(PathElement::Key(_) | PathElement::Value(_))
    ) {
        return false;
    }
    match (lookup(live, path), lookup(config, path)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// Removes the value at `path` (a field, list item or set member), if it exists.
fn remove_path(v: &mut Value, path: &[PathElement]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for pe in parent {
        let next = match pe {
            PathElement::Field(f) => cur.get_mut(f),
            PathElement::Key(k) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| matches_key(i, k))),
            PathElement::Value(_) => None,
            PathElement::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        PathElement::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        PathElement::Key(k) => {
            if let Some(a) = cur.as_array_mut() {
                a.retain(|i| !matches_key(i, k));
            }
        }
        PathElement::Value(j) => {
            if let (Some(a), Ok(want)) = (cur.as_array_mut(), serde_json::from_str::<Value>(j)) {
                a.retain(|i| *i != want);
            }
        }
        PathElement::Index(_) => {}
    }
}

fn merge_root(live: Value, config: &Value, schema: &Schema) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => Value::Object(merge_object(l, c, schema.cursor())),
        (_, c) => c.clone(),
    }
}

fn merge_object(
    mut live: Map<String, Value>,
    config: &Map<String, Value>,
    cur: Cursor<'_>,
) -> Map<String, Value> {
    for (k, cv) in config {
        let field = cur.field(k);
        let lv = live.remove(k).unwrap_or(Value::Null);
        live.insert(k.clone(), merge_value(lv, cv, &field));
    }
    live
}

/// Merges an applied value into the live one by the field's type: objects field by field,
/// keyed lists item by item, sets member by member; anything else is replaced.
fn merge_value(live: Value, config: &Value, field: &Field) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !field.atomic_struct() => {
            Value::Object(merge_object(l, c, field.child()))
        }
        (Value::Array(mut l), Value::Array(c)) => match field.list_type() {
            ListType::Atomic => Value::Array(c.clone()),
            ListType::Set => {
                for item in c {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
                Value::Array(l)
            }
            ListType::Map(keys) => {
                for item in c {
                    let id = PathElement::key_of(item, keys);
                    match l.iter().position(|i| PathElement::key_of(i, keys) == id) {
                        Some(pos) => {
                            let existing = std::mem::take(&mut l[pos]);
                            l[pos] = merge_value(existing, item, &item_field(field));
                        }
                        None => l.push(item.clone()),
                    }
                }
                Value::Array(l)
            }
        },
        (_, c) => c.clone(),
    }
}

/// A keyed list item merges as an object of the list's item type.
fn item_field(list: &Field) -> Field {
    Field {
        ty: list
            .ty
            .and_then(api::patchmeta::FieldType::definition)
            .map(api::patchmeta::FieldType::Struct),
        patch: None,
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
