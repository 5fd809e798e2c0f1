//! Strategic merge patch, as kube-apiserver applies it (k8s.io/apimachinery
//! `strategicpatch`, with the options the server uses: parallel lists merged, unmatched nulls
//! ignored).
//!
//! Maps merge recursively and a null deletes a key. Lists merge item by item where the
//! metadata gives a merge strategy (by merge key for objects, as a set for primitives) and are
//! replaced otherwise. Directives: `$patch: replace|delete` in maps, `$patch:
//! replace|delete` in list items, `$retainKeys`, `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>`. Without metadata (custom resources) the result is that
//! of a JSON merge patch.

use serde_json::{Map, Value};

use super::json::type_name;
use super::schema::{Cursor, Field};
use super::PatchError;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies `patch` (a JSON object) to `original`.
pub(crate) fn apply(original: &Value, patch: &Value, cur: Cursor<'_>) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Invalid(format!(
            "a strategic merge patch must be an object, got {}",
            type_name(patch)
        )));
    };
    let original = match original {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    merge_map(original, patch, cur).map(Value::Object)
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    cur: Cursor<'_>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(PATCH) {
        return match directive.as_str() {
            Some("replace") => {
                let mut rest = patch.clone();
                rest.remove(PATCH);
                merge_map(Map::new(), &rest, cur)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(PatchError::Invalid(format!(
                "unknown patch type: {directive} in map: {}",
                Value::Object(patch.clone())
            ))),
        };
    }

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keys = string_list(retain, RETAIN_KEYS)?;
        for (k, v) in patch {
            if !v.is_null() && !is_directive(k) && !keys.contains(&k.as_str()) {
                return Err(PatchError::Unprocessable(format!(
                    "The content of the patch doesn't match retainKeys list: field {k:?} is not in {keys:?}"
                )));
            }
        }
        original.retain(|k, _| keys.contains(&k.as_str()));
    }

    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Value::Array(remove) = v else {
                return Err(PatchError::Invalid(format!(
                    "invalid patch: {k} must be a list of primitives"
                )));
            };
            if let Some(Value::Array(items)) = original.get_mut(field) {
                items.retain(|item| !remove.contains(item));
            }
        }
    }

    let mut ordered: Vec<&str> = Vec::new();
    for (k, v) in patch {
        let Some(field_name) = k.strip_prefix(SET_ELEMENT_ORDER) else {
            continue;
        };
        let Value::Array(order) = v else {
            return Err(PatchError::Invalid(format!(
                "invalid patch: {k} must be a list"
            )));
        };
        if matches!(patch.get(field_name), Some(Value::Null)) {
            continue; // the field is deleted; there is nothing to order
        }
        let field = cur.field(field_name);
        let server = match original.remove(field_name) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let merged = match patch.get(field_name) {
            Some(Value::Array(p)) => merge_list(server.clone(), p, &field)?,
            Some(other) => {
                original.insert(field_name.to_string(), fresh(other, &field)?);
                ordered.push(field_name);
                continue;
            }
            None => server.clone(),
        };
        let key = field.merge_key();
        let (in_order, server_only) = partition(merged, order, key);
        let merged = merge_sorted(
            sort_by(server_only, &server, key),
            sort_by(in_order, order, key),
            &server,
            key,
        );
        original.insert(field_name.to_string(), Value::Array(merged));
        ordered.push(field_name);
    }

    for (k, pv) in patch {
        if is_directive(k) || ordered.contains(&k.as_str()) {
            continue;
        }
        if pv.is_null() {
            original.remove(k);
            continue;
        }
        let field = cur.field(k);
        let merged = match original.remove(k) {
            None => fresh(pv, &field)?,
            Some(ov) => merge_value(ov, pv, &field)?,
        };
        original.insert(k.clone(), merged);
    }
    Ok(original)
}

fn merge_value(ov: Value, pv: &Value, field: &Field) -> Result<Value, PatchError> {
    match (ov, pv) {
        (Value::Object(o), Value::Object(p)) if !field.replaces() => {
            merge_map(o, p, field.child()).map(Value::Object)
        }
        (Value::Array(o), Value::Array(p)) => merge_list(o, p, field).map(Value::Array),
        (_, pv) => fresh(pv, field),
    }
}

/// The value a patch sets where the original has nothing (or something of another type):
/// the patch value with its nulls dropped and its directives carried out.
fn fresh(pv: &Value, field: &Field) -> Result<Value, PatchError> {
    match pv {
        Value::Object(p) if !field.replaces() => {
            merge_map(Map::new(), p, field.child()).map(Value::Object)
        }
        Value::Array(p) => merge_list(Vec::new(), p, field).map(Value::Array),
        other => Ok(other.clone()),
    }
}

fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    field: &Field,
) -> Result<Vec<Value>, PatchError> {
    if !field.merges_list() {
        return Ok(patch.to_vec());
    }
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let mut maps = None;
    for item in original.iter().chain(patch) {
        let is_map = match item {
            Value::Array(_) => {
                return Err(PatchError::Unprocessable(
                    "lists of lists are not supported".into(),
                ))
            }
            Value::Object(_) => true,
            _ => false,
        };
        if *maps.get_or_insert(is_map) != is_map {
            return Err(PatchError::Unprocessable(
                "list items are not all of one type".into(),
            ));
        }
    }
    if maps != Some(true) {
        let mut merged = original.clone();
        for item in patch {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, patch, None);
        return Ok(merge_sorted(
            server_only,
            sort_by(in_patch, patch, None),
            &original,
            None,
        ));
    }
    let Some(key) = field.merge_key() else {
        return Err(PatchError::Unprocessable(
            "cannot merge lists of objects without a merge key".into(),
        ));
    };
    let child = field.child();

    let mut merged = original.clone();
    let mut items = Vec::new();
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(PATCH) else {
            items.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let id = merge_key_value(item, key)?;
                merged.retain(|o| o.get(key) != Some(id));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::Invalid(
                    "merging lists cannot yet be specified in the patch".into(),
                ))
            }
            _ => {
                return Err(PatchError::Invalid(format!(
                    "unknown patch type: {directive} in list item: {item}"
                )))
            }
        }
    }
    if replace {
        return items.into_iter().map(|p| fresh(p, field)).collect();
    }
    for item in &items {
        let id = merge_key_value(item, key)?;
        let Value::Object(p) = item else {
            continue; // every item is a map, checked above
        };
        match merged.iter().position(|o| o.get(key) == Some(id)) {
            Some(i) => {
                let Value::Object(o) = std::mem::take(&mut merged[i]) else {
                    continue;
                };
                merged[i] = Value::Object(merge_map(o, p, child)?);
            }
            None => merged.push(Value::Object(merge_map(Map::new(), p, child)?)),
        }
    }
    let order: Vec<Value> = items.into_iter().cloned().collect();
    let (in_patch, server_only) = partition(merged, &order, Some(key));
    Ok(merge_sorted(
        server_only,
        sort_by(in_patch, &order, Some(key)),
        &original,
        Some(key),
    ))
}

fn merge_key_value<'v>(item: &'v Value, key: &str) -> Result<&'v Value, PatchError> {
    item.get(key).ok_or_else(|| {
        PatchError::Unprocessable(format!(
            "map: {item} does not contain declared merge key: {key}"
        ))
    })
}

fn string_list<'v>(v: &'v Value, what: &str) -> Result<Vec<&'v str>, PatchError> {
    let bad = || PatchError::Invalid(format!("invalid patch: {what} must be a list of strings"));
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|s| s.as_str().ok_or_else(bad))
        .collect()
}

/// Where `item` sits in `list`: by merge key for objects, by value for primitives.
fn position(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        Some(k) => {
            let id = item.get(k)?;
            list.iter().position(|o| o.get(k) == Some(id))
        }
        None => list.iter().position(|o| o == item),
    }
}

/// Splits `items` into those `order` names and the rest, each keeping its relative order.
fn partition(items: Vec<Value>, order: &[Value], key: Option<&str>) -> (Vec<Value>, Vec<Value>) {
    items
        .into_iter()
        .partition(|item| position(order, item, key).is_some())
}

/// Sorts `items` by their place in `order`; items `order` does not name go last, in the
/// order they came.
fn sort_by(mut items: Vec<Value>, order: &[Value], key: Option<&str>) -> Vec<Value> {
    items.sort_by_key(|item| position(order, item, key).unwrap_or(usize::MAX));
    items
}

/// Interleaves the server-only items (`left`) into the patch items (`right`), keeping each
/// list's own order: a server item goes before a patch item only when both were in the live
/// list and it came first there.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => match (position(server, l, key), position(server, r, key)) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
#[path = "strategic_tests.rs"]
mod tests;
