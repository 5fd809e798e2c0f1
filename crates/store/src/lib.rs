//! The cluster state store: one revisioned key-value contract with etcd v3 semantics.
//!
//! Every API object lives under a key such as `/registry/pods/default/web-0`. The store keeps a
//! single revision counter for the whole keyspace; every successful write transaction bumps it
//! by exactly one, and that revision is what the API server hands out as `resourceVersion`.
//!
//! Backends implement [`Store`]; the API server only ever sees `Arc<dyn Store>`.
//! The single-key helpers (`create`, `update`, `delete`, `put`) are provided methods built on
//! [`Store::txn`], so every backend gets identical compare-and-swap behaviour.

pub mod conformance;
pub mod embedded;
mod error;
pub mod etcd;
mod types;

pub use embedded::{EmbeddedConfig, EmbeddedStore};
pub use error::{StoreError, StoreResult};
pub use etcd::{EtcdConfig, EtcdStore};
pub use types::{
    validate_key, validate_value, Compare, ContinueToken, Event, EventKind, KeyRange, KeyValue,
    ListOptions, ListResult, Op, OpResult, Revision, Txn, TxnResult, WatchStream, MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
};

use async_trait::async_trait;
use bytes::Bytes;

/// The storage contract. Semantics follow etcd v3:
///
/// * A revision is a store-wide counter; a write transaction that changes anything creates
///   exactly one new revision, shared by all its operations.
/// * Each key carries `create_revision`, `mod_revision` and `version` (1 on create, +1 on each
///   update, reset by delete).
/// * Reads may ask for a past revision; below the compacted revision they fail with
///   [`StoreError::Compacted`], above the current one with [`StoreError::FutureRevision`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the latest revision or at `revision`. Returns the key (if present)
    /// and the revision the read was served at.
    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> StoreResult<(Option<KeyValue>, Revision)>;

    /// Lists keys under a prefix in key order, paginated.
    ///
    /// A continuation token pins the revision of the first page, so that every page of one
    /// list is served from the same snapshot (as Kubernetes' `continue` does).
    async fn list(&self, options: ListOptions) -> StoreResult<ListResult>;

    /// Applies `ops` atomically if every compare holds. A transaction whose ops are all
    /// deletes of absent keys does not create a revision.
    async fn txn(&self, txn: Txn) -> StoreResult<TxnResult>;

    /// Streams every change to `range` with `mod_revision >= start` in revision order, each
    /// with the previous value. `start = None` means "changes after the current revision".
    /// A start below the compacted revision fails with [`StoreError::Compacted`]; the stream
    /// may also end with that error if the watcher falls too far behind.
    async fn watch(&self, range: KeyRange, start: Option<Revision>) -> StoreResult<WatchStream>;

    /// Discards history below `revision`: reads and watches below it fail with
    /// [`StoreError::Compacted`] from then on. The latest value of every key is kept.
    async fn compact(&self, revision: Revision) -> StoreResult<()>;

    /// The latest revision of the store.
    async fn current_revision(&self) -> StoreResult<Revision>;

    /// The revision history has been compacted to (0 if never).
    async fn compacted_revision(&self) -> StoreResult<Revision>;

    /// Creates `key` if it does not exist.
    async fn create(&self, key: &str, value: Bytes) -> StoreResult<KeyValue> {
        let compare = Compare::Absent(key.to_string());
        let result = self.txn(single_put(key, value, Some(compare))?).await?;
        put_outcome(result, key, |_| StoreError::AlreadyExists {
            key: key.to_string(),
        })
    }

    /// Replaces `key` only if its `mod_revision` is still `expected`.
    /// A missing key is [`StoreError::NotFound`]; a changed one is [`StoreError::Conflict`]
    /// carrying the current value, so the caller can retry against it.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> StoreResult<KeyValue> {
        let compare = Compare::ModRevision(key.to_string(), expected);
        let result = self.txn(single_put(key, value, Some(compare))?).await?;
        put_outcome(result, key, |current| lost_compare(key, current))
    }

    /// Deletes `key`, only if its `mod_revision` is `expected` when given. Returns the value
    /// it had and the revision of the delete.
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> StoreResult<(KeyValue, Revision)> {
        validate_key(key)?;
        let compare = match expected {
            Some(rev) => Compare::ModRevision(key.to_string(), rev),
            None => Compare::Exists(key.to_string()),
        };
        let result = self
            .txn(Txn {
                compares: vec![compare],
                ops: vec![Op::Delete {
                    key: key.to_string(),
                }],
            })
            .await?;
        match result {
            TxnResult::Succeeded {
                revision,
                mut results,
            } => match results.pop() {
                Some(OpResult::Delete(Some(prev))) => Ok((prev, revision)),
                _ => Err(StoreError::NotFound {
                    key: key.to_string(),
                }),
            },
            TxnResult::Failed { current, .. } => Err(lost_compare(key, current)),
        }
    }

    /// Writes `key` unconditionally.
    async fn put(&self, key: &str, value: Bytes) -> StoreResult<KeyValue> {
        let result = self.txn(single_put(key, value, None)?).await?;
        put_outcome(result, key, |_| {
            StoreError::Internal("a transaction without compares failed".into())
        })
    }
}

/// A transaction of one put, guarded by `compare` when given.
fn single_put(key: &str, value: Bytes, compare: Option<Compare>) -> StoreResult<Txn> {
    validate_key(key)?;
    validate_value(&value)?;
    Ok(Txn {
        compares: compare.into_iter().collect(),
        ops: vec![Op::Put {
            key: key.to_string(),
            value,
        }],
    })
}

/// The key written by a one-put transaction, or `on_failure` of the compared keys' values.
fn put_outcome(
    result: TxnResult,
    key: &str,
    on_failure: impl FnOnce(Vec<Option<KeyValue>>) -> StoreError,
) -> StoreResult<KeyValue> {
    match result {
        TxnResult::Succeeded { mut results, .. } => match results.pop() {
            Some(OpResult::Put(kv)) => Ok(kv),
            _ => Err(StoreError::Internal(format!(
                "a put of {key:?} returned no put result"
            ))),
        },
        TxnResult::Failed { current, .. } => Err(on_failure(current)),
    }
}

/// Why a compare on one key failed: it is gone, or it changed.
fn lost_compare(key: &str, mut current: Vec<Option<KeyValue>>) -> StoreError {
    match current.pop().flatten() {
        None => StoreError::NotFound {
            key: key.to_string(),
        },
        Some(kv) => StoreError::Conflict {
            key: key.to_string(),
            current: Some(Box::new(kv)),
        },
    }
}
