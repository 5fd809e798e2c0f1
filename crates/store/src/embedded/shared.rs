//! What readers, watchers and the writer share: the MVCC state and the event fan-out.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::broadcast;

use super::index::MvccState;
use crate::Event;

/// The events of one committed batch, in revision order. Every watcher receives the same
/// allocation; nothing is copied per watcher until it hands an event to its consumer.
pub(crate) type EventBatch = Arc<[Arc<Event>]>;

pub(crate) struct Locked {
    pub mvcc: MvccState,
    /// `None` once the writer has stopped, which ends every live watch.
    pub publisher: Option<broadcast::Sender<EventBatch>>,
}

pub(crate) struct Shared {
    inner: RwLock<Locked>,
}

impl Shared {
    pub fn new(mvcc: MvccState, publisher: broadcast::Sender<EventBatch>) -> Self {
        Shared {
            inner: RwLock::new(Locked {
                mvcc,
                publisher: Some(publisher),
            }),
        }
    }

    // The state is only mutated by the writer between consistent points, and a panic there
    // already stops the writer; readers may keep serving what was committed.
    pub fn read(&self) -> RwLockReadGuard<'_, Locked> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Locked> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}
