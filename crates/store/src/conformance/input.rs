//! Limits and malformed input: every refusal is a typed error, never a panic, and changes
//! nothing.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;

use super::{bytes, check, check_eq, next_event, CaseResult, Failure};
use crate::{
    Compare, ContinueToken, KeyRange, ListOptions, Op, Store, StoreError, StoreResult, Txn,
    MAX_KEY_BYTES, MAX_VALUE_BYTES,
};

/// A value of exactly `MAX_VALUE_BYTES` is stored, read and watched intact; one byte more is
/// refused with `ValueTooLarge` by every write path.
pub async fn values_up_to_the_limit_are_accepted(store: Arc<dyn Store>) -> CaseResult {
    // Not a repeated byte, so truncation or corruption anywhere would show.
    let largest: Bytes = (0..MAX_VALUE_BYTES).map(|i| (i % 251) as u8).collect();
    let mut watch = store.watch(KeyRange::Key("/big/a".into()), None).await?;
    let written = store.create("/big/a", largest.clone()).await?;
    check_eq!(written.value.len(), MAX_VALUE_BYTES, "written size");
    let (read, _) = store.get("/big/a", None).await?;
    check!(
        read.is_some_and(|kv| kv.value == largest),
        "a value of exactly {MAX_VALUE_BYTES} bytes reads back intact"
    );
    let event = next_event(&mut watch, "the large write").await?;
    check!(
        event.kv.value == largest,
        "the watch delivers the large value intact"
    );

    let too_large = Bytes::from(vec![7u8; MAX_VALUE_BYTES + 1]);
    let refused = StoreError::ValueTooLarge {
        size: MAX_VALUE_BYTES + 1,
        max: MAX_VALUE_BYTES,
    };
    let revision = store.current_revision().await?;
    check_eq!(
        store.put("/big/b", too_large.clone()).await,
        Err(refused.clone()),
        "put"
    );
    check_eq!(
        store.create("/big/b", too_large.clone()).await,
        Err(refused.clone()),
        "create"
    );
    check_eq!(
        store
            .update("/big/a", too_large.clone(), written.mod_revision)
            .await,
        Err(refused.clone()),
        "update"
    );
    let txn = store
        .txn(Txn {
            compares: vec![],
            ops: vec![
                Op::Put {
                    key: "/big/c".into(),
                    value: bytes("small"),
                },
                Op::Put {
                    key: "/big/b".into(),
                    value: too_large,
                },
            ],
        })
        .await;
    check_eq!(txn, Err(refused), "txn");
    check_eq!(
        store.current_revision().await?,
        revision,
        "refused writes write nothing"
    );
    check_eq!(store.get("/big/c", None).await?.0, None, "no partial txn");
    Ok(())
}

/// Empty, oversized and NUL-bearing keys, oversized values, future revisions, duplicate
/// keys in a transaction and malformed continue tokens each get their typed error.
pub async fn bad_input_gets_typed_errors(store: Arc<dyn Store>) -> CaseResult {
    store.put("/input/a", bytes("a")).await?;
    let revision = store.current_revision().await?;
    let long_key = format!("/{}", "k".repeat(MAX_KEY_BYTES));
    for bad in ["", long_key.as_str(), "/nul\0key"] {
        let what = format!("key {:?}", truncate(bad));
        expect_invalid_key(store.get(bad, None).await, &what)?;
        expect_invalid_key(store.put(bad, bytes("v")).await, &what)?;
        expect_invalid_key(store.create(bad, bytes("v")).await, &what)?;
        expect_invalid_key(store.update(bad, bytes("v"), 1).await, &what)?;
        expect_invalid_key(store.delete(bad, None).await, &what)?;
        expect_invalid_key(
            store
                .list(ListOptions {
                    prefix: bad.into(),
                    ..ListOptions::default()
                })
                .await,
            &what,
        )?;
        // A watch stream has no Debug; only the outcome matters here.
        let watched = store.watch(KeyRange::Key(bad.into()), None).await;
        expect_invalid_key(watched.map(|_| ()), &what)?;
        let watched = store.watch(KeyRange::Prefix(bad.into()), None).await;
        expect_invalid_key(watched.map(|_| ()), &what)?;
        let compare = Txn {
            compares: vec![Compare::Exists(bad.into())],
            ops: vec![],
        };
        expect_invalid_key(store.txn(compare).await, &what)?;
    }
    let longest = format!("/{}", "k".repeat(MAX_KEY_BYTES - 1));
    check_eq!(
        store.put(&longest, bytes("v")).await?.key.len(),
        MAX_KEY_BYTES,
        "a key of exactly the limit"
    );

    match store
        .put("/input/b", Bytes::from(vec![0u8; MAX_VALUE_BYTES + 1]))
        .await
    {
        Err(StoreError::ValueTooLarge { .. }) => {}
        other => return Err(unexpected("ValueTooLarge", &other)),
    }

    let duplicate = store
        .txn(Txn {
            compares: vec![],
            ops: vec![
                Op::Put {
                    key: "/input/d".into(),
                    value: bytes("1"),
                },
                Op::Delete {
                    key: "/input/d".into(),
                },
            ],
        })
        .await;
    match duplicate {
        Err(StoreError::InvalidRequest { .. }) => {}
        other => return Err(unexpected("InvalidRequest for a duplicate key", &other)),
    }

    let current = store.current_revision().await?;
    match store.get("/input/a", Some(current + 1)).await {
        Err(StoreError::FutureRevision {
            requested,
            current: reported,
        }) => check_eq!(
            (requested, reported),
            (current + 1, current),
            "future revision"
        ),
        other => return Err(unexpected("FutureRevision", &other)),
    }

    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let not_ours = ContinueToken {
        revision: current,
        last_key: "/other/x".into(),
        prefix: "/other/".into(),
    }
    .encode();
    let zero_revision = ContinueToken {
        revision: 0,
        last_key: "/input/a".into(),
        prefix: "/input/".into(),
    }
    .encode();
    let tokens = [
        "".to_string(),
        "%%% not base64 %%%".to_string(),
        engine.encode(b"not json"),
        engine.encode(br#"{"r":"x"}"#),
        not_ours,
        zero_revision,
    ];
    for token in tokens {
        let listed = store
            .list(ListOptions {
                prefix: "/input/".into(),
                limit: Some(1),
                continue_token: Some(token.clone()),
                ..ListOptions::default()
            })
            .await;
        match listed {
            Err(StoreError::InvalidContinue { .. }) => {}
            other => {
                return Err(unexpected(
                    &format!("InvalidContinue for {token:?}"),
                    &other,
                ))
            }
        }
    }

    check_eq!(
        store.current_revision().await?,
        revision + 1,
        "only the longest-key put wrote anything"
    );
    Ok(())
}

fn expect_invalid_key<T: std::fmt::Debug>(result: StoreResult<T>, what: &str) -> CaseResult {
    match result {
        Err(StoreError::InvalidKey { .. }) => Ok(()),
        other => Err(unexpected(&format!("InvalidKey for {what}"), &other)),
    }
}

fn truncate(key: &str) -> String {
    key.chars().take(16).collect()
}

fn unexpected<T: std::fmt::Debug>(wanted: &str, got: &T) -> Failure {
    let got = format!("{got:?}");
    let got: String = got.chars().take(300).collect();
    Failure::Check(format!("expected {wanted}, got {got}"))
}
