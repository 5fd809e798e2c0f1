//! Behaviour of the embedded engine through the `Store` contract.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::{EmbeddedConfig, EmbeddedStore};
use crate::{
    Compare, EventKind, KeyRange, ListOptions, Op, OpResult, Store, StoreError, Txn, TxnResult,
    WatchStream,
};

fn quiet() -> EmbeddedConfig {
    EmbeddedConfig {
        compaction_interval: None,
        max_retained_revisions: None,
        ..EmbeddedConfig::default()
    }
}

fn open(dir: &tempfile::TempDir) -> EmbeddedStore {
    EmbeddedStore::open(dir.path(), quiet()).expect("open store")
}

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

async fn next_event(w: &mut WatchStream) -> crate::Event {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("event within deadline")
        .expect("stream open")
        .expect("event, not error")
}

#[tokio::test]
async fn revisions_and_versions_follow_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    assert_eq!(s.current_revision().await.unwrap(), 0);
    let a1 = s.create("/r/a", b("1")).await.unwrap();
    assert_eq!((a1.create_revision, a1.mod_revision, a1.version), (1, 1, 1));
    let bkv = s.create("/r/b", b("x")).await.unwrap();
    assert_eq!(bkv.mod_revision, 2);
    let a2 = s.update("/r/a", b("2"), 1).await.unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision, a2.version), (1, 3, 2));
    let (prev, rev) = s.delete("/r/a", None).await.unwrap();
    assert_eq!((prev.version, rev), (2, 4));
    let a3 = s.create("/r/a", b("3")).await.unwrap();
    assert_eq!(
        (a3.create_revision, a3.version),
        (5, 1),
        "delete resets the version"
    );
    assert_eq!(s.current_revision().await.unwrap(), 5);
}

#[tokio::test]
async fn compares_decide_and_report_current_values() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create("/c/a", b("a")).await.unwrap();
    assert_eq!(
        s.create("/c/a", b("again")).await,
        Err(StoreError::AlreadyExists { key: "/c/a".into() })
    );
    match s.update("/c/a", b("x"), 99).await {
        Err(StoreError::Conflict { current, .. }) => {
            assert_eq!(current.map(|kv| kv.value), Some(b("a")))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        s.update("/c/missing", b("x"), 1).await,
        Err(StoreError::NotFound { .. })
    ));
    let failed = s
        .txn(Txn {
            compares: vec![
                Compare::Exists("/c/a".into()),
                Compare::Absent("/c/a".into()),
            ],
            ops: vec![Op::Put {
                key: "/c/z".into(),
                value: b("z"),
            }],
        })
        .await
        .unwrap();
    match failed {
        TxnResult::Failed { revision, current } => {
            assert_eq!(revision, 1);
            assert_eq!(current.len(), 2);
            assert!(current
                .iter()
                .all(|c| c.as_ref().is_some_and(|kv| kv.key == "/c/a")));
        }
        other => panic!("expected failure, got {other:?}"),
    }
    assert_eq!(s.current_revision().await.unwrap(), 1, "nothing written");
    // Deleting only absent keys creates no revision.
    let noop = s
        .txn(Txn {
            compares: vec![],
            ops: vec![Op::Delete {
                key: "/c/none".into(),
            }],
        })
        .await
        .unwrap();
    assert_eq!(
        noop,
        TxnResult::Succeeded {
            revision: 1,
            results: vec![OpResult::Delete(None)]
        }
    );
}

#[tokio::test]
async fn concurrent_transactions_see_each_other_within_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    // 64 racing creates of one key: exactly one wins, whatever batches they land in.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create("/race/k", b(&i.to_string())).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(won, 1);
    // 64 racing creates of distinct keys: 64 distinct revisions.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create(&format!("/many/{i:02}"), b("v")).await
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap().unwrap().mod_revision);
    }
    revs.sort();
    revs.dedup();
    assert_eq!(revs.len(), 64);
    assert_eq!(s.current_revision().await.unwrap(), 65);
}

#[tokio::test]
async fn past_revisions_and_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.put("/p/a", b("1")).await.unwrap();
    s.put("/p/a", b("2")).await.unwrap();
    s.delete("/p/a", None).await.unwrap();
    let (kv, rev) = s.get("/p/a", Some(1)).await.unwrap();
    assert_eq!((kv.map(|kv| kv.value), rev), (Some(b("1")), 1));
    assert_eq!(s.get("/p/a", None).await.unwrap(), (None, 3));
    assert_eq!(
        s.get("/p/a", Some(4)).await,
        Err(StoreError::FutureRevision {
            requested: 4,
            current: 3
        })
    );
    s.compact(2).await.unwrap();
    assert_eq!(
        s.get("/p/a", Some(1)).await,
        Err(StoreError::Compacted {
            requested: 1,
            compacted: 2
        })
    );
    assert_eq!(
        s.get("/p/a", Some(2)).await.unwrap().0.unwrap().value,
        b("2")
    );
    assert!(matches!(
        s.compact(2).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        s.compact(10).await,
        Err(StoreError::FutureRevision { .. })
    ));
    assert!(matches!(
        s.get("", None).await,
        Err(StoreError::InvalidKey { .. })
    ));
    let big = Bytes::from(vec![0u8; crate::MAX_VALUE_BYTES + 1]);
    assert!(matches!(
        s.put("/p/big", big).await,
        Err(StoreError::ValueTooLarge { .. })
    ));
}

#[tokio::test]
async fn pagination_pins_the_first_page_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for i in 0..5 {
        s.put(&format!("/l/{i}"), b("old")).await.unwrap();
    }
    s.put("/m/outside", b("x")).await.unwrap();
    let opts = |token: Option<String>| ListOptions {
        prefix: "/l/".into(),
        revision: None,
        limit: Some(2),
        continue_token: token,
    };
    let first = s.list(opts(None)).await.unwrap();
    assert_eq!(
        (first.kvs.len(), first.remaining, first.revision),
        (2, 3, 6)
    );
    // Writes after the first page must not show in later pages.
    s.put("/l/0a", b("new")).await.unwrap();
    s.put("/l/4", b("new")).await.unwrap();
    let mut keys: Vec<String> = first.kvs.iter().map(|kv| kv.key.clone()).collect();
    let mut token = first.continue_token;
    while let Some(t) = token {
        let page = s.list(opts(Some(t))).await.unwrap();
        assert_eq!(page.revision, 6);
        assert!(page.kvs.iter().all(|kv| kv.value == b("old")));
        keys.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        token = page.continue_token;
    }
    assert_eq!(keys, vec!["/l/0", "/l/1", "/l/2", "/l/3", "/l/4"]);
    assert!(matches!(
        s.list(ListOptions {
            prefix: "/l/".into(),
            continue_token: Some("garbage!".into()),
            ..ListOptions::default()
        })
        .await,
        Err(StoreError::InvalidContinue { .. })
    ));
    let all = s
        .list(ListOptions {
            prefix: "/l/".into(),
            ..ListOptions::default()
        })
        .await
        .unwrap();
    assert_eq!((all.kvs.len(), all.continue_token), (6, None));
}

#[tokio::test]
async fn watch_resumes_from_history_with_prev_values() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.put("/w/a", b("1")).await.unwrap();
    s.put("/other", b("x")).await.unwrap();
    s.put("/w/a", b("2")).await.unwrap();
    s.delete("/w/a", None).await.unwrap();
    let mut w = s
        .watch(KeyRange::Prefix("/w/".into()), Some(1))
        .await
        .unwrap();
    let e1 = next_event(&mut w).await;
    assert_eq!(
        (e1.kind, e1.revision(), e1.prev.is_none()),
        (EventKind::Put, 1, true)
    );
    let e2 = next_event(&mut w).await;
    assert_eq!(e2.revision(), 3);
    assert_eq!(e2.prev.map(|p| p.value), Some(b("1")));
    let e3 = next_event(&mut w).await;
    assert_eq!((e3.kind, e3.revision()), (EventKind::Delete, 4));
    assert_eq!(e3.prev.map(|p| p.value), Some(b("2")));
    // Then live.
    s.put("/w/b", b("live")).await.unwrap();
    let e4 = next_event(&mut w).await;
    assert_eq!((e4.kv.key.as_str(), e4.revision()), ("/w/b", 5));

    let mut from_now = s.watch(KeyRange::Key("/w/b".into()), None).await.unwrap();
    s.put("/w/c", b("not mine")).await.unwrap();
    s.put("/w/b", b("again")).await.unwrap();
    let e = next_event(&mut from_now).await;
    assert_eq!((e.revision(), e.kv.version), (7, 2));

    s.compact(5).await.unwrap();
    assert!(matches!(
        s.watch(KeyRange::Prefix("/w/".into()), Some(4)).await,
        Err(StoreError::Compacted { .. })
    ));
    let mut at_compacted = s
        .watch(KeyRange::Prefix("/w/".into()), Some(5))
        .await
        .unwrap();
    assert_eq!(next_event(&mut at_compacted).await.revision(), 5);
}

#[tokio::test]
async fn a_lagging_watcher_catches_up_from_history_or_ends_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig {
        watch_buffer: 2,
        ..quiet()
    };
    let s = EmbeddedStore::open(dir.path(), config).unwrap();
    let mut slow = s.watch(KeyRange::Prefix("/s/".into()), None).await.unwrap();
    for i in 1..=20 {
        s.put("/s/k", b(&i.to_string())).await.unwrap();
    }
    for want in 1..=20 {
        assert_eq!(next_event(&mut slow).await.revision(), want);
    }
    let mut stuck = s.watch(KeyRange::Prefix("/s/".into()), None).await.unwrap();
    for i in 21..=40 {
        s.put("/s/k", b(&i.to_string())).await.unwrap();
    }
    s.compact(30).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), stuck.next())
        .await
        .expect("answer within deadline")
        .expect("an item");
    assert!(matches!(end, Err(StoreError::Compacted { .. })));
    assert!(
        stuck.next().await.is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn data_and_counters_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        s.put("/o/a", b("1")).await.unwrap();
        s.put("/o/a", b("2")).await.unwrap();
        s.put("/o/b", b("b")).await.unwrap();
        s.delete("/o/b", None).await.unwrap();
        s.put("/o/c", b("c")).await.unwrap();
        s.compact(3).await.unwrap();
        // The last write is a delete, so only the meta counter remembers revision 6.
        s.delete("/o/c", None).await.unwrap();
    }
    let s = open(&dir);
    assert_eq!(s.current_revision().await.unwrap(), 6);
    assert_eq!(s.compacted_revision().await.unwrap(), 3);
    let (a, _) = s.get("/o/a", None).await.unwrap();
    let a = a.unwrap();
    assert_eq!((a.value, a.version, a.create_revision), (b("2"), 2, 1));
    assert!(s.get("/o/c", None).await.unwrap().0.is_none());
    assert!(matches!(
        s.get("/o/a", Some(2)).await,
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(
        s.get("/o/b", Some(3)).await.unwrap().0.unwrap().value,
        b("b")
    );
    let mut w = s
        .watch(KeyRange::Prefix("/o/".into()), Some(4))
        .await
        .unwrap();
    let e = next_event(&mut w).await;
    assert_eq!((e.kind, e.revision()), (EventKind::Delete, 4));
    assert_eq!(e.prev.map(|p| p.value), Some(b("b")));
    assert_eq!(s.put("/o/d", b("d")).await.unwrap().mod_revision, 7);
}

#[tokio::test]
async fn automatic_compaction_bounds_history_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig {
        max_retained_revisions: Some(100),
        ..quiet()
    };
    let s = Arc::new(EmbeddedStore::open(dir.path(), config).unwrap());
    let value = Bytes::from(vec![7u8; 1024]);
    let mut tasks = Vec::new();
    for w in 0..16 {
        let s = s.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                s.put(&format!("/a/{}", (w * 250 + i) % 100), value.clone())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let current = s.current_revision().await.unwrap();
    let compacted = s.compacted_revision().await.unwrap();
    assert_eq!(current, 4000);
    // 100 retained, a tenth of slack, and the last batch (16 writers) acknowledged before
    // the writer's compaction check runs.
    assert!(
        current - compacted <= 126,
        "history kept: {}",
        current - compacted
    );
    assert!(compacted > 0);
    let listed = s
        .list(ListOptions {
            prefix: "/a/".into(),
            ..ListOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.kvs.len(), 100);
    assert!(listed.kvs.iter().all(|kv| kv.version == 40));
}

#[tokio::test]
async fn watchers_share_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut watchers = Vec::new();
    for _ in 0..200 {
        watchers.push(s.watch(KeyRange::Prefix("/f/".into()), None).await.unwrap());
    }
    s.put("/f/x", b("v")).await.unwrap();
    for w in &mut watchers {
        assert_eq!(next_event(w).await.kv.key, "/f/x");
    }
}

#[tokio::test]
async fn dropping_the_store_ends_watches_and_frees_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut w = s.watch(KeyRange::Prefix("/d/".into()), None).await.unwrap();
    drop(s);
    let end = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("ends within deadline");
    assert!(end.is_none());
    let again = open(&dir);
    assert_eq!(again.current_revision().await.unwrap(), 0);
}

#[tokio::test]
async fn compaction_gives_disk_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let value = Bytes::from(vec![3u8; 1024]);
    for _ in 0..150 {
        let ops = (0..100)
            .map(|k| Op::Put {
                key: format!("/disk/{k:03}"),
                value: value.clone(),
            })
            .collect();
        s.txn(Txn {
            compares: vec![],
            ops,
        })
        .await
        .unwrap();
    }
    let before = s.disk_usage();
    assert!(
        before > 15_000 * 1024,
        "15,000 values of 1 KiB take {before} bytes"
    );
    let current = s.current_revision().await.unwrap();
    s.compact(current).await.unwrap();
    let after = s.disk_usage();
    assert!(
        after * 4 < before,
        "{before} bytes before compaction, {after} after"
    );
    drop(s);
    let s = open(&dir);
    let all = s
        .list(ListOptions {
            prefix: "/disk/".into(),
            ..ListOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(all.kvs.len(), 100);
    assert!(all
        .kvs
        .iter()
        .all(|kv| kv.version == 150 && kv.value == value));
}

#[tokio::test]
async fn the_revision_survives_compacting_away_every_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        s.put("/gone/a", b("1")).await.unwrap();
        s.delete("/gone/a", None).await.unwrap();
        s.compact(2).await.unwrap();
    }
    let s = open(&dir);
    assert_eq!(s.current_revision().await.unwrap(), 2);
    assert_eq!(s.compacted_revision().await.unwrap(), 2);
    assert_eq!(s.put("/gone/b", b("2")).await.unwrap().mod_revision, 3);
}

#[tokio::test]
async fn interval_compaction_trails_by_one_interval() {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig {
        compaction_interval: Some(Duration::from_millis(50)),
        ..quiet()
    };
    let s = EmbeddedStore::open(dir.path(), config).unwrap();
    for i in 0..3 {
        s.put("/tick/a", b(&i.to_string())).await.unwrap();
    }
    // The first tick only notes revision 3; a later one compacts to it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.compacted_revision().await.unwrap() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no compaction within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.compacted_revision().await.unwrap(), 3);
    assert!(matches!(
        s.get("/tick/a", Some(2)).await,
        Err(StoreError::Compacted { .. })
    ));
    let zero = EmbeddedConfig {
        compaction_interval: Some(Duration::ZERO),
        ..quiet()
    };
    let other = tempfile::tempdir().unwrap();
    assert!(matches!(
        EmbeddedStore::open(other.path(), zero),
        Err(StoreError::InvalidRequest { .. })
    ));
}
