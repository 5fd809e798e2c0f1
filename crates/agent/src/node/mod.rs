//! The Node object's side of the agent, as the kubelet's node status manager and node lease
//! controller do it:
//!
//! - [`registration`]: builds the Node from the machine ([`machine`]) and creates it, or
//!   reconciles it after a restart;
//! - [`status`]: the conditions (Ready and the three pressures) from real checks against
//!   the [`eviction`] thresholds, patched into `nodes/status` every [`STATUS_INTERVAL`];
//! - [`lease`]: the heartbeat Lease in `kube-node-lease`, renewed every [`LEASE_INTERVAL`];
//! - [`image_gc`]: frees image space when the data dir's disk crosses its high threshold;
//! - [`bootstrap`]: joining with a k3s-style token that pins the cluster CA.

pub mod bootstrap;
pub mod eviction;
pub mod image_gc;
pub mod lease;
pub mod machine;
pub mod registration;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use registration::NodeFacts;

/// How often the node's status is recomputed and reported.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);
/// How often the Lease is renewed (the kubelet renews at a quarter of its duration).
pub const LEASE_INTERVAL: Duration = Duration::from_secs(10);
pub const LEASE_DURATION_SECONDS: i32 = 40;
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the machine: {0}")]
    Machine(String),
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error("join token: {0}")]
    Token(String),
    #[error("cluster CA: {0}")]
    ClusterCa(String),
}

impl NodeError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NodeError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Registers the Node, then keeps its status and Lease fresh and its image disk below the
/// GC threshold until `shutdown`. Failed reports are logged and retried on the next tick:
/// an API server that is briefly away must not stop the node.
pub async fn run(
    client: kube::Client,
    facts: NodeFacts,
    images: Option<Arc<dyn runtime::ImageService>>,
    containers: Option<Arc<dyn runtime::ContainerRuntime>>,
    image_gc: image_gc::ImageGcPolicy,
    recorder: crate::events::EventRecorder,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let node = registration::register_with_retry(&client, &facts).await?;
    recorder.node_event(
        &facts.name,
        crate::events::EventType::Normal,
        "Starting",
        "Starting kubelet.".to_string(),
    );
    let uid = node.metadata.uid.clone().unwrap_or_default();
    let mut reporter = status::StatusReporter::new(client.clone(), facts.clone(), recorder);
    let mut lease = lease::LeaseRenewer::new(client.clone(), &facts.name, &uid);
    let gc = image_gc::ImageGc::new(image_gc, facts.data_dir.clone(), images, containers);

    let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
    let mut lease_tick = tokio::time::interval(LEASE_INTERVAL);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            _ = status_tick.tick() => {
                if let Err(e) = reporter.report().await {
                    tracing::warn!(error = %e, "reporting the node status failed");
                }
                if let Some(uid) = reporter.node_uid() {
                    lease.set_node_uid(uid);
                }
                if let Err(e) = gc.maybe_collect().await {
                    tracing::warn!(error = %e, "image garbage collection failed");
                }
            }
            _ = lease_tick.tick() => {
                if let Err(e) = lease.renew().await {
                    tracing::warn!(error = %e, "renewing the node lease failed");
                }
            }
        }
    }
}
