//! What every controller here shares around kube-runtime's `Controller`: running it until
//! shutdown with its results logged (`drive`), and the per-object exponential retry
//! back-off that its error policy applies and a successful sync resets (`RetryBackoff`),
//! as client-go's per-item rate limiter does for kube-controller-manager's work queues.

use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryFuture};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::Resource;
use serde::de::DeserializeOwned;

/// The delay before retry number `failures` (counted from 1): 5 ms doubling up to 1000 s,
/// client-go's `DefaultControllerRateLimiter` per-item curve.
pub fn retry_backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(5);
    let max = Duration::from_secs(1000);
    base.checked_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .map_or(max, |d| d.min(max))
}

/// Consecutive failed syncs per object, and the requeue delay they earn.
pub struct RetryBackoff<K: Resource>
where
    K::DynamicType: Eq + Hash,
{
    failures: Mutex<HashMap<ObjectRef<K>, u32>>,
    delay: fn(u32) -> Duration,
}

impl<K> Default for RetryBackoff<K>
where
    K: Resource,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K> RetryBackoff<K>
where
    K: Resource,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    /// The default curve, `retry_backoff`.
    pub fn new() -> Self {
        Self::with_delay(retry_backoff)
    }

    /// A controller-specific curve: `delay(n)` after the n-th consecutive failure.
    pub fn with_delay(delay: fn(u32) -> Duration) -> Self {
        RetryBackoff {
            failures: Mutex::new(HashMap::new()),
            delay,
        }
    }

    /// Counts a failed sync of `obj`; returns its consecutive failures, this one included.
    pub fn record_failure(&self, obj: &K) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(ObjectRef::from_obj(obj)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// The delay the curve gives after `failures` consecutive failures.
    pub fn delay(&self, failures: u32) -> Duration {
        (self.delay)(failures)
    }

    /// The error policy's answer to a failed sync of `obj`: requeue it after its back-off.
    pub fn failed(&self, obj: &K, err: &dyn Display) -> Action {
        let n = self.record_failure(obj);
        tracing::debug!(
            kind = %K::kind(&K::DynamicType::default()),
            namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
            name = obj.meta().name.as_deref().unwrap_or_default(),
            error = %err,
            retries = n,
            "requeue"
        );
        Action::requeue(self.delay(n))
    }

    /// A sync of `obj` went through: its next failure starts the back-off afresh.
    pub fn succeeded(&self, obj: &K) {
        self.forget(&ObjectRef::from_obj(obj));
    }

    /// Drops the count for `key` (succeeded, or the object is gone).
    pub fn forget(&self, key: &ObjectRef<K>) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// The consecutive failures counted for `obj`.
    pub fn failures(&self, obj: &K) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ObjectRef::from_obj(obj))
            .copied()
            .unwrap_or(0)
    }
}

/// Runs `controller` until `shutdown` completes, then lets the syncs in flight finish
/// (graceful shutdown); failed syncs are logged, their retry is the error policy's.
///
/// `shutdown` need not be `Sync` (kube-runtime's trigger must be): it is awaited on a task
/// of its own that signals the controller.
pub async fn drive<K, ReconcilerFut, Ctx>(
    name: &'static str,
    controller: Controller<K>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reconcile: impl FnMut(Arc<K>, Arc<Ctx>) -> ReconcilerFut,
    error_policy: impl Fn(Arc<K>, &ReconcilerFut::Error, Arc<Ctx>) -> Action,
    ctx: Arc<Ctx>,
) where
    K: Clone + Resource + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Debug + Unpin,
    ReconcilerFut: TryFuture<Ok = Action> + Send + 'static,
    ReconcilerFut::Error: std::error::Error + Send + 'static,
{
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let bridge = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(());
    });
    controller
        .graceful_shutdown_on(async move {
            let _ = stop_rx.await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                // Woken for an object that went meanwhile: nothing to sync.
                Ok(_) | Err(controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::debug!(controller = name, error = %e, "sync failed"),
            }
        })
        .await;
    bridge.abort();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn cm(ns: &str, name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn backoff_doubles_from_5ms_up_to_1000s() {
        assert_eq!(retry_backoff(0), Duration::from_millis(5));
        assert_eq!(retry_backoff(1), Duration::from_millis(5));
        assert_eq!(retry_backoff(2), Duration::from_millis(10));
        assert_eq!(retry_backoff(5), Duration::from_millis(80));
        assert_eq!(retry_backoff(40), Duration::from_secs(1000));
        assert_eq!(retry_backoff(u32::MAX), Duration::from_secs(1000));
    }

    #[test]
    fn failures_are_counted_per_object_and_reset_on_success() {
        let backoff = RetryBackoff::<ConfigMap>::new();
        let (a, b) = (cm("ns", "a"), cm("other", "a"));
        assert_eq!(
            backoff.failed(&a, &"boom"),
            Action::requeue(retry_backoff(1))
        );
        assert_eq!(
            backoff.failed(&a, &"boom"),
            Action::requeue(retry_backoff(2))
        );
        assert_eq!(backoff.failures(&a), 2);
        // Same name in another namespace is another object.
        assert_eq!(backoff.record_failure(&b), 1);
        backoff.succeeded(&a);
        assert_eq!(backoff.failures(&a), 0);
        assert_eq!(backoff.failures(&b), 1);
        assert_eq!(
            backoff.failed(&a, &"boom"),
            Action::requeue(retry_backoff(1))
        );
    }

    #[test]
    fn a_custom_curve_is_used() {
        let backoff = RetryBackoff::<ConfigMap>::with_delay(|n| Duration::from_secs(n.into()));
        let a = cm("ns", "a");
        backoff.record_failure(&a);
        assert_eq!(
            backoff.failed(&a, &"boom"),
            Action::requeue(Duration::from_secs(2))
        );
        assert_eq!(backoff.delay(7), Duration::from_secs(7));
    }
}
