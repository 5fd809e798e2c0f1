//! Compaction, and the revision errors on both sides of the retained history.

use std::sync::Arc;

use super::{bytes, check, check_eq, next_event, CaseResult, Failure};
use crate::{KeyRange, ListOptions, Store, StoreError};

/// After `compact(r)`, reads, lists and watches below `r` fail with `Compacted` (carrying
/// `r`), at or above it they work, and the latest value of every key survives; revisions
/// above the current one fail with `FutureRevision`.
pub async fn compaction_refuses_old_revisions(store: Arc<dyn Store>) -> CaseResult {
    check_eq!(
        store.compacted_revision().await?,
        0,
        "a new store is not compacted"
    );
    let mut revisions = Vec::new();
    for i in 0..10 {
        revisions.push(
            store
                .put("/compact/a", bytes(format!("a{i}")))
                .await?
                .mod_revision,
        );
    }
    let kept = store.put("/compact/kept", bytes("kept")).await?;
    store.put("/compact/gone", bytes("x")).await?;
    store.delete("/compact/gone", None).await?;
    let at = revisions[5];
    let current = store.current_revision().await?;

    store.compact(at).await?;
    check_eq!(store.compacted_revision().await?, at, "compacted revision");
    check_eq!(
        store.current_revision().await?,
        current,
        "compaction writes nothing"
    );

    let below = at - 1;
    let compacted = StoreError::Compacted {
        requested: below,
        compacted: at,
    };
    check_eq!(
        store.get("/compact/a", Some(below)).await,
        Err(compacted.clone()),
        "a read below the compaction"
    );
    check_eq!(
        store
            .list(ListOptions {
                prefix: "/compact/".into(),
                revision: Some(below),
                ..ListOptions::default()
            })
            .await,
        Err(compacted.clone()),
        "a list below the compaction"
    );
    match store
        .watch(KeyRange::Prefix("/compact/".into()), Some(below))
        .await
    {
        Err(err) => check_eq!(err, compacted, "a watch below the compaction"),
        Ok(_) => {
            return Err(Failure::Check(
                "a watch below the compaction started".into(),
            ))
        }
    }

    let (kv, _) = store.get("/compact/a", Some(at)).await?;
    check_eq!(
        kv.map(|kv| kv.value),
        Some(bytes("a5")),
        "a read at the compacted revision"
    );
    let mut watch = store
        .watch(KeyRange::Key("/compact/a".into()), Some(at))
        .await?;
    for (i, rev) in revisions.iter().enumerate().skip(5) {
        let event = next_event(&mut watch, "retained history").await?;
        check_eq!(
            (event.revision(), event.kv.value.clone()),
            (*rev, bytes(format!("a{i}"))),
            "history from the compacted revision"
        );
    }
    let listed = store
        .list(ListOptions {
            prefix: "/compact/".into(),
            ..ListOptions::default()
        })
        .await?;
    let keys: Vec<&str> = listed.kvs.iter().map(|kv| kv.key.as_str()).collect();
    check_eq!(
        keys,
        vec!["/compact/a", "/compact/kept"],
        "latest values survive"
    );
    check_eq!(listed.kvs[1], kept, "an old, unchanged key is intact");

    check_eq!(
        store.compact(at - 2).await,
        Err(StoreError::Compacted {
            requested: at - 2,
            compacted: at,
        }),
        "compacting below the compaction again"
    );
    let future = current + 10;
    let future_err = StoreError::FutureRevision {
        requested: future,
        current,
    };
    check_eq!(
        store.compact(future).await,
        Err(future_err.clone()),
        "compacting the future"
    );
    check_eq!(
        store.get("/compact/a", Some(future)).await,
        Err(future_err.clone()),
        "a read in the future"
    );
    check_eq!(
        store
            .list(ListOptions {
                prefix: "/compact/".into(),
                revision: Some(future),
                ..ListOptions::default()
            })
            .await,
        Err(future_err),
        "a list in the future"
    );

    // Compacting to the current revision leaves the latest state readable there.
    store.compact(current).await?;
    check_eq!(
        store.compacted_revision().await?,
        current,
        "second compaction"
    );
    let (kv, read_at) = store.get("/compact/a", None).await?;
    check!(
        read_at == current && kv.is_some_and(|kv| kv.value == bytes("a9")),
        "latest value after compacting everything"
    );
    Ok(())
}
