//! Create, get, update, delete through the router, for namespaced and cluster-scoped
//! kinds, with the errors kubectl depends on.

mod common;

use common::{configmap, Cluster};
use http::{Method, StatusCode};
use serde_json::json;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn configmap_lifecycle() {
    let c = Cluster::start().await;
    let r = c.post(CMS, &configmap("a", json!({"app": "x"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let created = r.body;
    assert_eq!(created["metadata"]["namespace"], "default");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    assert!(created["metadata"]["creationTimestamp"].is_string());
    let rv: i64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > 0);

    let got = c.get(&format!("{CMS}/a")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["data"]["k"], "v");
    assert_eq!(
        got.body["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );

    let again = c.post(CMS, &configmap("a", json!({}))).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["reason"], "AlreadyExists");
    assert_eq!(again.body["message"], "configmaps \"a\" already exists");

    let mut changed = got.body.clone();
    changed["data"]["k"] = json!("w");
    let up = c.put(&format!("{CMS}/a"), &changed).await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.body);
    assert_eq!(up.body["data"]["k"], "w");
    assert_eq!(up.body["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(up.body["metadata"]["generation"], 2);

    // The first body's resourceVersion is stale now.
    let stale = c.put(&format!("{CMS}/a"), &got.body).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.body["reason"], "Conflict");

    let del = c.delete(&format!("{CMS}/a"), None).await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(del.body["kind"], "Status");
    assert_eq!(del.body["status"], "Success");
    assert_eq!(del.body["details"]["uid"], created["metadata"]["uid"]);
    let gone = c.get(&format!("{CMS}/a")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.body["message"], "configmaps \"a\" not found");
    assert_eq!(
        c.delete(&format!("{CMS}/a"), None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn cluster_scoped_and_apps_group() {
    let c = Cluster::start().await;
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
    let r = c.post("/api/v1/nodes", &node).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.body["metadata"].get("namespace").is_none());
    assert_eq!(c.get("/api/v1/nodes/n1").await.status, StatusCode::OK);
    // A cluster-scoped resource has no namespaced path.
    assert_eq!(
        c.get("/api/v1/namespaces/default/nodes/n1").await.status,
        StatusCode::NOT_FOUND
    );

    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    });
    let r = c
        .post("/apis/apps/v1/namespaces/default/deployments", &deploy)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = c
        .get("/apis/apps/v1/namespaces/default/deployments/web")
        .await;
    assert_eq!(r.body["spec"]["replicas"], 2);
    let missing = c
        .get("/apis/apps/v1/namespaces/default/deployments/nope")
        .await;
    assert_eq!(
        missing.body["message"],
        "deployments.apps \"nope\" not found"
    );
    assert_eq!(missing.body["details"]["group"], "apps");
}

#[tokio::test]
async fn bootstrap_objects_exist() {
    let c = Cluster::start().await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let r = c.get(&format!("/api/v1/namespaces/{ns}")).await;
        assert_eq!(r.status, StatusCode::OK, "{ns}");
        assert_eq!(r.body["status"]["phase"], "Active");
    }
    let svc = c
        .get("/api/v1/namespaces/default/services/kubernetes")
        .await;
    assert_eq!(svc.body["spec"]["clusterIP"], "10.43.0.1");
    assert_eq!(svc.body["spec"]["ports"][0]["port"], 443);
}

#[tokio::test]
async fn paths_verbs_and_bodies_are_checked() {
    let c = Cluster::start().await;
    assert_eq!(c.get("/api/v1/widgets").await.status, StatusCode::NOT_FOUND);
    assert_eq!(c.get("/apis/nope/v1/things").await.body["kind"], "Status");
    assert_eq!(
        c.get("/api/v1/namespaces/default/pods/p/nosuchsub")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Namespaces have no deletecollection; reviews cannot be read.
    assert_eq!(
        c.delete("/api/v1/namespaces", None).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let r = c
        .get("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body["reason"], "MethodNotAllowed");

    let r = c
        .call(
            Method::POST,
            CMS,
            "application/vnd.kubernetes.protobuf",
            None,
            Some(b"k8s\0".to_vec()),
        )
        .await;
    // Protobuf bodies are decoded; an envelope with nothing in it is a bad request.
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["reason"], "BadRequest");
    let r = c
        .call(
            Method::POST,
            CMS,
            "application/json",
            None,
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .post(
            CMS,
            &json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut other_ns = configmap("x", json!({}));
    other_ns["metadata"]["namespace"] = json!("kube-system");
    assert_eq!(c.post(CMS, &other_ns).await.status, StatusCode::BAD_REQUEST);
    let r = c
        .post(
            "/api/v1/namespaces/ghost/configmaps",
            &configmap("x", json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["message"], "namespaces \"ghost\" not found");
    let huge = vec![b' '; 4 * 1024 * 1024];
    let r = c
        .call(Method::POST, CMS, "application/json", None, Some(huge))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn yaml_bodies_and_output() {
    let c = Cluster::start().await;
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  a: b\n";
    let r = c
        .call(
            Method::POST,
            CMS,
            "application/yaml",
            None,
            Some(yaml.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = c.get_as(&format!("{CMS}/y"), "application/yaml").await;
    assert_eq!(r.headers["content-type"], "application/yaml");
    assert!(r.body.as_str().unwrap().contains("name: y"));
}

#[tokio::test]
async fn invalid_objects_get_422_with_causes() {
    let c = Cluster::start().await;
    let r = c.post(CMS, &configmap("Bad_Name", json!({}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["reason"], "Invalid");
    assert_eq!(r.body["details"]["kind"], "ConfigMap");
    let causes = r.body["details"]["causes"].as_array().unwrap();
    assert!(
        causes.iter().any(|c| c["field"] == "metadata.name"),
        "{causes:?}"
    );

    let nameless = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}});
    let r = c.post(CMS, &nameless).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["details"]["causes"][0]["field"], "metadata.name");
}

#[tokio::test]
async fn generate_name_adds_a_suffix() {
    let c = Cluster::start().await;
    let obj =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}});
    let mut names = std::collections::HashSet::new();
    for _ in 0..5 {
        let r = c.post(CMS, &obj).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let name = r.body["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
        assert!(names.insert(name));
    }
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let c = Cluster::start().await;
    let r = c
        .post(&format!("{CMS}?dryRun=All"), &configmap("dry", json!({})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["metadata"]["name"], "dry");
    assert!(r.body["metadata"]["uid"].is_string());
    assert_eq!(
        c.get(&format!("{CMS}/dry")).await.status,
        StatusCode::NOT_FOUND
    );

    c.post(CMS, &configmap("real", json!({}))).await;
    let del = c.delete(&format!("{CMS}/real?dryRun=All"), None).await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(c.get(&format!("{CMS}/real")).await.status, StatusCode::OK);
    let bad = c
        .post(&format!("{CMS}?dryRun=Some"), &configmap("x", json!({})))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn field_validation_strict_warn_ignore() {
    let c = Cluster::start().await;
    let mut obj = configmap("v", json!({}));
    obj["spec"] = json!({"foo": 1});
    let r = c.post(&format!("{CMS}?fieldValidation=Strict"), &obj).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "strict decoding error: unknown field \"spec\""
    );

    let r = c.post(CMS, &obj).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.headers["warning"], "299 - \"unknown field \\\"spec\\\"\"");

    obj["metadata"]["name"] = json!("v2");
    let r = c.post(&format!("{CMS}?fieldValidation=Ignore"), &obj).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.headers.get("warning").is_none());

    let dup = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d","name":"d"}}"#;
    let r = c
        .call(
            Method::POST,
            &format!("{CMS}?fieldValidation=Strict"),
            "application/json",
            None,
            Some(dup.to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("duplicate field \"metadata.name\""),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn discovery_negotiates_the_aggregated_format() {
    let c = Cluster::start().await;
    let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let r = c.get_as("/apis", v2).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    assert_eq!(r.body["kind"], "APIGroupDiscoveryList");
    let v2beta1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let r = c.get_as("/api", v2beta1).await;
    assert_eq!(
        r.headers["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    );
    assert_eq!(r.body["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    let r = c.get_as("/api", "application/json").await;
    assert_eq!(r.body["kind"], "APIVersions");
    let r = c.get("/api/v1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["kind"], "APIResourceList");
    assert_eq!(c.get("/apis/apps/v9").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn access_reviews_are_allowed() {
    let c = Cluster::start().await;
    let ssar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}});
    let r = c
        .post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            &ssar,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["status"]["allowed"], true);
    assert_eq!(r.body["spec"]["resourceAttributes"]["verb"], "get");
    let ssrr = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "default"}});
    let r = c
        .post(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            &ssrr,
        )
        .await;
    assert_eq!(r.body["status"]["resourceRules"][0]["verbs"][0], "*");
    assert_eq!(r.body["status"]["incomplete"], false);
}
