//! What every request handler shares: the store, the catalogue, the registry (with its
//! watch cache) and the serving configuration. Creating it makes sure the cluster's
//! bootstrap objects exist and starts the namespace controller; dropping it stops them.

use std::sync::Arc;
use std::time::Duration;

use api::Catalogue;
use store::Store;
use tokio::sync::watch;

use crate::registry::{namespace_controller, resource_quota, Registry, RegistryConfig};
use crate::watch_cache::{WatchCache, WatchCacheConfig};

/// Tunables of the API layer; every field has the Kubernetes (or k3s) default.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Service CIDR and NodePort range.
    pub registry: RegistryConfig,
    pub watch_cache: WatchCacheConfig,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// The longest a watch without `timeoutSeconds` stays open.
    pub max_watch_timeout: Duration,
    /// Bodies above this are refused with 413 (the TLS layer enforces the same limit).
    pub max_body_bytes: usize,
    /// The client certificate presented to node agents when proxying logs, exec, attach,
    /// port-forward and stats; without one those requests answer 503.
    pub node_client: Option<crate::pki::CertKeyPair>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            registry: RegistryConfig::default(),
            watch_cache: WatchCacheConfig::default(),
            bookmark_interval: Duration::from_secs(60),
            max_watch_timeout: Duration::from_secs(30 * 60),
            // Kubernetes' MaxRequestBodyBytes.
            max_body_bytes: 3 * 1024 * 1024,
            node_client: None,
        }
    }
}

pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub catalogue: Arc<Catalogue>,
    pub registry: Arc<Registry>,
    pub config: ApiConfig,
    /// Dropped with the state, which stops the namespace controller.
    shutdown: watch::Sender<bool>,
}

impl ApiState {
    pub async fn new(store: Arc<dyn Store>) -> anyhow::Result<Arc<Self>> {
        Self::with_config(store, ApiConfig::default()).await
    }

    pub async fn with_config(
        store: Arc<dyn Store>,
        config: ApiConfig,
    ) -> anyhow::Result<Arc<Self>> {
        let catalogue = Arc::new(Catalogue::builtin());
        let cache = WatchCache::new(store.clone(), config.watch_cache.clone());
        let registry = Arc::new(Registry::new(
            store.clone(),
            catalogue.clone(),
            cache,
            config.registry.clone(),
        ));
        // Every watchable resource gets its cache now, so that a client's first watch
        // (from a version it just listed) is already inside the cache's window.
        let cachers: Vec<_> = catalogue
            .iter()
            .filter(|i| i.verbs.contains(&"watch"))
            .map(|i| registry.cache.cacher(&i.storage_prefix()))
            .collect();
        for c in cachers {
            c.ready().await;
        }
        registry
            .ensure_bootstrap_objects()
            .await
            .map_err(|e| anyhow::anyhow!("creating the bootstrap objects: {e}"))?;
        let (shutdown, rx) = watch::channel(false);
        tokio::spawn(namespace_controller::run(registry.clone(), rx.clone()));
        tokio::spawn(resource_quota::run(registry.clone(), rx));
        Ok(Arc::new(Self {
            store,
            catalogue,
            registry,
            config,
            shutdown,
        }))
    }
}

impl Drop for ApiState {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
