//! Persistent volumes: kube-controller-manager's persistentvolume binder, simplified but
//! with the same observable behaviour, plus a built-in provisioner for node-local
//! directories (StorageClass `local-path`, the cluster's default class).
//!
//! - At start the controller creates StorageClass `local-path` (provisioner
//!   `flotilla.io/local-path`, reclaimPolicy Delete, volumeBindingMode WaitForFirstConsumer,
//!   marked default) if absent; it never overwrites what a user changed. The API server's
//!   DefaultStorageClass admission gives claims without a class the default one.
//! - Claims ([`binder`]): an unbound claim binds to the volume pre-bound to it, else to the
//!   smallest Available volume that satisfies it ([`matching::find_match`]). Binding writes
//!   the volume first (claimRef, phase Bound) and then the claim (volumeName, the
//!   bind-completed/bound-by-controller annotations, phase Bound, capacity, access modes);
//!   each write is a compare-and-swap, so two claims racing for one volume cannot both win.
//!   A bound claim whose volume vanished, or went to another claim, is Lost.
//! - Volumes: a volume whose claim is gone is Released; reclaimPolicy Retain keeps it,
//!   Delete deletes it. Volumes of WaitForFirstConsumer classes are bound only once the
//!   scheduler chose a node (annotation `volume.kubernetes.io/selected-node`).
//! - Provisioning ([`local_path`]): once a `flotilla.io/local-path` claim has a node (the
//!   scheduler's selected-node for WaitForFirstConsumer; a Ready node chosen here for
//!   Immediate classes), the controller creates PV `pvc-<claim uid>`: a hostPath directory
//!   (DirectoryOrCreate: the agent creates it on first mount) at
//!   `<node root>/pvc-<uid>_<namespace>_<name>`, pinned to the node by required node
//!   affinity, pre-bound to the claim. The node root is the node's
//!   `flotilla.io/local-path-dir` annotation (each agent sets `<data dir>/storage`), else the
//!   class's `nodePath` parameter, else `/var/lib/flotilla/storage`.
//! - Cleanup is the node's: the controller cannot reach a node's disk. A provisioned
//!   volume with reclaimPolicy Delete carries the finalizer `flotilla.io/local-path-cleanup`
//!   and names its node (annotation `flotilla.io/local-path-node`). When it is Released the
//!   controller deletes it; the finalizer keeps the object (deletionTimestamp set) until
//!   that node's agent has removed the directory and then the finalizer.

pub mod binder;
pub mod local_path;
pub mod matching;

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};

pub use local_path::default_class;

/// The default StorageClass's name.
pub const DEFAULT_CLASS: &str = "local-path";
/// The provisioner this controller implements.
pub const PROVISIONER: &str = "flotilla.io/local-path";
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Set on a claim whose class's provisioner is expected to act, as upstream does.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// Node annotation: the directory the node keeps local-path volumes under.
pub const NODE_DIR_ANNOTATION: &str = "flotilla.io/local-path-dir";
/// Volume annotation: the node whose directory backs a provisioned volume.
pub const PROVISIONED_NODE_ANNOTATION: &str = "flotilla.io/local-path-node";
/// Held on a provisioned volume until its node removed the directory.
pub const CLEANUP_FINALIZER: &str = "flotilla.io/local-path-cleanup";
pub const DEFAULT_ROOT: &str = "/var/lib/flotilla/storage";

/// How often claims and volumes are re-examined without an event (the upstream
/// controller's 15 s resync), e.g. a claim waiting for a volume an operator will create.
pub(crate) const RESYNC: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} has no name or namespace")]
    Unnamed(&'static str),
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let shutdown = shutdown.shared();
    tokio::select! {
        _ = shutdown.clone() => return Ok(()),
        _ = ensure_default_class(&client) => {}
    }
    let (claims, volumes) = futures::join!(
        binder::run_claims(client.clone(), shutdown.clone()),
        binder::run_volumes(client, shutdown),
    );
    claims.and(volumes)
}

/// Creates the default class unless a class of that name exists; retries until the API
/// server answers, since a fresh cluster's controllers may start before it does.
async fn ensure_default_class(client: &kube::Client) {
    let api: Api<StorageClass> = Api::all(client.clone());
    let mut failures = 0u32;
    loop {
        let result = match api.get_opt(DEFAULT_CLASS).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => match api.create(&PostParams::default(), &default_class()).await {
                Ok(_) => {
                    tracing::info!(class = DEFAULT_CLASS, "created the default StorageClass");
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = crate::runner::retry_backoff(failures).min(Duration::from_secs(5));
                tracing::warn!(error = %e, retry_in = ?pause, "creating the default StorageClass");
                tokio::time::sleep(pause).await;
            }
        }
    }
}
