//! The measured workloads, each against any `Store`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_store::{KeyRange, ListOptions, Op, Revision, Store, Txn};
use futures::StreamExt;

/// A 1 KiB value, the size the write figures are quoted for.
pub fn value_1k(seed: usize) -> Bytes {
    let mut v = vec![b'x'; 1024];
    let tag = seed.to_string();
    v[..tag.len()].copy_from_slice(tag.as_bytes());
    Bytes::from(v)
}

/// Unconditional 1 KiB puts from `writers` concurrent tasks for `window`: acknowledged
/// (durable) writes per second. Each writer cycles over its own 1,000 keys.
pub async fn writes_per_second(store: &Arc<dyn Store>, writers: usize, window: Duration) -> f64 {
    let deadline = Instant::now() + window;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut n = 0usize;
                while Instant::now() < deadline {
                    let key = format!("/bench/write/{w}/{}", n % 1000);
                    store.put(&key, value_1k(n)).await.expect("put");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("writer task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Writes `count` 1 KiB keys named `{prefix}{i:06}` in transactions of 100.
pub async fn preload(store: &Arc<dyn Store>, prefix: &str, count: usize) {
    for chunk in (0..count).step_by(100) {
        let ops = (chunk..(chunk + 100).min(count))
            .map(|i| Op::Put {
                key: format!("{prefix}{i:06}"),
                value: value_1k(i),
            })
            .collect();
        store
            .txn(Txn {
                compares: vec![],
                ops,
            })
            .await
            .expect("preload txn");
    }
}

/// Point reads of random preloaded keys from `readers` concurrent tasks for `window`.
pub async fn reads_per_second(
    store: &Arc<dyn Store>,
    prefix: &str,
    keys: usize,
    readers: usize,
    window: Duration,
) -> f64 {
    let deadline = Instant::now() + window;
    let started = Instant::now();
    let tasks: Vec<_> = (0..readers)
        .map(|r| {
            let store = store.clone();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                // A small LCG spreads the reads without a shared random source.
                let mut x = r as u64 * 2_654_435_761 + 1;
                let mut n = 0usize;
                while Instant::now() < deadline {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let key = format!("{prefix}{:06}", (x >> 33) as usize % keys);
                    let (kv, _) = store.get(&key, None).await.expect("get");
                    assert!(kv.is_some(), "preloaded key {key} is missing");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("reader task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Time of each of `rounds` unpaginated lists of everything under `prefix`.
pub async fn list_times(
    store: &Arc<dyn Store>,
    prefix: &str,
    expected: usize,
    rounds: usize,
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let listed = store
            .list(ListOptions {
                prefix: prefix.into(),
                ..ListOptions::default()
            })
            .await
            .expect("list");
        times.push(started.elapsed());
        assert_eq!(listed.kvs.len(), expected, "list size");
    }
    times
}

/// `watchers` watches on one prefix, then `writes` sequential 1 KiB puts under it: for every
/// delivered event, the time from issuing the put to the watcher receiving it.
pub async fn watch_latencies(
    store: &Arc<dyn Store>,
    watchers: usize,
    writes: usize,
) -> Vec<Duration> {
    let prefix = "/bench/watch/";
    let mut tasks = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let mut stream = store
            .watch(KeyRange::Prefix(prefix.into()), None)
            .await
            .expect("watch");
        tasks.push(tokio::spawn(async move {
            let mut received = Vec::with_capacity(writes);
            while received.len() < writes {
                let event = tokio::time::timeout(Duration::from_secs(60), stream.next())
                    .await
                    .expect("an event within a minute")
                    .expect("the watch goes on")
                    .expect("an event, not an error");
                received.push((event.revision(), Instant::now()));
            }
            received
        }));
    }
    let mut issued: HashMap<Revision, Instant> = HashMap::with_capacity(writes);
    for i in 0..writes {
        let started = Instant::now();
        let kv = store
            .put(&format!("{prefix}{}", i % 100), value_1k(i))
            .await
            .expect("put");
        issued.insert(kv.mod_revision, started);
    }
    let mut latencies = Vec::with_capacity(watchers * writes);
    for task in tasks {
        for (revision, at) in task.await.expect("watcher task") {
            let started = issued
                .get(&revision)
                .expect("an event of a write made here");
            latencies.push(at.duration_since(*started));
        }
    }
    latencies
}

/// `updates` 1 KiB puts over 1,000 keys from 64 writers.
pub async fn churn(store: &Arc<dyn Store>, updates: usize) {
    let writers = 64;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut n = w;
                while n < updates {
                    let key = format!("/bench/disk/{:04}", n % 1000);
                    store.put(&key, value_1k(n)).await.expect("put");
                    n += writers;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("churn task");
    }
}
