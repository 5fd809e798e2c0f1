//! The garbage collector end to end: a real `flotilla server`, the collector running in
//! process against it, objects whose ownerReferences the tests set themselves, and
//! deletions with each propagation policy (through kube and through kubectl 1.33).
//!
//! Each test works in its own namespace, so the tests share nothing and run in parallel.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, PostParams};
use kube::Resource;
use serde_json::json;

use support::sim::{
    create_namespace, eventually_for, merge_patch, run_kubectl, until_gone, SimCluster,
};
use support::ServerOptions;

const DEADLINE: Duration = Duration::from_secs(30);

struct Harness {
    sim: SimCluster,
    ns: String,
    gc: Option<tokio::task::JoinHandle<Result<(), controllers::garbage_collector::Error>>>,
}

crate::deref_to_sim!(Harness);

impl Harness {
    // RUST_LOG=flotilla_controllers=debug shows the collector's decisions.
    async fn start(ns: &str) -> Self {
        let mut sim = SimCluster::start(ServerOptions::default()).await;
        create_namespace(&sim.client, ns).await;
        let gc = sim.spawn(controllers::garbage_collector::run);
        Harness {
            sim,
            ns: ns.to_string(),
            gc: Some(gc),
        }
    }

    fn cms(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A ConfigMap owned by `owners` (each with blockOwnerDeletion as given), and held by
    /// `finalizers`.
    async fn cm(
        &self,
        name: &str,
        owners: &[(&ConfigMap, bool)],
        finalizers: &[&str],
    ) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.to_string());
        if !owners.is_empty() {
            cm.metadata.owner_references =
                Some(owners.iter().map(|(o, b)| owner_ref(*o, *b)).collect());
        }
        if !finalizers.is_empty() {
            cm.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        }
        self.cms()
            .create(&PostParams::default(), &cm)
            .await
            .unwrap()
    }

    async fn get(&self, name: &str) -> Option<ConfigMap> {
        self.cms().get_opt(name).await.unwrap()
    }

    async fn wait_gone(&self, name: &str) {
        let what = format!("{name} was not garbage collected");
        until_gone(&self.cms(), name, DEADLINE, &what).await;
    }

    /// Polls `name` until `check` holds for it, returning it.
    async fn wait_until(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&ConfigMap) -> bool,
    ) -> ConfigMap {
        eventually_for(DEADLINE, &format!("{name}: never {what}"), || async {
            self.get(name).await.filter(|cm| check(cm))
        })
        .await
    }

    async fn kubectl(&self, args: Vec<String>) -> String {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_kubectl(self.server.kubectl("1.33"), &args)
            .await
            .expect_success("kubectl")
            .to_string()
    }

    async fn stop(mut self) {
        // The collector is the only task the harness runs.
        self.sim.stop_newest();
        if let Some(gc) = self.gc.take() {
            tokio::time::timeout(DEADLINE, gc)
                .await
                .expect("the garbage collector stops on shutdown")
                .unwrap()
                .unwrap();
        }
    }
}

fn owner_ref<K: Resource<DynamicType = ()>>(o: &K, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: o.meta().name.clone().unwrap(),
        uid: o.meta().uid.clone().unwrap(),
        block_owner_deletion: block.then_some(true),
        controller: None,
    }
}

fn owners_of(cm: &ConfigMap) -> Vec<String> {
    cm.metadata
        .owner_references
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect()
}

fn finalizers_of(cm: &ConfigMap) -> Vec<String> {
    cm.metadata.finalizers.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_collects_a_chain_across_kinds() {
    let h = Harness::start("gc-background").await;
    let root = h.cm("root", &[], &[]).await;
    let mid = h.cm("mid", &[(&root, false)], &[]).await;
    h.cm("leaf", &[(&mid, false)], &[]).await;
    // Another kind owned by the root.
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    let mut s = Secret::default();
    s.metadata.name = Some("owned-secret".into());
    s.metadata.owner_references = Some(vec![owner_ref(&root, false)]);
    secrets.create(&PostParams::default(), &s).await.unwrap();
    // Two owners, one of which stays: it survives, and loses the dangling reference.
    let keeper = h.cm("keeper", &[], &[]).await;
    h.cm("shared", &[(&root, false), (&keeper, false)], &[])
        .await;
    // An owner that never existed (wrong uid): its dependent goes without any deletion.
    let mut ghost = ConfigMap::default();
    ghost.metadata.name = Some("keeper".into());
    ghost.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    h.cm("orphaned-at-birth", &[(&ghost, false)], &[]).await;
    h.wait_gone("orphaned-at-birth").await;
    // Nothing else was touched while the owners exist.
    assert!(h.get("leaf").await.is_some());
    assert_eq!(
        owners_of(&h.get("shared").await.unwrap()),
        ["root", "keeper"]
    );

    h.cms()
        .delete("root", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_gone("root").await;
    h.wait_gone("mid").await;
    h.wait_gone("leaf").await;
    until_gone(
        &secrets,
        "owned-secret",
        DEADLINE,
        "the owned secret was not collected",
    )
    .await;
    h.wait_until("shared", "lost its dangling owner", |cm| {
        owners_of(cm) == ["keeper"]
    })
    .await;
    assert!(h.get("keeper").await.is_some());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_keeps_the_owner_until_blocking_dependents_are_gone() {
    let h = Harness::start("gc-foreground").await;
    let owner = h.cm("owner", &[], &[]).await;
    // A blocking dependent held by a finalizer of its own, and a non-blocking one.
    h.cm("blocker", &[(&owner, true)], &["example.com/hold"])
        .await;
    h.cm("follower", &[(&owner, false)], &[]).await;

    let dp = DeleteParams::foreground();
    h.cms().delete("owner", &dp).await.unwrap();
    // The owner is Terminating with the foregroundDeletion finalizer; the blocker is being
    // deleted (its own finalizer holds it), the non-blocking follower is gone.
    h.wait_until("blocker", "marked for deletion", |cm| {
        cm.metadata.deletion_timestamp.is_some()
    })
    .await;
    h.wait_gone("follower").await;
    let o = h
        .get("owner")
        .await
        .expect("the owner waits for its blocking dependent");
    assert!(o.metadata.deletion_timestamp.is_some());
    assert!(finalizers_of(&o).contains(&"foregroundDeletion".to_string()));

    // Release the blocker: it goes, and then so does the owner.
    merge_patch(
        &h.cms(),
        "blocker",
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    h.wait_gone("blocker").await;
    h.wait_gone("owner").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_leaves_dependents_without_the_reference() {
    let h = Harness::start("gc-orphan").await;
    let owner = h.cm("owner", &[], &[]).await;
    let other = h.cm("other", &[], &[]).await;
    h.cm("dep-a", &[(&owner, true)], &[]).await;
    h.cm("dep-b", &[(&owner, false), (&other, false)], &[])
        .await;

    h.cms()
        .delete("owner", &DeleteParams::orphan())
        .await
        .unwrap();
    h.wait_gone("owner").await;
    let a = h.get("dep-a").await.expect("an orphan stays");
    assert!(
        owners_of(&a).is_empty(),
        "dep-a still references {:?}",
        owners_of(&a)
    );
    let b = h.get("dep-b").await.expect("an orphan stays");
    assert_eq!(owners_of(&b), ["other"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_cascade_policies() {
    let h = Harness::start("gc-kubectl").await;
    let ns = h.ns.clone();
    let fg = h.cm("fg-owner", &[], &[]).await;
    h.cm("fg-dep", &[(&fg, true)], &[]).await;
    let or = h.cm("or-owner", &[], &[]).await;
    h.cm("or-dep", &[(&or, true)], &[]).await;
    let bg = h.cm("bg-owner", &[], &[]).await;
    let bg_mid = h.cm("bg-mid", &[(&bg, true)], &[]).await;
    h.cm("bg-leaf", &[(&bg_mid, true)], &[]).await;

    // kubectl waits for the foreground deletion to finish: the owner is gone on return,
    // and so is its dependent (removed before the owner could go).
    let out = h
        .kubectl(
            [
                "delete",
                "configmap",
                "fg-owner",
                "-n",
                &ns,
                "--cascade=foreground",
            ]
            .map(String::from)
            .to_vec(),
        )
        .await;
    assert!(out.contains("fg-owner"), "{out}");
    h.wait_gone("fg-owner").await;
    assert!(
        h.get("fg-dep").await.is_none(),
        "the blocking dependent went first"
    );

    h.kubectl(
        [
            "delete",
            "configmap",
            "or-owner",
            "-n",
            &ns,
            "--cascade=orphan",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    h.wait_gone("or-owner").await;
    let dep = h.get("or-dep").await.expect("orphaned dependent stays");
    assert!(owners_of(&dep).is_empty());

    h.kubectl(
        [
            "delete",
            "configmap",
            "bg-owner",
            "-n",
            &ns,
            "--cascade=background",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    h.wait_gone("bg-mid").await;
    h.wait_gone("bg-leaf").await;
    // kubectl get sees what is left: only the orphan.
    let left = h
        .kubectl(
            ["get", "configmaps", "-n", &ns, "-o", "name"]
                .map(String::from)
                .to_vec(),
        )
        .await;
    assert!(left.contains("configmap/or-dep"), "{left}");
    assert!(!left.contains("bg-") && !left.contains("fg-"), "{left}");
    h.stop().await;
}

/// Creates `obj` (a manifest) in the test namespace through the dynamic API, returning it.
async fn create_dynamic(
    h: &Harness,
    api_version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    mut obj: serde_json::Value,
) -> kube::api::DynamicObject {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    let api: Api<kube::api::DynamicObject> = if namespaced {
        Api::namespaced_with(h.client.clone(), &h.ns, &ar)
    } else {
        Api::all_with(h.client.clone(), &ar)
    };
    let o: kube::api::DynamicObject = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &o).await.unwrap()
}

fn dyn_ref(o: &kube::api::DynamicObject) -> serde_json::Value {
    let t = o.types.as_ref().unwrap();
    json!([{
        "apiVersion": t.api_version,
        "kind": t.kind,
        "name": o.metadata.name,
        "uid": o.metadata.uid,
        "blockOwnerDeletion": true,
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_kind_is_collected_and_cluster_scoped_owners_count() {
    let h = Harness::start("gc-kinds").await;
    let labels = json!({"app": "gc-kinds"});
    let template = json!({
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/c:1"}]},
    });
    let deploy = create_dynamic(
        &h,
        "apps/v1",
        "Deployment",
        "deployments",
        true,
        json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template},
        }),
    )
    .await;
    let rs = create_dynamic(
        &h,
        "apps/v1",
        "ReplicaSet",
        "replicasets",
        true,
        json!({
            "metadata": {"name": "web-1", "ownerReferences": dyn_ref(&deploy)},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": template},
        }),
    )
    .await;
    let owned = dyn_ref(&rs);
    // Dependents of every kind the brief lists, all owned by the ReplicaSet.
    let dependents: Vec<(&str, &str, &str, serde_json::Value)> = vec![
        ("v1", "Pod", "pods", json!({"spec": template["spec"]})),
        (
            "apps/v1",
            "DaemonSet",
            "daemonsets",
            json!({
            "spec": {"selector": {"matchLabels": labels}, "template": template}}),
        ),
        (
            "apps/v1",
            "StatefulSet",
            "statefulsets",
            json!({
            "spec": {"replicas": 0, "serviceName": "web", "selector": {"matchLabels": labels},
                     "template": template}}),
        ),
        (
            "batch/v1",
            "Job",
            "jobs",
            json!({"spec": {"suspend": true, "template": {
            "metadata": {"labels": labels},
            "spec": {"restartPolicy": "Never", "containers": template["spec"]["containers"]}}}}),
        ),
        (
            "v1",
            "Service",
            "services",
            json!({"spec": {"ports": [{"port": 80}]}}),
        ),
        ("v1", "Secret", "secrets", json!({})),
        (
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            json!({"spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
        (
            "discovery.k8s.io/v1",
            "EndpointSlice",
            "endpointslices",
            json!({
            "addressType": "IPv4", "endpoints": []}),
        ),
        (
            "apps/v1",
            "ControllerRevision",
            "controllerrevisions",
            json!({"revision": 1, "data": {}}),
        ),
    ];
    let mut created = Vec::new();
    for (api_version, kind, plural, mut body) in dependents {
        body["metadata"] = json!({"name": format!("dep-{}", kind.to_lowercase()),
                                  "ownerReferences": owned, "labels": labels});
        let o = create_dynamic(&h, api_version, kind, plural, true, body).await;
        created.push((api_version, kind, plural, o.metadata.name.unwrap()));
    }
    // A cluster-scoped owner (a Node object) of a namespaced dependent.
    let node = create_dynamic(
        &h,
        "v1",
        "Node",
        "nodes",
        false,
        json!({
            "metadata": {"name": "gc-kinds-node"},
        }),
    )
    .await;
    let mut by_node = ConfigMap::default();
    by_node.metadata.name = Some("owned-by-node".into());
    by_node.metadata.owner_references = Some(serde_json::from_value(dyn_ref(&node)).unwrap());
    h.cms()
        .create(&PostParams::default(), &by_node)
        .await
        .unwrap();

    // The Deployment goes (foreground: it waits for the whole tree below it).
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(h.client.clone(), &h.ns);
    deployments
        .delete("web", &DeleteParams::foreground())
        .await
        .unwrap();
    until_gone(&deployments, "web", DEADLINE, "the deployment stayed").await;
    for (api_version, kind, plural, name) in created {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(h.client.clone(), &h.ns, &ar);
        let what = format!("{kind} {name} was not collected");
        until_gone(&api, &name, DEADLINE, &what).await;
    }
    let replicasets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(h.client.clone(), &h.ns);
    assert!(replicasets.get_opt("web-1").await.unwrap().is_none());

    assert!(
        h.get("owned-by-node").await.is_some(),
        "its node still exists"
    );
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(h.client.clone());
    nodes
        .delete("gc-kinds-node", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_gone("owned-by-node").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_waits_for_the_whole_blocking_tree() {
    let h = Harness::start("gc-fg-tree").await;
    let top = h.cm("top", &[], &[]).await;
    let mid = h.cm("mid", &[(&top, true)], &[]).await;
    h.cm("leaf", &[(&mid, true)], &["example.com/hold"]).await;

    h.cms()
        .delete("top", &DeleteParams::foreground())
        .await
        .unwrap();
    // The middle object is itself deleted in the foreground: it waits for the leaf, and the
    // top waits for it.
    h.wait_until("mid", "deleted in the foreground", |cm| {
        cm.metadata.deletion_timestamp.is_some()
            && finalizers_of(cm).contains(&"foregroundDeletion".to_string())
    })
    .await;
    h.wait_until("leaf", "marked for deletion", |cm| {
        cm.metadata.deletion_timestamp.is_some()
    })
    .await;
    let t = h.get("top").await.expect("the top waits for the tree");
    assert!(finalizers_of(&t).contains(&"foregroundDeletion".to_string()));

    merge_patch(&h.cms(), "leaf", json!({"metadata": {"finalizers": null}})).await;
    h.wait_gone("leaf").await;
    h.wait_gone("mid").await;
    h.wait_gone("top").await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_scoped_dependent_of_a_namespaced_owner_is_collected_with_an_event() {
    let h = Harness::start("gc-invalid-ns").await;
    let owner = h.cm("owner", &[], &[]).await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(h.client.clone());
    let mut n = k8s_openapi::api::core::v1::Node::default();
    n.metadata.name = Some("gc-invalid-ns-node".into());
    n.metadata.owner_references = Some(vec![owner_ref(&owner, false)]);
    nodes.create(&PostParams::default(), &n).await.unwrap();
    until_gone(
        &nodes,
        "gc-invalid-ns-node",
        DEADLINE,
        "the node was not collected",
    )
    .await;
    // The owner itself is untouched, and an Event tells why the node went.
    assert!(h.get("owner").await.is_some());
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(h.client.clone(), "default");
    let start = Instant::now();
    loop {
        let list = events.list(&Default::default()).await.unwrap();
        let found = list.items.iter().find(|e| {
            e.involved_object.name.as_deref() == Some("gc-invalid-ns-node")
                && e.reason.as_deref() == Some("OwnerRefInvalidNamespace")
        });
        if let Some(e) = found {
            assert_eq!(e.type_.as_deref(), Some("Warning"));
            let msg = e.message.clone().unwrap_or_default();
            assert!(
                msg.contains("v1/ConfigMap") && msg.contains("name: owner"),
                "{msg}"
            );
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no OwnerRefInvalidNamespace event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}
