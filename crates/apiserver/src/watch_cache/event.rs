//! One object or change, shared by every watcher and list that reads it.
//!
//! An object is held as its JSON bytes (the plain JSON encoding itself) beside the few
//! attributes selectors and Table watches read (name, namespace, labels, resourceVersion),
//! not as a decoded tree: a `serde_json::Value` takes four to six times the bytes of its
//! JSON, since every map allocates whole B-tree nodes, and the cache holds every object of
//! the cluster. Other time-independent encodings (PartialObjectMetadata) are serialised at
//! most once per object, however many watchers send it.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;
use store::Revision;

use crate::registry::meta;

/// How many distinct output encodings an object can be cached in; the handlers map each
/// output format to one slot below this.
pub const ENCODING_SLOTS: usize = 12;

/// What selectors read without decoding the object.
#[derive(Debug, Default)]
pub struct Attrs {
    pub name: Box<str>,
    pub namespace: Box<str>,
    pub resource_version: Box<str>,
    /// Sorted by key.
    labels: Box<[(Box<str>, Box<str>)]>,
}

impl Attrs {
    fn of(value: &Value) -> Self {
        let mut labels: Vec<(Box<str>, Box<str>)> = value
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str().into(), v.as_str()?.into())))
                    .collect()
            })
            .unwrap_or_default();
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Self {
            name: meta::name(value).unwrap_or_default().into(),
            namespace: meta::namespace(value).unwrap_or_default().into(),
            resource_version: meta::resource_version(value).unwrap_or_default().into(),
            labels: labels.into_boxed_slice(),
        }
    }

    /// The value of label `key`, if the object has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }
}

/// An object as the cache holds it, with lazily filled encodings.
#[derive(Debug)]
pub struct CachedObject {
    /// The object as JSON, resourceVersion included.
    json: Bytes,
    attrs: Attrs,
    /// Allocated on the first encoding other than plain JSON: most objects never need one.
    encodings: OnceLock<Box<[OnceLock<Bytes>; ENCODING_SLOTS]>>,
}

impl CachedObject {
    pub fn new(value: Value) -> Arc<Self> {
        Arc::new(Self {
            attrs: Attrs::of(&value),
            // A Value always serialises; the empty fallback is unreachable.
            json: Bytes::from(serde_json::to_vec(&value).unwrap_or_default()),
            encodings: OnceLock::new(),
        })
    }

    /// The object decoded: a fresh tree, for the callers that need more than [`Self::attrs`].
    pub fn value(&self) -> Value {
        // The bytes were serialised from a Value above, so they always parse.
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The object's plain JSON encoding.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    pub fn attrs(&self) -> &Attrs {
        &self.attrs
    }

    /// The object in encoding `slot`, computed by `encode` the first time it is asked for.
    pub fn encoded(&self, slot: usize, encode: impl FnOnce(&Value) -> Bytes) -> Bytes {
        let cells = self.encodings.get_or_init(Default::default);
        match cells.get(slot) {
            Some(cell) => cell.get_or_init(|| encode(&self.value())).clone(),
            None => encode(&self.value()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one key, in revision order.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: EventType,
    pub key: String,
    pub revision: Revision,
    /// The object after the change; for a delete, the last state with the delete's
    /// resourceVersion.
    pub object: Arc<CachedObject>,
    /// The object before the change, for selector transitions (None on create).
    pub prev: Option<Arc<CachedObject>>,
}

/// What the cache broadcasts to its watchers.
#[derive(Debug, Clone)]
pub enum CacheMessage {
    Event(Arc<WatchEvent>),
    /// The cache lost its store watch and re-listed: every watcher must end with 410 so
    /// its client re-lists too.
    Reset,
}

impl WatchEvent {
    /// The event a raw store change stands for, for watches served from the store (a
    /// resourceVersion older than the cache's window). None for undecodable values.
    pub fn from_store(event: &store::Event) -> Option<Self> {
        use crate::registry::meta;
        let prev = event
            .prev
            .as_ref()
            .and_then(|kv| meta::decode_kv(kv).ok())
            .map(CachedObject::new);
        let (kind, object) = match event.kind {
            store::EventKind::Put => {
                let obj = CachedObject::new(meta::decode_kv(&event.kv).ok()?);
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                (kind, obj)
            }
            store::EventKind::Delete => {
                let mut last = prev.as_ref()?.value();
                meta::set_resource_version(&mut last, event.revision());
                (EventType::Deleted, CachedObject::new(last))
            }
        };
        Some(Self {
            kind,
            key: event.kv.key.clone(),
            revision: event.revision(),
            object,
            prev,
        })
    }
}
