//! Node IPAM end to end: a real `flotilla server` with its controllers and a small cluster
//! CIDR (10.42.0.0/22: four /24s). Nodes without a podCIDR get distinct /24s inside it,
//! skipping one a node already holds; a node with a preset podCIDR (inside or outside the
//! cluster CIDR) keeps it; when the range is exhausted a node gets a CIDRNotAvailable
//! event and no CIDR, and gets the subnet a deleted node frees. An agent without
//! --pod-cidr registers its Node and takes the podCIDR IPAM assigns; with real containers
//! (root), the server's own agent does so and its pods get addresses in that subnet.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, NodeSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use support::cluster::NODE_READY_DEADLINE;
use support::sim::eventually;
use support::{AgentMode, Cluster, ClusterOptions, Server, ServerOptions};

fn bare_node(name: &str, cidr: Option<&str>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: cidr.map(str::to_string),
            pod_cidrs: cidr.map(|c| vec![c.to_string()]),
            ..Default::default()
        }),
        status: None,
    }
}

fn cidrs(node: &Node) -> (Option<String>, Vec<String>) {
    let spec = node.spec.clone().unwrap_or_default();
    (spec.pod_cidr, spec.pod_cidrs.unwrap_or_default())
}

async fn assigned(nodes: &Api<Node>, name: &str) -> String {
    let what = format!("node {name} gets a podCIDR");
    eventually(20, &what, || async {
        let node = nodes.get(name).await.unwrap();
        let (cidr, all) = cidrs(&node);
        let cidr = cidr.filter(|c| !c.is_empty())?;
        assert_eq!(all, std::slice::from_ref(&cidr), "podCIDRs mirrors podCIDR");
        Some(cidr)
    })
    .await
}

/// What an agent without --pod-cidr knows about its node.
fn agent_facts(name: &str, data_dir: &std::path::Path) -> agent::node::registration::NodeFacts {
    agent::node::registration::NodeFacts {
        name: name.into(),
        ip: "127.0.0.1".parse().unwrap(),
        port: 10250,
        pod_cidr: None,
        max_pods: 110,
        labels: Default::default(),
        control_plane: false,
        data_dir: data_dir.to_path_buf(),
        runtime_binary: "/usr/sbin/runc".into(),
        cni_bin_dir: "/usr/lib/cni".into(),
        runtime_version: "runc://test".into(),
        system: agent::node::machine::system_info(),
        eviction: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_subnets_and_exhaustion_waits_for_a_freed_one() {
    let server = Server::start_with(ServerOptions {
        with_controllers: true,
        args: vec![
            "--cluster-cidr=10.42.0.0/22".into(),
            "--node-cidr-mask-size=24".into(),
        ],
        ..ServerOptions::default()
    });
    let client = server.kube_client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pp = PostParams::default();

    // One subnet taken by hand, and one outside the cluster CIDR that is left alone.
    nodes
        .create(&pp, &bare_node("ipam-preset", Some("10.42.2.0/24")))
        .await
        .unwrap();
    nodes
        .create(&pp, &bare_node("ipam-outside", Some("192.168.77.0/24")))
        .await
        .unwrap();
    for name in ["ipam-a", "ipam-b", "ipam-c"] {
        nodes.create(&pp, &bare_node(name, None)).await.unwrap();
    }
    let mut got = BTreeSet::new();
    for name in ["ipam-a", "ipam-b", "ipam-c"] {
        got.insert(assigned(&nodes, name).await);
    }
    assert_eq!(
        got,
        BTreeSet::from(["10.42.0.0/24", "10.42.1.0/24", "10.42.3.0/24"].map(String::from)),
        "three distinct /24s of 10.42.0.0/22 around the preset one"
    );
    for (name, cidr) in [
        ("ipam-preset", "10.42.2.0/24"),
        ("ipam-outside", "192.168.77.0/24"),
    ] {
        let (got, all) = cidrs(&nodes.get(name).await.unwrap());
        assert_eq!(got.as_deref(), Some(cidr), "{name} keeps its podCIDR");
        assert_eq!(all, [cidr]);
    }

    // The range is full: the next node waits, with an event saying why.
    nodes
        .create(&pp, &bare_node("ipam-late", None))
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(20, "a CIDRNotAvailable event for ipam-late", || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("CIDRNotAvailable")
                    && e.involved_object.name.as_deref() == Some("ipam-late")
            })
            .map(|_| ())
    })
    .await;
    let (late, _) = cidrs(&nodes.get("ipam-late").await.unwrap());
    assert_eq!(
        late, None,
        "no CIDR is invented when the range is exhausted"
    );

    // Deleting a node frees its subnet, and the waiting node gets exactly that one.
    let freed = assigned(&nodes, "ipam-b").await;
    nodes
        .delete("ipam-b", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(assigned(&nodes, "ipam-late").await, freed);

    // The others were never changed.
    let mut after = BTreeSet::new();
    for name in ["ipam-a", "ipam-c", "ipam-late"] {
        after.insert(assigned(&nodes, name).await);
    }
    assert_eq!(after, got, "podCIDRs are immutable and reused, never moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_pod_cidr_takes_the_one_ipam_assigns() {
    let server = Server::start_with(ServerOptions {
        with_controllers: true,
        args: vec!["--cluster-cidr=10.77.0.0/16".into()],
        ..ServerOptions::default()
    });
    let client = server.kube_client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    // Another node already holds the first subnet.
    nodes
        .create(
            &PostParams::default(),
            &bare_node("ipam-agent-other", Some("10.77.0.0/24")),
        )
        .await
        .unwrap();

    let data = tempfile::tempdir().unwrap();
    let facts = agent_facts("ipam-agent", data.path());
    let cidr = tokio::time::timeout(
        Duration::from_secs(30),
        agent::node::registration::await_pod_cidr(&client, &facts),
    )
    .await
    .expect("the agent got a podCIDR in time")
    .unwrap();
    assert_eq!(cidr, "10.77.1.0/24");
    let (on_node, _) = cidrs(&nodes.get("ipam-agent").await.unwrap());
    assert_eq!(on_node.as_deref(), Some("10.77.1.0/24"));

    // Registering again (an agent restart) keeps the assigned CIDR.
    let again = agent::node::registration::await_pod_cidr(&client, &facts)
        .await
        .unwrap();
    assert_eq!(again, cidr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_waiting_for_its_pod_cidr_is_not_ready() {
    // No controllers: nothing assigns the CIDR until the test does.
    let server = Server::start();
    let client = server.kube_client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let data = tempfile::tempdir().unwrap();
    let facts = agent_facts("ipam-waiting", data.path());
    let waiting = {
        let client = client.clone();
        tokio::spawn(
            async move { agent::node::registration::await_pod_cidr(&client, &facts).await },
        )
    };
    eventually(20, "the waiting node reports Ready=False", || async {
        let node = nodes.get_opt("ipam-waiting").await.unwrap()?;
        let ready = node
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.status == "False").then_some(())?;
        assert!(
            ready.message.unwrap_or_default().contains("podCIDR"),
            "the message says why"
        );
        Some(())
    })
    .await;
    assert!(!waiting.is_finished(), "it waits for a CIDR");

    // What node IPAM would do.
    let mut node = nodes.get("ipam-waiting").await.unwrap();
    let spec = node.spec.get_or_insert_with(Default::default);
    spec.pod_cidr = Some("10.88.4.0/24".into());
    spec.pod_cidrs = Some(vec!["10.88.4.0/24".into()]);
    nodes
        .replace("ipam-waiting", &PostParams::default(), &node)
        .await
        .unwrap();
    let cidr = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the agent notices the assignment")
        .unwrap()
        .unwrap();
    assert_eq!(cidr, "10.88.4.0/24");
}

#[test]
fn the_servers_own_agent_runs_pods_in_the_subnet_ipam_assigned() {
    let cluster = Cluster::start_with(ClusterOptions {
        agent: AgentMode::InProcess,
        pod_cidr_from_ipam: true,
        ..ClusterOptions::default()
    });
    let node = cluster.wait_node_ready(NODE_READY_DEADLINE);
    assert_eq!(node["spec"]["podCIDR"], cluster.pod_cidr.as_str());
    // The agent polls its Node: it picks the assignment up within a poll.
    support::wait_for(
        "the agent takes the podCIDR IPAM assigned (not a flag)",
        Duration::from_secs(10),
        || {
            cluster
                .agent_log()
                .contains("node IPAM assigned the podCIDR")
                .then_some(())
        },
    );

    let out = cluster.kubectl_run(
        "1.33",
        &[
            "run",
            "ipam-pod",
            "--image",
            &cluster.image,
            "--restart=Never",
            "--",
            "sleep",
            "3600",
        ],
    );
    assert!(out.status.success(), "{}", out.stderr);
    let ip = support::wait_for("the pod runs with an IP", Duration::from_secs(90), || {
        let out = cluster.kubectl_run("1.33", &["get", "pod", "ipam-pod", "-o", "json"]);
        let pod: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        (pod["status"]["phase"] == "Running")
            .then(|| pod["status"]["podIP"].as_str().map(str::to_string))
            .flatten()
    });
    // The test's subnet is a /24: the pod's address shares its first three octets.
    assert!(
        ip.starts_with(cluster.pod_cidr.trim_end_matches("0/24")),
        "{ip} in {}",
        cluster.pod_cidr
    );
}
