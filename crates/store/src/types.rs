use std::pin::Pin;

use base64::Engine as _;
use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreResult};

/// A store-wide revision. 0 means "none" (for example the create revision of an absent key).
pub type Revision = i64;

/// Largest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;
/// Largest value accepted, in bytes: etcd's default request limit (1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    /// 1 on create, incremented by each update.
    pub version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put, the new key-value. For a delete, the key with an empty value and
    /// `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The value before this change (absent for a create).
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// What a watch follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    Key(String),
    Prefix(String),
}

impl KeyRange {
    pub fn contains(&self, key: &str) -> bool {
        match self {
            KeyRange::Key(k) => k == key,
            KeyRange::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Keys starting with this prefix. Must be a valid key (non-empty).
    pub prefix: String,
    /// Read at this revision instead of the latest. Ignored when `continue_token` is set:
    /// the token carries the revision of the first page.
    pub revision: Option<Revision>,
    /// At most this many keys per page (0 or None: no limit).
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    pub kvs: Vec<KeyValue>,
    /// The revision this page was read at.
    pub revision: Revision,
    /// Set when more keys follow; pass it back to get the next page.
    pub continue_token: Option<String>,
    /// How many keys remain after this page (0 when `continue_token` is None).
    pub remaining: i64,
}

/// A condition a transaction checks before applying its ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists.
    Exists(String),
    /// The key exists and its mod revision equals this.
    ModRevision(String, Revision),
}

impl Compare {
    pub fn key(&self) -> &str {
        match self {
            Compare::Absent(k) | Compare::Exists(k) | Compare::ModRevision(k, _) => k,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Bytes },
    Delete { key: String },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    /// Checks keys and values against the limits, so that both backends refuse the same
    /// input with the same error before touching anything.
    pub fn validate(&self) -> StoreResult<()> {
        for c in &self.compares {
            validate_key(c.key())?;
        }
        let mut seen = std::collections::HashSet::new();
        for op in &self.ops {
            validate_key(op.key())?;
            if let Op::Put { value, .. } = op {
                validate_value(value)?;
            }
            if !seen.insert(op.key()) {
                // etcd refuses this too ("duplicate key given in txn request").
                return Err(StoreError::InvalidRequest {
                    reason: format!("key {:?} appears twice in one transaction", op.key()),
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The key as written.
    Put(KeyValue),
    /// The key as it was before the delete, if it existed.
    Delete(Option<KeyValue>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnResult {
    /// All compares held; `results` has one entry per op, in order.
    Succeeded {
        revision: Revision,
        results: Vec<OpResult>,
    },
    /// A compare failed; nothing was written. `current` has the current value of each
    /// compared key, in the order of the compares.
    Failed {
        revision: Revision,
        current: Vec<Option<KeyValue>>,
    },
}

pub type WatchStream = Pin<Box<dyn Stream<Item = StoreResult<Event>> + Send>>;

pub fn validate_key(key: &str) -> StoreResult<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey {
            reason: "key is empty".into(),
        });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::InvalidKey {
            reason: format!("key is {} bytes, the limit is {MAX_KEY_BYTES}", key.len()),
        });
    }
    if key.contains('\0') {
        return Err(StoreError::InvalidKey {
            reason: "key contains a NUL byte".into(),
        });
    }
    Ok(())
}

pub fn validate_value(value: &[u8]) -> StoreResult<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::ValueTooLarge {
            size: value.len(),
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// The contents of a continuation token: the snapshot revision and the last key returned.
/// Shared by both backends so that tokens look and fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueToken {
    #[serde(rename = "r")]
    pub revision: Revision,
    #[serde(rename = "k")]
    pub last_key: String,
    /// The prefix the list was over, so a token cannot be replayed against another list.
    #[serde(rename = "p")]
    pub prefix: String,
}

impl ContinueToken {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(token: &str, prefix: &str) -> StoreResult<Self> {
        let bad = |reason: &str| StoreError::InvalidContinue {
            reason: reason.to_string(),
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| bad("not base64"))?;
        let tok: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad("malformed"))?;
        if tok.revision <= 0 {
            return Err(bad("revision must be positive"));
        }
        if tok.prefix != prefix {
            return Err(bad("token belongs to another list"));
        }
        if !tok.last_key.starts_with(prefix) {
            return Err(bad("key outside the listed prefix"));
        }
        Ok(tok)
    }
}
