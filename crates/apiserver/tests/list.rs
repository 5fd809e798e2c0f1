//! Lists: selectors, pagination, resourceVersion semantics, Table and
//! PartialObjectMetadata shapes.

mod common;

use common::{configmap, pod, Cluster, TABLE_ACCEPT};
use http::StatusCode;
use serde_json::json;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn names(list: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = list["items"]
        .as_array()
        .expect("a list has items")
        .iter()
        .map(|i| {
            i["metadata"]["name"]
                .as_str()
                .expect("items have names")
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn label_and_field_selectors() {
    let c = Cluster::start().await;
    c.post(CMS, &configmap("a", json!({"app": "web", "tier": "front"})))
        .await;
    c.post(CMS, &configmap("b", json!({"app": "web", "tier": "back"})))
        .await;
    c.post(CMS, &configmap("c", json!({"app": "db"}))).await;
    c.post(
        "/api/v1/namespaces/kube-system/configmaps",
        &configmap("d", json!({"app": "web"})),
    )
    .await;

    for (sel, want) in [
        ("app%3Dweb", vec!["a", "b"]),
        ("app%3D%3Dweb,tier!%3Dback", vec!["a"]),
        ("tier", vec!["a", "b"]),
        ("!tier", vec!["c"]),
        ("tier%20in%20(front,back)", vec!["a", "b"]),
        ("app%20notin%20(web)", vec!["c"]),
    ] {
        let r = c.get(&format!("{CMS}?labelSelector={sel}")).await;
        assert_eq!(r.status, StatusCode::OK, "{sel}: {}", r.body);
        assert_eq!(names(&r.body), want, "{sel}");
    }
    let all = c.get("/api/v1/configmaps?labelSelector=app%3Dweb").await;
    assert_eq!(names(&all.body), vec!["a", "b", "d"]);
    let r = c
        .get("/api/v1/configmaps?fieldSelector=metadata.namespace%3Dkube-system")
        .await;
    assert_eq!(names(&r.body), vec!["d"]);
    let r = c
        .get(&format!("{CMS}?fieldSelector=metadata.name%3Db"))
        .await;
    assert_eq!(names(&r.body), vec!["b"]);
    let r = c
        .get(&format!("{CMS}?fieldSelector=metadata.name!%3Db"))
        .await;
    assert_eq!(names(&r.body), vec!["a", "c"]);

    let bad = c.get(&format!("{CMS}?labelSelector=app%20in%20(web")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = c.get(&format!("{CMS}?fieldSelector=spec.foo%3Dx")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["message"], "field label not supported: spec.foo");
    // The same selectors served from the watch cache.
    let r = c
        .get(&format!("{CMS}?labelSelector=app%3Dweb&resourceVersion=0"))
        .await;
    assert_eq!(names(&r.body), vec!["a", "b"]);
}

#[tokio::test]
async fn pagination_over_1200_objects() {
    let c = Cluster::start().await;
    let started = std::time::Instant::now();
    for i in 0..1200 {
        let r = c
            .post(
                CMS,
                &configmap(
                    &format!("cm-{i:04}"),
                    json!({"even": (i % 2 == 0).to_string()}),
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    eprintln!("1200 creates took {:?}", started.elapsed());
    let mut seen = Vec::new();
    let mut cont: Option<String> = None;
    let mut pages = 0;
    let mut first_rv = None;
    loop {
        let uri = match &cont {
            None => format!("{CMS}?limit=500"),
            Some(t) => format!("{CMS}?limit=500&continue={t}"),
        };
        let r = c.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["kind"], "ConfigMapList");
        let rv = r.body["metadata"]["resourceVersion"].clone();
        assert_eq!(
            *first_rv.get_or_insert(rv.clone()),
            rv,
            "every page is one snapshot"
        );
        pages += 1;
        seen.extend(names(&r.body));
        if pages == 1 {
            assert_eq!(r.body["metadata"]["remainingItemCount"], 700);
        }
        match r.body["metadata"]["continue"].as_str() {
            Some(t) => cont = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 1200);
    seen.dedup();
    assert_eq!(seen.len(), 1200);

    // Pages of a filtered list hold `limit` matches each.
    let r = c
        .get(&format!("{CMS}?limit=100&labelSelector=even%3Dtrue"))
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 100);
    assert!(r.body["metadata"]["continue"].is_string());
    assert!(r.body["metadata"].get("remainingItemCount").is_none());

    let bad = c.get(&format!("{CMS}?limit=10&continue=garbage")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // resourceVersion=0 may be served slightly behind the store: wait for the cache.
    let cached = common::eventually(std::time::Duration::from_secs(5), || async {
        let t0 = std::time::Instant::now();
        let r = c.get(&format!("{CMS}?resourceVersion=0")).await;
        (r.body["items"].as_array().unwrap().len() == 1200).then(|| t0.elapsed())
    })
    .await;
    eprintln!(
        "cached list of 1200 took {:?}",
        cached.expect("the cache caught up")
    );
}

#[tokio::test]
async fn resource_version_semantics() {
    let c = Cluster::start().await;
    let a = c.post(CMS, &configmap("a", json!({}))).await.body;
    let rv_a = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    c.post(CMS, &configmap("b", json!({}))).await;
    let exact = c
        .get(&format!(
            "{CMS}?resourceVersion={rv_a}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(exact.status, StatusCode::OK, "{}", exact.body);
    assert_eq!(names(&exact.body), vec!["a"]);
    assert_eq!(exact.body["metadata"]["resourceVersion"], rv_a);
    let newer = c.get(&format!("{CMS}?resourceVersion={rv_a}")).await;
    assert_eq!(names(&newer.body), vec!["a", "b"]);
    let future = c.get(&format!("{CMS}?resourceVersion=999999")).await;
    assert_eq!(future.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(future.body["reason"], "Timeout");
    let bad = c.get(&format!("{CMS}?resourceVersionMatch=Exact")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = c.get(&format!("{CMS}?resourceVersion=abc")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn table_and_partial_metadata_shapes() {
    let c = Cluster::start().await;
    let p = c.post("/api/v1/namespaces/default/pods", &pod("p1")).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let r = c
        .get_as("/api/v1/namespaces/default/pods?limit=500", TABLE_ACCEPT)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["content-type"],
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    );
    let t = &r.body;
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert!(t["metadata"]["resourceVersion"].is_string());
    let cols = t["columnDefinitions"].as_array().unwrap();
    assert_eq!(cols[0]["name"], "Name");
    assert_eq!(cols[0]["format"], "name");
    let row = &t["rows"][0];
    assert_eq!(row["cells"].as_array().unwrap().len(), cols.len());
    assert_eq!(row["cells"][0], "p1");
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["labels"]["app"], "web");

    let one = c
        .get_as("/api/v1/namespaces/default/pods/p1", TABLE_ACCEPT)
        .await;
    assert_eq!(one.body["kind"], "Table");
    assert_eq!(one.body["rows"].as_array().unwrap().len(), 1);
    let full = c
        .get_as(
            "/api/v1/namespaces/default/pods?includeObject=Object",
            TABLE_ACCEPT,
        )
        .await;
    assert_eq!(full.body["rows"][0]["object"]["kind"], "Pod");
    let none = c
        .get_as(
            "/api/v1/namespaces/default/pods?includeObject=None",
            TABLE_ACCEPT,
        )
        .await;
    assert!(none.body["rows"][0].get("object").is_none());
    let beta = c
        .get_as(
            "/api/v1/namespaces/default/pods",
            "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
        )
        .await;
    assert_eq!(beta.body["apiVersion"], "meta.k8s.io/v1beta1");

    let pom = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json";
    let r = c.get_as("/api/v1/namespaces/default/pods", pom).await;
    assert_eq!(r.body["kind"], "PartialObjectMetadataList");
    assert_eq!(r.body["items"][0]["kind"], "PartialObjectMetadata");
    assert!(r.body["items"][0].get("spec").is_none());
    let r = c
        .get_as(
            "/api/v1/namespaces/default/pods/p1",
            "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
        )
        .await;
    assert_eq!(r.body["kind"], "PartialObjectMetadata");
    let r = c
        .get_as(
            "/api/v1/namespaces/default/pods",
            "application/vnd.kubernetes.protobuf",
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
}
