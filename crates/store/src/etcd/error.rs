//! Mapping etcd's failures onto the store contract.
//!
//! etcd reports most conditions as a gRPC status whose message is one of its well-known
//! `etcdserver: ...` strings; the code alone is not enough (both "compacted" and "future
//! revision" are `OutOfRange`), so the classification looks at both.

use tonic::Code;

use crate::StoreError;

/// What an etcd call failed with, before the caller adds the context (the requested
/// revision, the compacted or current one) that a contract error needs.
#[derive(Debug)]
pub(crate) enum EtcdFailure {
    /// The requested revision is below etcd's compacted revision.
    Compacted,
    /// The requested revision is above etcd's current revision.
    FutureRevision,
    /// Anything else, already in contract terms.
    Other(StoreError),
}

// etcd's own error strings (server/etcdserver/api/v3rpc/rpctypes); stable since v3.0.
const MSG_COMPACTED: &str = "required revision has been compacted";
const MSG_FUTURE_REV: &str = "required revision is a future revision";

pub(crate) fn classify(err: etcd_client::Error) -> EtcdFailure {
    use etcd_client::Error as E;
    match err {
        E::GRpcStatus(status) => classify_status(&status),
        E::TransportError(e) => {
            EtcdFailure::Other(StoreError::Unavailable(format!("cannot reach etcd: {e}")))
        }
        E::IoError(e) => EtcdFailure::Other(StoreError::Unavailable(format!("etcd I/O: {e}"))),
        E::WatchError(e) => EtcdFailure::Other(StoreError::Unavailable(format!("etcd watch: {e}"))),
        E::InvalidArgs(e) => EtcdFailure::Other(StoreError::InvalidRequest { reason: e }),
        other => EtcdFailure::Other(StoreError::Unavailable(format!("etcd client: {other}"))),
    }
}

fn classify_status(status: &tonic::Status) -> EtcdFailure {
    let message = status.message();
    match status.code() {
        Code::OutOfRange if message.contains(MSG_COMPACTED) => EtcdFailure::Compacted,
        Code::OutOfRange if message.contains(MSG_FUTURE_REV) => EtcdFailure::FutureRevision,
        // Refusals of the request itself ("request is too large", "too many operations in
        // txn request", "duplicate key given in txn request", ...): retrying cannot help.
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            EtcdFailure::Other(StoreError::InvalidRequest {
                reason: format!("etcd refused the request: {message}"),
            })
        }
        // Everything else is about the cluster, not the request: no leader, timeouts,
        // "database space exceeded", a closed connection. A retry may succeed.
        code => EtcdFailure::Other(StoreError::Unavailable(format!(
            "etcd: {message} ({code:?})"
        ))),
    }
}

impl EtcdFailure {
    /// For calls where a revision error cannot happen (no revision was given).
    pub(crate) fn into_store_error(self) -> StoreError {
        match self {
            EtcdFailure::Other(e) => e,
            EtcdFailure::Compacted | EtcdFailure::FutureRevision => StoreError::Internal(
                "etcd reported a revision error for a request without a revision".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, msg: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, msg))
    }

    #[test]
    fn revision_errors_are_told_apart() {
        assert!(matches!(
            classify(status(
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted"
            )),
            EtcdFailure::Compacted
        ));
        assert!(matches!(
            classify(status(
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision"
            )),
            EtcdFailure::FutureRevision
        ));
    }

    #[test]
    fn refusals_and_outages_map_to_their_variants() {
        assert!(matches!(
            classify(status(
                Code::InvalidArgument,
                "etcdserver: request is too large"
            )),
            EtcdFailure::Other(StoreError::InvalidRequest { .. })
        ));
        assert!(matches!(
            classify(status(Code::Unavailable, "etcdserver: no leader")),
            EtcdFailure::Other(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            classify(status(
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded"
            )),
            EtcdFailure::Other(StoreError::Unavailable(_))
        ));
    }

    #[test]
    fn revision_failure_without_revision_is_internal() {
        assert!(matches!(
            EtcdFailure::Compacted.into_store_error(),
            StoreError::Internal(_)
        ));
    }
}
