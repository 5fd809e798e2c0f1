//! The Endpoints controller: core/v1 Endpoints built from Services and their pods, as
//! kube-controller-manager's endpoint controller does.
//!
//! - Every Service with a selector (not ExternalName) gets Endpoints of the same name:
//!   ready pods under `addresses`, the others under `notReadyAddresses`, one subset per
//!   distinct set of addresses (see [`subsets::build_subsets`]). Services without a
//!   selector are left alone: their Endpoints are the user's.
//! - The result is sorted, so an unchanged state compares equal and causes no write; more
//!   than [`subsets::MAX_CAPACITY`] addresses are truncated and annotated as over capacity.
//! - Endpoints this controller made carry `endpoints.kubernetes.io/managed-by`, and are
//!   deleted once their Service is gone (a second, Endpoints-keyed controller, so that a
//!   deletion missed while the controller was down is still found, level-triggered).
//!
//! Each sync lists the Service's pods from the API (a consistent read), like the
//! ReplicaSet controller, so it never writes from a stale view.

mod pod_mapper;
pub mod ports;
pub mod subsets;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Endpoints, ObjectReference, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

use events::{EventRecorder, EventType};

pub(crate) use pod_mapper::pod_triggers;

use crate::informers::Informers;
use crate::replicaset::is_namespace_terminating;
use crate::runner::{drive, RetryBackoff};
use subsets::{
    build_subsets, desired_labels, last_change_trigger_time, sort_subsets, truncate, TriggerState,
    CONTROLLER_NAME, LAST_CHANGE_TRIGGER_TIME, LEADER_ANNOTATION, MANAGED_BY, OVER_CAPACITY,
};

const COMPONENT: &str = "endpoint-controller";
/// A periodic resync, so that nothing is left waiting on a lost event.
const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

struct Context {
    client: kube::Client,
    recorder: EventRecorder,
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
    tokio::join!(
        run_services(&informers, shutdown.clone()),
        run_orphans(client, shutdown.clone())
    );
    Ok(())
}

async fn run_services(
    informers: &Informers,
    stopped: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = informers.client().clone();
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let ctx = Arc::new(Context {
        recorder: EventRecorder::for_component(client.clone(), COMPONENT, None),
        client: client.clone(),
        backoff: RetryBackoff::new(),
        triggers: Mutex::new(HashMap::new()),
        services: store.clone(),
    });
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY}={CONTROLLER_NAME}"));
    let controller = controller
        .reconcile_on(pod_mapper::pod_triggers(informers.pods(), store))
        // Endpoints changed or deleted behind the controller's back are put right.
        .watches(Api::<Endpoints>::all(client), managed, |ep: Endpoints| {
            ep.metadata
                .namespace
                .clone()
                .map(|ns| ObjectRef::<Service>::new(&ep.name_any()).within(&ns))
        });
    drive(
        "endpoints",
        controller,
        stopped,
        reconcile,
        error_policy,
        ctx,
    )
    .await;
}

/// Drops the state kept for Services that are gone, once it has grown to twice the
/// Services known (amortised: a sync does not scan the cache every time).
pub(crate) fn forget_deleted<V>(
    state: &mut HashMap<ObjectRef<Service>, V>,
    services: &Store<Service>,
) {
    let known = services.state().len();
    if state.len() > 2 * known + 16 {
        state.retain(|key, _| services.get(key).is_some());
    }
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
    let Some(selector) = ports::managed_selector(&svc) else {
        ctx.backoff.succeeded(&svc);
        return Ok(Action::requeue(RESYNC));
    };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods_api
        .list(&ListParams::default().labels(&ports::label_selector(selector)))
        .await?
        .items;
    let key = ObjectRef::from_obj(&*svc);
    let trigger_time = {
        let mut triggers = ctx.triggers.lock().unwrap_or_else(|p| p.into_inner());
        let (time, state) = last_change_trigger_time(triggers.get(&key), &svc, &pods);
        triggers.insert(key, state);
        forget_deleted(&mut triggers, &ctx.services);
        time
    };
    let mut subsets = build_subsets(&svc, &pods);
    let over_capacity = truncate(&mut subsets);
    let labels = desired_labels(&svc);

    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let current = api.get_opt(&name).await?;
    if let Some(cur) = &current {
        if up_to_date(cur, &subsets, &labels, over_capacity) {
            ctx.backoff.succeeded(&svc);
            return Ok(Action::requeue(RESYNC));
        }
    }
    let mut desired = current.clone().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    });
    desired.metadata.labels = Some(labels);
    let annotations = desired
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    match trigger_time {
        Some(t) => {
            annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), t.0.to_string());
        }
        None => {
            annotations.remove(LAST_CHANGE_TRIGGER_TIME);
        }
    }
    if over_capacity {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    desired.subsets = (!subsets.is_empty()).then_some(subsets);
    let written = if current.is_some() {
        api.replace(&name, &PostParams::default(), &desired).await
    } else {
        match api.create(&PostParams::default(), &desired).await {
            // The namespace is going away, and the Endpoints with it.
            Err(e) if is_namespace_terminating(&e) => {
                ctx.backoff.succeeded(&svc);
                return Ok(Action::await_change());
            }
            r => r,
        }
    };
    if let Err(e) = written {
        let verb = if current.is_some() {
            "update"
        } else {
            "create"
        };
        ctx.recorder.object_event(
            service_ref(&svc),
            EventType::Warning,
            if current.is_some() {
                "FailedToUpdateEndpoint"
            } else {
                "FailedToCreateEndpoint"
            },
            format!("Failed to {verb} endpoint {ns}/{name}: {e}"),
        );
        return Err(e.into());
    }
    ctx.backoff.succeeded(&svc);
    Ok(Action::requeue(RESYNC))
}

/// Whether the stored Endpoints already say what the controller would write (the trigger
/// time alone is no reason to write).
fn up_to_date(
    cur: &Endpoints,
    subsets: &[k8s_openapi::api::core::v1::EndpointSubset],
    labels: &BTreeMap<String, String>,
    over_capacity: bool,
) -> bool {
    let mut stored = cur.subsets.clone().unwrap_or_default();
    sort_subsets(&mut stored);
    let annotated = cur
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(OVER_CAPACITY));
    stored == subsets
        && cur.metadata.labels.clone().unwrap_or_default() == *labels
        && annotated == over_capacity
}

pub(crate) fn service_ref(svc: &Service) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        name: svc.metadata.name.clone(),
        namespace: svc.metadata.namespace.clone(),
        uid: svc.metadata.uid.clone(),
        resource_version: svc.metadata.resource_version.clone(),
        ..Default::default()
    }
}

struct OrphanContext {
    client: kube::Client,
    backoff: RetryBackoff<Endpoints>,
}

/// Deletes the Endpoints this controller made once their Service is gone. Keyed on the
/// Endpoints (woken by Service changes too), so a Service deleted while the controller was
/// down is caught on the initial list.
async fn run_orphans(
    client: kube::Client,
    stopped: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY}={CONTROLLER_NAME}"));
    let ctx = Arc::new(OrphanContext {
        client: client.clone(),
        backoff: RetryBackoff::new(),
    });
    let controller = Controller::new(Api::<Endpoints>::all(client.clone()), managed).watches(
        Api::<Service>::all(client),
        watcher::Config::default(),
        |svc: Service| {
            svc.metadata
                .namespace
                .clone()
                .map(|ns| ObjectRef::<Endpoints>::new(&svc.name_any()).within(&ns))
        },
    );
    drive(
        "endpoints-cleanup",
        controller,
        stopped,
        reconcile_orphan,
        |ep: Arc<Endpoints>, err: &Error, ctx: Arc<OrphanContext>| ctx.backoff.failed(&ep, err),
        ctx,
    )
    .await;
}

async fn reconcile_orphan(ep: Arc<Endpoints>, ctx: Arc<OrphanContext>) -> Result<Action, Error> {
    let name = ep.name_any();
    let ns = ep
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let leader = ep
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    if leader || ep.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    if services.get_opt(&name).await?.is_none() {
        let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: ep.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.backoff.succeeded(&ep);
    Ok(Action::await_change())
}
