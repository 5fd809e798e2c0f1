//! Field sets in the FieldsV1 format of managedFields (structured-merge-diff): a tree of
//! path elements — `f:<field>`, `k:{"name":"c"}` (a list item by its keys), `v:"x"` (a set
//! member), `i:0` (a list index) — where `.` marks a node owned in itself.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of an object (or a key of a map).
    Field(String),
    /// A list item identified by its key fields: the compact JSON object of the keys,
    /// sorted by key name.
    Key(String),
    /// A member of a set, as compact JSON.
    Value(String),
    /// A list item by position (lists without keys).
    Index(usize),
}

impl PathElement {
    /// The FieldsV1 key: `f:name`, `k:{...}`, `v:...`, `i:0`.
    pub fn to_fields_v1(&self) -> String {
        match self {
            Self::Field(f) => format!("f:{f}"),
            Self::Key(k) => format!("k:{k}"),
            Self::Value(v) => format!("v:{v}"),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key; None for a malformed one.
    pub fn from_fields_v1(s: &str) -> Option<Self> {
        let (prefix, rest) = s.split_at_checked(2)?;
        match prefix {
            "f:" => Some(Self::Field(rest.to_string())),
            "k:" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                v.is_object().then(|| Self::Key(v.to_string()))
            }
            "v:" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                Some(Self::Value(v.to_string()))
            }
            "i:" => rest.parse().ok().map(Self::Index),
            _ => None,
        }
    }

    /// The element of a keyed list item: its key fields (missing ones left out).
    pub fn key_of(item: &Value, keys: &[&str]) -> Self {
        let mut m = Map::new();
        for k in keys {
            if let Some(v) = item.get(*k).cloned().or_else(|| key_default(item, k)) {
                m.insert((*k).to_string(), v);
            }
        }
        // serde_json's map is ordered by key, so equal keys always print the same.
        Self::Key(Value::Object(m).to_string())
    }

    pub fn value_of(item: &Value) -> Self {
        Self::Value(item.to_string())
    }
}

/// The value a key field takes when it is left out. Port lists are keyed by port and
/// protocol, and the protocol defaults to TCP: an applied `{containerPort: 80}` is the live
/// `{containerPort: 80, protocol: TCP}`.
fn key_default(item: &Value, key: &str) -> Option<Value> {
    (key == "protocol" && item.is_object()).then(|| Value::String("TCP".into()))
}

impl fmt::Display for PathElement {
    /// As Kubernetes prints paths in conflict messages: `.spec`, `[name="c"]`, `[=x]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => write!(f, ".{name}"),
            Self::Key(json) => {
                let parsed: Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
                let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            Self::Value(v) => write!(f, "[={v}]"),
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the object root.
pub type Path = Vec<PathElement>;

/// Prints a path as Kubernetes does: `.spec.containers[name="web"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// Whether `item` is the list item a `k:` element names.
pub(crate) fn matches_key(item: &Value, key: &str) -> bool {
    let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(key) else {
        return false;
    };
    let names: Vec<&str> = keys.keys().map(String::as_str).collect();
    PathElement::key_of(item, &names) == PathElement::Key(key.to_string())
}

/// The value at `path` in `v`, if there is one.
pub(crate) fn lookup<'v>(v: &'v Value, path: &[PathElement]) -> Option<&'v Value> {
    let mut cur = v;
    for pe in path {
        cur = match pe {
            PathElement::Field(f) => cur.get(f)?,
            PathElement::Key(k) => cur.as_array()?.iter().find(|i| matches_key(i, k))?,
            PathElement::Value(j) => {
                let want: Value = serde_json::from_str(j).ok()?;
                cur.as_array()?.iter().find(|i| **i == want)?
            }
            PathElement::Index(i) => cur.get(*i)?,
        };
    }
    Some(cur)
}

/// A set of field paths, stored as a tree. A node is a member when `owned`; its children are
/// the paths below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    owned: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        !self.owned && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds a path (the empty path is the root itself, which is never recorded).
    pub fn insert(&mut self, path: &[PathElement]) {
        let mut node = self;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        if !path.is_empty() {
            node.owned = true;
        }
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        let mut node = self;
        for pe in path {
            match node.children.get(pe) {
                Some(n) => node = n,
                None => return false,
            }
        }
        !path.is_empty() && node.owned
    }

    /// The subtree under `pe`, if any.
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Whether `path` or anything below it is a member.
    pub fn has_prefix(&self, path: &[PathElement]) -> bool {
        let mut node = self;
        for pe in path {
            match node.children.get(pe) {
                Some(n) => node = n,
                None => return false,
            }
        }
        !node.is_empty()
    }

    pub fn union(&mut self, other: &FieldSet) {
        self.owned |= other.owned;
        for (pe, child) in &other.children {
            self.children.entry(pe.clone()).or_default().union(child);
        }
    }

    /// Removes every member of `other`.
    pub fn difference(&mut self, other: &FieldSet) {
        if other.owned {
            self.owned = false;
        }
        for (pe, child) in &other.children {
            if let Some(mine) = self.children.get_mut(pe) {
                mine.difference(child);
                if mine.is_empty() {
                    self.children.remove(pe);
                }
            }
        }
    }

    /// The members of both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            owned: self.owned && other.owned,
            children: BTreeMap::new(),
        };
        for (pe, mine) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = mine.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(pe.clone(), both);
                }
            }
        }
        out
    }

    /// Every member path, depth first.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect(&mut prefix, &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        if self.owned && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The members for which `keep` holds.
    pub fn filter(&self, mut keep: impl FnMut(&[PathElement]) -> bool) -> FieldSet {
        let mut out = FieldSet::new();
        for p in self.paths() {
            if keep(&p) {
                out.insert(&p);
            }
        }
        out
    }

    /// The FieldsV1 JSON: `{"f:spec":{"f:replicas":{}}}`, with `".":{}` on owned inner nodes.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        for (pe, child) in &self.children {
            if child.is_empty() {
                continue;
            }
            m.insert(pe.to_fields_v1(), child.to_fields_v1_node());
        }
        Value::Object(m)
    }

    fn to_fields_v1_node(&self) -> Value {
        let mut node = match self.to_fields_v1() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        if self.owned && !node.is_empty() {
            node.insert(".".into(), Value::Object(Map::new()));
        }
        Value::Object(node)
    }

    /// Parses FieldsV1 JSON; None when it is malformed.
    pub fn from_fields_v1(v: &Value) -> Option<FieldSet> {
        let m = v.as_object()?;
        let mut set = FieldSet::new();
        for (k, child) in m {
            if k == "." {
                continue;
            }
            let pe = PathElement::from_fields_v1(k)?;
            let mut node = FieldSet::from_fields_v1(child)?;
            let cm = child.as_object()?;
            node.owned = cm.is_empty() || cm.contains_key(".");
            set.children.insert(pe, node);
        }
        Some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    #[test]
    fn fields_v1_round_trips() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}},
                "f:finalizers": {"v:\"a\"": {}}
            }
        });
        let set = FieldSet::from_fields_v1(&v).expect("valid");
        assert!(set.contains(&[f("spec"), f("replicas")]));
        assert!(set.contains(&[f("metadata"), f("labels")]));
        assert!(!set.contains(&[f("spec")]));
        let key = PathElement::key_of(&json!({"name": "web", "image": "x"}), &["name"]);
        assert!(set.contains(&[f("spec"), f("template"), f("spec"), f("containers"), key]));
        assert_eq!(set.to_fields_v1(), v);
    }

    #[test]
    fn malformed_fields_v1_is_refused() {
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_none());
        assert!(FieldSet::from_fields_v1(&json!({"k:notjson": {}})).is_none());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 3})).is_none());
        assert!(FieldSet::from_fields_v1(&json!([])).is_none());
    }

    #[test]
    fn paths_print_like_kubernetes() {
        let key = PathElement::key_of(
            &json!({"containerPort": 80, "protocol": "TCP"}),
            &["containerPort", "protocol"],
        );
        let p = vec![f("spec"), f("ports"), key, f("name")];
        assert_eq!(
            path_string(&p),
            ".spec.ports[containerPort=80,protocol=\"TCP\"].name"
        );
        let v = vec![
            f("metadata"),
            f("finalizers"),
            PathElement::value_of(&json!("x")),
        ];
        assert_eq!(path_string(&v), ".metadata.finalizers[=\"x\"]");
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&[f("a"), f("b")]);
        a.insert(&[f("a"), f("c")]);
        let mut b = FieldSet::new();
        b.insert(&[f("a"), f("c")]);
        b.insert(&[f("d")]);
        assert_eq!(a.intersection(&b).paths(), vec![vec![f("a"), f("c")]]);
        let mut u = a.clone();
        u.union(&b);
        assert_eq!(u.paths().len(), 3);
        a.difference(&b);
        assert_eq!(a.paths(), vec![vec![f("a"), f("b")]]);
        assert!(a.has_prefix(&[f("a")]));
        assert!(!a.has_prefix(&[f("d")]));
    }
}
