//! The single writer: it drains every queued transaction, applies them in order (each compare
//! sees the effects of the earlier ones), writes the whole batch in one durable redb commit,
//! and only then makes it visible to readers, acknowledges it and publishes its events.
//! Compaction runs here too, so it never races a write; its deletions ride along with later
//! write batches, sharing their fsync instead of stalling writers.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::disk::{CommitBatch, Disk, Record};
use super::index::{Change, RecordId};
use super::shared::Shared;
use super::EmbeddedConfig;
use crate::{
    Compare, Event, EventKind, KeyValue, Op, OpResult, Revision, StoreError, StoreResult, Txn,
    TxnResult,
};

/// How many compacted records one commit deletes at most, so a big compaction is spread over
/// many commits instead of stalling one.
const GARBAGE_PER_COMMIT: usize = 8192;
/// Shrink the file only after at least this many deletions (and twice as many as remain).
const SHRINK_AFTER_DELETES: usize = 1024;

pub(crate) enum Request {
    Txn {
        txn: Txn,
        reply: oneshot::Sender<StoreResult<TxnResult>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<StoreResult<()>>,
    },
}

pub(crate) struct Writer {
    pub disk: Disk,
    pub shared: Arc<Shared>,
    pub requests: Receiver<Request>,
    pub config: EmbeddedConfig,
    /// Records that compaction made unreachable and that are still on disk.
    pub garbage: Vec<RecordId>,
    /// How many transactions the last batch carried: about as many writers are active.
    pub expected_batch: usize,
    /// Records deleted since the file was last shrunk.
    pub deleted_since_shrink: usize,
    /// Explicit compactions, answered once their records are physically gone (like etcd's
    /// `physical: true`), so that a caller measuring the disk sees the result.
    pub compactions: Vec<oneshot::Sender<StoreResult<()>>>,
}

/// One transaction's outcome, held until the batch is durable.
struct Pending {
    reply: oneshot::Sender<StoreResult<TxnResult>>,
    result: TxnResult,
}

impl Writer {
    pub fn run(mut self) {
        let mut tick = self
            .config
            .compaction_interval
            .map(|i| (Instant::now() + i, 0));
        loop {
            let wait = tick.map(|(at, _)| at.saturating_duration_since(Instant::now()));
            let next = if !self.garbage.is_empty() {
                match self.requests.try_recv() {
                    Ok(r) => Some(r),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                match wait {
                    Some(wait) => match self.requests.recv_timeout(wait) {
                        Ok(r) => Some(r),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    },
                    None => match self.requests.recv() {
                        Ok(r) => Some(r),
                        Err(_) => break,
                    },
                }
            };
            match next {
                Some(Request::Txn { txn, reply }) => {
                    let deferred = self.group_commit(txn, reply);
                    if let Some((revision, reply)) = deferred {
                        self.explicit_compact(revision, reply);
                    }
                }
                Some(Request::Compact { revision, reply }) => {
                    self.explicit_compact(revision, reply)
                }
                None if !self.garbage.is_empty() => self.collect_garbage(),
                None => {}
            }
            if self.garbage.is_empty() {
                self.shrink_if_mostly_free();
                for reply in self.compactions.drain(..) {
                    let _ = reply.send(Ok(()));
                }
            }
            if let Some((at, target)) = tick {
                if Instant::now() >= at {
                    // Like kube-apiserver: compact to the revision seen one interval ago, so
                    // every watcher gets at least one interval to catch up.
                    self.auto_compact(target, "interval");
                    let interval = self.config.compaction_interval.unwrap_or_default();
                    tick = Some((Instant::now() + interval, self.shared.read().mvcc.current));
                }
            }
        }
        self.shared.write().publisher = None;
        tracing::debug!("store writer stopped");
    }

    /// Commits `first` and whatever else is queued, up to the batch limits. A compaction met
    /// while draining is returned, to run after the batch.
    fn group_commit(
        &mut self,
        first: Txn,
        reply: oneshot::Sender<StoreResult<TxnResult>>,
    ) -> Option<(Revision, oneshot::Sender<StoreResult<()>>)> {
        let mut bytes = txn_bytes(&first);
        let mut batch = vec![(first, reply)];
        let mut deferred = None;
        let gather_until = Instant::now() + self.config.max_batch_delay;
        while batch.len() < self.config.max_batch_txns && bytes < self.config.max_batch_bytes {
            let next = match self.requests.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) if batch.len() < self.expected_batch => {
                    let left = gather_until.saturating_duration_since(Instant::now());
                    match self.requests.recv_timeout(left) {
                        Ok(r) => r,
                        Err(_) => break,
                    }
                }
                Err(_) => break,
            };
            match next {
                Request::Txn { txn, reply } => {
                    bytes += txn_bytes(&txn);
                    batch.push((txn, reply));
                }
                Request::Compact { revision, reply } => {
                    deferred = Some((revision, reply));
                    break;
                }
            }
        }
        self.expected_batch = batch.len();
        self.commit_batch(batch);
        if let Some(max) = self.config.max_retained_revisions {
            let (current, compacted) = {
                let s = self.shared.read();
                (s.mvcc.current, s.mvcc.compacted)
            };
            // A tenth of slack, so the count-based compaction runs now and then, not per write.
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            if current - compacted > max.saturating_add(max / 10) {
                self.auto_compact(current - max, "retained revisions");
            }
        }
        deferred
    }

    fn commit_batch(&mut self, batch: Vec<(Txn, oneshot::Sender<StoreResult<TxnResult>>)>) {
        let mut pending = Vec::with_capacity(batch.len());
        let mut records: Vec<(RecordId, Record)> = Vec::new();
        let mut changes: Vec<(Change, Arc<Event>)> = Vec::new();
        let mut rev;
        {
            let state = self.shared.read();
            rev = state.mvcc.current;
            // The latest value of each key touched so far in this batch.
            let mut overlay: HashMap<String, Option<Arc<KeyValue>>> = HashMap::new();
            let lookup = |overlay: &HashMap<String, Option<Arc<KeyValue>>>, key: &str| match overlay
                .get(key)
            {
                Some(v) => v.clone(),
                None => state.mvcc.latest(key).cloned(),
            };
            for (txn, reply) in batch {
                let holds = txn.compares.iter().all(|c| {
                    let current = lookup(&overlay, c.key());
                    match (c, current) {
                        (Compare::Absent(_), cur) => cur.is_none(),
                        (Compare::Exists(_), cur) => cur.is_some(),
                        (Compare::ModRevision(_, want), cur) => {
                            cur.is_some_and(|kv| kv.mod_revision == *want)
                        }
                    }
                });
                if !holds {
                    let current = txn
                        .compares
                        .iter()
                        .map(|c| lookup(&overlay, c.key()).map(|kv| (*kv).clone()))
                        .collect();
                    pending.push(Pending {
                        reply,
                        result: TxnResult::Failed {
                            revision: rev,
                            current,
                        },
                    });
                    continue;
                }
                let writes = txn.ops.iter().any(|op| match op {
                    Op::Put { .. } => true,
                    Op::Delete { key } => lookup(&overlay, key).is_some(),
                });
                if !writes {
                    let results = txn.ops.iter().map(|_| OpResult::Delete(None)).collect();
                    pending.push(Pending {
                        reply,
                        result: TxnResult::Succeeded {
                            revision: rev,
                            results,
                        },
                    });
                    continue;
                }
                rev += 1;
                let mut sub = 0u32;
                let mut results = Vec::with_capacity(txn.ops.len());
                for op in txn.ops {
                    let prev = lookup(&overlay, op.key());
                    let id = RecordId { rev, sub };
                    match op {
                        Op::Put { key, value } => {
                            let kv = Arc::new(KeyValue {
                                create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                                version: prev.as_ref().map_or(1, |p| p.version + 1),
                                mod_revision: rev,
                                key,
                                value,
                            });
                            let event = Arc::new(Event {
                                kind: EventKind::Put,
                                kv: (*kv).clone(),
                                prev: prev.map(|p| (*p).clone()),
                            });
                            results.push(OpResult::Put((*kv).clone()));
                            records.push((id, Record::Put((*kv).clone())));
                            overlay.insert(kv.key.clone(), Some(kv.clone()));
                            changes.push((Change { id, kv: Some(kv) }, event));
                        }
                        Op::Delete { key } => {
                            let Some(prev) = prev else {
                                results.push(OpResult::Delete(None));
                                continue;
                            };
                            let event = Arc::new(Event {
                                kind: EventKind::Delete,
                                kv: tombstone(&key, rev),
                                prev: Some((*prev).clone()),
                            });
                            results.push(OpResult::Delete(Some((*prev).clone())));
                            records.push((
                                id,
                                Record::Delete {
                                    key: key.clone(),
                                    rev,
                                },
                            ));
                            overlay.insert(key, None);
                            changes.push((Change { id, kv: None }, event));
                        }
                    }
                    sub += 1;
                }
                pending.push(Pending {
                    reply,
                    result: TxnResult::Succeeded {
                        revision: rev,
                        results,
                    },
                });
            }
        }

        let take = self.garbage.len().min(GARBAGE_PER_COMMIT);
        let garbage: Vec<RecordId> = self.garbage.drain(..take).collect();
        let commit = CommitBatch {
            records: records.iter().map(|(id, r)| (*id, r)).collect(),
            // The records carry the revision; `meta` needs it only once compaction may delete
            // the newest record (see `compact`), which keeps one table out of every commit.
            current: None,
            compacted: None,
            garbage: &garbage,
        };
        let written = if commit.records.is_empty() && garbage.is_empty() {
            Ok(())
        } else {
            self.disk.commit(&commit)
        };
        if let Err(err) = written {
            tracing::error!(error = %err, "store commit failed");
            self.garbage.extend(garbage);
            for p in pending {
                let _ = p.reply.send(Err(err.clone()));
            }
            return;
        }
        self.deleted_since_shrink += garbage.len();

        if !changes.is_empty() {
            let mut state = self.shared.write();
            let mut events = Vec::with_capacity(changes.len());
            for (change, event) in changes {
                let key = event.kv.key.clone();
                state.mvcc.apply(&key, change, Some(event.clone()));
                events.push(event);
            }
            // Published under the lock, so a watcher that subscribes under the read lock sees
            // each batch either in history or live, never both and never neither.
            if let Some(publisher) = &state.publisher {
                let _ = publisher.send(Arc::from(events));
            }
        }
        for p in pending {
            let _ = p.reply.send(Ok(p.result));
        }
    }

    fn compact(&mut self, revision: Revision) -> StoreResult<()> {
        let current = {
            let s = self.shared.read();
            if revision > s.mvcc.current {
                return Err(StoreError::FutureRevision {
                    requested: revision,
                    current: s.mvcc.current,
                });
            }
            if revision <= s.mvcc.compacted {
                return Err(StoreError::Compacted {
                    requested: revision,
                    compacted: s.mvcc.compacted,
                });
            }
            s.mvcc.current
        };
        // The compacted revision is durable before anything is forgotten, so a restart never
        // serves history that was promised gone, nor loses history still promised.
        // The current revision goes with it: the garbage may include the newest record (a
        // delete at `revision`), after which only `meta` remembers the counter.
        self.disk.commit(&CommitBatch {
            compacted: Some(revision),
            current: Some(current),
            ..CommitBatch::default()
        })?;
        let garbage = self.shared.write().mvcc.compact(revision);
        tracing::debug!(revision, records = garbage.len(), "store compacted");
        self.garbage.extend(garbage);
        Ok(())
    }

    fn explicit_compact(&mut self, revision: Revision, reply: oneshot::Sender<StoreResult<()>>) {
        match self.compact(revision) {
            Ok(()) => self.compactions.push(reply),
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        }
    }

    fn auto_compact(&mut self, target: Revision, reason: &str) {
        let compacted = self.shared.read().mvcc.compacted;
        if target <= compacted {
            return;
        }
        if let Err(err) = self.compact(target) {
            tracing::warn!(error = %err, reason, "automatic compaction failed");
        }
    }

    fn collect_garbage(&mut self) {
        let take = self.garbage.len().min(GARBAGE_PER_COMMIT);
        let chunk: Vec<RecordId> = self.garbage.drain(..take).collect();
        let commit = CommitBatch {
            garbage: &chunk,
            ..CommitBatch::default()
        };
        match self.disk.commit(&commit) {
            Ok(()) => self.deleted_since_shrink += chunk.len(),
            Err(err) => {
                tracing::warn!(error = %err, "deleting compacted records failed; will retry");
                self.garbage.extend(chunk);
            }
        }
    }

    /// Returns freed space to the file system once most of the file is free. redb reuses
    /// freed pages, so skipping this only leaves the file at its high-water mark.
    fn shrink_if_mostly_free(&mut self) {
        let deleted = self.deleted_since_shrink;
        if deleted < SHRINK_AFTER_DELETES || deleted < 2 * self.shared.read().mvcc.record_count() {
            return;
        }
        self.deleted_since_shrink = 0;
        let before = self.disk.file_size();
        let started = Instant::now();
        match self.disk.shrink() {
            Ok(()) => tracing::debug!(
                before,
                after = self.disk.file_size(),
                took_ms = started.elapsed().as_millis() as u64,
                "store file shrunk"
            ),
            Err(err) => tracing::warn!(error = %err, "shrinking the store file failed"),
        }
    }
}

/// What a delete event carries: the key, no value, the revision of the delete (as etcd).
pub(crate) fn tombstone(key: &str, rev: Revision) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Bytes::new(),
        create_revision: 0,
        mod_revision: rev,
        version: 0,
    }
}

fn txn_bytes(txn: &Txn) -> usize {
    txn.ops
        .iter()
        .map(|op| match op {
            Op::Put { key, value } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
        })
        .sum()
}
