//! Opens the store the configuration names: the embedded engine or etcd.

use std::sync::Arc;

use anyhow::Context;
use apiserver::config::StoreBackend;
use store::{EmbeddedConfig, EmbeddedStore, EtcdStore, Store};

pub async fn open(backend: &StoreBackend) -> anyhow::Result<Arc<dyn Store>> {
    match backend {
        StoreBackend::Embedded { dir } => {
            let dir = dir.clone();
            // Opening replays the log from disk: keep that off the async workers.
            let store = tokio::task::spawn_blocking(move || {
                EmbeddedStore::open(&dir, EmbeddedConfig::default())
                    .with_context(|| format!("opening the embedded store in {}", dir.display()))
            })
            .await
            .context("the store opening task failed")??;
            Ok(Arc::new(store))
        }
        StoreBackend::Etcd { endpoints } => {
            let store = EtcdStore::connect(endpoints, None)
                .await
                .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
            Ok(Arc::new(store))
        }
    }
}
