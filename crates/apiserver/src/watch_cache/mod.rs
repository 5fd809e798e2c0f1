//! The watch cache: a decorator in front of the store that keeps, per resource prefix, the
//! current objects and a bounded window of recent events in memory, fed by ONE store watch.
//! Lists at resourceVersion 0 and every watch are served from it, so a thousand watchers
//! cost one store watch, and each event is decoded once and shared (`Arc`) by all of them.

mod cacher;
mod event;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use store::Store;

pub use cacher::{Cacher, Subscription, TooOld};
pub use event::{Attrs, CacheMessage, CachedObject, EventType, WatchEvent, ENCODING_SLOTS};

/// Sizing of every per-resource cache.
#[derive(Debug, Clone)]
pub struct WatchCacheConfig {
    /// Events kept per resource for watchers that resume from a resourceVersion.
    pub window: usize,
    /// Events a slow watcher may fall behind before it is ended with 410.
    pub watcher_buffer: usize,
}

impl Default for WatchCacheConfig {
    fn default() -> Self {
        Self {
            window: 10_000,
            watcher_buffer: 4_096,
        }
    }
}

/// Per-resource caches, started on first use.
pub struct WatchCache {
    store: Arc<dyn Store>,
    config: WatchCacheConfig,
    cachers: Mutex<HashMap<String, Arc<Cacher>>>,
    /// Dropped with the cache, which stops every feeding task.
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl WatchCache {
    pub fn new(store: Arc<dyn Store>, config: WatchCacheConfig) -> Self {
        Self {
            store,
            config,
            cachers: Mutex::new(HashMap::new()),
            shutdown: tokio::sync::watch::channel(false).0,
        }
    }

    /// The cache of the resource stored under `prefix` (`/registry/pods/`), started if
    /// needed. It may still be loading: wait with [`Cacher::ready`].
    pub fn cacher(&self, prefix: &str) -> Arc<Cacher> {
        let mut map = self.cachers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(prefix) {
            if !c.is_stopped() {
                return c.clone();
            }
        }
        let c = Cacher::start(
            self.store.clone(),
            prefix.to_string(),
            self.config.clone(),
            self.shutdown.subscribe(),
        );
        map.insert(prefix.to_string(), c.clone());
        c
    }
}

impl Drop for WatchCache {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
