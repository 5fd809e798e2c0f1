//! The durable half of the engine: one redb file holding every change still reachable, keyed
//! like etcd's bbolt "key" bucket by (revision, sub-revision), plus the revision counters.
//!
//! redb commits with checksums and one fsync (`Durability::Immediate`), so a commit is either
//! wholly on disk or not at all, which is what lets a SIGKILL lose nothing acknowledged.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::index::RecordId;
use crate::{KeyValue, Revision, StoreError, StoreResult};

/// (revision, sub): etcd's revision pair, so records sort in commit order.
type RecordKey = (i64, u32);
/// (kind, create_revision, version, key, value).
type RecordRow<'a> = (u8, i64, i64, &'a str, &'a [u8]);
const RECORDS: TableDefinition<RecordKey, RecordRow> = TableDefinition::new("records");
/// Counters that must survive even when no record carries them (a compacted delete).
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

const META_CURRENT: &str = "current_revision";
const META_COMPACTED: &str = "compacted_revision";

const KIND_PUT: u8 = 0;
const KIND_DELETE: u8 = 1;

/// The file name inside the store's directory.
pub(crate) const FILE_NAME: &str = "flotilla-store.redb";

/// One change as stored.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    Put(KeyValue),
    Delete { key: String, rev: Revision },
}

/// A change read back at open, with its place in the log.
#[derive(Debug)]
pub(crate) struct LoadedRecord {
    pub id: RecordId,
    pub record: Record,
}

/// What one group commit writes.
#[derive(Debug, Default)]
pub(crate) struct CommitBatch<'a> {
    pub records: Vec<(RecordId, &'a Record)>,
    pub current: Option<Revision>,
    pub compacted: Option<Revision>,
    pub garbage: &'a [RecordId],
}

pub(crate) struct Disk {
    db: redb::Database,
    path: PathBuf,
}

fn unavailable(context: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{context}: {err}"))
}

impl Disk {
    /// Opens (or creates) the file and replays its records in revision order into `sink`.
    /// Returns the disk and the (current, compacted) revisions.
    pub fn open(
        dir: &Path,
        mut sink: impl FnMut(LoadedRecord) -> StoreResult<()>,
    ) -> StoreResult<(Disk, Revision, Revision)> {
        std::fs::create_dir_all(dir).map_err(|e| unavailable("creating the store directory", e))?;
        let path = dir.join(FILE_NAME);
        let db = redb::Database::create(&path).map_err(|e| unavailable("opening the store", e))?;
        let setup = db
            .begin_write()
            .map_err(|e| unavailable("opening the store", e))?;
        setup
            .open_table(RECORDS)
            .map_err(|e| unavailable("opening the store", e))?;
        setup
            .open_table(META)
            .map_err(|e| unavailable("opening the store", e))?;
        setup
            .commit()
            .map_err(|e| unavailable("opening the store", e))?;

        let read = db
            .begin_read()
            .map_err(|e| unavailable("reading the store", e))?;
        let meta = read
            .open_table(META)
            .map_err(|e| unavailable("reading the store", e))?;
        let counter = |name: &str| -> StoreResult<Revision> {
            Ok(meta
                .get(name)
                .map_err(|e| unavailable("reading the store", e))?
                .map(|v| v.value())
                .unwrap_or(0))
        };
        let mut current = counter(META_CURRENT)?;
        let compacted = counter(META_COMPACTED)?;
        let records = read
            .open_table(RECORDS)
            .map_err(|e| unavailable("reading the store", e))?;
        for entry in records
            .iter()
            .map_err(|e| unavailable("reading the store", e))?
        {
            let (k, v) = entry.map_err(|e| unavailable("reading the store", e))?;
            let (rev, sub) = k.value();
            let (kind, create_revision, version, key, value) = v.value();
            let record = match kind {
                KIND_PUT => Record::Put(KeyValue {
                    key: key.to_string(),
                    value: Bytes::copy_from_slice(value),
                    create_revision,
                    mod_revision: rev,
                    version,
                }),
                KIND_DELETE => Record::Delete {
                    key: key.to_string(),
                    rev,
                },
                other => {
                    return Err(StoreError::Internal(format!(
                        "record ({rev}, {sub}) has unknown kind {other}"
                    )))
                }
            };
            current = current.max(rev);
            sink(LoadedRecord {
                id: RecordId { rev, sub },
                record,
            })?;
        }
        drop(records);
        drop(meta);
        drop(read);
        Ok((Disk { db, path }, current, compacted))
    }

    /// Writes one batch in one durable transaction: returns once it is fsync'd.
    pub fn commit(&self, batch: &CommitBatch<'_>) -> StoreResult<()> {
        let tx = self
            .db
            .begin_write()
            .map_err(|e| unavailable("writing the store", e))?;
        {
            let mut records = tx
                .open_table(RECORDS)
                .map_err(|e| unavailable("writing the store", e))?;
            for (id, record) in &batch.records {
                let row = match record {
                    Record::Put(kv) => (
                        KIND_PUT,
                        kv.create_revision,
                        kv.version,
                        kv.key.as_str(),
                        kv.value.as_ref(),
                    ),
                    Record::Delete { key, .. } => (KIND_DELETE, 0, 0, key.as_str(), &[][..]),
                };
                records
                    .insert((id.rev, id.sub), row)
                    .map_err(|e| unavailable("writing the store", e))?;
            }
            for id in batch.garbage {
                records
                    .remove((id.rev, id.sub))
                    .map_err(|e| unavailable("compacting the store", e))?;
            }
            let mut meta = tx
                .open_table(META)
                .map_err(|e| unavailable("writing the store", e))?;
            if let Some(current) = batch.current {
                meta.insert(META_CURRENT, current)
                    .map_err(|e| unavailable("writing the store", e))?;
            }
            if let Some(compacted) = batch.compacted {
                meta.insert(META_COMPACTED, compacted)
                    .map_err(|e| unavailable("writing the store", e))?;
            }
        }
        tx.commit()
            .map_err(|e| unavailable("committing to the store", e))
    }

    /// Gives freed pages back to the file system. redb reuses freed pages anyway, so this only
    /// matters after a compaction removed much of the file.
    pub fn shrink(&mut self) -> StoreResult<()> {
        while self
            .db
            .compact()
            .map_err(|e| unavailable("shrinking the store file", e))?
        {}
        Ok(())
    }

    /// Bytes the store file occupies.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}
