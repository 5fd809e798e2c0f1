//! The store conformance suite: one set of cases that every [`Store`] backend must pass
//! unchanged (the embedded engine, etcd, and any decorator such as a watch cache).
//!
//! Each case takes a fresh, empty store and returns a [`CaseResult`]; a backend's test file
//! runs them all with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! async fn fresh() -> (Arc<dyn Store>, Guard) { ... }
//! flotilla_store::conformance_tests!(fresh);
//! ```
//!
//! Waits are bounded by deadlines, never by sleeps.

mod compaction;
mod input;
mod kv;
mod pagination;
mod watch;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Event, StoreError, WatchStream};

pub use compaction::compaction_refuses_old_revisions;
pub use input::{bad_input_gets_typed_errors, values_up_to_the_limit_are_accepted};
pub use kv::{
    compare_and_swap_loses_no_update, revisions_follow_write_transactions,
    single_key_helpers_report_typed_outcomes,
};
pub use pagination::pagination_is_a_consistent_snapshot;
pub use watch::{
    watch_delivers_concurrent_writes_in_order, watch_resumes_from_a_past_revision,
    watch_single_key_versus_prefix,
};

/// The outcome of one case.
pub type CaseResult = Result<(), Failure>;

/// Why a case failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The store answered, but not as the contract says.
    #[error("{0}")]
    Check(String),
    /// The store failed an operation the case expected to succeed.
    #[error("unexpected store error: {0}")]
    Store(#[from] StoreError),
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

/// How long a case waits for something the store owes it (a watch event, a task).
const DEADLINE: Duration = Duration::from_secs(20);

/// Fails the case with a message unless `cond` holds.
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::conformance::Failure::Check(format!($($msg)+)));
        }
    };
}

/// Fails the case unless `left == right`, showing both.
macro_rules! check_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err($crate::conformance::Failure::Check(format!(
                "{}: {:?} != {:?}",
                format!($($msg)+),
                left,
                right
            )));
        }
    }};
}

pub(crate) use {check, check_eq};

/// Runs every conformance case as its own `#[tokio::test]`, each on a fresh store from
/// `$factory`: an async fn returning `(Arc<dyn Store>, G)`, where `G` keeps the backend
/// alive (a temp dir, an etcd process) until the case ends.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@cases $factory;
            compare_and_swap_loses_no_update,
            single_key_helpers_report_typed_outcomes,
            revisions_follow_write_transactions,
            watch_delivers_concurrent_writes_in_order,
            watch_resumes_from_a_past_revision,
            watch_single_key_versus_prefix,
            compaction_refuses_old_revisions,
            values_up_to_the_limit_are_accepted,
            pagination_is_a_consistent_snapshot,
            bad_input_gets_typed_errors
        );
    };
    (@cases $factory:path; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, guard) = $factory().await;
                let outcome = $crate::conformance::$case(store).await;
                drop(guard);
                if let Err(failure) = outcome {
                    panic!("conformance case {} failed: {}", stringify!($case), failure);
                }
            }
        )+
    };
}

pub(crate) fn bytes(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

/// The next event of `stream`, within the deadline.
pub(crate) async fn next_event(stream: &mut WatchStream, what: &str) -> Result<Event, Failure> {
    match tokio::time::timeout(DEADLINE, stream.next()).await {
        Err(_) => Err(Failure::Timeout(what.to_string())),
        Ok(None) => Err(Failure::Check(format!(
            "watch ended while waiting for {what}"
        ))),
        Ok(Some(event)) => Ok(event?),
    }
}
