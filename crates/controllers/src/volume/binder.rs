//! The two halves of the binder, each a kube-runtime `Controller`: one syncs claims
//! (binding, provisioning, Lost), the other volumes (Available, Bound, Released, reclaim).
//! Each watches the other kind and is woken by the objects that name it.
//!
//! Reads that decide a binding are consistent reads from the API (not the reflector), and
//! every write carries the resourceVersion it was decided on, so a decision made on a stale
//! view fails with a conflict and is retried from fresh state.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use events::{EventRecorder, EventType};

use super::local_path;
use super::matching::{self, claim_class, is_bound_to};
use super::{
    Error, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_DEFAULT_CLASS, ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, PROVISIONER, RESYNC,
};
use crate::runner::{drive, RetryBackoff};

const COMPONENT: &str = "persistentvolume-controller";
/// The provisioner name of classes whose volumes an administrator creates.
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    claim_backoff: RetryBackoff<PersistentVolumeClaim>,
    volume_backoff: RetryBackoff<PersistentVolume>,
    /// Last event per claim, so a claim re-synced every 15 s is not re-announced.
    announced: Mutex<HashMap<String, String>>,
}

impl Context {
    fn new(client: kube::Client) -> Arc<Self> {
        Arc::new(Context {
            recorder: EventRecorder::for_component(client.clone(), COMPONENT, None),
            client,
            claim_backoff: RetryBackoff::new(),
            volume_backoff: RetryBackoff::new(),
            announced: Mutex::new(HashMap::new()),
        })
    }

    /// Records an event about the claim unless the same one was the last recorded.
    fn claim_event(
        &self,
        pvc: &PersistentVolumeClaim,
        type_: EventType,
        reason: &str,
        msg: String,
    ) {
        let key = pvc.metadata.uid.clone().unwrap_or_default();
        let line = format!("{reason}: {msg}");
        {
            let mut seen = self.announced.lock().unwrap_or_else(|p| p.into_inner());
            if seen.get(&key) == Some(&line) {
                return;
            }
            seen.insert(key, line);
        }
        self.recorder
            .object_event(object_ref_of_claim(pvc), type_, reason, msg);
    }

    fn volume_event(&self, pv: &PersistentVolume, type_: EventType, reason: &str, msg: String) {
        let r = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolume".into()),
            name: pv.metadata.name.clone(),
            uid: pv.metadata.uid.clone(),
            resource_version: pv.metadata.resource_version.clone(),
            ..Default::default()
        };
        self.recorder.object_event(r, type_, reason, msg);
    }
}

fn object_ref_of_claim(pvc: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        field_path: None,
        ..matching::claim_ref(pvc)
    }
}

/// The claims controller: binds and provisions.
pub async fn run_claims(
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let ctx = Context::new(client.clone());
    let controller = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    let claims: Store<PersistentVolumeClaim> = controller.store();
    let controller = controller
        .watches(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
            move |class: StorageClass| claims_for_class(&claims, &class),
        )
        .watches(
            Api::<PersistentVolume>::all(client),
            watcher::Config::default(),
            |pv: PersistentVolume| {
                // A volume wakes the claim it names (pre-bound, provisioned, or bound).
                pv.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .and_then(|r| {
                        Some(ObjectRef::new(r.name.as_deref()?).within(r.namespace.as_deref()?))
                    })
            },
        );
    drive(
        "persistentvolumeclaim",
        controller,
        shutdown,
        sync_claim,
        claim_error_policy,
        ctx,
    )
    .await;
    Ok(())
}

/// The unbound claims a class's change concerns: those of that class, and class-less ones
/// (a new default class is assigned to them).
fn claims_for_class(
    claims: &Store<PersistentVolumeClaim>,
    class: &StorageClass,
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    claims
        .state()
        .iter()
        .filter(|c| {
            let spec = c.spec.as_ref();
            let unbound = spec
                .and_then(|s| s.volume_name.as_deref())
                .is_none_or(str::is_empty);
            let class_name = spec.and_then(|s| s.storage_class_name.as_deref());
            unbound && (class_name.is_none() || class_name == class.metadata.name.as_deref())
        })
        .map(|c| ObjectRef::from_obj(&**c))
        .collect()
}

/// The volumes controller: phases and reclaim.
pub async fn run_volumes(
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let ctx = Context::new(client.clone());
    let controller = Controller::new(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    );
    let volumes: Store<PersistentVolume> = controller.store();
    let controller = controller.watches(
        Api::<PersistentVolumeClaim>::all(client),
        watcher::Config::default(),
        move |pvc: PersistentVolumeClaim| volumes_for_claim(&volumes, &pvc),
    );
    drive(
        "persistentvolume",
        controller,
        shutdown,
        sync_volume,
        volume_error_policy,
        ctx,
    )
    .await;
    Ok(())
}

/// The volumes a claim's change concerns: the one it names and those whose claimRef names it
/// (a deleted claim's volume must become Released).
fn volumes_for_claim(
    volumes: &Store<PersistentVolume>,
    pvc: &PersistentVolumeClaim,
) -> Vec<ObjectRef<PersistentVolume>> {
    let mut out: Vec<ObjectRef<PersistentVolume>> = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|v| !v.is_empty())
        .map(ObjectRef::new)
        .into_iter()
        .collect();
    for pv in volumes.state() {
        let names = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| r.name == pvc.metadata.name && r.namespace == pvc.metadata.namespace);
        if names {
            out.push(ObjectRef::from_obj(&*pv));
        }
    }
    out
}

fn claim_error_policy(pvc: Arc<PersistentVolumeClaim>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.claim_backoff.failed(&pvc, err)
}

fn volume_error_policy(pv: Arc<PersistentVolume>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.volume_backoff.failed(&pv, err)
}

fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn claim_phase(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Is the class's binding delayed until a pod using the claim is scheduled?
pub fn is_delayed(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

async fn sync_claim(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Context>) -> Result<Action, Error> {
    if pvc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = pvc
        .metadata
        .namespace
        .clone()
        .ok_or(Error::Unnamed("PersistentVolumeClaim"))?;
    // The watch event may be stale: decide on the claim as it is now.
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(pvc) = api.get_opt(&pvc.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let classless = pvc
        .spec
        .as_ref()
        .is_some_and(|s| s.storage_class_name.is_none());
    let action = match volume_name {
        None if classless => assign_default_class(&ctx, &pvc).await?,
        None => sync_unbound_claim(&ctx, &pvc).await?,
        Some(v) => sync_bound_claim(&ctx, &pvc, &v).await?,
    };
    ctx.claim_backoff.succeeded(&pvc);
    Ok(action)
}

/// The default class among `classes`: marked default, newest first, then by name (as the
/// API server's DefaultStorageClass admission picks it).
pub fn default_class_name(classes: &[StorageClass]) -> Option<String> {
    classes
        .iter()
        .filter(|c| annotation(&c.metadata, ANN_DEFAULT_CLASS) == Some("true"))
        .max_by(|a, b| {
            let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| b.metadata.name.cmp(&a.metadata.name))
        })
        .and_then(|c| c.metadata.name.clone())
}

/// Retroactive default StorageClass assignment: a claim created without a class while the
/// cluster had no default (e.g. before this controller created `local-path`) gets the
/// default class once there is one, as upstream's binder does.
async fn assign_default_class(ctx: &Context, pvc: &PersistentVolumeClaim) -> Result<Action, Error> {
    let classes = Api::<StorageClass>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let Some(name) = default_class_name(&classes) else {
        return sync_unbound_claim(ctx, pvc).await;
    };
    // Guarded by resourceVersion: a claim bound or classed meanwhile is a conflict.
    let patch = json!({
        "metadata": {"resourceVersion": pvc.metadata.resource_version},
        "spec": {"storageClassName": name},
    });
    merge_patch_claim(ctx, pvc, &patch).await?;
    tracing::info!(claim = %pvc.name_any(), class = %name, "assigned the default StorageClass");
    // The claim's update event brings it back with its class.
    Ok(Action::requeue(RESYNC))
}

async fn sync_unbound_claim(ctx: &Context, pvc: &PersistentVolumeClaim) -> Result<Action, Error> {
    let class_name = claim_class(pvc).to_string();
    let class = if class_name.is_empty() {
        None
    } else {
        Api::<StorageClass>::all(ctx.client.clone())
            .get_opt(&class_name)
            .await?
    };
    let delayed = is_delayed(class.as_ref());
    let selected = annotation(&pvc.metadata, ANN_SELECTED_NODE).map(str::to_string);
    let node = match (&selected, delayed) {
        (Some(n), true) => Api::<Node>::all(ctx.client.clone()).get_opt(n).await?,
        _ => None,
    };
    let volumes = Api::<PersistentVolume>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let waiting_for_consumer = delayed && selected.is_none();
    if let Some(pv) = matching::find_match(pvc, &volumes, node.as_ref(), waiting_for_consumer) {
        bind(ctx, pv, pvc).await?;
        return Ok(Action::requeue(RESYNC));
    }
    match unbound_claim_step(&class_name, class.as_ref(), waiting_for_consumer) {
        ClaimStep::WaitForFirstConsumer => ctx.claim_event(
            pvc,
            EventType::Normal,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".into(),
        ),
        ClaimStep::Provision => {
            if let Some(c) = &class {
                provision(ctx, pvc, c, node).await?;
            }
        }
        ClaimStep::External(provisioner) => {
            if annotation(&pvc.metadata, ANN_STORAGE_PROVISIONER) != Some(provisioner.as_str()) {
                let patch =
                    json!({"metadata": {"annotations": {ANN_STORAGE_PROVISIONER: provisioner}}});
                merge_patch_claim(ctx, pvc, &patch).await?;
            }
            ctx.claim_event(
                pvc,
                EventType::Normal,
                "ExternalProvisioning",
                format!(
                    "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
                ),
            );
        }
        ClaimStep::NoVolume => ctx.claim_event(
            pvc,
            EventType::Normal,
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set".into(),
        ),
        ClaimStep::ClassNotFound => ctx.claim_event(
            pvc,
            EventType::Warning,
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
        ),
    }
    Ok(Action::requeue(RESYNC))
}

/// What an unbound claim without a matching volume waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimStep {
    /// Delayed binding and no pod scheduled yet.
    WaitForFirstConsumer,
    /// This controller's provisioner makes the volume.
    Provision,
    /// Another provisioner (named) is expected to.
    External(String),
    /// Nobody provisions: an administrator must create a volume.
    NoVolume,
    /// The class does not exist (volumes of that class name may still come).
    ClassNotFound,
}

pub fn unbound_claim_step(
    class_name: &str,
    class: Option<&StorageClass>,
    waiting_for_consumer: bool,
) -> ClaimStep {
    if waiting_for_consumer {
        return ClaimStep::WaitForFirstConsumer;
    }
    match class {
        Some(c) if c.provisioner == PROVISIONER => ClaimStep::Provision,
        Some(c) if c.provisioner != NO_PROVISIONER => ClaimStep::External(c.provisioner.clone()),
        Some(_) => ClaimStep::NoVolume,
        None if class_name.is_empty() => ClaimStep::NoVolume,
        None => ClaimStep::ClassNotFound,
    }
}

/// Creates the claim's local-path volume; the volume's watch event brings the claim back
/// here, where the pre-bound volume is then bound.
async fn provision(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    selected: Option<Node>,
) -> Result<(), Error> {
    if let Some(why) = local_path::unsupported(pvc) {
        ctx.claim_event(pvc, EventType::Warning, "ProvisioningFailed", why);
        return Ok(());
    }
    let node = match selected {
        Some(n) => n,
        None if is_delayed(Some(class)) => {
            let n = annotation(&pvc.metadata, ANN_SELECTED_NODE).unwrap_or("");
            ctx.claim_event(
                pvc,
                EventType::Warning,
                "ProvisioningFailed",
                format!("nodes \"{n}\" not found"),
            );
            return Ok(());
        }
        None => {
            let nodes = Api::<Node>::all(ctx.client.clone())
                .list(&ListParams::default())
                .await?
                .items;
            match local_path::pick_node(&nodes, pvc) {
                Some(n) => n.clone(),
                None => {
                    ctx.claim_event(
                        pvc,
                        EventType::Warning,
                        "ProvisioningFailed",
                        "no Ready schedulable node to provision the volume on".into(),
                    );
                    return Ok(());
                }
            }
        }
    };
    let pv = local_path::provisioned_volume(pvc, class, &node);
    let name = pv.metadata.name.clone().unwrap_or_default();
    ctx.claim_event(
        pvc,
        EventType::Normal,
        "Provisioning",
        format!(
            "External provisioner is provisioning volume for claim \"{}/{}\"",
            pvc.metadata.namespace.as_deref().unwrap_or(""),
            pvc.name_any()
        ),
    );
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .create(&PostParams::default(), &pv)
        .await
    {
        Ok(_) => ctx.claim_event(
            pvc,
            EventType::Normal,
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {name}"),
        ),
        // Provisioned on an earlier sync whose binding did not finish.
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn sync_bound_claim(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    volume_name: &str,
) -> Result<Action, Error> {
    let bind_completed = annotation(&pvc.metadata, ANN_BIND_COMPLETED).is_some();
    let pv = Api::<PersistentVolume>::all(ctx.client.clone())
        .get_opt(volume_name)
        .await?;
    let Some(pv) = pv else {
        if bind_completed {
            mark_claim_lost(
                ctx,
                pvc,
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            )
            .await?;
        }
        return Ok(Action::requeue(RESYNC));
    };
    let claimed = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some();
    if !claimed {
        // The claim asks for this volume by name.
        if let Some(why) = matching::mismatch(pvc, &pv) {
            ctx.claim_event(
                pvc,
                EventType::Warning,
                "VolumeMismatch",
                format!("Cannot bind to requested volume \"{volume_name}\": {why}"),
            );
            return Ok(Action::requeue(RESYNC));
        }
        bind(ctx, &pv, pvc).await?;
    } else if is_bound_to(&pv, pvc) {
        bind(ctx, &pv, pvc).await?;
    } else if bind_completed {
        mark_claim_lost(
            ctx,
            pvc,
            "Two claims are bound to the same volume, this one is bound incorrectly",
        )
        .await?;
    } else {
        ctx.claim_event(
            pvc,
            EventType::Warning,
            "FailedBinding",
            format!("volume \"{volume_name}\" already bound to a different claim."),
        );
    }
    Ok(Action::requeue(RESYNC))
}

/// Applies a JSON merge patch to the claim.
async fn merge_patch_claim(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    patch: &serde_json::Value,
) -> Result<PersistentVolumeClaim, kube::Error> {
    Api::<PersistentVolumeClaim>::namespaced(
        ctx.client.clone(),
        pvc.metadata.namespace.as_deref().unwrap_or("default"),
    )
    .patch(
        &pvc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
}

async fn mark_claim_lost(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    msg: &str,
) -> Result<(), Error> {
    if claim_phase(pvc) != "Lost" {
        Api::<PersistentVolumeClaim>::namespaced(
            ctx.client.clone(),
            pvc.metadata.namespace.as_deref().unwrap_or("default"),
        )
        .patch_status(
            &pvc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Lost"}})),
        )
        .await?;
    }
    ctx.claim_event(pvc, EventType::Warning, "ClaimLost", msg.to_string());
    Ok(())
}

/// Binds volume and claim, writing only what is missing: claimRef and phase on the volume,
/// then volumeName, annotations and status on the claim.
async fn bind(
    ctx: &Context,
    pv: &PersistentVolume,
    pvc: &PersistentVolumeClaim,
) -> Result<(), Error> {
    let pv_api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv_name = pv.name_any();
    let mut pv = pv.clone();
    let reference_ok = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| r.uid.as_deref().is_some_and(|u| !u.is_empty()) && is_bound_to(&pv, pvc));
    if !reference_ok {
        let pre_bound = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some();
        if let Some(spec) = pv.spec.as_mut() {
            spec.claim_ref = Some(matching::claim_ref(pvc));
        }
        if !pre_bound {
            pv.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        // A PUT with the resourceVersion read: a volume claimed meanwhile is a conflict.
        pv = pv_api
            .replace(&pv_name, &PostParams::default(), &pv)
            .await?;
    }
    if volume_phase(&pv) != "Bound" {
        pv = pv_api
            .patch_status(
                &pv_name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"phase": "Bound"}})),
            )
            .await?;
    }

    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let mut pvc = pvc.clone();
    let named = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(pv_name.as_str());
    if !named || annotation(&pvc.metadata, ANN_BIND_COMPLETED).is_none() {
        let ann = pvc.metadata.annotations.get_or_insert_with(BTreeMap::new);
        ann.insert(ANN_BIND_COMPLETED.into(), "yes".into());
        if !named {
            ann.insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        if let Some(spec) = pvc.spec.as_mut() {
            spec.volume_name = Some(pv_name.clone());
        }
        pvc = pvc_api
            .replace(&pvc.name_any(), &PostParams::default(), &pvc)
            .await?;
    }
    let spec = pv.spec.clone().unwrap_or_default();
    let status = pvc.status.clone().unwrap_or_default();
    if status.phase.as_deref() != Some("Bound")
        || status.capacity != spec.capacity
        || status.access_modes != spec.access_modes
    {
        let patch = json!({"status": {
            "phase": "Bound",
            "accessModes": spec.access_modes,
            "capacity": spec.capacity,
        }});
        pvc_api
            .patch_status(
                &pvc.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        tracing::info!(claim = %format!("{ns}/{}", pvc.name_any()), volume = %pv_name, "bound");
    }
    Ok(())
}

async fn set_volume_phase(
    ctx: &Context,
    pv: &PersistentVolume,
    phase: &str,
    message: Option<&str>,
) -> Result<(), Error> {
    let current = pv.status.as_ref();
    if current.and_then(|s| s.phase.as_deref()) == Some(phase)
        && current.and_then(|s| s.message.as_deref()) == message
    {
        return Ok(());
    }
    Api::<PersistentVolume>::all(ctx.client.clone())
        .patch_status(
            &pv.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": phase, "message": message}})),
        )
        .await?;
    Ok(())
}

/// What a volume's sync does, decided from the volume and the claim its claimRef names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeAction {
    /// Make the phase this (Available: free or reserved; Bound: both sides agree).
    Phase(&'static str),
    /// The claim is being bound to it; the claims controller finishes the binding.
    Wait,
    /// The claim went to another volume: drop this controller's reservation.
    Unbind,
    /// The claim went to another volume, but a user reserved this one: leave it to them.
    Keep,
    /// The claim is gone: Released, then the reclaim policy.
    Release(Reclaim),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reclaim {
    Retain,
    /// Provisioned here: delete the object (the node's cleanup finalizer holds it).
    Delete,
    /// Another provisioner deletes what it provisioned.
    External,
    /// No way to honour the policy: phase Failed with this event reason and message.
    Fail {
        reason: &'static str,
        message: String,
    },
}

/// The persistentvolume controller's `syncVolume`, as a decision.
pub fn volume_action(pv: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumeAction {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return VolumeAction::Phase("Available");
    };
    // Reserved for a claim by name (no uid): waits for it, whether it exists yet or not.
    if r.uid.as_deref().is_none_or(str::is_empty) {
        return VolumeAction::Phase("Available");
    }
    let pv_name = pv.metadata.name.as_deref().unwrap_or("");
    match claim.filter(|c| is_bound_to(pv, c)) {
        Some(c) => match c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) {
            Some(v) if v == pv_name => VolumeAction::Phase("Bound"),
            None | Some("") => VolumeAction::Wait,
            Some(_) if annotation(&pv.metadata, ANN_BOUND_BY_CONTROLLER).is_some() => {
                VolumeAction::Unbind
            }
            Some(_) => VolumeAction::Keep,
        },
        None => {
            let policy = pv
                .spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                .unwrap_or("Retain");
            let reclaim = match (policy, annotation(&pv.metadata, ANN_PROVISIONED_BY)) {
                ("Retain", _) => Reclaim::Retain,
                ("Delete", Some(PROVISIONER)) => Reclaim::Delete,
                ("Delete", Some(_)) => Reclaim::External,
                ("Recycle", _) => Reclaim::Fail {
                    reason: "VolumeFailedRecycle",
                    message: format!(
                        "error getting recycler volume plugin for volume \"{pv_name}\": no recyclable volume plugin matched"
                    ),
                },
                _ => Reclaim::Fail {
                    reason: "VolumeFailedDelete",
                    message: format!(
                        "error getting deleter volume plugin for volume \"{pv_name}\": no deletable volume plugin matched"
                    ),
                },
            };
            VolumeAction::Release(reclaim)
        }
    }
}

async fn sync_volume(pv: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let Some(pv) = api.get_opt(&pv.name_any()).await? else {
        return Ok(Action::await_change());
    };
    // Being deleted: what is left is the finalizers' owners' work.
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let claim = match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        Some(r) => match r.name.as_deref() {
            Some(name) => {
                let ns = r.namespace.as_deref().unwrap_or("default");
                Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns)
                    .get_opt(name)
                    .await?
            }
            None => None,
        },
        None => None,
    };
    match volume_action(&pv, claim.as_ref()) {
        VolumeAction::Phase(phase) => set_volume_phase(&ctx, &pv, phase, None).await?,
        VolumeAction::Wait | VolumeAction::Keep => {}
        VolumeAction::Unbind => unbind(&ctx, &pv).await?,
        VolumeAction::Release(reclaim) => release(&ctx, &pv, reclaim).await?,
    }
    ctx.volume_backoff.succeeded(&pv);
    Ok(Action::requeue(RESYNC))
}

async fn unbind(ctx: &Context, pv: &PersistentVolume) -> Result<(), Error> {
    let mut pv = pv.clone();
    if let Some(spec) = pv.spec.as_mut() {
        spec.claim_ref = None;
    }
    if let Some(a) = pv.metadata.annotations.as_mut() {
        a.remove(ANN_BOUND_BY_CONTROLLER);
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv = api
        .replace(&pv.name_any(), &PostParams::default(), &pv)
        .await?;
    set_volume_phase(ctx, &pv, "Available", None).await
}

async fn release(ctx: &Context, pv: &PersistentVolume, reclaim: Reclaim) -> Result<(), Error> {
    match reclaim {
        Reclaim::Retain | Reclaim::External => set_volume_phase(ctx, pv, "Released", None).await,
        Reclaim::Delete => {
            set_volume_phase(ctx, pv, "Released", None).await?;
            match Api::<PersistentVolume>::all(ctx.client.clone())
                .delete(&pv.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {
                    tracing::info!(volume = %pv.name_any(), "deleting a released volume");
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Reclaim::Fail { reason, message } => {
            if volume_phase(pv) != "Failed" {
                ctx.volume_event(pv, EventType::Warning, reason, message.clone());
            }
            set_volume_phase(ctx, pv, "Failed", Some(&message)).await
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PersistentVolumeSpec};

    fn volume(claim: Option<(&str, Option<&str>)>, policy: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: kube::api::ObjectMeta {
                name: Some("pv".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                claim_ref: claim.map(|(name, uid)| ObjectReference {
                    name: Some(name.into()),
                    namespace: Some("ns".into()),
                    uid: uid.map(str::to_string),
                    ..Default::default()
                }),
                persistent_volume_reclaim_policy: Some(policy.into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn claim(name: &str, uid: &str, volume: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: volume.map(str::to_string),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn annotate(mut pv: PersistentVolume, k: &str, v: &str) -> PersistentVolume {
        pv.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(k.into(), v.into());
        pv
    }

    #[test]
    fn the_newest_default_class_is_assigned_retroactively() {
        let class = |name: &str, secs: i64, default: bool| {
            let mut c = local_path::default_class();
            c.metadata.name = Some(name.into());
            c.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
                ));
            if !default {
                c.metadata.annotations = None;
            }
            c
        };
        assert_eq!(default_class_name(&[class("plain", 9, false)]), None);
        assert_eq!(
            default_class_name(&[
                class("old", 1, true),
                class("new", 5, true),
                class("plain", 9, false)
            ])
            .as_deref(),
            Some("new")
        );
        assert_eq!(
            default_class_name(&[class("b", 1, true), class("a", 1, true)]).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn what_an_unmatched_claim_waits_for() {
        let local = local_path::default_class();
        assert_eq!(
            unbound_claim_step("local-path", Some(&local), true),
            ClaimStep::WaitForFirstConsumer
        );
        assert_eq!(
            unbound_claim_step("local-path", Some(&local), false),
            ClaimStep::Provision
        );
        let mut csi = local.clone();
        csi.provisioner = "ebs.csi.aws.com".into();
        assert_eq!(
            unbound_claim_step("gp3", Some(&csi), false),
            ClaimStep::External("ebs.csi.aws.com".into())
        );
        let mut manual = local.clone();
        manual.provisioner = NO_PROVISIONER.into();
        assert_eq!(
            unbound_claim_step("manual", Some(&manual), false),
            ClaimStep::NoVolume
        );
        assert_eq!(unbound_claim_step("", None, false), ClaimStep::NoVolume);
        assert_eq!(
            unbound_claim_step("nope", None, false),
            ClaimStep::ClassNotFound
        );
    }

    #[test]
    fn free_reserved_and_bound_volumes() {
        assert_eq!(
            volume_action(&volume(None, "Retain"), None),
            VolumeAction::Phase("Available")
        );
        // Reserved by name for a claim that may not exist yet.
        assert_eq!(
            volume_action(&volume(Some(("c", None)), "Delete"), None),
            VolumeAction::Phase("Available")
        );
        let pv = volume(Some(("c", Some("u1"))), "Delete");
        assert_eq!(
            volume_action(&pv, Some(&claim("c", "u1", Some("pv")))),
            VolumeAction::Phase("Bound")
        );
        assert_eq!(
            volume_action(&pv, Some(&claim("c", "u1", None))),
            VolumeAction::Wait
        );
    }

    #[test]
    fn a_claim_bound_elsewhere_undoes_only_the_controllers_reservation() {
        let pv = volume(Some(("c", Some("u1"))), "Retain");
        let elsewhere = claim("c", "u1", Some("other"));
        assert_eq!(volume_action(&pv, Some(&elsewhere)), VolumeAction::Keep);
        let pv = annotate(pv, ANN_BOUND_BY_CONTROLLER, "yes");
        assert_eq!(volume_action(&pv, Some(&elsewhere)), VolumeAction::Unbind);
    }

    #[test]
    fn a_gone_claim_releases_by_policy() {
        let retain = volume(Some(("c", Some("u1"))), "Retain");
        assert_eq!(
            volume_action(&retain, None),
            VolumeAction::Release(Reclaim::Retain)
        );
        // A new claim of the same name is not the one the volume was bound to.
        assert_eq!(
            volume_action(&retain, Some(&claim("c", "u2", None))),
            VolumeAction::Release(Reclaim::Retain)
        );
        let ours = annotate(
            volume(Some(("c", Some("u1"))), "Delete"),
            ANN_PROVISIONED_BY,
            PROVISIONER,
        );
        assert_eq!(
            volume_action(&ours, None),
            VolumeAction::Release(Reclaim::Delete)
        );
        let theirs = annotate(
            volume(Some(("c", Some("u1"))), "Delete"),
            ANN_PROVISIONED_BY,
            "ebs.csi.aws.com",
        );
        assert_eq!(
            volume_action(&theirs, None),
            VolumeAction::Release(Reclaim::External)
        );
        let manual = volume(Some(("c", Some("u1"))), "Delete");
        match volume_action(&manual, None) {
            VolumeAction::Release(Reclaim::Fail { reason, message }) => {
                assert_eq!(reason, "VolumeFailedDelete");
                assert!(message.contains("no deletable volume plugin matched"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_wait_for_first_consumer_delays_binding() {
        let mut c = local_path::default_class();
        assert!(is_delayed(Some(&c)));
        c.volume_binding_mode = Some("Immediate".into());
        assert!(!is_delayed(Some(&c)));
        assert!(!is_delayed(None));
    }
}
