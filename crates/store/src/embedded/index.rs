//! The in-memory MVCC state: like etcd's treeIndex, every key maps to the revisions at which it
//! changed, and the values themselves are kept beside them (Kubernetes-sized data fits in RAM),
//! so reads at the latest or a past revision never touch the disk.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use crate::{ContinueToken, Event, KeyValue, ListResult, Revision, StoreError, StoreResult};

/// Where a change lives on disk: etcd's (main, sub) revision pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RecordId {
    pub rev: Revision,
    pub sub: u32,
}

/// One change of one key. `kv` is `None` for a delete (a tombstone).
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub id: RecordId,
    pub kv: Option<Arc<KeyValue>>,
}

/// The changes of one key, oldest first.
#[derive(Debug, Default)]
struct KeyHistory {
    changes: Vec<Change>,
}

impl KeyHistory {
    /// The key as it was at `rev`.
    fn at(&self, rev: Revision) -> Option<&Arc<KeyValue>> {
        let n = self.changes.partition_point(|c| c.id.rev <= rev);
        self.changes.get(n.checked_sub(1)?)?.kv.as_ref()
    }

    fn latest(&self) -> Option<&Arc<KeyValue>> {
        self.changes.last()?.kv.as_ref()
    }

    /// Drops the changes nobody can read once history below `rev` is gone, returning their
    /// record ids. The change visible at `rev` stays, unless it is a delete.
    fn compact(&mut self, rev: Revision, garbage: &mut Vec<RecordId>) {
        let visible = self.changes.partition_point(|c| c.id.rev <= rev);
        let Some(keep_from) = visible.checked_sub(1) else {
            return;
        };
        let drop_to = if self.changes[keep_from].kv.is_none() {
            visible
        } else {
            keep_from
        };
        garbage.extend(self.changes.drain(..drop_to).map(|c| c.id));
    }
}

/// Everything a reader needs, guarded by one lock that only the writer takes exclusively.
#[derive(Debug, Default)]
pub(crate) struct MvccState {
    pub current: Revision,
    pub compacted: Revision,
    keys: BTreeMap<String, KeyHistory>,
    /// Every event with a revision at or after `compacted`, in revision order: watchers start
    /// here, so resuming a watch never reads the disk.
    history: VecDeque<Arc<Event>>,
    /// Changes held in `keys`: the records the disk still needs.
    records: usize,
}

impl MvccState {
    /// Resolves a requested read revision: `None` or non-positive means the latest, as in etcd.
    pub fn read_revision(&self, requested: Option<Revision>) -> StoreResult<Revision> {
        match requested {
            None => Ok(self.current),
            Some(r) if r <= 0 => Ok(self.current),
            Some(r) if r > self.current => Err(StoreError::FutureRevision {
                requested: r,
                current: self.current,
            }),
            Some(r) if r < self.compacted => Err(StoreError::Compacted {
                requested: r,
                compacted: self.compacted,
            }),
            Some(r) => Ok(r),
        }
    }

    pub fn latest(&self, key: &str) -> Option<&Arc<KeyValue>> {
        self.keys.get(key)?.latest()
    }

    pub fn get(&self, key: &str, rev: Revision) -> Option<&Arc<KeyValue>> {
        self.keys.get(key)?.at(rev)
    }

    /// One page of the keys under `prefix` at `rev`, starting after `after` when continuing.
    pub fn list(
        &self,
        prefix: &str,
        rev: Revision,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> ListResult {
        let start = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Included(prefix),
        };
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut live = self
            .keys
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(_, h)| h.at(rev));
        let kvs: Vec<KeyValue> = live.by_ref().take(limit).map(|kv| (**kv).clone()).collect();
        let remaining = live.count();
        let continue_token = match (remaining, kvs.last()) {
            (1.., Some(last)) => Some(
                ContinueToken {
                    revision: rev,
                    last_key: last.key.clone(),
                    prefix: prefix.to_string(),
                }
                .encode(),
            ),
            _ => None,
        };
        ListResult {
            kvs,
            revision: rev,
            continue_token,
            remaining: i64::try_from(remaining).unwrap_or(i64::MAX),
        }
    }

    /// Records one change; changes arrive in record order.
    pub fn apply(&mut self, key: &str, change: Change, event: Option<Arc<Event>>) {
        self.current = self.current.max(change.id.rev);
        self.records += 1;
        match self.keys.get_mut(key) {
            Some(h) => h.changes.push(change),
            None => {
                self.keys.insert(
                    key.to_string(),
                    KeyHistory {
                        changes: vec![change],
                    },
                );
            }
        }
        if let Some(event) = event {
            if event.revision() >= self.compacted {
                self.history.push_back(event);
            }
        }
    }

    /// Forgets history below `rev` and returns the records that no read can reach any more.
    pub fn compact(&mut self, rev: Revision) -> Vec<RecordId> {
        let mut garbage = Vec::new();
        self.keys.retain(|_, h| {
            h.compact(rev, &mut garbage);
            !h.changes.is_empty()
        });
        let keep = self.history.partition_point(|e| e.revision() < rev);
        self.history.drain(..keep);
        self.compacted = self.compacted.max(rev);
        self.records = self.records.saturating_sub(garbage.len());
        garbage
    }

    /// The events with a revision above `after` that `matches` accepts.
    pub fn events_after(
        &self,
        after: Revision,
        mut matches: impl FnMut(&Event) -> bool,
    ) -> VecDeque<Arc<Event>> {
        let from = self.history.partition_point(|e| e.revision() <= after);
        self.history
            .range(from..)
            .filter(|e| matches(e))
            .cloned()
            .collect()
    }

    pub fn record_count(&self) -> usize {
        self.records
    }

    #[cfg(test)]
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn put(state: &mut MvccState, key: &str, rev: Revision, value: &str) {
        let prev = state.latest(key).cloned();
        let kv = Arc::new(KeyValue {
            key: key.into(),
            value: Bytes::from(value.to_string()),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
        });
        let event = Arc::new(Event {
            kind: crate::EventKind::Put,
            kv: (*kv).clone(),
            prev: prev.map(|p| (*p).clone()),
        });
        let change = Change {
            id: RecordId { rev, sub: 0 },
            kv: Some(kv),
        };
        state.apply(key, change, Some(event));
    }

    fn delete(state: &mut MvccState, key: &str, rev: Revision) {
        let change = Change {
            id: RecordId { rev, sub: 0 },
            kv: None,
        };
        state.apply(key, change, None);
    }

    #[test]
    fn reads_at_past_revisions_see_the_value_of_that_time() {
        let mut s = MvccState::default();
        put(&mut s, "/a", 1, "one");
        put(&mut s, "/a", 2, "two");
        delete(&mut s, "/a", 3);
        assert_eq!(
            s.get("/a", 1).map(|kv| kv.value.clone()),
            Some("one".into())
        );
        assert_eq!(s.get("/a", 2).map(|kv| kv.version), Some(2));
        assert!(s.get("/a", 3).is_none());
        assert!(s.latest("/a").is_none());
    }

    #[test]
    fn compaction_keeps_the_visible_value_and_drops_deleted_keys() {
        let mut s = MvccState::default();
        put(&mut s, "/a", 1, "one");
        put(&mut s, "/a", 2, "two");
        put(&mut s, "/b", 3, "b");
        delete(&mut s, "/b", 4);
        put(&mut s, "/a", 5, "five");
        let mut garbage = s.compact(4);
        garbage.sort();
        let revs: Vec<Revision> = garbage.iter().map(|g| g.rev).collect();
        assert_eq!(revs, vec![1, 3, 4]);
        assert_eq!(s.get("/a", 4).map(|kv| kv.mod_revision), Some(2));
        assert_eq!(s.key_count(), 1);
        assert_eq!(s.history_len(), 1, "only the event at revision 5 is left");
    }

    #[test]
    fn list_pages_carry_a_token_only_when_more_follow() {
        let mut s = MvccState::default();
        for (i, k) in ["/p/a", "/p/b", "/p/c", "/q/x"].iter().enumerate() {
            put(&mut s, k, i as Revision + 1, "v");
        }
        let page = s.list("/p/", 4, None, Some(2));
        assert_eq!(page.kvs.len(), 2);
        assert_eq!(page.remaining, 1);
        assert!(page.continue_token.is_some());
        let rest = s.list("/p/", 4, Some("/p/b"), Some(2));
        assert_eq!(rest.kvs.len(), 1);
        assert_eq!(rest.kvs[0].key, "/p/c");
        assert!(rest.continue_token.is_none());
        assert_eq!(rest.remaining, 0);
    }
}
