//! Which Services a pod change concerns, for both endpoint controllers: those whose selector
//! matches the pod now, and those it matched before (a relabelled or deleted pod must leave
//! their endpoints). The memory of "before" follows the pod watch: a deletion forgets the
//! pod, and a relist forgets (and reports) the pods deleted while the watch was down.

use std::collections::{HashMap, HashSet};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::ResourceExt;

use super::ports::{managed_selector, selects};

/// (namespace, pod name).
type PodKey = (String, String);

pub(crate) struct PodMapper {
    services: Store<Service>,
    /// The Services each pod concerned last time (only pods that concerned some).
    last: HashMap<PodKey, HashSet<ObjectRef<Service>>>,
    /// Pods seen since a relist began.
    relisted: Option<HashSet<PodKey>>,
}

impl PodMapper {
    pub(crate) fn new(services: Store<Service>) -> Self {
        PodMapper {
            services,
            last: HashMap::new(),
            relisted: None,
        }
    }

    fn matching(&self, pod: &Pod) -> HashSet<ObjectRef<Service>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.services
            .state()
            .into_iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .filter(|s| {
                managed_selector(s).is_some_and(|sel| selects(sel, pod.metadata.labels.as_ref()))
            })
            .map(|s| ObjectRef::from_obj(&*s))
            .collect()
    }

    fn key(pod: &Pod) -> PodKey {
        (pod.namespace().unwrap_or_default(), pod.name_any())
    }

    /// The Services to sync for one event of the pod watch.
    pub(crate) fn on_event(&mut self, event: Event<Pod>) -> Vec<ObjectRef<Service>> {
        match event {
            Event::Apply(pod) | Event::InitApply(pod) => {
                let key = Self::key(&pod);
                if let Some(seen) = self.relisted.as_mut() {
                    seen.insert(key.clone());
                }
                let now = self.matching(&pod);
                let before = if now.is_empty() {
                    self.last.remove(&key)
                } else {
                    self.last.insert(key, now.clone())
                };
                now.into_iter()
                    .chain(before.into_iter().flatten())
                    .collect()
            }
            Event::Delete(pod) => {
                let before = self.last.remove(&Self::key(&pod));
                self.matching(&pod)
                    .into_iter()
                    .chain(before.into_iter().flatten())
                    .collect()
            }
            Event::Init => {
                self.relisted = Some(HashSet::new());
                Vec::new()
            }
            Event::InitDone => {
                let Some(seen) = self.relisted.take() else {
                    return Vec::new();
                };
                let gone: Vec<PodKey> = self
                    .last
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                gone.into_iter()
                    .filter_map(|k| self.last.remove(&k))
                    .flatten()
                    .collect()
            }
        }
    }
}

/// The Services to sync as pods change, from the events of all pods.
pub(crate) fn pod_triggers(
    pod_events: impl Stream<Item = Result<watcher::Event<Pod>, watcher::Error>> + Send + 'static,
    services: Store<Service>,
) -> impl Stream<Item = ObjectRef<Service>> + Send + 'static {
    let mut mapper = PodMapper::new(services);
    pod_events
        .filter_map(|event| async move {
            match event {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::debug!(error = %e, "pod watch failed");
                    None
                }
            }
        })
        .flat_map(move |event| futures::stream::iter(mapper.on_event(event)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kube::runtime::reflector;
    use serde_json::json;

    fn svc(name: &str, app: &str) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "n"},
            "spec": {"selector": {"app": app}}}))
        .unwrap()
    }

    fn pod(name: &str, app: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "n",
            "labels": {"app": app}}}))
        .unwrap()
    }

    fn names(mut refs: Vec<ObjectRef<Service>>) -> Vec<String> {
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        refs.dedup();
        refs.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn relabelled_deleted_and_missed_pods_wake_their_old_services() {
        let (store, mut writer) = reflector::store::<Service>();
        writer.apply_watcher_event(&Event::Apply(svc("web", "web")));
        writer.apply_watcher_event(&Event::Apply(svc("api", "api")));
        let mut m = PodMapper::new(store);
        assert_eq!(names(m.on_event(Event::Apply(pod("p", "web")))), ["web"]);
        // Relabelled: both the old and the new Service.
        assert_eq!(
            names(m.on_event(Event::Apply(pod("p", "api")))),
            ["api", "web"]
        );
        assert_eq!(names(m.on_event(Event::Apply(pod("p", "none")))), ["api"]);
        assert!(m.on_event(Event::Apply(pod("p", "none"))).is_empty());
        // Deleted: its Services, and it is forgotten.
        m.on_event(Event::Apply(pod("q", "web")));
        assert_eq!(names(m.on_event(Event::Delete(pod("q", "web")))), ["web"]);
        assert!(m.last.is_empty());
        // Deleted while the watch was down: the relist reports it.
        m.on_event(Event::Apply(pod("r", "web")));
        m.on_event(Event::Apply(pod("s", "api")));
        assert!(m.on_event(Event::Init).is_empty());
        assert_eq!(
            names(m.on_event(Event::InitApply(pod("s", "api")))),
            ["api"]
        );
        assert_eq!(names(m.on_event(Event::InitDone)), ["web"]);
        assert_eq!(m.last.len(), 1);
    }
}
