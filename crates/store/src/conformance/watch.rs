//! Watches: order, completeness, previous values, resumption, key versus prefix.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{bytes, check, check_eq, next_event, CaseResult, Failure, DEADLINE};
use crate::{Event, EventKind, KeyRange, Revision, Store};

const WRITERS: usize = 8;
const WRITES_EACH: usize = 25;

/// Eight writers update their own keys concurrently while a prefix watch runs (and a ninth
/// writes outside the prefix). The watch sees every change once, in strictly increasing
/// revision order, each with the value it replaced; the revisions are the writers' own.
pub async fn watch_delivers_concurrent_writes_in_order(store: Arc<dyn Store>) -> CaseResult {
    let mut watch = store.watch(KeyRange::Prefix("/w/".into()), None).await?;
    let mut tasks = Vec::new();
    for t in 0..=WRITERS {
        let store = store.clone();
        // Writer WRITERS is the noise outside the prefix.
        let key = if t == WRITERS {
            "/wx/noise".to_string()
        } else {
            format!("/w/{t}")
        };
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::with_capacity(WRITES_EACH);
            for i in 0..WRITES_EACH {
                revisions.push(
                    store
                        .put(&key, bytes(format!("{t}-{i}")))
                        .await?
                        .mod_revision,
                );
            }
            Ok::<_, Failure>((key, revisions))
        }));
    }
    let mut written = BTreeSet::new();
    for task in tasks {
        let (key, revisions) = tokio::time::timeout(DEADLINE, task)
            .await
            .map_err(|_| Failure::Timeout("writers".into()))?
            .map_err(|e| Failure::Check(format!("a writer panicked: {e}")))??;
        if key.starts_with("/w/") {
            written.extend(revisions);
        }
    }

    let mut last: Revision = 0;
    let mut versions: HashMap<String, i64> = HashMap::new();
    let mut seen = BTreeSet::new();
    for _ in 0..WRITERS * WRITES_EACH {
        let event = next_event(&mut watch, "a concurrent write").await?;
        let rev = event.revision();
        check!(
            rev > last,
            "revision {rev} after {last}: not strictly increasing"
        );
        last = rev;
        check!(
            event.kv.key.starts_with("/w/"),
            "{} is outside the watched prefix",
            event.kv.key
        );
        check_eq!(event.kind, EventKind::Put, "kind of a put");
        let writer = event.kv.key.trim_start_matches("/w/").to_string();
        let version = versions.entry(event.kv.key.clone()).or_default();
        *version += 1;
        check_eq!(event.kv.version, *version, "version of {}", event.kv.key);
        let i = *version - 1;
        check_eq!(
            event.kv.value,
            bytes(format!("{writer}-{i}")),
            "value at version {version}"
        );
        match &event.prev {
            None => check_eq!(i, 0, "only a create has no previous value"),
            Some(prev) => {
                check_eq!(
                    prev.value,
                    bytes(format!("{writer}-{}", i - 1)),
                    "prev value"
                );
                check_eq!(prev.version, i, "prev version");
                check!(prev.mod_revision < rev, "prev is older than the event");
            }
        }
        seen.insert(rev);
    }
    check_eq!(
        seen,
        written,
        "the watch saw exactly the writers' revisions"
    );

    let (_, deleted_at) = store.delete("/w/0", None).await?;
    let event = next_event(&mut watch, "the delete").await?;
    check_eq!(
        (event.kind, event.kv.key.as_str(), event.revision()),
        (EventKind::Delete, "/w/0", deleted_at),
        "delete event"
    );
    check!(event.kv.value.is_empty(), "a delete event carries no value");
    check_eq!(
        event.prev.map(|p| p.value),
        Some(bytes(format!("0-{}", WRITES_EACH - 1))),
        "a delete event carries the deleted value"
    );
    Ok(())
}

/// A watch started at a past revision replays history from exactly there, then goes live.
pub async fn watch_resumes_from_a_past_revision(store: Arc<dyn Store>) -> CaseResult {
    let mut history: Vec<(Revision, String, EventKind)> = Vec::new();
    for i in 0..30 {
        let key = format!("/resume/{}", i % 7);
        if i % 5 == 4 {
            if let Ok((_, rev)) = store.delete(&key, None).await {
                history.push((rev, key, EventKind::Delete));
            }
        } else {
            let kv = store.put(&key, bytes(format!("v{i}"))).await?;
            history.push((kv.mod_revision, key, EventKind::Put));
        }
        store.put("/resumeX", bytes(format!("noise {i}"))).await?;
    }
    for from in [history[0].0, history[history.len() / 2].0] {
        let mut watch = store
            .watch(KeyRange::Prefix("/resume/".into()), Some(from))
            .await?;
        for (rev, key, kind) in history.iter().filter(|(rev, ..)| *rev >= from) {
            let event = next_event(&mut watch, "a replayed change").await?;
            check_eq!(
                (event.revision(), event.kv.key.as_str(), event.kind),
                (*rev, key.as_str(), *kind),
                "replay from {from}"
            );
        }
        let live = store
            .put("/resume/live", bytes(format!("after {from}")))
            .await?;
        let event = next_event(&mut watch, "the live change").await?;
        check_eq!(event.kv, live, "the first change after the replay");
        history.push((live.mod_revision, live.key, EventKind::Put));
    }
    Ok(())
}

/// A key watch sees only its key; a prefix watch sees every key under it; neither replays
/// what happened before it started.
pub async fn watch_single_key_versus_prefix(store: Arc<dyn Store>) -> CaseResult {
    store.put("/k/a", bytes("before")).await?;
    let mut key_watch = store.watch(KeyRange::Key("/k/a".into()), None).await?;
    let mut prefix_watch = store.watch(KeyRange::Prefix("/k/a".into()), None).await?;

    let ab = store.put("/k/ab", bytes("ab")).await?;
    store.put("/k/b", bytes("b")).await?;
    let a = store.put("/k/a", bytes("a")).await?;
    let (_, deleted) = store.delete("/k/a", None).await?;
    let sentinel = store.put("/k/a", bytes("sentinel")).await?;

    let seen = collect(&mut key_watch, 3).await?;
    check_eq!(
        summary(&seen),
        vec![
            ("/k/a".to_string(), a.mod_revision, EventKind::Put),
            ("/k/a".to_string(), deleted, EventKind::Delete),
            ("/k/a".to_string(), sentinel.mod_revision, EventKind::Put),
        ],
        "the key watch"
    );
    check_eq!(
        seen[0].prev.as_ref().map(|p| p.value.clone()),
        Some(bytes("before")),
        "the first change replaced the value from before the watch"
    );
    check!(seen[2].prev.is_none(), "a re-create has no previous value");

    let seen = collect(&mut prefix_watch, 4).await?;
    check_eq!(
        summary(&seen),
        vec![
            ("/k/ab".to_string(), ab.mod_revision, EventKind::Put),
            ("/k/a".to_string(), a.mod_revision, EventKind::Put),
            ("/k/a".to_string(), deleted, EventKind::Delete),
            ("/k/a".to_string(), sentinel.mod_revision, EventKind::Put),
        ],
        "the prefix watch"
    );
    Ok(())
}

async fn collect(watch: &mut crate::WatchStream, n: usize) -> Result<Vec<Event>, Failure> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(next_event(watch, "a change of the watched range").await?);
    }
    Ok(events)
}

fn summary(events: &[Event]) -> Vec<(String, Revision, EventKind)> {
    events
        .iter()
        .map(|e| (e.kv.key.clone(), e.revision(), e.kind))
        .collect()
}
