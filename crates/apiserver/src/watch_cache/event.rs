//! One decoded object or change, shared by every watcher and list that reads it.
//!
//! An object is decoded once when the cache receives it; each time-independent encoding
//! (plain JSON, PartialObjectMetadata) is serialised at most once per object, however many
//! watchers send it.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;
use store::Revision;

/// How many distinct output encodings an object can be cached in; the handlers map each
/// output format to one slot below this.
pub const ENCODING_SLOTS: usize = 12;

/// An object as the cache holds it, with lazily filled encodings.
#[derive(Debug)]
pub struct CachedObject {
    pub value: Value,
    encodings: [OnceLock<Bytes>; ENCODING_SLOTS],
}

impl CachedObject {
    pub fn new(value: Value) -> Arc<Self> {
        Arc::new(Self {
            value,
            encodings: Default::default(),
        })
    }

    /// The object in encoding `slot`, computed by `encode` the first time it is asked for.
    pub fn encoded(&self, slot: usize, encode: impl FnOnce(&Value) -> Bytes) -> Bytes {
        match self.encodings.get(slot) {
            Some(cell) => cell.get_or_init(|| encode(&self.value)).clone(),
            None => encode(&self.value),
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
                let mut last = prev.as_ref()?.value.clone();
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
