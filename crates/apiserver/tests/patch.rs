//! PATCH through the router: the Content-Type picks json, merge, strategic merge or
//! server-side apply; apply creates when missing and records managedFields.

mod common;

use common::{configmap, Cluster};
use http::StatusCode;
use serde_json::json;

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let c = Cluster::start().await;
    c.post(CMS, &configmap("a", json!({"app": "x"}))).await;
    let r = c
        .patch(
            &format!("{CMS}/a"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"tier":"web"}},"data":{"k":null,"n":"1"}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["metadata"]["labels"],
        json!({"app": "x", "tier": "web"})
    );
    assert_eq!(r.body["data"], json!({"n": "1"}));

    let r = c
        .patch(
            &format!("{CMS}/a"),
            "application/json-patch+json",
            r#"[{"op":"replace","path":"/data/n","value":"2"}]"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["n"], "2");
    let r = c
        .patch(
            &format!("{CMS}/a"),
            "application/json-patch+json",
            r#"[{"op":"test","path":"/data/n","value":"9"}]"#,
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.body);

    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "a", "image": "nginx:1"}, {"name": "b", "image": "redis"}]}}}
    });
    c.post(DEPLOYS, &deploy).await;
    let r = c
        .patch(
            &format!("{DEPLOYS}/web"),
            "application/strategic-merge-patch+json",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"nginx:2"}]}}}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let containers = &r.body["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers.as_array().map(Vec::len),
        Some(2),
        "merged by name: {containers}"
    );
    assert_eq!(r.body["metadata"]["generation"], 2);

    let r = c
        .patch(&format!("{CMS}/nope"), "application/merge-patch+json", "{}")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = c.patch(&format!("{CMS}/a"), "text/plain", "{}").await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn server_side_apply_creates_then_updates() {
    let c = Cluster::start().await;
    let body =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ssa"},"data":{"a":"1"}}"#;
    let r = c
        .patch(&format!("{CMS}/ssa"), "application/apply-patch+yaml", body)
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "fieldManager is required: {}",
        r.body
    );
    let uri = format!("{CMS}/ssa?fieldManager=kubectl&fieldValidation=Strict&force=false");
    let r = c.patch(&uri, "application/apply-patch+yaml", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["data"]["a"], "1");
    let managers: Vec<_> = r.body["metadata"]["managedFields"]
        .as_array()
        .map(|m| m.iter().map(|e| e["manager"].clone()).collect())
        .unwrap_or_default();
    assert!(managers.contains(&json!("kubectl")), "{}", r.body);
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"2\"\n";
    let r = c.patch(&uri, "application/apply-patch+yaml", yaml).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["a"], "2");
}

#[tokio::test]
async fn kubectl_scale_patches_the_scale_subresource() {
    let c = Cluster::start().await;
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "a", "image": "nginx"}]}}}
    });
    c.post(DEPLOYS, &deploy).await;
    let r = c
        .patch(
            &format!("{DEPLOYS}/web/scale"),
            "application/merge-patch+json",
            r#"{"spec":{"replicas":3}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["kind"], "Scale");
    assert_eq!(r.body["spec"]["replicas"], 3);
    assert_eq!(
        c.get(&format!("{DEPLOYS}/web")).await.body["spec"]["replicas"],
        3
    );
    let r = c
        .patch(
            &format!("{DEPLOYS}/web/scale"),
            "application/merge-patch+json",
            r#"{"spec":{"replicas":-1}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
}
