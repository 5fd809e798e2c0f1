//! The embedded engine: Flotilla's default store, with no outside process.
//!
//! * Durability: one redb file (see `disk`); a write is acknowledged only after the commit
//!   carrying it is fsync'd.
//! * Concurrency: a single writer thread group-commits every queued transaction in one
//!   durable commit (see `writer`); readers never wait for the disk.
//! * Reads and watches come from memory (see `index`, `watch`): an index of every key's
//!   changes since the compacted revision, and the event history for resuming watches.
//! * Automatic compaction bounds both memory and disk (see [`EmbeddedConfig`]).

mod disk;
mod index;
mod shared;
mod watch;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, oneshot};

use crate::{
    validate_key, ContinueToken, Event, EventKind, KeyRange, KeyValue, ListOptions, ListResult,
    Revision, Store, StoreError, StoreResult, Txn, TxnResult, WatchStream,
};
use disk::{Disk, Record};
use index::{Change, MvccState};
use shared::Shared;
use writer::{Request, Writer};

/// Tuning of the embedded engine. `Default` gives Kubernetes-like behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Compact every interval to the revision current one interval earlier, as
    /// kube-apiserver does (default 5 minutes). `None` disables time-based compaction.
    pub compaction_interval: Option<Duration>,
    /// Keep at most about this many revisions of history (in memory and on disk); older
    /// ones are compacted away as writes arrive. `None`: no limit besides the interval.
    pub max_retained_revisions: Option<u64>,
    /// Most transactions written by one group commit.
    pub max_batch_txns: usize,
    /// Most key and value bytes written by one group commit (a single larger transaction is
    /// still written, alone).
    pub max_batch_bytes: usize,
    /// How long a group commit may wait for the writers it just acknowledged to send their
    /// next transaction. Without it, the first writer to come back would be committed alone
    /// while the others queue behind its fsync. A lone writer never waits.
    pub max_batch_delay: Duration,
    /// Committed batches buffered for live watchers; one that falls further behind catches
    /// up from the in-memory history instead.
    pub watch_buffer: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            compaction_interval: Some(Duration::from_secs(300)),
            max_retained_revisions: Some(100_000),
            max_batch_txns: 4096,
            max_batch_bytes: 16 << 20,
            max_batch_delay: Duration::from_micros(500),
            watch_buffer: 1024,
        }
    }
}

/// The embedded store. Cheap to share as `Arc<dyn Store>`; dropping it stops the writer
/// (after the batch in flight), ends live watches and releases the file.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    dir: PathBuf,
}

impl EmbeddedStore {
    /// Opens the store in `dir` (created if missing), replaying its file into memory.
    ///
    /// This is synchronous and reads the whole file, so call it from `spawn_blocking` when a
    /// runtime's worker must not stall; it does not need a Tokio runtime.
    pub fn open(dir: &Path, config: EmbeddedConfig) -> StoreResult<EmbeddedStore> {
        if config.max_batch_txns == 0
            || config.watch_buffer == 0
            || config.compaction_interval == Some(Duration::ZERO)
        {
            return Err(StoreError::InvalidRequest {
                reason: "max_batch_txns, watch_buffer and compaction_interval must be positive"
                    .into(),
            });
        }
        let started = std::time::Instant::now();
        let mut mvcc = MvccState::default();
        let mut records = 0usize;
        let (disk, current, compacted) = Disk::open(dir, |loaded| {
            records += 1;
            let (key, kv, event) = match loaded.record {
                Record::Put(kv) => {
                    let prev = mvcc.latest(&kv.key).map(|p| KeyValue::clone(p));
                    let event = Event {
                        kind: EventKind::Put,
                        kv: kv.clone(),
                        prev,
                    };
                    (kv.key.clone(), Some(Arc::new(kv)), event)
                }
                Record::Delete { key, rev } => {
                    let prev = mvcc.latest(&key).map(|p| KeyValue::clone(p));
                    let event = Event {
                        kind: EventKind::Delete,
                        kv: writer::tombstone(&key, rev),
                        prev,
                    };
                    (key, None, event)
                }
            };
            let change = Change { id: loaded.id, kv };
            mvcc.apply(&key, change, Some(Arc::new(event)));
            Ok(())
        })?;
        mvcc.current = mvcc.current.max(current);
        // Records a crash left behind between a compaction and their deletion are found
        // again here and deleted by the writer.
        let garbage = if compacted > 0 {
            mvcc.compact(compacted)
        } else {
            Vec::new()
        };
        tracing::info!(
            dir = %dir.display(),
            records,
            keys = mvcc.key_count(),
            revision = mvcc.current,
            compacted,
            took_ms = started.elapsed().as_millis() as u64,
            "embedded store opened"
        );

        let (publisher, _) = broadcast::channel(config.watch_buffer);
        let shared = Arc::new(Shared::new(mvcc, publisher));
        let (requests, receiver) = mpsc::channel();
        let writer = Writer {
            disk,
            shared: shared.clone(),
            requests: receiver,
            config,
            garbage,
            expected_batch: 1,
            deleted_since_shrink: 0,
            compactions: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Unavailable(format!("starting the store writer: {e}")))?;
        Ok(EmbeddedStore {
            shared,
            requests: Some(requests),
            writer: Some(handle),
            dir: dir.to_path_buf(),
        })
    }

    /// Bytes the store occupies on disk.
    pub fn disk_usage(&self) -> u64 {
        std::fs::metadata(self.dir.join(disk::FILE_NAME))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    fn send(&self, request: Request) -> StoreResult<()> {
        let closed = || StoreError::Unavailable("the store writer has stopped".into());
        self.requests
            .as_ref()
            .ok_or_else(closed)?
            .send(request)
            .map_err(|_| closed())
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!("the store writer panicked");
            }
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> StoreResult<(Option<KeyValue>, Revision)> {
        validate_key(key)?;
        let state = self.shared.read();
        let rev = state.mvcc.read_revision(revision)?;
        let kv = state.mvcc.get(key, rev).map(|kv| KeyValue::clone(kv));
        Ok((kv, rev))
    }

    async fn list(&self, options: ListOptions) -> StoreResult<ListResult> {
        validate_key(&options.prefix)?;
        let token = match &options.continue_token {
            Some(t) => Some(ContinueToken::decode(t, &options.prefix)?),
            None => None,
        };
        let state = self.shared.read();
        let requested = token.as_ref().map(|t| t.revision).or(options.revision);
        let rev = state.mvcc.read_revision(requested)?;
        Ok(state.mvcc.list(
            &options.prefix,
            rev,
            token.as_ref().map(|t| t.last_key.as_str()),
            options.limit,
        ))
    }

    async fn txn(&self, txn: Txn) -> StoreResult<TxnResult> {
        txn.validate()?;
        let (reply, answer) = oneshot::channel();
        self.send(Request::Txn { txn, reply })?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?
    }

    async fn watch(&self, range: KeyRange, start: Option<Revision>) -> StoreResult<WatchStream> {
        match &range {
            KeyRange::Key(k) | KeyRange::Prefix(k) => validate_key(k)?,
        }
        watch::watch(self.shared.clone(), range, start)
    }

    async fn compact(&self, revision: Revision) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Compact { revision, reply })?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?
    }

    async fn current_revision(&self) -> StoreResult<Revision> {
        Ok(self.shared.read().mvcc.current)
    }

    async fn compacted_revision(&self) -> StoreResult<Revision> {
        Ok(self.shared.read().mvcc.compacted)
    }
}
