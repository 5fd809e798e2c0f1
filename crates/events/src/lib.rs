//! The event recorder: core/v1 Events, as the kubelet and kube-scheduler write them
//! (`source.component`, `reportingComponent`: `kubelet`, `default-scheduler`, …).
//!
//! Recording never blocks the caller: events go through a bounded channel to one task that
//! writes them. A repeat of the same (object, type, reason, message) bumps `count` and
//! `lastTimestamp` of the existing Event instead of creating another, as client-go's
//! correlator does, so a crash-looping pod yields one BackOff event with a growing count.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug)]
struct Record {
    object: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
}

/// Cheap to clone; every clone feeds the same writer task.
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Record>,
}

/// Who writes the events: `source.component` and, for the kubelet, `source.host`.
#[derive(Debug, Clone)]
struct Source {
    component: String,
    host: Option<String>,
}

/// Events beyond this many waiting are dropped (and logged): a flood of events must not
/// hold up pod workers.
const QUEUE: usize = 1024;

impl EventRecorder {
    /// The kubelet's recorder for `node_name`. Spawns the writer task on the current tokio
    /// runtime.
    pub fn new(client: kube::Client, node_name: &str) -> Self {
        Self::for_component(client, "kubelet", Some(node_name))
    }

    /// A recorder for any component (`default-scheduler`, `deployment-controller`).
    pub fn for_component(client: kube::Client, component: &str, host: Option<&str>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let source = Source {
            component: component.to_string(),
            host: host.map(str::to_string),
        };
        tokio::spawn(writer(client, source, rx));
        EventRecorder { tx }
    }

    /// A recorder whose events are only logged, for unit tests and simulated nodes.
    pub fn discard() -> Self {
        let (tx, mut rx) = mpsc::channel::<Record>(QUEUE);
        tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                tracing::debug!(reason = %r.reason, message = %r.message, "event");
            }
        });
        EventRecorder { tx }
    }

    /// An event about a pod; `field_path` names a container (`spec.containers{web}`).
    pub fn pod_event(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        };
        self.record(object, type_, reason, message.into());
    }

    /// An event about the node itself (NodeReady, Starting, …).
    pub fn node_event(&self, node_name: &str, type_: EventType, reason: &str, message: String) {
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node_name.to_string()),
            uid: Some(node_name.to_string()),
            ..Default::default()
        };
        self.record(object, type_, reason, message);
    }

    /// An event about any object (a ReplicaSet, a Deployment, …), named by its reference.
    pub fn object_event(
        &self,
        object: ObjectReference,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.record(object, type_, reason, message.into());
    }

    fn record(&self, object: ObjectReference, type_: EventType, reason: &str, message: String) {
        let r = Record {
            object,
            type_,
            reason: reason.to_string(),
            message,
        };
        if let Err(e) = self.tx.try_send(r) {
            tracing::warn!(error = %e, "event queue full or closed; dropping an event");
        }
    }
}

/// (namespace, object uid, type, reason, message) → (event name, count).
type Seen = HashMap<(String, String, EventType, String, String), (String, i32)>;

async fn writer(client: kube::Client, source: Source, mut rx: mpsc::Receiver<Record>) {
    let mut seen: Seen = HashMap::new();
    while let Some(r) = rx.recv().await {
        let ns = r
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let key = (
            ns.clone(),
            r.object.uid.clone().unwrap_or_default(),
            r.type_,
            r.reason.clone(),
            r.message.clone(),
        );
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        let now = jiff::Timestamp::now();
        if let Some((name, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({
                "count": *count,
                "lastTimestamp": now.to_string(),
            });
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                // Gone (TTL, namespace deleted): write a fresh one below.
                Err(e) => tracing::debug!(error = %e, "bumping an event failed"),
            }
        }
        let name = format!(
            "{}.{:x}",
            r.object.name.clone().unwrap_or_default(),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: r.object,
            type_: Some(r.type_.as_str().to_string()),
            reason: Some(r.reason),
            message: Some(r.message),
            source: Some(EventSource {
                component: Some(source.component.clone()),
                host: source.host.clone(),
            }),
            reporting_component: Some(source.component.clone()),
            reporting_instance: Some(
                source
                    .host
                    .clone()
                    .unwrap_or_else(|| source.component.clone()),
            ),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if seen.len() > 4096 {
                    seen.clear();
                }
                seen.insert(key, (name, 1));
            }
            Err(e) => tracing::warn!(error = %e, "writing an event failed"),
        }
    }
}
