//! Controllers benchmark (issue 5): a Deployment of 1,000 replicas on 100 simulated nodes,
//! through a release `flotilla server` (embedded store) running its scheduler and
//! controllers, with the simulated nodes in this process.
//!
//! ```sh
//! cargo bench -p flotilla --bench controllers            # 1,000 replicas on 100 nodes
//! cargo bench -p flotilla --bench controllers -- --quick # 100 replicas on 10 nodes
//! ```
//!
//! Each round times
//! - the floor: creating the same number of pods directly (nodeName set, so neither the
//!   scheduler nor a controller is involved) until the simulated nodes report them all
//!   Ready, then deleting them until the last is gone from the API;
//! - the Deployment: from its creation to `status.availableReplicas` = replicas with
//!   `observedGeneration` current, then from the scale to 0 until no pod of it is left and
//!   `status.replicas` is 0 (observedGeneration current again).
//!
//! The clocks stop on watch events (reflector caches in this process, polled every 5 ms),
//! so measuring adds no list load to the server. Medians over the rounds; the ratios say
//! how far the controller path is from the bare API writes it has to make.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

use support::{Server, ServerOptions};

const NS: &str = "default";
/// Marks every pod and Deployment this benchmark makes.
const LABEL: &str = "flotilla.io/bench";
const NODE_PREFIX: &str = "bench-ctl";
const IN_FLIGHT: usize = 64;
const DEADLINE: Duration = Duration::from_secs(600);

struct Load {
    replicas: usize,
    nodes: usize,
    rounds: usize,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("FLOTILLA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let load = if quick {
        Load {
            replicas: 100,
            nodes: 10,
            rounds: 3,
        }
    } else {
        Load {
            replicas: 1_000,
            nodes: 100,
            rounds: 3,
        }
    };
    let server = Server::start_with(ServerOptions {
        with_scheduler: true,
        with_controllers: true,
        ..Default::default()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the benchmark runtime");
    if let Err(e) = runtime.block_on(run(&server, &load)) {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

/// A reflector cache of the benchmark's objects of one kind, kept by a background task.
async fn cache<K>(api: Api<K>) -> Result<Store<K>, String>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher::watcher(api, watcher::Config::default().labels(LABEL)),
    )
    .default_backoff()
    .for_each(|_| async {});
    tokio::spawn(stream);
    tokio::time::timeout(Duration::from_secs(60), reader.wait_until_ready())
        .await
        .map_err(|_| "a cache did not sync within 60 s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(reader)
}

/// Polls `done` over the caches until it holds; the elapsed time since `start`.
async fn until(
    what: &str,
    start: Instant,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, String> {
    loop {
        if done() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > DEADLINE {
            return Err(format!("{what}: not within {DEADLINE:?}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn labelled(p: &Pod, key: &str, value: &str) -> bool {
    p.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.get(key).is_some_and(|v| v == value))
}

fn template_spec() -> serde_json::Value {
    json!({
        "containers": [{
            "name": "c",
            "image": "registry.invalid/pause:3",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        }],
        "terminationGracePeriodSeconds": 30,
    })
}

fn direct_pod(round: usize, i: usize, node: &str) -> Result<Pod, String> {
    let mut spec = template_spec();
    spec["nodeName"] = json!(node);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("direct-{round}-{i}"),
            "namespace": NS,
            "labels": {LABEL: "direct", "round": round.to_string()},
        },
        "spec": spec,
    }))
    .map_err(|e| e.to_string())
}

fn deployment(name: &str, replicas: usize) -> Result<Deployment, String> {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {LABEL: "deployment"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, LABEL: "deployment"}},
                "spec": template_spec(),
            },
        },
    }))
    .map_err(|e| e.to_string())
}

#[derive(Default)]
struct Round {
    direct_ready: Duration,
    direct_gone: Duration,
    deploy_available: Duration,
    scale_to_zero: Duration,
}

async fn run(server: &Server, load: &Load) -> Result<(), String> {
    let client = server.kube_client().await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sim = agent::simulated::SimulatedConfig {
        count: load.nodes,
        name_prefix: NODE_PREFIX.into(),
        ..Default::default()
    };
    let t = Instant::now();
    let simulated = tokio::spawn(agent::simulated::run(client.clone(), sim, async {
        let _ = stop_rx.await;
    }));
    let nodes: Api<Node> = Api::all(client.clone());
    let selector = format!("{}=true", agent::simulated::LABEL_SIMULATED);
    loop {
        let n = nodes
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        if n >= load.nodes {
            break;
        }
        if simulated.is_finished() || t.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "only {n} of {} simulated nodes registered",
                load.nodes
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{} simulated nodes registered in {:.1?}",
        load.nodes,
        t.elapsed()
    );

    let pods_api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let deploy_api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let pods = cache(pods_api.clone()).await?;
    let deployments = cache(deploy_api.clone()).await?;

    let mut rounds = Vec::new();
    for round in 0..load.rounds {
        let r = one_round(round, load, &pods_api, &deploy_api, &pods, &deployments).await?;
        println!(
            "round {round}: direct ready {:.2?}, direct gone {:.2?}; deployment available {:.2?}, scaled to 0 {:.2?}",
            r.direct_ready, r.direct_gone, r.deploy_available, r.scale_to_zero
        );
        rounds.push(r);
    }
    let _ = stop_tx.send(());
    let _ = simulated.await;

    let median = |f: fn(&Round) -> Duration| {
        let mut v: Vec<Duration> = rounds.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    let direct_ready = median(|r| r.direct_ready);
    let direct_gone = median(|r| r.direct_gone);
    let available = median(|r| r.deploy_available);
    let zero = median(|r| r.scale_to_zero);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!();
    println!(
        "controllers: a Deployment of {} replicas on {} simulated nodes, median of {} rounds",
        load.replicas, load.nodes, load.rounds
    );
    println!(
        "  {:<44} {:>10.2?}   floor: {} pods created directly, all Ready {:>10.2?}   ratio {:.2}x",
        "created → all available",
        available,
        load.replicas,
        direct_ready,
        ratio(available, direct_ready)
    );
    println!(
        "  {:<44} {:>10.2?}   floor: {} pods deleted directly, all gone  {:>10.2?}   ratio {:.2}x",
        "scaled to 0 → no pod left",
        zero,
        load.replicas,
        direct_gone,
        ratio(zero, direct_gone)
    );
    println!(
        "  throughput: {:.0} replicas/s up, {:.0} replicas/s down (floor {:.0} / {:.0} pods/s)",
        load.replicas as f64 / available.as_secs_f64(),
        load.replicas as f64 / zero.as_secs_f64(),
        load.replicas as f64 / direct_ready.as_secs_f64(),
        load.replicas as f64 / direct_gone.as_secs_f64(),
    );
    Ok(())
}

async fn one_round(
    round: usize,
    load: &Load,
    pods_api: &Api<Pod>,
    deploy_api: &Api<Deployment>,
    pods: &Store<Pod>,
    deployments: &Store<Deployment>,
) -> Result<Round, String> {
    let mut out = Round::default();
    let round_label = round.to_string();

    // The floor: the pods' own writes, with no controller or scheduler in the way.
    let direct_pods = (0..load.replicas)
        .map(|i| direct_pod(round, i, &format!("{NODE_PREFIX}-{}", i % load.nodes)))
        .collect::<Result<Vec<Pod>, String>>()?;
    let start = Instant::now();
    let results: Vec<Result<Pod, kube::Error>> = futures::stream::iter(direct_pods)
        .map(|pod| {
            let api = pods_api.clone();
            async move { api.create(&PostParams::default(), &pod).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    for r in results {
        r.map_err(|e| format!("creating a pod: {e}"))?;
    }
    let direct = |p: &Pod| labelled(p, LABEL, "direct") && labelled(p, "round", &round_label);
    out.direct_ready = until("direct pods Ready", start, || {
        pods.state()
            .iter()
            .filter(|p| direct(p) && is_ready(p))
            .count()
            == load.replicas
    })
    .await?;
    let start = Instant::now();
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(0..load.replicas)
        .map(|i| {
            let api = pods_api.clone();
            async move {
                api.delete(&format!("direct-{round}-{i}"), &DeleteParams::default())
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    for r in results {
        r.map_err(|e| format!("deleting a pod: {e}"))?;
    }
    out.direct_gone = until("direct pods gone", start, || {
        !pods.state().iter().any(|p| direct(p))
    })
    .await?;

    // The Deployment.
    let name = format!("bench-{round}");
    let start = Instant::now();
    let created = deploy_api
        .create(&PostParams::default(), &deployment(&name, load.replicas)?)
        .await
        .map_err(|e| format!("creating the Deployment: {e}"))?;
    let generation = created.metadata.generation.unwrap_or(1);
    let find = |generation: i64, check: &dyn Fn(&DeploymentStatus) -> bool| {
        deployments.state().iter().any(|d| {
            d.metadata.name.as_deref() == Some(name.as_str())
                && d.status
                    .as_ref()
                    .is_some_and(|s| s.observed_generation.unwrap_or(0) >= generation && check(s))
        })
    };
    let want = load.replicas as i32;
    out.deploy_available = until("the Deployment available", start, || {
        find(generation, &|s| {
            s.available_replicas.unwrap_or(0) == want && s.replicas.unwrap_or(0) == want
        })
    })
    .await?;

    let start = Instant::now();
    let scaled = deploy_api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .map_err(|e| format!("scaling the Deployment: {e}"))?;
    let generation = scaled.metadata.generation.unwrap_or(generation + 1);
    let owned = |p: &Pod| labelled(p, "app", &name);
    out.scale_to_zero = until("the Deployment scaled to 0", start, || {
        !pods.state().iter().any(|p| owned(p))
            && find(generation, &|s| s.replicas.unwrap_or(0) == 0)
    })
    .await?;

    // Untimed clean-up: the Deployment and its (empty) ReplicaSet.
    deploy_api
        .delete(&name, &DeleteParams::default())
        .await
        .map_err(|e| format!("deleting the Deployment: {e}"))?;
    until("the Deployment deleted", Instant::now(), || {
        !deployments
            .state()
            .iter()
            .any(|d| d.metadata.name.as_deref() == Some(name.as_str()))
    })
    .await?;
    Ok(out)
}
