//! Paginated lists: every page of one list comes from the first page's snapshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{bytes, check, check_eq, CaseResult, Failure, DEADLINE};
use crate::{ListOptions, Op, Store, StoreError, Txn};

const KEYS: usize = 10_000;
const PAGE: usize = 500;
const PUTS_PER_TXN: usize = 100;
/// Bound on the background writer, so the case ends even if pagination stalls.
const CHURN_WRITES: usize = 2_000;

fn key(i: usize) -> String {
    format!("/page/{i:05}")
}

/// 10,000 keys listed 500 at a time while other writers update, delete and create keys
/// under the same prefix: the pages hold exactly the keys and values of the first page's
/// revision, with a correct remaining count; a token that no longer parses or whose revision
/// was compacted is refused.
pub async fn pagination_is_a_consistent_snapshot(store: Arc<dyn Store>) -> CaseResult {
    fill(&store).await?;
    // Neighbours that share the prefix's bytes but are not under it.
    for outside in ["/page", "/page0", "/pagez/1"] {
        store.put(outside, bytes("outside")).await?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut churn_task = None;

    let mut listed = Vec::with_capacity(KEYS);
    let mut token = None;
    let mut snapshot = None;
    let mut first_token = None;
    let mut pages = 0;
    loop {
        let page = store
            .list(ListOptions {
                prefix: "/page/".into(),
                revision: None,
                limit: Some(PAGE),
                continue_token: token.clone(),
            })
            .await?;
        pages += 1;
        let revision = *snapshot.get_or_insert(page.revision);
        // The background writer starts once the snapshot is fixed by the first page.
        churn_task.get_or_insert_with(|| tokio::spawn(churn(store.clone(), stop.clone())));
        check_eq!(
            page.revision,
            revision,
            "page {pages} is read at the first page's revision"
        );
        listed.extend(page.kvs.iter().map(|kv| (kv.key.clone(), kv.value.clone())));
        let remaining = KEYS.saturating_sub(listed.len()) as i64;
        check_eq!(page.remaining, remaining, "remaining after page {pages}");
        match page.continue_token {
            Some(next) => {
                check_eq!(page.kvs.len(), PAGE, "a full page {pages}");
                first_token.get_or_insert_with(|| next.clone());
                token = Some(next);
            }
            None => break,
        }
        // Deterministic changes ahead of the cursor, on top of the background churn.
        let ahead = listed.len() + 7;
        if ahead < KEYS {
            store.put(&key(ahead), bytes("changed")).await?;
            store.delete(&key(ahead + 1), None).await?;
            store.put(&format!("{}a", key(ahead)), bytes("new")).await?;
        }
        check!(pages <= KEYS / PAGE, "more pages than keys allow");
    }
    stop.store(true, Ordering::Relaxed);
    let churn_task =
        churn_task.ok_or_else(|| Failure::Check("the list returned no page".into()))?;
    tokio::time::timeout(DEADLINE, churn_task)
        .await
        .map_err(|_| Failure::Timeout("the background writer".into()))?
        .map_err(|e| Failure::Check(format!("the background writer panicked: {e}")))??;

    check_eq!(pages, KEYS / PAGE, "number of pages");
    check_eq!(listed.len(), KEYS, "keys listed");
    for (i, (k, v)) in listed.iter().enumerate() {
        if *k != key(i) || *v != bytes(format!("v{i}")) {
            return Err(Failure::Check(format!(
                "entry {i} is {k:?}={v:?}: not the snapshot's"
            )));
        }
    }

    // The writes did happen: the latest state differs from the snapshot.
    let latest = store
        .list(ListOptions {
            prefix: "/page/".into(),
            ..ListOptions::default()
        })
        .await?;
    check!(
        latest.continue_token.is_none() && latest.remaining == 0,
        "an unlimited list is one page"
    );
    check!(
        latest.kvs.iter().any(|kv| kv.value == bytes("new")),
        "keys created during the pagination are visible now"
    );

    // A continuation whose snapshot has been compacted away is refused.
    let (Some(token), Some(snapshot)) = (first_token, snapshot) else {
        return Err(Failure::Check("the list had no second page".into()));
    };
    let current = store.current_revision().await?;
    store.compact(current).await?;
    let expired = store
        .list(ListOptions {
            prefix: "/page/".into(),
            limit: Some(PAGE),
            continue_token: Some(token),
            ..ListOptions::default()
        })
        .await;
    check_eq!(
        expired.map(|page| page.revision),
        Err(StoreError::Compacted {
            requested: snapshot,
            compacted: current,
        }),
        "a continuation below the compaction"
    );
    Ok(())
}

/// Writes the keys in transactions of 100, four transactions at a time.
async fn fill(store: &Arc<dyn Store>) -> CaseResult {
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for chunk in (0..KEYS).step_by(PUTS_PER_TXN).skip(worker).step_by(4) {
                let ops = (chunk..chunk + PUTS_PER_TXN)
                    .map(|i| Op::Put {
                        key: key(i),
                        value: bytes(format!("v{i}")),
                    })
                    .collect();
                store
                    .txn(Txn {
                        compares: vec![],
                        ops,
                    })
                    .await?;
            }
            Ok::<_, Failure>(())
        }));
    }
    for task in tasks {
        tokio::time::timeout(DEADLINE * 3, task)
            .await
            .map_err(|_| Failure::Timeout("filling the keys".into()))?
            .map_err(|e| Failure::Check(format!("a filler panicked: {e}")))??;
    }
    Ok(())
}

/// Updates, deletes and creates keys all over the prefix until told to stop.
async fn churn(store: Arc<dyn Store>, stop: Arc<AtomicBool>) -> CaseResult {
    for n in 0..CHURN_WRITES {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // A stride coprime with KEYS visits keys all over the range.
        let i = (n * 7919) % KEYS;
        match n % 3 {
            0 => {
                store.put(&key(i), bytes(format!("churn {n}"))).await?;
            }
            1 => {
                // Already deleted by an earlier round is fine.
                match store.delete(&key(i), None).await {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            _ => {
                store.put(&format!("{}b", key(i)), bytes("new")).await?;
            }
        }
    }
    Ok(())
}
