//! Persistent volumes end to end: a real `flotilla server` with its scheduler and
//! controllers, and simulated nodes (bound pods reported Running). The server's volume
//! controller creates the default StorageClass `local-path`; admission gives class-less
//! claims that class; a pod's claim gets the scheduler's node and a provisioned volume
//! pinned there; static volumes bind by class and size and pin their pods; deleting a
//! claim releases its volume and, for Delete, deletes it once the node's cleanup
//! finalizer is gone (simulated nodes do not clean up: the test plays the node's part); a
//! claim created while there is no default class gets the default class that comes later.
//!
//! Each test starts its own server and nodes (unique name prefixes), so they run in parallel.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};

use support::sim::{eventually_for, merge_patch, SimCluster};

const DEADLINE: Duration = Duration::from_secs(60);
const NS: &str = "default";
const CLEANUP_FINALIZER: &str = "flotilla.io/local-path-cleanup";

struct Harness {
    sim: SimCluster,
}

crate::deref_to_sim!(Harness);

impl Harness {
    /// A server with scheduler and controllers, and `count` simulated nodes `<prefix>-<i>`.
    async fn start(prefix: &str, count: usize) -> Self {
        Harness {
            sim: SimCluster::with_nodes(prefix, count, true).await,
        }
    }

    fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn volumes(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn create<T>(&self, api: &Api<T>, v: Value) -> T
    where
        T: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let obj: T = serde_json::from_value(v).unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap()
    }

    async fn claim_where(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&PersistentVolumeClaim) -> bool,
    ) -> PersistentVolumeClaim {
        let api = self.claims();
        eventually_for(DEADLINE, what, || {
            let api = api.clone();
            let check = &check;
            async move { api.get_opt(name).await.ok()?.filter(|c| check(c)) }
        })
        .await
    }

    async fn volume_where(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&PersistentVolume) -> bool,
    ) -> PersistentVolume {
        let api = self.volumes();
        eventually_for(DEADLINE, what, || {
            let api = api.clone();
            let check = &check;
            async move { api.get_opt(name).await.ok()?.filter(|v| check(v)) }
        })
        .await
    }

    async fn scheduled_node(&self, pod: &str) -> String {
        let api = self.pods();
        eventually_for(DEADLINE, &format!("pod {pod} scheduled"), || {
            let api = api.clone();
            async move {
                api.get(pod)
                    .await
                    .ok()?
                    .spec?
                    .node_name
                    .filter(|n| !n.is_empty())
            }
        })
        .await
    }
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn claim_json(name: &str, class: Option<&str>, size: &str) -> Value {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    });
    if let Some(c) = class {
        spec["storageClassName"] = json!(c);
    }
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

fn pod_json(name: &str, claim: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": name, "namespace": NS},
    "spec": {
        "containers": [{"name": "c", "image": "registry.invalid/app:1",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
    }})
}

fn affinity_values(pv: &PersistentVolume) -> Vec<String> {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| {
            r.node_selector_terms
                .iter()
                .flat_map(|t| t.match_expressions.iter().flatten())
                .filter(|e| e.key == "kubernetes.io/hostname")
                .flat_map(|e| e.values.iter().flatten().cloned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_less_claim_gets_local_path_and_a_volume_on_its_pods_node() {
    let h = Harness::start("vol-dyn", 3).await;

    // The controller's default class.
    let classes: Api<StorageClass> = Api::all(h.client.clone());
    let class = eventually_for(DEADLINE, "StorageClass local-path", || {
        let classes = classes.clone();
        async move { classes.get_opt("local-path").await.ok()? }
    })
    .await;
    assert_eq!(class.provisioner, "flotilla.io/local-path");
    assert_eq!(
        class.volume_binding_mode.as_deref(),
        Some("WaitForFirstConsumer")
    );
    assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(
        class.annotations()["storageclass.kubernetes.io/is-default-class"],
        "true"
    );

    // DefaultStorageClass admission; "" still means no class.
    let pvc = h.create(&h.claims(), claim_json("data", None, "1Gi")).await;
    assert_eq!(
        pvc.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("local-path")
    );
    let none = h
        .create(&h.claims(), claim_json("no-class", Some(""), "1Gi"))
        .await;
    assert_eq!(
        none.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("")
    );

    // No consumer yet: the claim waits, and says so.
    let events: Api<Event> = Api::namespaced(h.client.clone(), NS);
    eventually_for(DEADLINE, "WaitForFirstConsumer event", || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?.items;
            list.iter()
                .any(|e| {
                    e.reason.as_deref() == Some("WaitForFirstConsumer")
                        && e.involved_object.name.as_deref() == Some("data")
                })
                .then_some(())
        }
    })
    .await;
    let pvc = h.claims().get("data").await.unwrap();
    assert_eq!(phase_of_claim(&pvc), "Pending");
    assert!(pvc.spec.as_ref().unwrap().volume_name.is_none());

    h.create(&h.pods(), pod_json("app", "data")).await;
    let node = h.scheduled_node("app").await;
    let pvc = h
        .claim_where("data", "claim data Bound", |c| phase_of_claim(c) == "Bound")
        .await;
    assert_eq!(
        pvc.annotations()["volume.kubernetes.io/selected-node"],
        node,
        "the scheduler chose the claim's node"
    );
    assert_eq!(pvc.annotations()["pv.kubernetes.io/bind-completed"], "yes");
    let uid = pvc.uid().unwrap();
    let pv_name = format!("pvc-{uid}");
    assert_eq!(
        pvc.spec.as_ref().unwrap().volume_name.as_deref(),
        Some(pv_name.as_str())
    );
    let status = pvc.status.as_ref().unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["storage"].0, "1Gi");
    assert_eq!(
        status.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );

    let pv = h
        .volume_where(&pv_name, "volume Bound", |v| phase_of_volume(v) == "Bound")
        .await;
    eventually_for(DEADLINE, "ProvisioningSucceeded event", || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?.items;
            list.iter()
                .any(|e| {
                    e.reason.as_deref() == Some("ProvisioningSucceeded")
                        && e.involved_object.name.as_deref() == Some("data")
                })
                .then_some(())
        }
    })
    .await;
    assert_eq!(affinity_values(&pv), std::slice::from_ref(&node));
    let spec = pv.spec.as_ref().unwrap();
    let host_path = spec.host_path.as_ref().unwrap();
    assert!(
        host_path.path.ends_with(&format!("/pvc-{uid}_{NS}_data")),
        "{}",
        host_path.path
    );
    assert_eq!(host_path.type_.as_deref(), Some("DirectoryOrCreate"));
    assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
    assert_eq!(
        spec.claim_ref.as_ref().unwrap().uid.as_deref(),
        Some(uid.as_str())
    );
    assert_eq!(
        pv.annotations()["pv.kubernetes.io/provisioned-by"],
        "flotilla.io/local-path"
    );
    assert_eq!(pv.annotations()["flotilla.io/local-path-node"], node);
    assert!(pv.finalizers().iter().any(|f| f == CLEANUP_FINALIZER));

    // The claim goes: the volume is Released and deleted, held by the node's cleanup
    // finalizer until the node removed the directory.
    h.pods()
        .delete("app", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    h.claims()
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    let pv = h
        .volume_where(&pv_name, "volume Released and being deleted", |v| {
            phase_of_volume(v) == "Released" && v.metadata.deletion_timestamp.is_some()
        })
        .await;
    assert!(pv.finalizers().iter().any(|f| f == CLEANUP_FINALIZER));
    // Play the node's part: the directory is gone, the finalizer goes, so does the volume.
    let finalizers: Vec<String> = pv
        .finalizers()
        .iter()
        .filter(|f| *f != CLEANUP_FINALIZER)
        .cloned()
        .collect();
    merge_patch(
        &h.volumes(),
        &pv_name,
        &json!({"metadata": {"finalizers": finalizers}}),
    )
    .await;
    let volumes = h.volumes();
    eventually_for(DEADLINE, "volume deleted", || {
        let volumes = volumes.clone();
        let name = pv_name.clone();
        async move { volumes.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_volumes_bind_by_class_and_size_and_pin_their_pods() {
    let h = Harness::start("vol-static", 3).await;
    let pinned_to = "vol-static-1";
    // Two candidates: the smaller one that fits wins; the big one has no node affinity.
    h.create(
        &h.volumes(),
        json!({"apiVersion": "v1", "kind": "PersistentVolume",
               "metadata": {"name": "vol-static-big"},
               "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                        "capacity": {"storage": "10Gi"},
                        "hostPath": {"path": "/tmp/vol-static-big"}}}),
    )
    .await;
    h.create(
        &h.volumes(),
        json!({"apiVersion": "v1", "kind": "PersistentVolume",
               "metadata": {"name": "vol-static-pinned"},
               "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                        "capacity": {"storage": "2Gi"},
                        "hostPath": {"path": "/tmp/vol-static-pinned"},
                        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In",
                             "values": [pinned_to]}]}]}}}}),
    )
    .await;
    h.volume_where("vol-static-big", "static volume Available", |v| {
        phase_of_volume(v) == "Available"
    })
    .await;

    // A pod whose claim does not exist is unschedulable, saying why.
    h.create(&h.pods(), pod_json("orphan", "missing")).await;
    let pods = h.pods();
    let message = eventually_for(DEADLINE, "orphan PodScheduled=False", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("orphan").await.ok()?;
            p.status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")?
                .message
        }
    })
    .await;
    assert!(
        message.contains("persistentvolumeclaim \"missing\" not found"),
        "{message}"
    );

    h.create(
        &h.claims(),
        claim_json("manual-claim", Some("manual"), "1Gi"),
    )
    .await;
    let pvc = h
        .claim_where("manual-claim", "static claim Bound", |c| {
            phase_of_claim(c) == "Bound"
        })
        .await;
    assert_eq!(
        pvc.spec.as_ref().unwrap().volume_name.as_deref(),
        Some("vol-static-pinned"),
        "the smallest fitting volume"
    );
    assert_eq!(
        pvc.status.as_ref().unwrap().capacity.as_ref().unwrap()["storage"].0,
        "2Gi"
    );
    let pv = h
        .volume_where("vol-static-pinned", "pinned volume Bound", |v| {
            phase_of_volume(v) == "Bound"
        })
        .await;
    assert_eq!(
        pv.spec
            .as_ref()
            .unwrap()
            .claim_ref
            .as_ref()
            .unwrap()
            .name
            .as_deref(),
        Some("manual-claim")
    );
    assert_eq!(
        pv.annotations()["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    assert_eq!(
        phase_of_volume(&h.volumes().get("vol-static-big").await.unwrap()),
        "Available"
    );

    // Every pod using the claim lands on the volume's node (3 nodes: chance alone would
    // put three pods there one time in 27).
    for i in 0..3 {
        h.create(&h.pods(), pod_json(&format!("user-{i}"), "manual-claim"))
            .await;
    }
    for i in 0..3 {
        assert_eq!(h.scheduled_node(&format!("user-{i}")).await, pinned_to);
    }

    // An Immediate local-path class provisions without waiting for a pod, on a Ready node.
    h.create(
        &Api::<StorageClass>::all(h.client.clone()),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
               "metadata": {"name": "local-now"},
               "provisioner": "flotilla.io/local-path",
               "volumeBindingMode": "Immediate",
               "reclaimPolicy": "Retain"}),
    )
    .await;
    h.create(&h.claims(), claim_json("now", Some("local-now"), "1Gi"))
        .await;
    let now = h
        .claim_where("now", "Immediate claim Bound", |c| {
            phase_of_claim(c) == "Bound"
        })
        .await;
    let pv = h
        .volumes()
        .get(now.spec.as_ref().unwrap().volume_name.as_deref().unwrap())
        .await
        .unwrap();
    let on = affinity_values(&pv);
    assert_eq!(on.len(), 1);
    assert!(on[0].starts_with("vol-static-"), "{on:?}");
    assert!(
        pv.finalizers().is_empty(),
        "Retain: nothing for the node to clean"
    );

    // Retain: the claim goes, the volume stays Released with its data.
    for i in 0..3 {
        h.pods()
            .delete(
                &format!("user-{i}"),
                &DeleteParams::default().grace_period(0),
            )
            .await
            .unwrap();
    }
    h.claims()
        .delete("manual-claim", &DeleteParams::default())
        .await
        .unwrap();
    let pv = h
        .volume_where("vol-static-pinned", "retained volume Released", |v| {
            phase_of_volume(v) == "Released"
        })
        .await;
    assert!(pv.metadata.deletion_timestamp.is_none());
    assert_eq!(
        pv.spec
            .as_ref()
            .unwrap()
            .persistent_volume_reclaim_policy
            .as_deref(),
        Some("Retain")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_made_while_there_is_no_default_class_gets_one_later() {
    let h = Harness::start("vol-late", 1).await;
    let classes: Api<StorageClass> = Api::all(h.client.clone());
    eventually_for(DEADLINE, "StorageClass local-path", || {
        let classes = classes.clone();
        async move { classes.get_opt("local-path").await.ok()? }
    })
    .await;
    // The controller creates its class only at start: removed, it stays removed.
    classes
        .delete("local-path", &DeleteParams::default())
        .await
        .unwrap();
    eventually_for(DEADLINE, "local-path deleted", || {
        let classes = classes.clone();
        async move {
            classes
                .get_opt("local-path")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
    let pvc = h
        .create(&h.claims(), claim_json("early", None, "1Gi"))
        .await;
    assert_eq!(
        pvc.spec.as_ref().unwrap().storage_class_name,
        None,
        "no default class to admit it with"
    );
    h.create(
        &classes,
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
               "metadata": {"name": "late-default",
                            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
               "provisioner": "flotilla.io/local-path",
               "volumeBindingMode": "Immediate"}),
    )
    .await;
    let pvc = h
        .claim_where(
            "early",
            "the late default class assigned and provisioned",
            |c| phase_of_claim(c) == "Bound",
        )
        .await;
    assert_eq!(
        pvc.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("late-default")
    );
}
