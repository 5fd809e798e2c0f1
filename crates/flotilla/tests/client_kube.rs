//! The `kube` crate (the Rust client the controllers use) against a fresh server with the
//! admin kubeconfig: typed list/create/get, merge, strategic and server-side apply patches
//! (with field managers and a conflict), delete and 404, a `kube::runtime::watcher` stream
//! that sees ADDED/MODIFIED/DELETED, and a reflector store converging on the expected state.

// The helpers below are test code too: a panic in them fails the test, which is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::json;
use support::{Etcd, Server, ServerOptions};

/// Each watch/reflector expectation must be met within this; they take milliseconds.
const EVENT_DEADLINE: Duration = Duration::from_secs(20);

async fn client_for(server: &Server) -> Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("read the admin kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("build a client config from the kubeconfig");
    Client::try_from(config).expect("build a client")
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(EVENT_DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {EVENT_DEADLINE:?}: {what}"))
}

async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the test namespace");
}

fn data(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn managers(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Vec<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect()
}

fn api_status(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn configmap_round_trip(client: &Client, ns: &str) {
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<_> = namespaces
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert!(
        names.iter().any(|n| n == "default") && names.iter().any(|n| n == ns),
        "{names:?}"
    );

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings", "labels": {"app": "demo"}},
        "data": {"colour": "blue", "size": "3"}
    }))
    .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(data(&created), map(&[("colour", "blue"), ("size", "3")]));

    let again = cms.create(&PostParams::default(), &cm).await.unwrap_err();
    assert!(api_status(again).is_already_exists());

    let merged = cms
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"size": null, "shape": "round"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        data(&merged),
        map(&[("colour", "blue"), ("shape", "round")])
    );

    let strategic = cms
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"tier": "web"}}})),
        )
        .await
        .unwrap();
    let labels = strategic.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels, map(&[("app", "demo"), ("tier", "web")]));

    // Server-side apply: a second manager taking a field the first owns conflicts unless forced.
    let applied = cms
        .patch(
            "settings",
            &PatchParams::apply("e2e-owner"),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings"},
                "data": {"owned": "by-owner"}
            })),
        )
        .await
        .unwrap();
    assert_eq!(
        data(&applied).get("owned").map(String::as_str),
        Some("by-owner")
    );
    assert!(
        managers(&applied.metadata).contains(&"e2e-owner".to_string()),
        "{:?}",
        applied.metadata.managed_fields
    );
    let rival = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"owned": "by-rival"}
    });
    let conflict = cms
        .patch(
            "settings",
            &PatchParams::apply("e2e-rival"),
            &Patch::Apply(&rival),
        )
        .await
        .unwrap_err();
    let status = api_status(conflict);
    assert!(status.is_conflict(), "{status:?}");
    let forced = cms
        .patch(
            "settings",
            &PatchParams::apply("e2e-rival").force(),
            &Patch::Apply(&rival),
        )
        .await
        .unwrap();
    assert_eq!(
        data(&forced).get("owned").map(String::as_str),
        Some("by-rival")
    );

    let selected = cms
        .list(&ListParams::default().labels("tier=web"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
    assert!(selected.metadata.resource_version.is_some());

    cms.delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    let gone = cms.get("settings").await.unwrap_err();
    let status = api_status(gone);
    assert!(status.is_not_found(), "{status:?}");
    assert_eq!(status.code, 404);
    assert!(cms.get_opt("settings").await.unwrap().is_none());
}

async fn deployment_round_trip(client: &Client, ns: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "main", "image": "registry.local/web:1"},
                    {"name": "sidecar", "image": "registry.local/side:1"}
                ]}
            }
        }
    }))
    .unwrap();
    let created = deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let strategy = created.spec.as_ref().and_then(|s| s.strategy.clone());
    assert_eq!(
        strategy.and_then(|s| s.type_).as_deref(),
        Some("RollingUpdate")
    );

    // Strategic merge: containers merge by name.
    let patched = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": "registry.local/web:2"}
            ]}}}})),
        )
        .await
        .unwrap();
    let images: Vec<(String, Option<String>)> = patched
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| {
            p.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        images,
        vec![
            ("main".to_string(), Some("registry.local/web:2".to_string())),
            (
                "sidecar".to_string(),
                Some("registry.local/side:1".to_string())
            ),
        ]
    );
    assert_eq!(patched.metadata.generation, Some(2));

    // Server-side apply of replicas by a field manager of its own.
    let applied = deployments
        .patch(
            "web",
            &PatchParams::apply("e2e-scaler").force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {"replicas": 5}
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.spec.as_ref().and_then(|s| s.replicas), Some(5));
    assert!(managers(&applied.metadata).contains(&"e2e-scaler".to_string()));

    deployments
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    let status = api_status(deployments.get("web").await.unwrap_err());
    assert!(status.is_not_found(), "{status:?}");
}

/// A watcher sees the create, the update and the delete of one ConfigMap, in order.
async fn watcher_sees_changes(client: &Client, ns: &str) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let config = watcher::Config::default().fields("metadata.name=watched");
    let mut events = watcher(cms.clone(), config).boxed();
    // The stream starts with the (empty) initial list; changes made after it are all seen.
    within("the watcher's initial list", async {
        loop {
            match events.try_next().await.unwrap() {
                Some(watcher::Event::InitDone) => break,
                Some(watcher::Event::InitApply(cm)) => panic!("unexpected object {cm:?}"),
                Some(_) => {}
                None => panic!("the watcher ended"),
            }
        }
    })
    .await;

    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "watched"}, "data": {"step": "1"}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.patch(
        "watched",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"step": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("watched", &DeleteParams::default())
        .await
        .unwrap();

    let mut seen = Vec::new();
    within("ADDED, MODIFIED and DELETED from the watcher", async {
        while seen.len() < 3 {
            let step = |cm: &ConfigMap| data(cm).get("step").cloned().unwrap_or_default();
            match events.try_next().await.unwrap() {
                Some(watcher::Event::Apply(cm)) => seen.push(("apply", step(&cm))),
                Some(watcher::Event::Delete(cm)) => seen.push(("delete", step(&cm))),
                Some(other) => panic!("unexpected restart of the watch: {other:?}"),
                None => panic!("the watcher ended"),
            }
        }
    })
    .await;
    assert_eq!(
        seen,
        vec![
            ("apply", "1".to_string()),
            ("apply", "2".to_string()),
            ("delete", "2".to_string()),
        ]
    );
}

/// A reflector store fed by a watcher converges on what the API holds.
async fn reflector_converges(client: &Client, ns: &str) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let make = |name: &str, v: &str| -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"set": "reflected"}},
            "data": {"v": v}
        }))
        .unwrap()
    };
    // One object exists before the reflector starts, so its initial list is not empty.
    cms.create(&PostParams::default(), &make("r-0", "a"))
        .await
        .unwrap();

    let (reader, writer) = reflector::store::<ConfigMap>();
    let config = watcher::Config::default().labels("set=reflected");
    // The test drives the reflector itself: each event is applied to the store before the
    // stream yields it, so the store is checked exactly when it can have changed.
    let mut events = reflector::reflector(writer, watcher(cms.clone(), config)).boxed();
    within("the reflector's first list", async {
        while !matches!(
            events.try_next().await.unwrap(),
            Some(watcher::Event::InitDone)
        ) {}
    })
    .await;
    assert!(reader.get(&ObjectRef::new("r-0").within(ns)).is_some());

    for i in 1..=3 {
        cms.create(&PostParams::default(), &make(&format!("r-{i}"), "a"))
            .await
            .unwrap();
    }
    cms.patch(
        "r-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "b"}})),
    )
    .await
    .unwrap();
    cms.delete("r-0", &DeleteParams::default()).await.unwrap();
    // Leaving the label set removes an object from the store like a delete.
    cms.patch(
        "r-3",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"set": null}}})),
    )
    .await
    .unwrap();

    let expected = map(&[("r-1", "b"), ("r-2", "a")]);
    let snapshot = || -> BTreeMap<String, String> {
        reader
            .state()
            .iter()
            .map(|cm| {
                let name = cm.metadata.name.clone().unwrap_or_default();
                (name, data(cm).get("v").cloned().unwrap_or_default())
            })
            .collect()
    };
    within("the reflector store to converge", async {
        while snapshot() != expected {
            match events.try_next().await.unwrap() {
                Some(_) => {}
                None => panic!("the watcher ended; store {:?}", snapshot()),
            }
        }
    })
    .await;
}

async fn all_operations(server: &Server) {
    let client = client_for(server).await;
    let ns = "kube-client";
    create_namespace(&client, ns).await;
    configmap_round_trip(&client, ns).await;
    deployment_round_trip(&client, ns).await;
    watcher_sees_changes(&client, ns).await;
    reflector_converges(&client, ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_client_on_the_embedded_store() {
    let server = Server::start();
    all_operations(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_client_on_etcd() {
    let etcd = Etcd::start();
    let server = Server::start_with(ServerOptions::etcd(&etcd));
    all_operations(&server).await;
}
