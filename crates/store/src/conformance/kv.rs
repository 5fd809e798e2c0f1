//! Reads, writes, transactions and revisions.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Barrier;

use super::{bytes, check, check_eq, CaseResult, Failure, DEADLINE};
use crate::{Compare, KeyValue, ListOptions, Op, OpResult, Store, StoreError, Txn, TxnResult};

const CAS_TASKS: usize = 64;
const CAS_KEYS: usize = 4;
const CAS_ATTEMPTS: usize = 6;

/// What one compare-and-swap task saw.
#[derive(Default)]
struct Tally {
    /// Successful increments per key.
    won: HashMap<String, u64>,
    conflicts: u64,
}

/// 64 tasks increment counters on 4 keys by compare-and-swap, retrying each conflict against
/// the value the conflict carried. No increment may be lost: each key's final count equals
/// its successful swaps, and every losing swap fails with `Conflict` and the current value.
pub async fn compare_and_swap_loses_no_update(store: Arc<dyn Store>) -> CaseResult {
    let keys: Vec<String> = (0..CAS_KEYS).map(|i| format!("/cas/counter-{i}")).collect();
    for key in &keys {
        store.create(key, bytes("0")).await?;
    }
    // Every task reads before any swaps, so the first round is a guaranteed race: of the 16
    // tasks holding a key's first revision, at most one can win.
    let barrier = Arc::new(Barrier::new(CAS_TASKS));
    let mut tasks = Vec::with_capacity(CAS_TASKS);
    for t in 0..CAS_TASKS {
        let store = store.clone();
        let key = keys[t % CAS_KEYS].clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let (kv, _) = store.get(&key, None).await?;
            let mut seen = kv.ok_or_else(|| Failure::Check(format!("{key} vanished")))?;
            barrier.wait().await;
            let mut tally = Tally::default();
            for _ in 0..CAS_ATTEMPTS {
                let count: u64 = std::str::from_utf8(&seen.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Failure::Check(format!("{key} holds no counter")))?;
                match store
                    .update(&key, bytes((count + 1).to_string()), seen.mod_revision)
                    .await
                {
                    Ok(kv) => {
                        check!(
                            kv.mod_revision > seen.mod_revision && kv.version == seen.version + 1,
                            "a swap of {key} returned {kv:?} after {seen:?}"
                        );
                        *tally.won.entry(key.clone()).or_default() += 1;
                        seen = kv;
                    }
                    Err(StoreError::Conflict {
                        key: conflicted,
                        current: Some(current),
                    }) => {
                        check_eq!(conflicted, key, "conflict names the swapped key");
                        check!(
                            current.mod_revision > seen.mod_revision,
                            "conflict on {key} carries {current:?}, not newer than {seen:?}"
                        );
                        tally.conflicts += 1;
                        seen = *current;
                    }
                    Err(other) => {
                        return Err(Failure::Check(format!(
                            "a losing swap of {key} must be a Conflict with the current value, got {other:?}"
                        )))
                    }
                }
            }
            Ok::<_, Failure>(tally)
        }));
    }
    let mut won: HashMap<String, u64> = HashMap::new();
    let mut conflicts = 0;
    for task in tasks {
        let tally = tokio::time::timeout(DEADLINE * 3, task)
            .await
            .map_err(|_| Failure::Timeout("compare-and-swap tasks".into()))?
            .map_err(|e| Failure::Check(format!("a compare-and-swap task panicked: {e}")))??;
        for (key, n) in tally.won {
            *won.entry(key).or_default() += n;
        }
        conflicts += tally.conflicts;
    }
    let total_won: u64 = won.values().sum();
    check_eq!(
        total_won + conflicts,
        (CAS_TASKS * CAS_ATTEMPTS) as u64,
        "every attempt either won or conflicted"
    );
    let min_conflicts = (CAS_TASKS - CAS_KEYS) as u64;
    check!(
        conflicts >= min_conflicts,
        "the first round alone must produce {min_conflicts} conflicts, saw {conflicts}"
    );
    for key in &keys {
        let (kv, _) = store.get(key, None).await?;
        let kv = kv.ok_or_else(|| Failure::Check(format!("{key} vanished")))?;
        let expected = won.get(key).copied().unwrap_or_default();
        check_eq!(
            kv.value,
            bytes(expected.to_string()),
            "final count of {key} equals its successful swaps"
        );
        check_eq!(kv.version, expected as i64 + 1, "version of {key}");
    }
    Ok(())
}

/// `create`, `update`, `delete` and `put` report each outcome with its own error.
pub async fn single_key_helpers_report_typed_outcomes(store: Arc<dyn Store>) -> CaseResult {
    let a = store.create("/helpers/a", bytes("1")).await?;
    match store.create("/helpers/a", bytes("2")).await {
        Err(StoreError::AlreadyExists { key }) => check_eq!(key, "/helpers/a", "AlreadyExists"),
        other => return Err(unexpected("AlreadyExists", &other)),
    }
    match store.update("/helpers/missing", bytes("x"), 1).await {
        Err(StoreError::NotFound { key }) => check_eq!(key, "/helpers/missing", "NotFound"),
        other => return Err(unexpected("NotFound", &other)),
    }
    let a2 = store
        .update("/helpers/a", bytes("2"), a.mod_revision)
        .await?;
    match store.update("/helpers/a", bytes("3"), a.mod_revision).await {
        Err(StoreError::Conflict {
            current: Some(current),
            ..
        }) => check_eq!(*current, a2, "a stale update carries the current value"),
        other => return Err(unexpected("Conflict", &other)),
    }
    match store.delete("/helpers/a", Some(a.mod_revision)).await {
        Err(StoreError::Conflict {
            current: Some(current),
            ..
        }) => check_eq!(*current, a2, "a stale delete carries the current value"),
        other => return Err(unexpected("Conflict", &other)),
    }
    let (prev, rev) = store.delete("/helpers/a", Some(a2.mod_revision)).await?;
    check_eq!(prev, a2, "delete returns the deleted value");
    check_eq!(rev, store.current_revision().await?, "delete revision");
    match store.delete("/helpers/a", None).await {
        Err(StoreError::NotFound { .. }) => {}
        other => return Err(unexpected("NotFound", &other)),
    }
    let p1 = store.put("/helpers/p", bytes("1")).await?;
    let p2 = store.put("/helpers/p", bytes("2")).await?;
    check_eq!(
        (p2.create_revision, p2.version),
        (p1.create_revision, 2),
        "an unconditional put over a key keeps its creation"
    );
    Ok(())
}

/// One revision per write transaction, shared by all its ops; create/mod revisions and
/// versions as in etcd; reads at past revisions; deletes and re-creation.
pub async fn revisions_follow_write_transactions(store: Arc<dyn Store>) -> CaseResult {
    let r0 = store.current_revision().await?;
    let a1 = store.create("/rev/a", bytes("a1")).await?;
    check_eq!(
        (a1.create_revision, a1.mod_revision, a1.version),
        (r0 + 1, r0 + 1, 1),
        "a create"
    );
    let a2 = store.put("/rev/a", bytes("a2")).await?;
    check_eq!(
        (a2.create_revision, a2.mod_revision, a2.version),
        (r0 + 1, r0 + 2, 2),
        "an update"
    );

    let result = store
        .txn(Txn {
            compares: vec![
                Compare::ModRevision("/rev/a".into(), a2.mod_revision),
                Compare::Absent("/rev/b".into()),
            ],
            ops: vec![
                Op::Put {
                    key: "/rev/b".into(),
                    value: bytes("b1"),
                },
                Op::Put {
                    key: "/rev/c".into(),
                    value: bytes("c1"),
                },
                Op::Delete {
                    key: "/rev/a".into(),
                },
            ],
        })
        .await?;
    let r3 = r0 + 3;
    let expected = TxnResult::Succeeded {
        revision: r3,
        results: vec![
            OpResult::Put(kv("/rev/b", "b1", r3, r3, 1)),
            OpResult::Put(kv("/rev/c", "c1", r3, r3, 1)),
            OpResult::Delete(Some(a2.clone())),
        ],
    };
    check_eq!(result, expected, "a three-op transaction");
    check_eq!(store.current_revision().await?, r3, "one revision per txn");

    check_eq!(store.get("/rev/a", None).await?, (None, r3), "deleted key");
    check_eq!(
        store.get("/rev/a", Some(r0 + 1)).await?,
        (Some(a1.clone()), r0 + 1),
        "read at the create revision"
    );
    check_eq!(
        store.get("/rev/a", Some(r0 + 2)).await?,
        (Some(a2.clone()), r0 + 2),
        "read at the update revision"
    );
    check_eq!(
        store.get("/rev/b", Some(r0 + 2)).await?,
        (None, r0 + 2),
        "read before the key existed"
    );

    let past = store
        .list(ListOptions {
            prefix: "/rev/".into(),
            revision: Some(r0 + 2),
            limit: Some(1),
            continue_token: None,
        })
        .await?;
    check_eq!(
        (past.kvs, past.revision, past.continue_token, past.remaining),
        (vec![a2.clone()], r0 + 2, None, 0),
        "a list at a past revision"
    );

    // A failed compare writes nothing and reports every compared key's current value.
    let failed = store
        .txn(Txn {
            compares: vec![
                Compare::Absent("/rev/b".into()),
                Compare::Exists("/rev/a".into()),
                Compare::ModRevision("/rev/c".into(), r3),
            ],
            ops: vec![Op::Put {
                key: "/rev/d".into(),
                value: bytes("d"),
            }],
        })
        .await?;
    let expected = TxnResult::Failed {
        revision: r3,
        current: vec![
            Some(kv("/rev/b", "b1", r3, r3, 1)),
            None,
            Some(kv("/rev/c", "c1", r3, r3, 1)),
        ],
    };
    check_eq!(failed, expected, "a failed transaction");

    // A mod revision of 0 never matches, not even an absent key's.
    let zero = store
        .txn(Txn {
            compares: vec![Compare::ModRevision("/rev/a".into(), 0)],
            ops: vec![Op::Put {
                key: "/rev/a".into(),
                value: bytes("x"),
            }],
        })
        .await?;
    check!(
        matches!(zero, TxnResult::Failed { .. }),
        "ModRevision(absent key, 0) must fail, got {zero:?}"
    );

    // Deleting only absent keys changes nothing, so it creates no revision.
    let noop = store
        .txn(Txn {
            compares: vec![],
            ops: vec![Op::Delete {
                key: "/rev/a".into(),
            }],
        })
        .await?;
    check_eq!(
        noop,
        TxnResult::Succeeded {
            revision: r3,
            results: vec![OpResult::Delete(None)],
        },
        "a delete of an absent key"
    );
    check_eq!(
        store.current_revision().await?,
        r3,
        "no revision for no change"
    );

    // A re-created key starts a new life: new create revision, version 1.
    let again = store.create("/rev/a", bytes("a3")).await?;
    check_eq!(
        (again.create_revision, again.version),
        (r3 + 1, 1),
        "re-creation"
    );
    Ok(())
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: bytes(value),
        create_revision: create,
        mod_revision: modified,
        version,
    }
}

fn unexpected<T: std::fmt::Debug>(wanted: &str, got: &T) -> Failure {
    Failure::Check(format!("expected {wanted}, got {got:?}"))
}
