//! The store benchmark: a real etcd and the embedded engine, side by side on this machine.
//!
//! `cargo bench -p flotilla-store --bench store` (add `-- --quick`, or set
//! `FLOTILLA_BENCH_QUICK=1`, for a run of well under a minute). Prints a Markdown table of
//! both backends' figures and their ratio (embedded / etcd).

mod workload;

// The same launcher the conformance tests use; the benchmark needs only part of it.
#[allow(dead_code)]
#[path = "../../tests/support/etcd.rs"]
mod etcd_server;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_store::{EmbeddedConfig, EmbeddedStore, Store};

use etcd_server::EtcdServer;

/// How much work each measurement does.
struct Plan {
    window: Duration,
    rounds: usize,
    list_rounds: usize,
    watchers: usize,
    watch_writes: usize,
    disk_updates: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                window: Duration::from_millis(1000),
                rounds: 1,
                list_rounds: 3,
                watchers: 1000,
                watch_writes: 20,
                disk_updates: 10_000,
            }
        } else {
            Plan {
                window: Duration::from_secs(3),
                rounds: 3,
                list_rounds: 11,
                watchers: 1000,
                watch_writes: 100,
                disk_updates: 100_000,
            }
        }
    }
}

/// One row of the report: a figure for each backend.
struct Row {
    metric: String,
    etcd: f64,
    embedded: f64,
    unit: &'static str,
}

fn main() {
    // `cargo bench` passes `--bench`; anything else unknown is ignored too.
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("FLOTILLA_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let plan = Plan::new(quick);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let rows = runtime.block_on(run(&plan));
    print_report(&rows, quick, started.elapsed());
}

async fn run(plan: &Plan) -> Vec<Row> {
    let mut rows = Vec::new();
    let server = EtcdServer::start().await;
    let etcd: Arc<dyn Store> = Arc::new(server.store("/bench").await);
    let embedded_dir = tempfile::tempdir().expect("temp dir");
    let embedded: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(embedded_dir.path(), EmbeddedConfig::default())
            .expect("open the embedded store"),
    );
    let both = [&etcd, &embedded];

    for writers in [1, 64] {
        let mut figures = [0.0; 2];
        for (i, store) in both.iter().enumerate() {
            let mut samples = Vec::new();
            for _ in 0..plan.rounds {
                samples.push(workload::writes_per_second(store, writers, plan.window).await);
            }
            figures[i] = median(&mut samples);
        }
        eprintln!("writes with {writers} writer(s): {figures:?}");
        rows.push(row(
            format!("durable writes/s, {writers} writer(s), 1 KiB"),
            figures,
            "/s",
        ));
    }

    for store in both {
        workload::preload(store, "/bench/read/", 1000).await;
    }
    for readers in [1, 64] {
        let mut figures = [0.0; 2];
        for (i, store) in both.iter().enumerate() {
            let mut samples = Vec::new();
            for _ in 0..plan.rounds {
                samples.push(
                    workload::reads_per_second(store, "/bench/read/", 1000, readers, plan.window)
                        .await,
                );
            }
            figures[i] = median(&mut samples);
        }
        eprintln!("reads with {readers} reader(s): {figures:?}");
        rows.push(row(
            format!("point reads/s, {readers} reader(s)"),
            figures,
            "/s",
        ));
    }

    let mut figures = [0.0; 2];
    for (i, store) in both.iter().enumerate() {
        workload::preload(store, "/bench/list/", 10_000).await;
        let mut times = workload::list_times(store, "/bench/list/", 10_000, plan.list_rounds)
            .await
            .iter()
            .map(|t| t.as_secs_f64() * 1e3)
            .collect::<Vec<_>>();
        figures[i] = median(&mut times);
    }
    eprintln!("list of 10,000: {figures:?} ms");
    rows.push(row(
        "list of 10,000 keys (1 KiB values), ms".into(),
        figures,
        "ms",
    ));

    let mut p50 = [0.0; 2];
    let mut p99 = [0.0; 2];
    for (i, store) in both.iter().enumerate() {
        let mut latencies = workload::watch_latencies(store, plan.watchers, plan.watch_writes)
            .await
            .iter()
            .map(|t| t.as_secs_f64() * 1e3)
            .collect::<Vec<_>>();
        latencies.sort_by(f64::total_cmp);
        p50[i] = percentile(&latencies, 50);
        p99[i] = percentile(&latencies, 99);
    }
    eprintln!("watch latency p50 {p50:?} p99 {p99:?} ms");
    let watchers = plan.watchers;
    rows.push(row(
        format!("watch event latency p50, {watchers} watchers, ms"),
        p50,
        "ms",
    ));
    rows.push(row(
        format!("watch event latency p99, {watchers} watchers, ms"),
        p99,
        "ms",
    ));
    drop((etcd, embedded, server));

    rows.push(disk(plan).await);
    rows
}

/// Bytes on disk after `disk_updates` updates over 1,000 keys and a compaction to the
/// latest revision (for etcd also a defragment), each backend in a fresh data dir.
async fn disk(plan: &Plan) -> Row {
    let server = EtcdServer::start().await;
    let etcd = Arc::new(server.store("/bench").await);
    let etcd_dyn: Arc<dyn Store> = etcd.clone();
    workload::churn(&etcd_dyn, plan.disk_updates).await;
    let revision = etcd.current_revision().await.expect("revision");
    etcd.compact(revision).await.expect("compact");
    etcd.defragment().await.expect("defragment");
    let etcd_bytes = dir_bytes(&server.data_dir());
    // Most of etcd's figure is its write-ahead log (segments of 64 MiB, preallocated),
    // which compaction does not shorten; the bbolt file is what defragment shrinks.
    eprintln!(
        "etcd after defragment: wal {} B, db {} B",
        dir_bytes(&server.data_dir().join("member/wal")),
        dir_bytes(&server.data_dir().join("member/snap"))
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let embedded: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).expect("open"));
    workload::churn(&embedded, plan.disk_updates).await;
    let revision = embedded.current_revision().await.expect("revision");
    embedded.compact(revision).await.expect("compact");
    let embedded_bytes = dir_bytes(dir.path());
    eprintln!("disk: etcd {etcd_bytes} B, embedded {embedded_bytes} B");
    row(
        format!(
            "MiB on disk after {} updates over 1,000 keys + compaction",
            plan.disk_updates
        ),
        [
            etcd_bytes as f64 / 1048576.0,
            embedded_bytes as f64 / 1048576.0,
        ],
        "MiB",
    )
}

/// Space allocated to every file under `dir` (etcd preallocates its WAL segments, so the
/// allocated size, not the apparent one, is what the disk holds).
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total += dir_bytes(&entry.path());
        } else {
            total += meta.blocks() * 512;
        }
    }
    total
}

fn row(metric: String, figures: [f64; 2], unit: &'static str) -> Row {
    Row {
        metric,
        etcd: figures[0],
        embedded: figures[1],
        unit,
    }
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn print_report(rows: &[Row], quick: bool, took: Duration) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or("?".to_string(), |kb| format!("{} GiB", kb / 1024 / 1024));
    let etcd_version = std::process::Command::new("/usr/bin/etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default();
    println!(
        "machine: {cores} cores, {memory}; {etcd_version}; mode: {}; took {:.0} s",
        if quick { "quick" } else { "full" },
        took.as_secs_f64()
    );
    println!();
    println!("| metric | etcd | embedded | embedded / etcd |");
    println!("|---|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.2} |",
            r.metric,
            format_figure(r.etcd, r.unit),
            format_figure(r.embedded, r.unit),
            r.embedded / r.etcd
        );
    }
}

fn format_figure(value: f64, unit: &str) -> String {
    match unit {
        "/s" => format!("{value:.0}"),
        _ => format!("{value:.2}"),
    }
}
