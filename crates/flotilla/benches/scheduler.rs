//! Scheduler benchmark: 10,000 pending pods onto 5,000 simulated nodes, through a real
//! `flotilla server` (embedded store), as kube-scheduler's scheduler_perf SchedulingBasic
//! workload does at that size. Two modes, run one after the other and printed side by side:
//!
//! - "https": the scheduler runs in this process against a `--no-scheduler` server, paying
//!   TLS, HTTP and JSON per binding as an out-of-process kube-scheduler would.
//! - "in-process": the scheduler `flotilla server` ships, inside the server with a
//!   router-direct client (no TLS, no sockets), under leader election.
//!
//! ```sh
//! cargo bench -p flotilla --bench scheduler            # 5,000 nodes, 10,000 pods
//! cargo bench -p flotilla --bench scheduler -- --quick # 500 nodes, 1,000 pods
//! FLOTILLA_BENCH_BIND_CONCURRENCY=256 cargo bench -p flotilla --bench scheduler  # other binding slots (https mode)
//! FLOTILLA_BENCH_MODE=in-process cargo bench -p flotilla --bench scheduler  # the in-process mode alone
//! FLOTILLA_BENCH_SERVER_ARGS="--flag …" cargo bench -p flotilla --bench scheduler  # extra flags for its server
//! FLOTILLA_BENCH_CONTROLLERS=1 cargo bench -p flotilla --bench scheduler  # its controllers on too
//! FLOTILLA_BENCH_SERVER_LOG=/tmp/server.log cargo bench -p flotilla --bench scheduler  # keep its log
//! ```
//!
//! In both modes the nodes and pods exist before any scheduler runs, and a pod watch from this
//! process records when each pod is first seen bound. The in-process server cannot be told to
//! wait, so the cluster is built on a `--no-scheduler` server that also writes the
//! kube-system/kube-scheduler Lease with a foreign holder; the server is stopped (its embedded
//! store is durable) and restarted on the same data directory with its scheduler on, whose
//! elector finds the Lease held and keeps retrying. Once the pod watch is established, the
//! benchmark deletes the Lease: the clock starts there, the elector takes the Lease on its next
//! retry, the scheduler syncs its caches and binds.
//!
//! Throughput is pods bound per second from the first binding seen to the last (and, for the
//! https mode, the scheduler's own figure from its start to the last acknowledged binding);
//! "pod wait" is, per pod, from the scheduler's start (https) or the Lease's release
//! (in-process) to its binding being seen. The anchor is kube-scheduler's CI floor for this
//! workload, 680 pods/s on a large machine; the goal is 5,000 pods/s on 2 cores.
//!
//! The in-process mode also prints the restarted server's peak and final RSS with every pod
//! bound: the control plane's memory for a cluster of this size.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::{watcher, WatchStreamExt};

use support::{Server, ServerOptions};

// The https mode's scheduler runs in this process: give it the allocator `flotilla server`
// runs it with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The https mode's scheduler; its pods name it so the server's own (off there) is moot.
const SCHEDULER: &str = "bench-scheduler";
const KUBE_SCHEDULER_CI_FLOOR: f64 = 680.0;
const GOAL: f64 = 5_000.0;
const NAMESPACE: &str = "default";
/// How long the whole binding phase of one mode may take.
const DEADLINE: Duration = Duration::from_secs(600);
/// The in-process elector retries this often while the benchmark holds the Lease, so the
/// release-to-leadership delay is small and bounded.
const ELECTOR_RETRY: &str = "--leader-elect-retry-period=100ms";

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("FLOTILLA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let (nodes, pods) = if quick { (500, 1_000) } else { (5_000, 10_000) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the benchmark runtime");
    // FLOTILLA_BENCH_MODE=in-process skips the https mode, for profiling the server alone.
    let only_in_process = std::env::var("FLOTILLA_BENCH_MODE").is_ok_and(|m| m == "in-process");
    let https = if only_in_process {
        None
    } else {
        let server = Server::start();
        match runtime.block_on(https_mode(&server, nodes, pods)) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("benchmark (https mode) failed: {e}");
                std::process::exit(1);
            }
        }
    };
    let in_process = match runtime.block_on(in_process_mode(nodes, pods)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("benchmark (in-process mode) failed: {e}");
            std::process::exit(1);
        }
    };
    match &https {
        Some(https) => report(nodes, pods, https, &in_process),
        None => report_in_process(nodes, pods, &in_process),
    }
}

/// The in-process figures alone (FLOTILLA_BENCH_MODE=in-process).
fn report_in_process(node_count: usize, pod_count: usize, r: &ModeResult) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!("scheduler (in-process only): {pod_count} pods onto {node_count} simulated nodes");
    println!(
        "  throughput first to last {:.0}/s, start to last {:.0}/s; to first {:.0} ms, first to last {:.0} ms, wait p50 {:.0} ms p99 {:.0} ms; vs goal ({GOAL} pods/s) {:.2}x",
        r.throughput(),
        r.throughput_from_start(),
        ms(r.to_first),
        ms(r.first_to_last),
        ms(r.wait(0.50)),
        ms(r.wait(0.99)),
        r.throughput() / GOAL
    );
    print_memory(r, node_count + pod_count);
}

/// What one mode measured.
struct ModeResult {
    /// From the scheduler's start (or the Lease's release) to the first binding seen.
    to_first: Duration,
    /// First to last binding seen.
    first_to_last: Duration,
    /// Per pod, from the same start to its binding seen; sorted.
    waits: Vec<Duration>,
    /// Only the https mode sees inside its scheduler.
    scheduler: Option<SchedulerFigures>,
    /// In-process only: SIGTERM of the building server to the restarted one's /readyz.
    restart: Option<Duration>,
    /// In-process only: the restarted server's peak and final resident memory (KiB), all
    /// pods bound: the control plane's footprint holding this cluster.
    memory: Option<(u64, u64)>,
}

/// `VmHWM` (peak) and `VmRSS` (now) of process `pid`, in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// The memory line of the in-process server, if it was read.
fn print_memory(r: &ModeResult, objects: usize) {
    if let Some((peak, now)) = r.memory {
        println!(
            "  in-process server memory, {objects} objects held: peak RSS {:.0} MiB, RSS after the run {:.0} MiB",
            peak as f64 / 1024.0,
            now as f64 / 1024.0
        );
    }
}

struct SchedulerFigures {
    /// Scheduler start to the last binding acknowledged.
    elapsed: Duration,
    attempt_p50: Duration,
    attempt_p99: Duration,
    failed_attempts: u64,
    cycle_time: Duration,
    bind_concurrency: usize,
}

impl ModeResult {
    fn throughput(&self) -> f64 {
        // n bindings span n-1 intervals from the first to the last.
        (self.waits.len().saturating_sub(1)) as f64 / self.first_to_last.as_secs_f64().max(1e-9)
    }

    /// Including the time to the first binding (the scheduler's cache sync among it).
    fn throughput_from_start(&self) -> f64 {
        self.waits.len() as f64 / (self.to_first + self.first_to_last).as_secs_f64().max(1e-9)
    }

    fn wait(&self, p: f64) -> Duration {
        quantile(&self.waits, p)
    }
}

fn quantile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn pod(i: usize, scheduler: Option<&str>) -> Pod {
    let requests = [
        ("cpu".to_string(), Quantity("10m".into())),
        ("memory".to_string(), Quantity("16Mi".into())),
    ]
    .into();
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("bench-{i}")),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            scheduler_name: scheduler.map(str::to_string),
            containers: vec![Container {
                name: "c".into(),
                image: Some("registry.invalid/pause:3".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// Registers the simulated nodes and creates the pending pods.
async fn populate(
    client: &kube::Client,
    node_count: usize,
    pod_count: usize,
    scheduler: Option<&str>,
) -> Result<(), String> {
    let t = Instant::now();
    let nodes: Api<Node> = Api::all(client.clone());
    let sim = agent::simulated::SimulatedConfig {
        count: node_count,
        ..Default::default()
    };
    let results: Vec<_> = futures::stream::iter(0..node_count)
        .map(|i| {
            let nodes = nodes.clone();
            let node = agent::simulated::simulated_node(&sim, i);
            async move { nodes.create(&PostParams::default(), &node).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r.map_err(|e| format!("creating a node: {e}"))?;
    }
    println!(
        "{node_count} simulated nodes registered in {:.1?}",
        t.elapsed()
    );

    let t = Instant::now();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let results: Vec<_> = futures::stream::iter(0..pod_count)
        .map(|i| {
            let api = pods_api.clone();
            async move { api.create(&PostParams::default(), &pod(i, scheduler)).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r.map_err(|e| format!("creating a pod: {e}"))?;
    }
    println!("{pod_count} pending pods created in {:.1?}", t.elapsed());
    Ok(())
}

/// A pod watch that records when each pod is first seen with a node. `started` resolves once
/// the watch's initial list is in (bindings after that are seen as they happen); the task
/// ends with the times of all `pod_count` bindings, in order.
fn watch_bindings(
    client: kube::Client,
    pod_count: usize,
) -> (
    tokio::sync::oneshot::Receiver<()>,
    tokio::task::JoinHandle<Result<Vec<Instant>, String>>,
) {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
        let mut ready = Some(ready_tx);
        let mut bound: HashSet<String> = HashSet::with_capacity(pod_count);
        let mut times = Vec::with_capacity(pod_count);
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        while let Some(event) = events.next().await {
            let pod = match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                Ok(_) | Err(_) => continue,
            };
            let on_node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty());
            if on_node && bound.insert(pod.metadata.name.unwrap_or_default()) {
                times.push(Instant::now());
                if times.len() >= pod_count {
                    return Ok(times);
                }
            }
        }
        Err("the pod watch ended".to_string())
    });
    (ready_rx, task)
}

fn summarise(
    start: Instant,
    times: &[Instant],
) -> Result<(Duration, Duration, Vec<Duration>), String> {
    let first = *times.first().ok_or("no binding was seen")?;
    let last = *times.last().ok_or("no binding was seen")?;
    let mut waits: Vec<Duration> = times.iter().map(|t| t.duration_since(start)).collect();
    waits.sort();
    Ok((
        first.duration_since(start),
        last.duration_since(first),
        waits,
    ))
}

async fn https_mode(
    server: &Server,
    node_count: usize,
    pod_count: usize,
) -> Result<ModeResult, String> {
    println!("== https: the scheduler in this process, over HTTPS ==");
    let client = server.kube_client().await;
    populate(&client, node_count, pod_count, Some(SCHEDULER)).await?;

    let (watch_ready, watch) = watch_bindings(client.clone(), pod_count);
    watch_ready
        .await
        .map_err(|_| "the pod watch ended before its initial list".to_string())?;

    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut config = scheduler::SchedulerConfig {
        name: SCHEDULER.into(),
        ..Default::default()
    };
    // For sizing experiments without a rebuild.
    if let Some(n) = std::env::var("FLOTILLA_BENCH_BIND_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.bind_concurrency = n;
    }
    let bind_concurrency = config.bind_concurrency;
    let started = Instant::now();
    let task = tokio::spawn(
        scheduler::Scheduler::new(client, config)
            .with_progress(progress_tx)
            .run(async {
                let _ = stop_rx.await;
            }),
    );
    tokio::time::timeout(DEADLINE, progress.wait_for(|n| *n >= pod_count as u64))
        .await
        .map_err(|_| format!("not every pod was bound within {DEADLINE:?}"))?
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let times = tokio::time::timeout(DEADLINE, watch)
        .await
        .map_err(|_| "the pod watch did not see every binding".to_string())?
        .map_err(|e| e.to_string())??;
    let _ = stop_tx.send(());
    let stats = task
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;

    let mut lat = stats.latencies.clone();
    lat.sort();
    let (to_first, first_to_last, waits) = summarise(started, &times)?;
    Ok(ModeResult {
        to_first,
        first_to_last,
        waits,
        scheduler: Some(SchedulerFigures {
            elapsed,
            attempt_p50: quantile(&lat, 0.50),
            attempt_p99: quantile(&lat, 0.99),
            failed_attempts: stats.failed_attempts,
            cycle_time: stats.cycle_time,
            bind_concurrency,
        }),
        restart: None,
        memory: None,
    })
}

/// The Lease the in-process scheduler's elector competes for, held by someone else until
/// long after the benchmark: a renewTime in the far future needs no clock here.
fn foreign_scheduler_lease() -> Result<Lease, String> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
        "spec": {
            "holderIdentity": "scheduler-bench-holder",
            "leaseDurationSeconds": 3600,
            "acquireTime": "2099-01-01T00:00:00.000000Z",
            "renewTime": "2099-01-01T00:00:00.000000Z",
            "leaseTransitions": 0
        }
    }))
    .map_err(|e| format!("the bench Lease: {e}"))
}

async fn in_process_mode(node_count: usize, pod_count: usize) -> Result<ModeResult, String> {
    println!("== in-process: the scheduler `flotilla server` ships, under leader election ==");
    let data = tempfile::Builder::new()
        .prefix("flotilla-bench-scheduler-")
        .tempdir()
        .map_err(|e| format!("a data directory: {e}"))?;
    let data_dir = data.path().join("data");

    let mut builder = Server::start_with(ServerOptions {
        data_dir: Some(data_dir.clone()),
        ..Default::default()
    });
    let port = builder.port();
    {
        let client = builder.kube_client().await;
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
        leases
            .create(&PostParams::default(), &foreign_scheduler_lease()?)
            .await
            .map_err(|e| format!("creating the scheduler Lease: {e}"))?;
        populate(&client, node_count, pod_count, None).await?;
    }
    let stopping = Instant::now();
    builder
        .terminate(Duration::from_secs(60))
        .filter(|s| s.success())
        .ok_or("the building server did not stop cleanly on SIGTERM")?;
    drop(builder);

    let server = Server::start_with(ServerOptions {
        data_dir: Some(data_dir),
        port: Some(port),
        with_scheduler: true,
        // scheduler_perf runs no controller manager; FLOTILLA_BENCH_CONTROLLERS=1 adds
        // ours, whose pod watches then parse every binding too. (The Nodes here do not
        // heartbeat: the node lifecycle controller would mark them Unknown 40 s after the
        // restart, well after the run.)
        with_controllers: std::env::var("FLOTILLA_BENCH_CONTROLLERS").is_ok_and(|v| v == "1"),
        args: std::iter::once(ELECTOR_RETRY.to_string())
            .chain(
                std::env::var("FLOTILLA_BENCH_SERVER_ARGS")
                    .ok()
                    .into_iter()
                    .flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>()),
            )
            .collect(),
        ..Default::default()
    });
    let restart = stopping.elapsed();
    println!(
        "restarted with the scheduler in {restart:.1?} (/readyz after {:.1?})",
        server.startup
    );
    let measured = measure_in_process(&server, pod_count, restart).await;
    if let Ok(path) = std::env::var("FLOTILLA_BENCH_SERVER_LOG") {
        std::fs::write(&path, server.log()).map_err(|e| format!("writing {path}: {e}"))?;
    }
    measured
}

/// The in-process mode's measurement on the restarted server.
async fn measure_in_process(
    server: &Server,
    pod_count: usize,
    restart: Duration,
) -> Result<ModeResult, String> {
    let client = server.kube_client().await;
    let (watch_ready, watch) = watch_bindings(client.clone(), pod_count);
    watch_ready
        .await
        .map_err(|_| "the pod watch ended before its initial list".to_string())?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let early = pods
        .list(&Default::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .iter()
        .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
        .count();
    if early > 0 {
        return Err(format!(
            "{early} pods were bound while the benchmark held the scheduler Lease"
        ));
    }

    let leases: Api<Lease> = Api::namespaced(client, "kube-system");
    let released = Instant::now();
    leases
        .delete("kube-scheduler", &DeleteParams::default())
        .await
        .map_err(|e| format!("releasing the scheduler Lease: {e}"))?;
    let times = tokio::time::timeout(DEADLINE, watch)
        .await
        .map_err(|_| format!("not every pod was bound within {DEADLINE:?}"))?
        .map_err(|e| e.to_string())??;
    let memory = server.pid().and_then(memory_kib);
    let (to_first, first_to_last, waits) = summarise(released, &times)?;
    Ok(ModeResult {
        to_first,
        first_to_last,
        waits,
        scheduler: None,
        restart: Some(restart),
        memory,
    })
}

fn report(node_count: usize, pod_count: usize, https: &ModeResult, inp: &ModeResult) {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!("scheduler: {pod_count} pods onto {node_count} simulated nodes");
    println!(
        "  {:<38} {:>12} {:>12} {:>16}",
        "", "https", "in-process", "in-process/https"
    );
    let (a, b) = (https.throughput(), inp.throughput());
    println!(
        "  {:<38} {:>12.0} {:>12.0} {:>15.2}x",
        "throughput, first to last binding /s",
        a,
        b,
        ratio(b, a)
    );
    let (a, b) = (https.throughput_from_start(), inp.throughput_from_start());
    println!(
        "  {:<38} {:>12.0} {:>12.0} {:>15.2}x",
        "throughput, start to last binding /s",
        a,
        b,
        ratio(b, a)
    );
    for (name, d1, d2) in [
        ("start to first binding (ms)", https.to_first, inp.to_first),
        (
            "first to last binding (ms)",
            https.first_to_last,
            inp.first_to_last,
        ),
        ("pod wait p50 (ms)", https.wait(0.50), inp.wait(0.50)),
        ("pod wait p99 (ms)", https.wait(0.99), inp.wait(0.99)),
    ] {
        println!(
            "  {:<38} {:>12.0} {:>12.0} {:>15.2}x",
            name,
            ms(d1),
            ms(d2),
            ratio(ms(d2), ms(d1))
        );
    }
    if let Some(r) = inp.restart {
        println!("  in-process: SIGTERM to the restarted server's /readyz {r:.1?}; start = the Lease's release");
    }
    print_memory(inp, node_count + pod_count);
    if let Some(s) = &https.scheduler {
        let rate = pod_count as f64 / s.elapsed.as_secs_f64();
        println!(
            "  https scheduler's own figures ({} binding slots):",
            s.bind_concurrency
        );
        println!(
            "    start to last ack   {:>10.2?} ({rate:.0} pods/s)",
            s.elapsed
        );
        println!("    attempt p50         {:>10.2?}", s.attempt_p50);
        println!("    attempt p99         {:>10.2?}", s.attempt_p99);
        println!("    failed attempts     {:>10}", s.failed_attempts);
        println!(
            "    cycles alone        {:>10.0} pods/s ({:.1?} per pod: filter, score, assume)",
            pod_count as f64 / s.cycle_time.as_secs_f64().max(1e-9),
            s.cycle_time / pod_count.max(1) as u32
        );
    }
    for (mode, r) in [("https", https), ("in-process", inp)] {
        let rate = r.throughput();
        println!(
            "  {mode}: vs kube-scheduler CI floor ({KUBE_SCHEDULER_CI_FLOOR} pods/s) {:.1}x; vs goal ({GOAL} pods/s) {:.2}x{}",
            rate / KUBE_SCHEDULER_CI_FLOOR,
            rate / GOAL,
            if rate >= GOAL { " (goal reached)" } else { " (goal not reached)" }
        );
    }
}
