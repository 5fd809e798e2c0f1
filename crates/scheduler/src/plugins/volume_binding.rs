//! VolumeBinding: a pod's PersistentVolumeClaims must exist, their bound volumes' node
//! affinity must admit the node, and claims waiting for their first consumer
//! (WaitForFirstConsumer) get the chosen node before the pod is bound.
//!
//! The framework is synchronous, so the plugin reads a [`VolumeCache`] the scheduler's
//! loop fills from its PVC, PV and StorageClass watches. Pre-filter rejects pods whose
//! claims are missing or are unbound claims of Immediate classes (the PV controller binds
//! those; the pod waits); filter checks per node. Pre-bind ([`pre_bind`]) runs in the
//! binding task, outside the cycle: it records the chosen node on each unbound claim
//! (`volume.kubernetes.io/selected-node`), which is the provisioner's cue, and waits for
//! the claims to be Bound before the pod's Binding is posted, as kube-scheduler does.
//!
//! Pods without claims pay a scan of their volume list and nothing else: no lock, no
//! allocation, no API call.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use api::quantity;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};

use super::selectors::node_term_matches;
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreFilterPlugin, Status,
};

pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// How long pre-bind waits for the provisioner and binder before the attempt fails and
/// the pod is retried.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const ERR_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const ERR_NO_VOLUME: &str = "node(s) didn't find available persistent volumes to bind";
pub const ERR_PV_MISSING: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// What the scheduler knows of claims, volumes and classes.
#[derive(Default)]
pub struct VolumeState {
    /// (namespace, name) → claim.
    claims: HashMap<(String, String), Arc<PersistentVolumeClaim>>,
    volumes: HashMap<String, Arc<PersistentVolume>>,
    classes: HashMap<String, Arc<StorageClass>>,
    relisted_claims: Option<HashSet<(String, String)>>,
    relisted_volumes: Option<HashSet<String>>,
    relisted_classes: Option<HashSet<String>>,
    /// Which of claims, volumes, classes have been listed once.
    listed: [bool; 3],
}

/// The shared snapshot: written by the scheduler's loop, read by the plugin.
#[derive(Clone, Default)]
pub struct VolumeCache(Arc<RwLock<VolumeState>>);

impl VolumeCache {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, VolumeState> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, VolumeState> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn apply_claim(&self, pvc: PersistentVolumeClaim) {
        let key = (
            pvc.metadata.namespace.clone().unwrap_or_default(),
            pvc.metadata.name.clone().unwrap_or_default(),
        );
        self.write().claims.insert(key, Arc::new(pvc));
    }

    pub fn delete_claim(&self, pvc: &PersistentVolumeClaim) {
        let key = (
            pvc.metadata.namespace.clone().unwrap_or_default(),
            pvc.metadata.name.clone().unwrap_or_default(),
        );
        self.write().claims.remove(&key);
    }

    pub fn apply_volume(&self, pv: PersistentVolume) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        self.write().volumes.insert(name, Arc::new(pv));
    }

    pub fn delete_volume(&self, pv: &PersistentVolume) {
        self.write()
            .volumes
            .remove(pv.metadata.name.as_deref().unwrap_or(""));
    }

    pub fn apply_class(&self, sc: StorageClass) {
        let name = sc.metadata.name.clone().unwrap_or_default();
        self.write().classes.insert(name, Arc::new(sc));
    }

    pub fn delete_class(&self, sc: &StorageClass) {
        self.write()
            .classes
            .remove(sc.metadata.name.as_deref().unwrap_or(""));
    }

    /// Claims, volumes and classes have all been listed (a pod's claim missing from the
    /// cache is then really missing).
    pub fn synced(&self) -> bool {
        self.read().listed.iter().all(|l| *l)
    }

    /// Applies a claim watch event; true when pods waiting on volumes should be retried.
    pub fn on_claim(&self, ev: Result<Event<PersistentVolumeClaim>, watcher::Error>) -> bool {
        let key = |c: &PersistentVolumeClaim| {
            (
                c.metadata.namespace.clone().unwrap_or_default(),
                c.metadata.name.clone().unwrap_or_default(),
            )
        };
        let mut state = self.write();
        let VolumeState {
            claims,
            relisted_claims,
            listed,
            ..
        } = &mut *state;
        apply_event(
            claims,
            relisted_claims,
            &mut listed[0],
            ev,
            key,
            "persistentvolumeclaim",
        )
    }

    pub fn on_volume(&self, ev: Result<Event<PersistentVolume>, watcher::Error>) -> bool {
        let key = |v: &PersistentVolume| v.metadata.name.clone().unwrap_or_default();
        let mut state = self.write();
        let VolumeState {
            volumes,
            relisted_volumes,
            listed,
            ..
        } = &mut *state;
        apply_event(
            volumes,
            relisted_volumes,
            &mut listed[1],
            ev,
            key,
            "persistentvolume",
        )
    }

    pub fn on_class(&self, ev: Result<Event<StorageClass>, watcher::Error>) -> bool {
        let key = |c: &StorageClass| c.metadata.name.clone().unwrap_or_default();
        let mut state = self.write();
        let VolumeState {
            classes,
            relisted_classes,
            listed,
            ..
        } = &mut *state;
        apply_event(
            classes,
            relisted_classes,
            &mut listed[2],
            ev,
            key,
            "storageclass",
        )
    }
}

/// One watch event into a map. A re-list replaces the map only once complete (objects not
/// listed again are gone), so cycles in between see the old view, not an empty one.
fn apply_event<K: std::hash::Hash + Eq + Clone, T>(
    map: &mut HashMap<K, Arc<T>>,
    relisted: &mut Option<HashSet<K>>,
    listed: &mut bool,
    ev: Result<Event<T>, watcher::Error>,
    key: impl Fn(&T) -> K,
    what: &str,
) -> bool {
    match ev {
        Ok(Event::Init) => {
            *relisted = Some(HashSet::new());
            false
        }
        Ok(Event::InitApply(o)) => {
            let k = key(&o);
            if let Some(seen) = relisted.as_mut() {
                seen.insert(k.clone());
            }
            map.insert(k, Arc::new(o));
            false
        }
        Ok(Event::InitDone) => {
            if let Some(seen) = relisted.take() {
                map.retain(|k, _| seen.contains(k));
            }
            *listed = true;
            true
        }
        Ok(Event::Apply(o)) => {
            map.insert(key(&o), Arc::new(o));
            true
        }
        Ok(Event::Delete(o)) => {
            map.remove(&key(&o));
            true
        }
        Err(e) => {
            tracing::debug!(error = %e, "{what} watch");
            false
        }
    }
}

/// The names of the claims the pod's volumes use (ephemeral volumes' claims are named
/// `<pod>-<volume>`, as the ephemeral volume controller names them).
fn claim_names(pod: &Pod) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(move |v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(std::borrow::Cow::Borrowed(c.claim_name.as_str()))
            } else if v.ephemeral.is_some() {
                Some(std::borrow::Cow::Owned(format!("{pod_name}-{}", v.name)))
            } else {
                None
            }
        })
}

pub fn has_claims(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
}

fn bound_volume(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|v| !v.is_empty())
}

fn class_of<'a>(state: &'a VolumeState, pvc: &PersistentVolumeClaim) -> Option<&'a StorageClass> {
    let name = pvc.spec.as_ref()?.storage_class_name.as_deref()?;
    state.classes.get(name).map(|c| &**c)
}

fn is_delayed(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

fn volume_admits(pv: &PersistentVolume, node: &NodeInfo) -> bool {
    let required = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref());
    match required {
        None => true,
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| node_term_matches(t, &node.name, &node.labels)),
    }
}

fn storage(
    list: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) -> Option<i64> {
    let q = list?.get("storage")?;
    quantity::parse(&q.0).ok().map(|q| q.value())
}

/// An Available, unclaimed volume of the claim's class, big enough, with the access modes,
/// that the node can reach: what a class without a provisioner needs per node.
fn static_volume_fits(pvc: &PersistentVolumeClaim, pv: &PersistentVolume, node: &NodeInfo) -> bool {
    let (Some(cs), Some(vs)) = (pvc.spec.as_ref(), pv.spec.as_ref()) else {
        return false;
    };
    let available = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
    let free = vs
        .claim_ref
        .as_ref()
        .is_none_or(|r| r.name == pvc.metadata.name && r.namespace == pvc.metadata.namespace);
    let modes = vs.access_modes.as_deref().unwrap_or_default();
    let want = storage(cs.resources.as_ref().and_then(|r| r.requests.as_ref()));
    let have = storage(vs.capacity.as_ref());
    available
        && free
        && cs.storage_class_name.as_deref().unwrap_or("")
            == vs.storage_class_name.as_deref().unwrap_or("")
        && cs.access_modes.iter().flatten().all(|m| modes.contains(m))
        && matches!((want, have), (Some(w), Some(h)) if h >= w)
        && volume_admits(pv, node)
}

pub struct VolumeBinding {
    cache: VolumeCache,
}

impl VolumeBinding {
    pub fn new(cache: VolumeCache) -> Self {
        VolumeBinding { cache }
    }
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &[NodeInfo]) -> Status {
        if !has_claims(&pod.pod) {
            return Status::skip();
        }
        let state = self.cache.read();
        let mut unbound_immediate = false;
        for name in claim_names(&pod.pod) {
            let key = (pod.namespace.clone(), name.to_string());
            let Some(pvc) = state.claims.get(&key) else {
                return Status::unresolvable(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if pvc.metadata.deletion_timestamp.is_some() {
                return Status::unresolvable(format!(
                    "persistentvolumeclaim \"{name}\" is being deleted"
                ));
            }
            if bound_volume(pvc).is_none() && !is_delayed(class_of(&state, pvc)) {
                unbound_immediate = true;
            }
        }
        if unbound_immediate {
            return Status::unresolvable(ERR_UNBOUND_IMMEDIATE);
        }
        Status::success()
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !has_claims(&pod.pod) {
            return Status::success();
        }
        let state = self.cache.read();
        for name in claim_names(&pod.pod) {
            let key = (pod.namespace.clone(), name.to_string());
            // Pre-filter saw it; a claim deleted since fails the next cycle there.
            let Some(pvc) = state.claims.get(&key) else {
                continue;
            };
            match bound_volume(pvc) {
                Some(v) => match state.volumes.get(v) {
                    Some(pv) if volume_admits(pv, node) => {}
                    Some(_) => return Status::unresolvable(ERR_NODE_CONFLICT),
                    None => return Status::unresolvable(ERR_PV_MISSING),
                },
                None => {
                    let class = class_of(&state, pvc);
                    // A provisioner makes a volume wherever the pod lands; without one the
                    // node must already have a fitting volume.
                    let provisioned = class.is_some_and(|c| c.provisioner != NO_PROVISIONER);
                    if !provisioned
                        && !state
                            .volumes
                            .values()
                            .any(|pv| static_volume_fits(pvc, pv, node))
                    {
                        return Status::unresolvable(ERR_NO_VOLUME);
                    }
                }
            }
        }
        Status::success()
    }
}

/// Before the pod is bound to `node`: gives each of its unbound claims the node
/// (selected-node) and waits until all are Bound. An error fails this binding attempt;
/// the pod is retried. Returns at once for pods without claims.
pub async fn pre_bind(client: &kube::Client, pod: &PodInfo, node: &str) -> Result<(), String> {
    if !has_claims(&pod.pod) {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &pod.namespace);
    let names: Vec<String> = claim_names(&pod.pod).map(|n| n.into_owned()).collect();
    for name in &names {
        let pvc = api
            .get(name)
            .await
            .map_err(|e| format!("getting persistentvolumeclaim \"{name}\": {e}"))?;
        if bound_volume(&pvc).is_some() {
            continue;
        }
        let selected = pvc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_SELECTED_NODE));
        if selected.map(String::as_str) != Some(node) {
            let patch = serde_json::json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| format!("annotating persistentvolumeclaim \"{name}\": {e}"))?;
        }
    }
    let deadline = Instant::now() + BIND_TIMEOUT;
    for name in &names {
        loop {
            let pvc = api
                .get(name)
                .await
                .map_err(|e| format!("getting persistentvolumeclaim \"{name}\": {e}"))?;
            let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
            if bound_volume(&pvc).is_some() && phase == Some("Bound") {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "binding volumes: timed out waiting for the condition: persistentvolumeclaim \"{name}\" is not bound"
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::framework::types::testing::*;
    use crate::framework::Code;
    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaimSpec,
        PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, PersistentVolumeStatus, Volume,
        VolumeNodeAffinity, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::ObjectMeta;

    fn pod_with_claims(claims: &[&str]) -> PodInfo {
        let mut p = pod("p", "100m", "1Mi");
        p.spec.as_mut().unwrap().volumes = Some(
            claims
                .iter()
                .map(|c| Volume {
                    name: format!("v-{c}"),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: c.to_string(),
                        read_only: None,
                    }),
                    ..Default::default()
                })
                .collect(),
        );
        info(p)
    }

    fn claim(name: &str, class: &str, volume: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some(class.into()),
                volume_name: volume.map(str::to_string),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn class(name: &str, mode: &str, provisioner: &str) -> StorageClass {
        StorageClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            provisioner: provisioner.into(),
            volume_binding_mode: Some(mode.into()),
            ..Default::default()
        }
    }

    fn volume(name: &str, class: &str, on_node: Option<&str>) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                storage_class_name: Some(class.into()),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                capacity: Some([("storage".to_string(), Quantity("2Gi".into()))].into()),
                node_affinity: on_node.map(|n| VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "kubernetes.io/hostname".into(),
                                operator: "In".into(),
                                values: Some(vec![n.into()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Available".into()),
                ..Default::default()
            }),
        }
    }

    fn verdict(plugin: &VolumeBinding, pod: &PodInfo, node_name: &str) -> Status {
        let mut state = CycleState::default();
        let nodes = [node_info(node(node_name, "1", "1Gi"))];
        let pre = plugin.pre_filter(&mut state, pod, &nodes);
        if !pre.is_success() {
            return pre;
        }
        plugin.filter(&state, pod, &nodes[0])
    }

    #[test]
    fn the_cache_is_synced_once_every_kind_was_listed_and_relists_forget_the_gone() {
        let cache = VolumeCache::default();
        assert!(!cache.synced());
        let list = |c: &VolumeCache, names: &[&str]| {
            c.on_claim(Ok(Event::Init));
            for n in names {
                c.on_claim(Ok(Event::InitApply(claim(n, "", None))));
            }
            c.on_claim(Ok(Event::InitDone))
        };
        assert!(list(&cache, &["a", "b"]));
        assert!(cache.on_volume(Ok(Event::InitDone)));
        assert!(!cache.synced(), "classes not listed yet");
        assert!(cache.on_class(Ok(Event::InitDone)));
        assert!(cache.synced());
        list(&cache, &["b"]);
        let state = cache.read();
        assert!(!state.claims.contains_key(&("default".into(), "a".into())));
        assert!(state.claims.contains_key(&("default".into(), "b".into())));
    }

    #[test]
    fn pods_without_claims_are_skipped() {
        let plugin = VolumeBinding::new(VolumeCache::default());
        let p = info(pod("p", "1m", "1"));
        assert_eq!(
            plugin.pre_filter(&mut CycleState::default(), &p, &[]).code,
            Code::Skip
        );
    }

    #[test]
    fn a_missing_claim_and_an_unbound_immediate_claim_are_unresolvable() {
        let cache = VolumeCache::default();
        let plugin = VolumeBinding::new(cache.clone());
        let p = pod_with_claims(&["data"]);
        assert_eq!(
            verdict(&plugin, &p, "a").reasons,
            ["persistentvolumeclaim \"data\" not found"]
        );
        cache.apply_class(class("fast", "Immediate", "example.com/csi"));
        cache.apply_claim(claim("data", "fast", None));
        let s = verdict(&plugin, &p, "a");
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons, [ERR_UNBOUND_IMMEDIATE]);
    }

    #[test]
    fn an_unbound_wait_for_first_consumer_claim_fits_any_node_when_provisioned() {
        let cache = VolumeCache::default();
        let plugin = VolumeBinding::new(cache.clone());
        cache.apply_class(class(
            "local-path",
            "WaitForFirstConsumer",
            "flotilla.io/local-path",
        ));
        cache.apply_claim(claim("data", "local-path", None));
        let p = pod_with_claims(&["data"]);
        assert!(verdict(&plugin, &p, "a").is_success());
        assert!(verdict(&plugin, &p, "b").is_success());
    }

    #[test]
    fn without_a_provisioner_the_node_needs_a_fitting_static_volume() {
        let cache = VolumeCache::default();
        let plugin = VolumeBinding::new(cache.clone());
        cache.apply_class(class("local", "WaitForFirstConsumer", NO_PROVISIONER));
        cache.apply_claim(claim("data", "local", None));
        cache.apply_volume(volume("disk-a", "local", Some("a")));
        let p = pod_with_claims(&["data"]);
        assert!(verdict(&plugin, &p, "a").is_success());
        assert_eq!(verdict(&plugin, &p, "b").reasons, [ERR_NO_VOLUME]);
    }

    #[test]
    fn a_bound_volume_pins_the_pod_to_its_nodes() {
        let cache = VolumeCache::default();
        let plugin = VolumeBinding::new(cache.clone());
        cache.apply_claim(claim("data", "", Some("pv-a")));
        let p = pod_with_claims(&["data"]);
        assert_eq!(verdict(&plugin, &p, "a").reasons, [ERR_PV_MISSING]);
        cache.apply_volume(volume("pv-a", "", Some("a")));
        assert!(verdict(&plugin, &p, "a").is_success());
        let s = verdict(&plugin, &p, "b");
        assert_eq!(s.reasons, [ERR_NODE_CONFLICT]);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        cache.delete_volume(&volume("pv-a", "", None));
        cache.apply_volume(volume("pv-a", "", None));
        assert!(
            verdict(&plugin, &p, "b").is_success(),
            "no affinity: any node"
        );
    }

    #[test]
    fn ephemeral_volumes_name_their_claims_after_the_pod() {
        let mut p = pod("web", "1m", "1");
        p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
            name: "scratch".into(),
            ephemeral: Some(Default::default()),
            ..Default::default()
        }]);
        let names: Vec<String> = claim_names(&p).map(|c| c.into_owned()).collect();
        assert_eq!(names, ["web-scratch"]);
        assert!(has_claims(&p));
    }
}
