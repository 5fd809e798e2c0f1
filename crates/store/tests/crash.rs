//! Crash safety of the embedded store: a child process streams acknowledged writes while the
//! parent SIGKILLs it at random moments, then reopens the store and checks that nothing
//! acknowledged was lost, nothing is torn, and the store keeps working.
//!
//! The child is this test binary re-executed with `CRASH_WRITER_DIR` set, running the ignored
//! test `crash_writer_child`.

use std::collections::HashMap;
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher, RandomState};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_store::{
    EmbeddedConfig, EmbeddedStore, EventKind, KeyRange, ListOptions, Revision, Store, StoreError,
};
use futures::StreamExt;

const DIR_ENV: &str = "CRASH_WRITER_DIR";
const ITERATION_ENV: &str = "CRASH_WRITER_ITERATION";
const KEYS: u64 = 40;
const WRITERS: u64 = 8;

/// Small history, so compaction and its deferred deletions are often in flight at the kill.
fn config() -> EmbeddedConfig {
    EmbeddedConfig {
        compaction_interval: None,
        max_retained_revisions: Some(300),
        ..EmbeddedConfig::default()
    }
}

fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// DefaultHasher::new() has fixed keys, so parent and child (the same binary) agree.
fn digest(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// A value that carries its own checksum: 8 bytes of digest, then the body.
fn sealed_value(body: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(8 + body.len());
    v.extend_from_slice(&digest(body).to_le_bytes());
    v.extend_from_slice(body);
    Bytes::from(v)
}

fn is_intact(value: &[u8]) -> bool {
    value.len() >= 8 && value[..8] == digest(&value[8..]).to_le_bytes()
}

/// The child: writes forever from several tasks, printing each acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by crash_then_reopen_loses_nothing_acknowledged as its child process"]
async fn crash_writer_child() {
    let dir = std::env::var(DIR_ENV).expect("only the crash test runs this, with CRASH_WRITER_DIR");
    let iteration = std::env::var(ITERATION_ENV).unwrap_or_default();
    let store = Arc::new(EmbeddedStore::open(Path::new(&dir), config()).expect("open"));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let iteration = iteration.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 0u64.. {
                let key = format!("/crash/k{:02}", random() % KEYS);
                let line = if random().is_multiple_of(10) {
                    match store.delete(&key, None).await {
                        Ok((_, rev)) => format!("DEL {key} {rev}"),
                        Err(StoreError::NotFound { .. }) => continue,
                        Err(e) => panic!("delete failed: {e}"),
                    }
                } else {
                    let filler = "x".repeat((random() % 3000) as usize);
                    let body = format!("{iteration}:{writer}:{seq}:{filler}");
                    let value = sealed_value(body.as_bytes());
                    let kv = store.put(&key, value.clone()).await.expect("put");
                    format!("ACK {key} {} {:016x}", kv.mod_revision, digest(&value))
                };
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").expect("stdout");
                out.flush().expect("stdout");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
}

/// SIGKILL's number, the same on every Linux architecture.
fn libc_sigkill() -> i32 {
    9
}

/// Kills the child and reaps it however the test ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Acked {
    Put { rev: Revision, hash: u64 },
    Delete { rev: Revision },
}

impl Acked {
    fn rev(&self) -> Revision {
        match self {
            Acked::Put { rev, .. } | Acked::Delete { rev } => *rev,
        }
    }
}

fn parse(line: &str) -> Option<(String, Acked)> {
    let mut parts = line.split_whitespace();
    match parts.next()? {
        "ACK" => {
            let key = parts.next()?.to_string();
            let rev = parts.next()?.parse().ok()?;
            let hash = u64::from_str_radix(parts.next()?, 16).ok()?;
            Some((key, Acked::Put { rev, hash }))
        }
        "DEL" => {
            let key = parts.next()?.to_string();
            let rev = parts.next()?.parse().ok()?;
            Some((key, Acked::Delete { rev }))
        }
        _ => None,
    }
}

/// Runs one child until it has acknowledged `kill_after` writes, SIGKILLs it, and returns
/// every write it acknowledged.
fn run_child(dir: &Path, iteration: usize, kill_after: usize) -> Vec<(String, Acked)> {
    let exe = std::env::current_exe().expect("test binary path");
    let child = Command::new(exe)
        .args(["--exact", "crash_writer_child", "--ignored", "--nocapture"])
        .env(DIR_ENV, dir)
        .env(ITERATION_ENV, iteration.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut guard = ChildGuard(child);
    let stdout = guard.0.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(ack) = parse(&line) {
                if lines_tx.send(ack).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut acked = Vec::new();
    while acked.len() < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(ack) => acked.push(ack),
            Err(_) => panic!(
                "child acknowledged only {} of {kill_after} writes before the deadline",
                acked.len()
            ),
        }
    }
    // The child never exits by itself, so an error here means it died first: its status says why.
    let _ = guard.0.kill();
    let status = guard.0.wait().expect("reap the child");
    assert!(
        status.signal() == Some(libc_sigkill()),
        "the child ended by itself ({status}) instead of by SIGKILL"
    );
    // Whatever it printed before dying was acknowledged too.
    reader.join().expect("reader thread");
    acked.extend(lines.try_iter());
    acked
}

/// Whether history holds a delete of `key` at or after `start`. Every revision changed some
/// key under /crash/, so the watch of that prefix reaches `current` without waiting.
async fn deleted_since(store: &EmbeddedStore, key: &str, start: Revision) -> bool {
    let current = store.current_revision().await.expect("current revision");
    let mut events = store
        .watch(KeyRange::Prefix("/crash/".into()), Some(start))
        .await
        .expect("watch history");
    let mut deleted = false;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("history is served without waiting")
    {
        let event = event.expect("history event");
        deleted |= event.kind == EventKind::Delete && event.kv.key == key;
        if event.revision() >= current {
            break;
        }
    }
    deleted
}

/// Checks the reopened store against what was acknowledged, and returns its state as the new
/// baseline: once a write the parent never saw (a delete killed before it was printed) has
/// been found in history, later checks must not depend on that history, which compaction
/// may have dropped by then.
async fn check_store(
    dir: &Path,
    latest: &HashMap<String, Acked>,
    all: &[(String, Acked)],
) -> HashMap<String, Acked> {
    let store = EmbeddedStore::open(dir, config()).expect("reopen after SIGKILL");
    let current = store.current_revision().await.expect("current revision");
    let compacted = store
        .compacted_revision()
        .await
        .expect("compacted revision");
    let max_acked = all.iter().map(|(_, a)| a.rev()).max().unwrap_or(0);
    assert!(
        current >= max_acked,
        "current {current} < acknowledged {max_acked}"
    );
    assert!(compacted <= current);

    let listed = store
        .list(ListOptions {
            prefix: "/crash/".into(),
            ..ListOptions::default()
        })
        .await
        .expect("list");
    for kv in &listed.kvs {
        assert!(is_intact(&kv.value), "torn value under {}", kv.key);
        assert!(kv.create_revision <= kv.mod_revision && kv.mod_revision <= current);
        assert!(kv.version >= 1);
    }
    let by_key: HashMap<&str, _> = listed.kvs.iter().map(|kv| (kv.key.as_str(), kv)).collect();
    for (key, ack) in latest {
        let found = by_key.get(key.as_str());
        match (ack, found) {
            (Acked::Put { rev, hash }, Some(kv)) if kv.mod_revision == *rev => {
                assert_eq!(digest(&kv.value), *hash, "{key} at {rev} has another value")
            }
            (_, Some(kv)) => assert!(
                kv.mod_revision > ack.rev(),
                "{key}: acknowledged {ack:?} but found revision {}",
                kv.mod_revision
            ),
            (Acked::Put { rev, .. }, None) => {
                // Only a later delete, committed but killed before it was printed, may hide it.
                let start = (*rev + 1).max(compacted);
                assert!(
                    deleted_since(&store, key, start).await,
                    "{key}: acknowledged put at {rev} is gone"
                );
            }
            (Acked::Delete { .. }, None) => {}
        }
    }
    // History that was not compacted away still answers with the acknowledged values.
    for (key, ack) in all {
        if let Acked::Put { rev, hash } = ack {
            if *rev >= compacted {
                let (kv, _) = store.get(key, Some(*rev)).await.expect("past read");
                let kv = kv.unwrap_or_else(|| panic!("{key} missing at {rev}"));
                assert_eq!(kv.mod_revision, *rev);
                assert_eq!(digest(&kv.value), *hash);
            }
        }
    }
    let mut baseline: HashMap<String, Acked> = latest
        .keys()
        .map(|key| (key.clone(), Acked::Delete { rev: current }))
        .collect();
    for kv in &listed.kvs {
        let ack = Acked::Put {
            rev: kv.mod_revision,
            hash: digest(&kv.value),
        };
        baseline.insert(kv.key.clone(), ack);
    }
    // And it keeps working.
    let probe = sealed_value(b"after reopen");
    let kv = store
        .put("/crash/probe", probe.clone())
        .await
        .expect("write after reopen");
    assert!(kv.mod_revision > current);
    let (read, _) = store.get("/crash/probe", None).await.expect("read back");
    assert_eq!(read.map(|kv| kv.value), Some(probe));
    baseline
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_then_reopen_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let budget = Instant::now() + Duration::from_secs(60);
    let mut latest: HashMap<String, Acked> = HashMap::new();
    let mut all = Vec::new();
    let mut iterations = 0;
    // At least ten crashes whatever the disk's speed; the budget only stops early after that.
    while iterations < 25 && (iterations < 10 || Instant::now() < budget) {
        let kill_after = 1 + (random() % 400) as usize;
        // Shown with a failure, to tell which crash broke what.
        eprintln!("iteration {iterations}: SIGKILL after {kill_after} acknowledged writes");
        let dir_path = dir.path().to_path_buf();
        let acked =
            tokio::task::spawn_blocking(move || run_child(&dir_path, iterations, kill_after))
                .await
                .expect("child run");
        for (key, ack) in &acked {
            let newer = latest.get(key).is_none_or(|old| ack.rev() > old.rev());
            if newer {
                latest.insert(key.clone(), ack.clone());
            }
        }
        all.extend(acked);
        latest = check_store(dir.path(), &latest, &all).await;
        // The probe write moved the revision on; keys written by children are unaffected.
        iterations += 1;
    }
    eprintln!(
        "{iterations} crash iterations, {} acknowledged writes checked",
        all.len()
    );
    let mut revs: Vec<Revision> = all.iter().map(|(_, a)| a.rev()).collect();
    let total = revs.len();
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(
        revs.len(),
        total,
        "two acknowledged writes share a revision"
    );
}
