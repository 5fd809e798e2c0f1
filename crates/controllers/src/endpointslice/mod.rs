//! The EndpointSlice controller: discovery.k8s.io/v1 EndpointSlices built from Services
//! and their pods, as kube-controller-manager's endpointslice controller does.
//!
//! - Every Service with a selector (not ExternalName) gets slices named `<service>-<suffix>`,
//!   labelled `kubernetes.io/service-name` and managed-by `endpointslice-controller.k8s.io`,
//!   owned by the Service (the garbage collector removes them with it).
//! - One address type per Service IP family; each endpoint carries its pod's addresses of
//!   that family, ready/serving/terminating, nodeName, the node's zone, the pod as
//!   targetRef and, under a governing Service, its hostname. At most
//!   [`MAX_ENDPOINTS_PER_SLICE`] endpoints per slice, one port set per slice.
//! - Writes follow [`reconciler::plan`], which reuses slices to keep churn low; an
//!   unchanged state writes nothing.
//!
//! Each sync lists the Service's pods and slices from the API (consistent reads), so it
//! never packs from a stale view of its own writes; nodes (for zones) come from a cache.

pub mod reconciler;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

use crate::endpoints::ports::{label_selector, managed_selector};
use crate::endpoints::subsets::{last_change_trigger_time, TriggerState, LAST_CHANGE_TRIGGER_TIME};
use crate::endpoints::{forget_deleted, pod_triggers, service_ref};
use crate::informers::Informers;
use crate::replicaset::is_namespace_terminating;
use crate::runner::{drive, RetryBackoff};
use events::{EventRecorder, EventType};
use reconciler::{
    desired_groups, plan, CONTROLLER_NAME, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, ZONE_LABEL,
};

const COMPONENT: &str = "endpoint-slice-controller";
/// The most endpoints one slice holds (kube-controller-manager's default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// A periodic resync, so that nothing is left waiting on a lost event.
const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Service {0} has no namespace")]
    NoNamespace(String),
}

struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    nodes: Store<Node>,
    backoff: RetryBackoff<Service>,
    triggers: Mutex<HashMap<ObjectRef<Service>, TriggerState>>,
    services: Store<Service>,
}

/// Runs the controller on the controller manager's `informers` until `shutdown` completes.
pub async fn run(
    informers: Informers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = informers.client().clone();
    // Both loops stop on the one signal.
    let shutdown = shutdown.shared();
    let (nodes, writer) = reflector::store::<Node>();
    let node_cache = tokio::spawn(
        informers
            .nodes()
            .reflect(writer)
            .for_each(|_| futures::future::ready(())),
    );
    let managed =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={CONTROLLER_NAME}"));
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let services = controller.store();
    let pods = pod_triggers(informers.pods(), services.clone());
    let ctx = Arc::new(Context {
        recorder: EventRecorder::for_component(client.clone(), COMPONENT, None),
        client: client.clone(),
        nodes: nodes.clone(),
        backoff: RetryBackoff::new(),
        triggers: Mutex::new(HashMap::new()),
        services,
    });
    let controller = controller
        .owns(Api::<EndpointSlice>::all(client.clone()), managed)
        .reconcile_on(pods);
    let running = drive(
        "endpointslice",
        controller,
        shutdown.clone(),
        reconcile,
        error_policy,
        ctx,
    );
    // Zones come from the node cache: start syncing once it has listed the nodes.
    let ready = tokio::select! {
        r = nodes.wait_until_ready() => r.is_ok(),
        () = shutdown.clone() => false,
    };
    if ready {
        running.await;
    }
    node_cache.abort();
    Ok(())
}

fn error_policy(svc: Arc<Service>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.backoff.failed(&svc, err)
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = svc.name_any();
    let ns = svc
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let key = ObjectRef::from_obj(&*svc);
    let Some(selector) =
        managed_selector(&svc).filter(|_| svc.metadata.deletion_timestamp.is_none())
    else {
        ctx.backoff.succeeded(&svc);
        return Ok(Action::requeue(RESYNC));
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods
        .list(&ListParams::default().labels(&label_selector(selector)))
        .await?
        .items;
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = api
        .list(&ListParams::default().labels(&format!(
            "{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={CONTROLLER_NAME}"
        )))
        .await?
        .items;
    let trigger_time = {
        let mut triggers = ctx.triggers.lock().unwrap_or_else(|p| p.into_inner());
        let (time, state) = last_change_trigger_time(triggers.get(&key), &svc, &pods);
        triggers.insert(key.clone(), state);
        forget_deleted(&mut triggers, &ctx.services);
        time
    };
    let zone_of = |node: &str| -> Option<String> {
        ctx.nodes
            .get(&ObjectRef::new(node))
            .and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned())
    };
    let desired = desired_groups(&svc, &pods, &zone_of);
    let plan = plan(&svc, &existing, desired, MAX_ENDPOINTS_PER_SLICE);
    let stamp = |slice: &mut EndpointSlice| {
        let annotations = slice.metadata.annotations.get_or_insert_with(BTreeMap::new);
        match &trigger_time {
            Some(t) => {
                annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), t.0.to_string());
            }
            None => {
                annotations.remove(LAST_CHANGE_TRIGGER_TIME);
            }
        }
    };
    if let Err(e) = apply(&api, plan, stamp).await {
        if is_namespace_terminating(&e) {
            // The namespace is going away, and the Service with it.
            return Ok(Action::await_change());
        }
        ctx.recorder.object_event(
            service_ref(&svc),
            EventType::Warning,
            "FailedToUpdateEndpointSlices",
            format!("Error updating Endpoint Slices for Service {ns}/{name}: {e}"),
        );
        return Err(e.into());
    }
    ctx.backoff.succeeded(&svc);
    Ok(Action::requeue(RESYNC))
}

/// Writes the plan: creations first, deletions last, so that consumers never see the
/// Service with fewer endpoints than it has while slices are rearranged.
async fn apply(
    api: &Api<EndpointSlice>,
    plan: reconciler::Plan,
    stamp: impl Fn(&mut EndpointSlice),
) -> Result<(), kube::Error> {
    for mut slice in plan.create {
        stamp(&mut slice);
        api.create(&PostParams::default(), &slice).await?;
    }
    for mut slice in plan.update {
        stamp(&mut slice);
        api.replace(&slice.name_any(), &PostParams::default(), &slice)
            .await?;
    }
    for slice in plan.delete {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: slice.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&slice.name_any(), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
