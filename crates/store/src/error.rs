use crate::types::{KeyValue, Revision};

/// Every way a store operation can fail. The API server maps each variant to a Kubernetes
/// Status (NotFound → 404, Conflict → 409, Compacted → 410 Gone, ...).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("key {key:?} not found")]
    NotFound { key: String },
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    /// A compare-and-swap lost: the key changed since the caller read it.
    #[error("key {key:?} was modified concurrently")]
    Conflict {
        key: String,
        current: Option<Box<KeyValue>>,
    },
    #[error("revision {requested} has been compacted (compacted revision is {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("invalid key: {reason}")]
    InvalidKey { reason: String },
    #[error("value of {size} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge { size: usize, max: usize },
    #[error("invalid continue token: {reason}")]
    InvalidContinue { reason: String },
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },
    /// The backend cannot be reached or refused the operation for reasons outside the
    /// request (I/O error, etcd down). Retrying may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A broken invariant inside the store. Never caused by the request.
    #[error("internal store error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;
