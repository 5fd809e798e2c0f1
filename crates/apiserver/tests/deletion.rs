//! Deletion semantics: graceful pod deletion, finalizers, propagation policy, preconditions,
//! deletecollection and the namespace lifecycle end to end.

mod common;

use std::time::Duration;

use common::{configmap, eventually, pod, Cluster};
use http::StatusCode;
use serde_json::json;

const PODS: &str = "/api/v1/namespaces/default/pods";
const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn unbound_pods_go_at_once_bound_pods_wait_for_their_node() {
    let c = Cluster::start().await;
    c.post(PODS, &pod("free")).await;
    let r = c.delete(&format!("{PODS}/free"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["kind"], "Pod");
    assert_eq!(
        c.get(&format!("{PODS}/free")).await.status,
        StatusCode::NOT_FOUND
    );

    let mut bound = pod("bound");
    bound["spec"]["nodeName"] = json!("n1");
    c.post(PODS, &bound).await;
    let r = c
        .delete(
            &format!("{PODS}/bound"),
            Some(&json!({"propagationPolicy": "Background"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 30);
    let still = c.get(&format!("{PODS}/bound")).await;
    assert_eq!(still.status, StatusCode::OK);
    // A shorter grace period shortens; the node confirms with 0.
    let r = c
        .delete(&format!("{PODS}/bound?gracePeriodSeconds=5"), None)
        .await;
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 5);
    let r = c
        .delete(
            &format!("{PODS}/bound"),
            Some(&json!({"gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        c.get(&format!("{PODS}/bound")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let c = Cluster::start().await;
    let mut cm = configmap("f", json!({}));
    cm["metadata"]["finalizers"] = json!(["example.com/hold"]);
    c.post(CMS, &cm).await;
    let r = c.delete(&format!("{CMS}/f"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["kind"], "ConfigMap");
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());
    let mut live = c.get(&format!("{CMS}/f")).await.body;
    assert_eq!(live["metadata"]["finalizers"][0], "example.com/hold");
    // New finalizers cannot be added while deleting; removing the last one deletes.
    live["metadata"]["finalizers"] = json!([]);
    let r = c.put(&format!("{CMS}/f"), &live).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        c.get(&format!("{CMS}/f")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn propagation_policies_add_their_finalizers() {
    let c = Cluster::start().await;
    c.post(CMS, &configmap("fg", json!({}))).await;
    c.post(CMS, &configmap("or", json!({}))).await;
    let r = c
        .delete(
            &format!("{CMS}/fg"),
            Some(&json!({"propagationPolicy": "Foreground"})),
        )
        .await;
    assert_eq!(
        r.body["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    let r = c
        .delete(&format!("{CMS}/or?propagationPolicy=Orphan"), None)
        .await;
    assert_eq!(r.body["metadata"]["finalizers"], json!(["orphan"]));
    let bad = c
        .delete(
            &format!("{CMS}/or"),
            Some(&json!({"propagationPolicy": "Sideways"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn delete_preconditions() {
    let c = Cluster::start().await;
    let cm = c.post(CMS, &configmap("p", json!({}))).await.body;
    let r = c
        .delete(
            &format!("{CMS}/p"),
            Some(&json!({"preconditions": {"uid": "nope"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = c
        .delete(
            &format!("{CMS}/p"),
            Some(&json!({"preconditions": {"resourceVersion": "1"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = c
        .delete(
            &format!("{CMS}/p"),
            Some(&json!({"preconditions": {"uid": cm["metadata"]["uid"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn delete_collection_with_a_selector() {
    let c = Cluster::start().await;
    for (n, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        c.post(CMS, &configmap(n, json!({"app": app}))).await;
    }
    let r = c
        .delete(&format!("{CMS}?labelSelector=app%3Dx"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["kind"], "ConfigMapList");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let left = c.get(CMS).await.body;
    assert_eq!(left["items"].as_array().unwrap().len(), 1);
    assert_eq!(left["items"][0]["metadata"]["name"], "c");
}

#[tokio::test]
async fn namespace_deletion_completes() {
    let c = Cluster::start().await;
    c.create_namespace("doomed").await;
    let ns_cms = "/api/v1/namespaces/doomed/configmaps";
    for i in 0..5 {
        assert_eq!(
            c.post(ns_cms, &configmap(&format!("c{i}"), json!({})))
                .await
                .status,
            StatusCode::CREATED
        );
    }
    c.post("/api/v1/namespaces/doomed/pods", &pod("p")).await;

    let r = c.delete("/api/v1/namespaces/doomed", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"]["phase"], "Terminating");
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());

    let gone = eventually(Duration::from_secs(30), || async {
        (c.get("/api/v1/namespaces/doomed").await.status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert!(gone.is_some(), "namespace still there");
    assert!(c.get(ns_cms).await.body["items"]
        .as_array()
        .unwrap()
        .is_empty());
    // The name can be used again.
    c.create_namespace("doomed").await;
}

#[tokio::test]
async fn terminating_namespaces_refuse_new_content() {
    let c = Cluster::start().await;
    c.create_namespace("held").await;
    // A finalizer keeps the namespace Terminating while we look.
    let mut cm = configmap("hold", json!({}));
    cm["metadata"]["finalizers"] = json!(["example.com/hold"]);
    c.post("/api/v1/namespaces/held/configmaps", &cm).await;
    c.delete("/api/v1/namespaces/held", None).await;
    let r = c
        .post(
            "/api/v1/namespaces/held/configmaps",
            &configmap("new", json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.body["message"],
        "unable to create new content in namespace held because it is being terminated"
    );
    // Releasing the finalizer lets the namespace finish. A merge patch, not GET then PUT:
    // the namespace controller marks the config map deleting meanwhile, which would make a
    // PUT of the copy read before it a (correct) conflict.
    let r = c
        .patch(
            "/api/v1/namespaces/held/configmaps/hold",
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":null}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let gone = eventually(Duration::from_secs(30), || async {
        (c.get("/api/v1/namespaces/held").await.status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert!(gone.is_some());
}
