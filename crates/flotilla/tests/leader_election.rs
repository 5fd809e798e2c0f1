//! Leader election end to end: two `flotilla server`s on one etcd, both with the scheduler
//! and the controllers (no agent). Exactly one holds kube-system/kube-scheduler and
//! kube-system/kube-controller-manager, and a ReplicaSet is reconciled onto a simulated
//! node. The leader is killed with SIGKILL: the other takes both Leases once they expire
//! (lease duration 15 s) and reconciles a new ReplicaSet. A third server joins; the leader
//! is then terminated cleanly and releases its Leases, so the third takes over at once
//! rather than after the lease duration.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use support::sim::{
    app_workload, create_namespace, eventually, nodes, phase_of, start_nodes, SimulatedConfig,
};
use support::{Etcd, Server, ServerOptions};

const LEASES: [&str; 2] = ["kube-scheduler", "kube-controller-manager"];

fn elected(etcd: &Etcd) -> Server {
    Server::start_with(ServerOptions {
        with_scheduler: true,
        with_controllers: true,
        ..ServerOptions::etcd(etcd)
    })
}

/// The holder and transition count of each Lease, once both have a holder.
async fn holders(client: &kube::Client) -> Option<[(String, i32); 2]> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let mut out = Vec::new();
    for name in LEASES {
        let spec = leases.get_opt(name).await.ok()??.spec?;
        let holder = spec.holder_identity.filter(|h| !h.is_empty())?;
        out.push((holder, spec.lease_transitions.unwrap_or(0)));
    }
    out.try_into().ok()
}

/// Which of `servers` logged winning `identity`'s election; exactly one must have. Polled:
/// the line is written after the elector's write returns, so the Lease can show the holder
/// a moment before its log does.
async fn leader_of(servers: &[&Server], identity: &str) -> usize {
    eventually(
        10,
        &format!("a server logs becoming {identity}"),
        || async {
            let winners: Vec<usize> = servers
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.log()
                        .lines()
                        .any(|l| l.contains("became leader") && l.contains(identity))
                })
                .map(|(i, _)| i)
                .collect();
            assert!(winners.len() <= 1, "two servers are {identity}");
            winners.first().copied()
        },
    )
    .await
}

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    let container = json!({"name": "c", "image": "busybox"});
    serde_json::from_value(app_workload("ReplicaSet", name, replicas, container)).unwrap()
}

/// Creates a ReplicaSet and waits until its pods are scheduled and running.
async fn reconciled(client: &kube::Client, ns: &str, name: &str, secs: u64) {
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    rss.create(&PostParams::default(), &replica_set(name, 2))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let what = format!("ReplicaSet {name} gets 2 running pods");
    eventually(secs, &what, || async {
        let list = pods
            .list(&ListParams::default().labels(&format!("app={name}")))
            .await
            .ok()?;
        let running = list
            .items
            .iter()
            .filter(|p| {
                phase_of(p) == Some("Running")
                    && p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some()
            })
            .count();
        (running == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_takeover_on_crash_and_release_on_shutdown() {
    let etcd = Etcd::start();
    let ns = testkit::unique_name("le");
    let mut first = elected(&etcd);
    let mut second = elected(&etcd);
    let c1 = first.kube_client().await;
    let c2 = second.kube_client().await;

    // One server wins both (the first to try finds them free); the other waits.
    let [(sched, _), (kcm, _)] = eventually(20, "both Leases have a holder", || holders(&c1)).await;
    let leader = leader_of(&[&first, &second], &sched).await;
    assert_eq!(leader_of(&[&first, &second], &kcm).await, leader);
    let (mut leader_server, mut follower, follower_client) = if leader == 0 {
        (first, second, c2)
    } else {
        std::mem::swap(&mut first, &mut second);
        (first, second, c1)
    };

    // The namespace and a simulated node, through the server that survives the crash.
    create_namespace(&follower_client, &ns).await;
    let node_prefix = testkit::unique_name("le-node");
    let nodes = SimulatedConfig {
        lease_interval: Duration::from_secs(1),
        ..nodes(&node_prefix, 1)
    };
    let _nodes = start_nodes(&follower_client, nodes).await;
    reconciled(&follower_client, &ns, "before-crash", 30).await;

    // The leader crashes: its Leases expire and the follower takes both.
    let crashed = Instant::now();
    leader_server.kill();
    let [(s2, t_sched), (k2, t_kcm)] = eventually(40, "the follower takes both Leases", || async {
        let h = holders(&follower_client).await?;
        (h[0].0 != sched && h[1].0 != kcm).then_some(h)
    })
    .await;
    let took = crashed.elapsed();
    assert!(
        took < Duration::from_secs(35),
        "taken over in {took:?}: within the lease duration plus a few retries"
    );
    assert!(
        took >= Duration::from_secs(8),
        "taken over in {took:?}: not before the crashed leader's lease expired"
    );
    assert!(t_sched >= 1 && t_kcm >= 1, "a takeover counts a transition");
    assert_eq!(leader_of(&[&follower], &s2).await, 0);
    assert_eq!(leader_of(&[&follower], &k2).await, 0);
    reconciled(&follower_client, &ns, "after-crash", 30).await;

    // A clean shutdown releases the Leases: a third server leads within a couple of
    // retry periods, far sooner than the 15 s a lease takes to expire.
    let third = elected(&etcd);
    let c3 = third.kube_client().await;
    let stopping = Instant::now();
    // SIGTERM, and wait for the exit beside the poll: the API server's own graceful
    // shutdown (open watches) must not count against the handover.
    let exited = tokio::task::spawn_blocking(move || follower.terminate(Duration::from_secs(30)));
    eventually(20, "the third server takes both Leases", || async {
        let h = holders(&c3).await?;
        (h[0].0 != s2 && h[1].0 != k2).then_some(())
    })
    .await;
    let took = stopping.elapsed();
    let status = exited.await.unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "the leader stops cleanly"
    );
    assert!(
        took < Duration::from_secs(12),
        "released Leases are taken at once, not after expiry: {took:?}"
    );
    eventually(10, "the third server logs its win", || async {
        third.log().contains("became leader").then_some(())
    })
    .await;
}
