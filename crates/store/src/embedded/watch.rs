//! Watch streams, served from memory: the backlog from the in-memory history, then live
//! batches from the writer's broadcast. A watcher that falls behind the broadcast buffer
//! catches up from history, and is ended with `Compacted` only if that history is gone.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::shared::{EventBatch, Shared};
use crate::{Event, KeyRange, Revision, StoreError, StoreResult, WatchStream};

struct Watcher {
    shared: Arc<Shared>,
    range: KeyRange,
    live: broadcast::Receiver<EventBatch>,
    backlog: VecDeque<Arc<Event>>,
    /// Every event up to this revision is in `backlog` or was delivered (or skipped as
    /// before the start).
    seen: Revision,
    ended: bool,
}

/// Starts a watch of `range` from `start` (`None` or non-positive: after the current revision).
pub(crate) fn watch(
    shared: Arc<Shared>,
    range: KeyRange,
    start: Option<Revision>,
) -> StoreResult<WatchStream> {
    let watcher = {
        let state = shared.read();
        let publisher = state
            .publisher
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
        let current = state.mvcc.current;
        let start = start.filter(|s| *s > 0).unwrap_or(current + 1);
        if start < state.mvcc.compacted {
            return Err(StoreError::Compacted {
                requested: start,
                compacted: state.mvcc.compacted,
            });
        }
        let live = publisher.subscribe();
        let backlog = state
            .mvcc
            .events_after(start - 1, |e| range.contains(&e.kv.key));
        drop(state);
        Watcher {
            shared,
            range,
            live,
            backlog,
            seen: current.max(start - 1),
            ended: false,
        }
    };
    let stream = futures::stream::unfold(watcher, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    });
    Ok(Box::pin(stream))
}

impl Watcher {
    async fn next(&mut self) -> Option<StoreResult<Event>> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                return Some(Ok(Event::clone(&event)));
            }
            if self.ended {
                return None;
            }
            match self.live.recv().await {
                Ok(batch) => {
                    for event in batch.iter() {
                        if event.revision() > self.seen && self.range.contains(&event.kv.key) {
                            self.backlog.push_back(event.clone());
                        }
                    }
                    if let Some(last) = batch.last() {
                        self.seen = self.seen.max(last.revision());
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "watcher fell behind; catching up from history");
                    let state = self.shared.read();
                    if self.seen + 1 < state.mvcc.compacted {
                        self.ended = true;
                        return Some(Err(StoreError::Compacted {
                            requested: self.seen + 1,
                            compacted: state.mvcc.compacted,
                        }));
                    }
                    let range = &self.range;
                    self.backlog = state
                        .mvcc
                        .events_after(self.seen, |e| range.contains(&e.kv.key));
                    self.seen = self.seen.max(state.mvcc.current);
                }
                Err(RecvError::Closed) => self.ended = true,
            }
        }
    }
}
