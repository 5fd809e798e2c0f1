//! Scheduler benchmark: 10,000 pending pods onto 5,000 simulated nodes, through a real
//! `flotilla server` (embedded store), as kube-scheduler's scheduler_perf SchedulingBasic
//! workload does at that size.
//!
//! ```sh
//! cargo bench -p flotilla --bench scheduler            # 5,000 nodes, 10,000 pods
//! cargo bench -p flotilla --bench scheduler -- --quick # 500 nodes, 1,000 pods
//! FLOTILLA_BENCH_BIND_CONCURRENCY=256 cargo bench -p flotilla --bench scheduler  # other binding slots
//! ```
//!
//! The nodes and pods are created first (pods name a scheduler that is not running yet), then
//! the scheduler starts and the clock runs until the last binding is acknowledged by the API
//! server. Throughput is pods bound per second; latency is per pod, from the moment its
//! cycle starts to its binding's acknowledgement. The anchor is kube-scheduler's CI floor for
//! this workload, 680 pods/s on a large machine; the goal is 5,000 pods/s on 2 cores.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ObjectMeta, PostParams};

use support::Server;

// The scheduler runs in this process: give it the allocator `flotilla server` runs it with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SCHEDULER: &str = "bench-scheduler";
const KUBE_SCHEDULER_CI_FLOOR: f64 = 680.0;
const GOAL: f64 = 5_000.0;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("FLOTILLA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let (nodes, pods) = if quick { (500, 1_000) } else { (5_000, 10_000) };
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the benchmark runtime");
    if let Err(e) = runtime.block_on(run(&server, nodes, pods)) {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn pod(i: usize) -> Pod {
    let requests = [
        ("cpu".to_string(), Quantity("10m".into())),
        ("memory".to_string(), Quantity("16Mi".into())),
    ]
    .into();
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("bench-{i}")),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            scheduler_name: Some(SCHEDULER.into()),
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

async fn run(server: &Server, node_count: usize, pod_count: usize) -> Result<(), String> {
    let client = server.kube_client().await;
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
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let results: Vec<_> = futures::stream::iter(0..pod_count)
        .map(|i| {
            let api = pods_api.clone();
            async move { api.create(&PostParams::default(), &pod(i)).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r.map_err(|e| format!("creating a pod: {e}"))?;
    }
    println!("{pod_count} pending pods created in {:.1?}", t.elapsed());

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
    println!("binding concurrency {}", config.bind_concurrency);
    let started = Instant::now();
    let task = tokio::spawn(
        scheduler::Scheduler::new(client, config)
            .with_progress(progress_tx)
            .run(async {
                let _ = stop_rx.await;
            }),
    );
    let deadline = Duration::from_secs(600);
    tokio::time::timeout(deadline, progress.wait_for(|n| *n >= pod_count as u64))
        .await
        .map_err(|_| format!("not every pod was bound within {deadline:?}"))?
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let _ = stop_tx.send(());
    let stats = task
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;

    let mut lat = stats.latencies.clone();
    lat.sort();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let rate = pod_count as f64 / elapsed.as_secs_f64();
    println!();
    println!("scheduler: {pod_count} pods onto {node_count} simulated nodes");
    println!("  elapsed          {:>10.2?}", elapsed);
    println!("  throughput       {:>10.0} pods/s", rate);
    println!("  attempt p50      {:>10.2?}", q(0.50));
    println!("  attempt p99      {:>10.2?}", q(0.99));
    println!("  failed attempts  {:>10}", stats.failed_attempts);
    let algo = stats.cycle_time.as_secs_f64();
    println!(
        "  cycles alone     {:>10.0} pods/s ({:.1?} per pod: filter, score, assume)",
        pod_count as f64 / algo.max(1e-9),
        stats.cycle_time / pod_count.max(1) as u32
    );
    println!(
        "  vs kube-scheduler CI floor ({KUBE_SCHEDULER_CI_FLOOR} pods/s): {:.1}x; vs goal ({GOAL} pods/s): {:.2}x",
        rate / KUBE_SCHEDULER_CI_FLOOR,
        rate / GOAL
    );
    Ok(())
}
