//! pods/log|exec|attach|portforward and nodes/proxy: what the API server answers before
//! anything reaches a node (Statuses), and when the node cannot be reached.

#![allow(clippy::unwrap_used)]

mod common;

use common::Cluster;
use flotilla_apiserver::pki::ClusterPki;
use flotilla_apiserver::state::ApiConfig;
use serde_json::json;

async fn cluster(with_cert: bool) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pki = ClusterPki::load_or_create(dir.path(), &["localhost".to_string()]).unwrap();
    let config = ApiConfig {
        node_client: with_cert.then(|| pki.node_client.clone()),
        ..ApiConfig::default()
    };
    (Cluster::with_config(config).await, dir)
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pod(name: &str, node: Option<&str>) -> serde_json::Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}, {"name": "side", "image": "busybox"}]}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

#[tokio::test]
async fn errors_before_the_node_are_statuses() {
    let (c, _pki) = cluster(true).await;
    // Created while no Node exists, so nothing binds it.
    let r = c
        .post("/api/v1/namespaces/default/pods", &pod("unbound", None))
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let port = closed_port();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    let r = c.post("/api/v1/nodes", &node).await;
    assert!(r.status.is_success(), "{:?}", r.body);
    // Status is a subresource: set the address there as well.
    let r = c
        .put("/api/v1/nodes/n1/status", &{
            let mut n = c.get("/api/v1/nodes/n1").await.body;
            n["status"] = node["status"].clone();
            n
        })
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let r = c
        .post("/api/v1/namespaces/default/pods", &pod("bound", Some("n1")))
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);

    let r = c.get("/api/v1/namespaces/default/pods/missing/log").await;
    assert_eq!(
        (r.status.as_u16(), r.body["reason"].as_str()),
        (404, Some("NotFound"))
    );

    let r = c
        .get("/api/v1/namespaces/default/pods/unbound/log?container=app")
        .await;
    assert_eq!(r.status.as_u16(), 400);
    assert_eq!(
        r.body["message"],
        "pod unbound does not have a host assigned"
    );

    let r = c
        .get("/api/v1/namespaces/default/pods/bound/log?container=nope")
        .await;
    assert_eq!(r.status.as_u16(), 400);
    assert_eq!(
        r.body["message"],
        "container nope is not valid for pod bound"
    );

    let r = c.get("/api/v1/namespaces/default/pods/bound/log").await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("choose one of: [app side]"));

    let r = c
        .get("/api/v1/namespaces/default/pods/bound/exec?container=app&stdout=true")
        .await;
    assert_eq!(
        r.status.as_u16(),
        400,
        "exec without a command: {:?}",
        r.body
    );

    // A node that does not answer: 502 with a Status, for streams and node proxying.
    for uri in [
        "/api/v1/namespaces/default/pods/bound/log?container=app",
        "/api/v1/namespaces/default/pods/bound/portforward?ports=80",
        "/api/v1/nodes/n1/proxy/stats/summary",
    ] {
        let r = c.get(uri).await;
        assert_eq!(r.status.as_u16(), 502, "{uri}: {:?}", r.body);
        assert_eq!(r.body["kind"], "Status", "{uri}");
        assert!(
            r.body["message"]
                .as_str()
                .unwrap()
                .contains("error dialing backend"),
            "{uri}: {:?}",
            r.body
        );
    }
    let r = c.get("/api/v1/nodes/nope/proxy/stats/summary").await;
    assert_eq!(r.status.as_u16(), 404);
}

#[tokio::test]
async fn without_a_node_client_certificate_node_requests_are_unavailable() {
    let (c, _pki) = cluster(false).await;
    let r = c.get("/api/v1/nodes/n1/proxy/stats/summary").await;
    assert_eq!(
        (r.status.as_u16(), r.body["kind"].as_str()),
        (503, Some("Status"))
    );
}
