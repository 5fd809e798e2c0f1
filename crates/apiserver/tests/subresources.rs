//! status, scale, binding and eviction subresources, and service address allocation.

mod common;

use common::{pod, Cluster};
use http::StatusCode;
use serde_json::json;

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn deployment(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    })
}

#[tokio::test]
async fn status_is_written_only_through_its_subresource() {
    let c = Cluster::start().await;
    let mut p = pod("p");
    p["status"] = json!({"phase": "Running"});
    let created = c.post(PODS, &p).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    let mut with_status = created.body.clone();
    with_status["status"] = json!({"phase": "Succeeded"});
    let r = c.put(&format!("{PODS}/p/status"), &with_status).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"]["phase"], "Succeeded");
    let gen = r.body["metadata"]["generation"].clone();

    // A main-resource update keeps the stored status and bumps generation on spec change.
    let mut main = r.body.clone();
    main["status"] = json!({"phase": "Failed"});
    main["spec"]["activeDeadlineSeconds"] = json!(30);
    let r = c.put(&format!("{PODS}/p"), &main).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"]["phase"], "Succeeded");
    assert_ne!(r.body["metadata"]["generation"], gen);

    // A status update ignores spec changes.
    let mut sneaky = r.body.clone();
    sneaky["spec"]["activeDeadlineSeconds"] = json!(99);
    sneaky["status"]["phase"] = json!("Failed");
    let r = c.put(&format!("{PODS}/p/status"), &sneaky).await;
    assert_eq!(r.body["spec"]["activeDeadlineSeconds"], 30);
    assert_eq!(r.body["status"]["phase"], "Failed");
    let r = c.get(&format!("{PODS}/p/status")).await;
    assert_eq!(r.body["status"]["phase"], "Failed");
}

#[tokio::test]
async fn no_op_update_keeps_the_resource_version() {
    let c = Cluster::start().await;
    let created = c.post(PODS, &pod("p")).await.body;
    let r = c.put(&format!("{PODS}/p"), &created).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn scale_reads_and_writes_replicas() {
    let c = Cluster::start().await;
    assert_eq!(
        c.post(DEPLOYS, &deployment("web")).await.status,
        StatusCode::CREATED
    );
    let s = c.get(&format!("{DEPLOYS}/web/scale")).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(s.body["kind"], "Scale");
    assert_eq!(s.body["apiVersion"], "autoscaling/v1");
    assert_eq!(s.body["spec"]["replicas"], 1);
    assert_eq!(s.body["status"]["selector"], "app=web");

    let mut scale = s.body.clone();
    scale["spec"]["replicas"] = json!(4);
    let r = c.put(&format!("{DEPLOYS}/web/scale"), &scale).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["spec"]["replicas"], 4);
    // The first Scale's resourceVersion is stale now.
    assert_eq!(
        c.put(&format!("{DEPLOYS}/web/scale"), &s.body).await.status,
        StatusCode::CONFLICT
    );

    let d = c.get(&format!("{DEPLOYS}/web")).await;
    assert_eq!(d.body["spec"]["replicas"], 4);
    assert_eq!(d.body["metadata"]["generation"], 2);
    let mut negative = r.body.clone();
    negative["spec"]["replicas"] = json!(-1);
    negative["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let r = c.put(&format!("{DEPLOYS}/web/scale"), &negative).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    // Pods have no scale subresource.
    c.post(PODS, &pod("p")).await;
    assert_eq!(
        c.get(&format!("{PODS}/p/scale")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn binding_assigns_a_node_once() {
    let c = Cluster::start().await;
    c.post(PODS, &pod("p")).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    let r = c.post(&format!("{PODS}/p/binding"), &binding).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        c.get(&format!("{PODS}/p")).await.body["spec"]["nodeName"],
        "n1"
    );
    let again = c.post(&format!("{PODS}/p/binding"), &binding).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    // The bindings resource does the same.
    c.post(PODS, &pod("q")).await;
    let b = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "q"}, "target": {"name": "n2"}});
    let r = c.post("/api/v1/namespaces/default/bindings", &b).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        c.get(&format!("{PODS}/q")).await.body["spec"]["nodeName"],
        "n2"
    );
}

#[tokio::test]
async fn eviction_deletes_the_pod() {
    let c = Cluster::start().await;
    c.post(PODS, &pod("p")).await;
    let ev = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}});
    let r = c.post(&format!("{PODS}/p/eviction"), &ev).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        c.get(&format!("{PODS}/p")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn services_get_unique_addresses_and_release_them() {
    let c = Cluster::start().await;
    let svc = |name: &str, kind: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"type": kind, "selector": {"app": name}, "ports": [{"port": 80, "protocol": "TCP"}]}})
    };
    let mut ips = std::collections::HashSet::new();
    for i in 0..20 {
        let r = c
            .post(
                "/api/v1/namespaces/default/services",
                &svc(&format!("s{i}"), "ClusterIP"),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let ip = r.body["spec"]["clusterIP"].as_str().unwrap().to_string();
        assert!(
            ip.starts_with("10.43.") && ip != "10.43.0.1" && ip != "10.43.0.10",
            "{ip}"
        );
        assert_eq!(r.body["spec"]["clusterIPs"][0], ip.as_str());
        assert!(ips.insert(ip));
    }
    let np = c
        .post(
            "/api/v1/namespaces/default/services",
            &svc("np", "NodePort"),
        )
        .await;
    let port = np.body["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&port));

    let mut fixed = svc("dns", "ClusterIP");
    fixed["spec"]["clusterIP"] = json!("10.43.0.10");
    let r = c
        .post("/api/v1/namespaces/kube-system/services", &fixed)
        .await;
    assert_eq!(r.body["spec"]["clusterIP"], "10.43.0.10");
    fixed["metadata"]["name"] = json!("dns2");
    let taken = c
        .post("/api/v1/namespaces/kube-system/services", &fixed)
        .await;
    assert_eq!(
        taken.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        taken.body
    );

    let del = c
        .delete("/api/v1/namespaces/kube-system/services/dns", None)
        .await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(del.body["kind"], "Service");
    let r = c
        .post("/api/v1/namespaces/kube-system/services", &fixed)
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "the address was released: {}",
        r.body
    );
    let allocated = c.state.registry.allocated_service_ips().await.unwrap();
    assert_eq!(allocated.len(), 1 + 20 + 1 + 1);
}
