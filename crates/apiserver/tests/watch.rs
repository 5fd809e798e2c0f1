//! Watches: from a resourceVersion, from "now" with synthetic ADDED, selector transitions,
//! bookmarks, Table events, 410 Expired and 504 for a future version.

mod common;

use std::time::Duration;

use common::{configmap, Cluster, TABLE_ACCEPT};
use flotilla_apiserver::state::ApiConfig;
use http::StatusCode;
use serde_json::json;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn rv(v: &serde_json::Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .expect("objects carry a resourceVersion")
        .to_string()
}

#[tokio::test]
async fn watch_from_resource_version_sees_later_changes_only() {
    let c = Cluster::start().await;
    let a = c.post(CMS, &configmap("a", json!({}))).await.body;
    let b = c.post(CMS, &configmap("b", json!({}))).await.body;
    let mut w = c
        .watch(
            &format!("{CMS}?watch=true&resourceVersion={}", rv(&a)),
            None,
        )
        .await;
    assert_eq!(w.status, StatusCode::OK);
    let e = w.next().await;
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["metadata"]["name"], "b");
    assert_eq!(rv(&e["object"]), rv(&b));

    let mut changed = b.clone();
    changed["data"]["k"] = json!("z");
    c.put(&format!("{CMS}/b"), &changed).await;
    let e = w.next().await;
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"]["data"]["k"], "z");

    let del = c.delete(&format!("{CMS}/a"), None).await;
    assert_eq!(del.status, StatusCode::OK);
    let e = w.next().await;
    assert_eq!(e["type"], "DELETED");
    assert_eq!(e["object"]["metadata"]["name"], "a");
    // Other namespaces are not in a namespaced watch.
    c.post(
        "/api/v1/namespaces/kube-system/configmaps",
        &configmap("other", json!({})),
    )
    .await;
    c.post(CMS, &configmap("c", json!({}))).await;
    let e = w.next().await;
    assert_eq!(e["object"]["metadata"]["name"], "c");
}

#[tokio::test]
async fn watch_without_version_starts_with_synthetic_adds() {
    let c = Cluster::start().await;
    c.post(CMS, &configmap("a", json!({"app": "x"}))).await;
    c.post(CMS, &configmap("b", json!({"app": "y"}))).await;
    let mut w = c
        .watch(&format!("{CMS}?watch=1&labelSelector=app%3Dx"), None)
        .await;
    let e = w.next().await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("a"))
    );
    // b moves into the selection, then a moves out.
    let mut b = c.get(&format!("{CMS}/b")).await.body;
    b["metadata"]["labels"]["app"] = json!("x");
    c.put(&format!("{CMS}/b"), &b).await;
    let e = w.next().await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("b"))
    );
    let mut a = c.get(&format!("{CMS}/a")).await.body;
    a["metadata"]["labels"]["app"] = json!("gone");
    c.put(&format!("{CMS}/a"), &a).await;
    let e = w.next().await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("a"))
    );
}

#[tokio::test]
async fn watch_by_name_and_timeout() {
    let c = Cluster::start().await;
    let a = c.post(CMS, &configmap("a", json!({}))).await.body;
    // Written before the watch opens, so slow writes cannot eat the 2 s timeout: the
    // watch replays them from a's version all the same.
    c.post(CMS, &configmap("a2", json!({}))).await;
    c.post(CMS, &configmap("b", json!({}))).await;
    let mut w = c
        .watch(&format!("{CMS}?watch=true&fieldSelector=metadata.name%3Db&resourceVersion={}&timeoutSeconds=2", rv(&a)), None)
        .await;
    let e = w.next().await;
    assert_eq!(e["object"]["metadata"]["name"], "b");
    // timeoutSeconds closes the stream.
    assert!(w.next_within(Duration::from_secs(10)).await.is_none());
    // The /watch/ path form.
    let mut w = c
        .watch("/api/v1/watch/namespaces/default/configmaps/a", None)
        .await;
    let e = w.next().await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("a"))
    );
}

#[tokio::test]
async fn bookmarks_carry_only_the_resource_version() {
    let config = ApiConfig {
        bookmark_interval: Duration::from_millis(100),
        ..ApiConfig::default()
    };
    let c = Cluster::with_config(config).await;
    let a = c.post(CMS, &configmap("a", json!({}))).await.body;
    let mut w = c
        .watch(
            &format!(
                "{CMS}?watch=true&allowWatchBookmarks=true&resourceVersion={}",
                rv(&a)
            ),
            None,
        )
        .await;
    let b = c.post(CMS, &configmap("b", json!({}))).await.body;
    assert_eq!(w.next_change().await["type"], "ADDED");
    let bm = loop {
        let e = w.next().await;
        if e["type"] == "BOOKMARK" {
            break e;
        }
    };
    assert_eq!(bm["object"]["kind"], "ConfigMap");
    assert_eq!(bm["object"]["apiVersion"], "v1");
    assert_eq!(bm["object"]["metadata"].as_object().unwrap().len(), 1);
    let brv: i64 = rv(&bm["object"]).parse().unwrap();
    assert!(brv >= rv(&b).parse::<i64>().unwrap());
}

#[tokio::test]
async fn table_watch_sends_one_row_tables() {
    let c = Cluster::start().await;
    let a = c.post(CMS, &configmap("a", json!({}))).await.body;
    let mut w = c
        .watch(
            &format!("{CMS}?watch=true&resourceVersion={}", rv(&a)),
            Some(TABLE_ACCEPT),
        )
        .await;
    c.post(CMS, &configmap("b", json!({}))).await;
    let e = w.next().await;
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["kind"], "Table");
    assert_eq!(e["object"]["rows"].as_array().unwrap().len(), 1);
    assert_eq!(e["object"]["rows"][0]["cells"][0], "b");
    assert_eq!(
        e["object"]["rows"][0]["object"]["kind"],
        "PartialObjectMetadata"
    );
}

#[tokio::test]
async fn versions_outside_the_window_come_from_the_store_or_expire() {
    // A window of 2 events per resource pushes older versions to the store.
    let mut config = ApiConfig::default();
    config.watch_cache.window = 2;
    let c = Cluster::with_config(config).await;
    let a = c.post(CMS, &configmap("a", json!({}))).await.body;
    for i in 0..5 {
        c.post(CMS, &configmap(&format!("x{i}"), json!({}))).await;
    }
    // Not compacted yet: the store replays from a's version.
    let mut w = c
        .watch(
            &format!(
                "{CMS}?watch=true&resourceVersion={}&timeoutSeconds=60",
                rv(&a)
            ),
            None,
        )
        .await;
    assert_eq!(w.status, StatusCode::OK);
    assert_eq!(w.next().await["object"]["metadata"]["name"], "x0");
    c.post(CMS, &configmap("late", json!({}))).await;
    let mut names = Vec::new();
    for _ in 0..5 {
        names.push(
            w.next().await["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(names, ["x1", "x2", "x3", "x4", "late"]);

    let current = c.store.current_revision().await.unwrap();
    c.store.compact(current).await.unwrap();
    let r = c
        .get(&format!(
            "{CMS}?watch=true&resourceVersion={}&timeoutSeconds=5",
            rv(&a)
        ))
        .await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.body);
    assert_eq!(r.body["reason"], "Expired");
}

#[tokio::test]
async fn future_version_is_504_after_a_short_wait() {
    let c = Cluster::start().await;
    let current = c.store.current_revision().await.unwrap();
    let started = std::time::Instant::now();
    let r = c
        .get(&format!(
            "{CMS}?watch=true&resourceVersion={}&timeoutSeconds=60",
            current + 1000
        ))
        .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.body["reason"], "Timeout");
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .starts_with("Too large resource version"));
    // The server gives up after a short wait (3 s), not at the watch's 60 s timeout; the
    // bound leaves room for a busy machine.
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn many_watchers_share_one_cache() {
    let c = Cluster::start().await;
    let a = c.post(CMS, &configmap("a", json!({}))).await.body;
    let mut watchers = Vec::new();
    for _ in 0..200 {
        watchers.push(
            c.watch(
                &format!("{CMS}?watch=true&resourceVersion={}", rv(&a)),
                None,
            )
            .await,
        );
    }
    let started = std::time::Instant::now();
    c.post(CMS, &configmap("b", json!({}))).await;
    for w in &mut watchers {
        assert_eq!(w.next().await["object"]["metadata"]["name"], "b");
    }
    eprintln!("one event to 200 watchers in {:?}", started.elapsed());
}
