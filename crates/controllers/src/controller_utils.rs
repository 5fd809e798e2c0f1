//! Small helpers the workload controllers share, after kube-controller-manager's
//! pkg/controller/controller_utils.go: owner and event references to an object, the
//! controller of an object, the pod predicates the controllers count by, and releasing a
//! pod that no longer matches its controller's selector.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

/// The owner reference that makes `owner` the controller of what it creates (and lets
/// foreground deletion of the owner wait for it: blockOwnerDeletion).
/// How often [`store_ready`] looks again.
const READY_REPOLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Waits until `store` has its first list; false if its writer went away first.
///
/// kube-runtime's `Store::wait_until_ready` keeps a single waker: when a second task waits
/// on the same store (the `Controller` runner waits on its own primary store), only the
/// last to poll is woken. Polling again every 250 ms makes a waiter that lost its waker see
/// the readiness all the same.
pub async fn store_ready<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(READY_REPOLL, store.wait_until_ready()).await {
            Ok(ready) => return ready.is_ok(),
            Err(_) => continue,
        }
    }
}

pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        controller: Some(true),
        block_owner_deletion: Some(true),
        ..owner_ref(owner)
    }
}

/// A plain (non-controller) owner reference to `owner`: the dependant is garbage
/// collected with it, nothing more.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// The reference an Event's involvedObject holds: the object at the revision the
/// controller acted on (kube's `Resource::object_ref` leaves the resourceVersion out).
pub fn event_reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

/// The owner reference marked as controller, if any (upstream's `metav1.GetControllerOf`).
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The objects of kind `K` a pod's change concerns: its controller when that is a `K`
/// (of `K`'s API group), none when another kind controls it, and for an orphan every `K`
/// of its namespace that `would_adopt` it.
pub fn controllers_of_pod<K>(
    store: &Store<K>,
    pod: &Pod,
    would_adopt: impl Fn(&K) -> bool,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata) {
        let group = owner.api_version.split_once('/').map(|(g, _)| g);
        if owner.kind == K::kind(&()) && group == Some(&*K::group(&())) {
            return vec![ObjectRef::new(&owner.name).within(&ns)];
        }
        return Vec::new();
    }
    store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns.as_str()))
        .filter(|o| would_adopt(o))
        .map(|o| ObjectRef::from_obj(&*o))
        .collect()
}

/// Active pods: not being deleted and not finished (Succeeded or Failed).
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The pod's Ready condition is True.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Releases `pod` from the owner with `owner_uid` (its selector no longer matches): drops
/// that owner reference, over the resourceVersion read, so a concurrent change to the
/// pod's owners makes this a conflict rather than overwriting it. A pod already gone is
/// released.
pub async fn release_pod(api: &Api<Pod>, pod: &Pod, owner_uid: &str) -> Result<(), kube::Error> {
    let refs: Vec<&OwnerReference> = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .collect();
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": pod.metadata.resource_version,
        "ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { serde_json::json!(refs) },
    }});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::batch::v1::Job;
    use serde_json::json;

    #[tokio::test]
    async fn a_store_waiter_wakes_even_when_another_took_the_stores_waker() {
        let (store, mut writer) = kube::runtime::reflector::store::<Job>();
        let ours = {
            let store = store.clone();
            tokio::spawn(async move { store_ready(&store).await })
        };
        tokio::task::yield_now().await;
        // A second waiter polls after ours: kube-runtime keeps only its waker.
        let theirs = {
            let store = store.clone();
            tokio::spawn(async move { store.wait_until_ready().await.is_ok() })
        };
        tokio::task::yield_now().await;
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
        let woke = tokio::time::timeout(std::time::Duration::from_secs(5), ours).await;
        assert!(matches!(woke, Ok(Ok(true))), "{woke:?}");
        theirs.abort();
    }

    fn job() -> Job {
        serde_json::from_value(json!({"metadata": {"name": "pi", "namespace": "ns",
            "uid": "u1", "resourceVersion": "7"}}))
        .unwrap()
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn references_name_the_kind_version_and_revision() {
        let c = controller_ref(&job());
        assert_eq!(
            (
                c.api_version.as_str(),
                c.kind.as_str(),
                c.name.as_str(),
                c.uid.as_str()
            ),
            ("batch/v1", "Job", "pi", "u1")
        );
        assert_eq!(
            (c.controller, c.block_owner_deletion),
            (Some(true), Some(true))
        );
        let o = owner_ref(&job());
        assert_eq!((o.controller, o.block_owner_deletion), (None, None));
        let e = event_reference(&job());
        assert_eq!(e.kind.as_deref(), Some("Job"));
        assert_eq!(e.namespace.as_deref(), Some("ns"));
        assert_eq!(e.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn controller_of_skips_plain_owners() {
        let mut meta = ObjectMeta::default();
        assert!(controller_of(&meta).is_none());
        meta.owner_references = Some(vec![owner_ref(&job())]);
        assert!(controller_of(&meta).is_none());
        meta.owner_references
            .as_mut()
            .unwrap()
            .push(controller_ref(&job()));
        assert_eq!(controller_of(&meta).unwrap().controller, Some(true));
    }

    #[test]
    fn a_pod_concerns_its_controller_or_the_owners_that_would_adopt_it() {
        let (store, mut writer) = kube::runtime::reflector::store::<Job>();
        for (ns, name) in [("ns", "pi"), ("ns", "other"), ("elsewhere", "pi")] {
            let j: Job =
                serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}}))
                    .unwrap();
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(j));
        }
        let names = |refs: Vec<ObjectRef<Job>>| {
            let mut n: Vec<String> = refs.into_iter().map(|r| r.name).collect();
            n.sort();
            n
        };
        let orphan = pod(json!({"metadata": {"name": "p", "namespace": "ns"}}));
        assert_eq!(
            names(controllers_of_pod(&store, &orphan, |_| true)),
            ["other", "pi"]
        );
        assert!(controllers_of_pod(&store, &orphan, |_| false).is_empty());
        let mut owned = orphan.clone();
        owned.metadata.owner_references = Some(vec![controller_ref(&job())]);
        assert_eq!(names(controllers_of_pod(&store, &owned, |_| false)), ["pi"]);
        // Controlled by another kind (or another group's Job): nobody here adopts it.
        let mut foreign = controller_ref(&job());
        foreign.api_version = "example.com/v1".into();
        owned.metadata.owner_references = Some(vec![foreign]);
        assert!(controllers_of_pod(&store, &owned, |_| true).is_empty());
    }

    #[test]
    fn active_and_ready_pods() {
        let running = pod(json!({"status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}}));
        assert!(is_pod_active(&running) && is_pod_ready(&running));
        let done = pod(json!({"status": {"phase": "Succeeded"}}));
        assert!(!is_pod_active(&done) && !is_pod_ready(&done));
        let deleting = pod(
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}}),
        );
        assert!(!is_pod_active(&deleting) && !is_pod_ready(&deleting));
    }
}
