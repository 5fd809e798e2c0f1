//! The generic registry: ONE implementation of create, get, list, update, patch, delete and
//! deletecollection for every kind, parameterised by the kind's [`api::Strategy`], as
//! kube-apiserver's `registry/generic/registry.Store`.
//!
//! Writes go straight to the store with compare-and-swap ([`Registry::guaranteed_update`]
//! retries on a lost race); list at resourceVersion 0 and watches read the
//! [`crate::watch_cache`].

// `ApiError` is the crate-wide error (a Status); boxing it is status.rs's call, not each caller's.
#![allow(clippy::result_large_err)]

mod create;
pub mod default_storage_class;
mod delete;
pub mod eviction;
pub mod field_selector;
pub mod label_selector;
mod list;
pub mod meta;
pub mod namespace_controller;
pub mod resource_quota;
pub mod service_alloc;
pub mod startup;
pub mod update;

use std::sync::Arc;

use api::{Catalogue, ResourceInfo, Strategy};
use store::Store;

use crate::status::Target;
use crate::watch_cache::{CacheMessage, Cacher, WatchCache};

pub use delete::{DeleteOptions, DeleteOutcome, Propagation};
pub use list::{ListParams, ObjectList, RvMatch};
pub use update::UpdateMode;

/// How a write behaves, from the request's query.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: everything but the write.
    pub dry_run: bool,
    /// The manager recorded in managedFields.
    pub field_manager: String,
}

/// One object the request is about.
#[derive(Debug, Clone, Copy)]
pub struct ObjectRef<'a> {
    pub info: &'a ResourceInfo,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl<'a> ObjectRef<'a> {
    pub fn new(info: &'a ResourceInfo, namespace: Option<&'a str>, name: &'a str) -> Self {
        Self {
            info,
            namespace: if info.namespaced { namespace } else { None },
            name,
        }
    }

    pub fn key(&self) -> String {
        self.info.storage_key(self.namespace, self.name)
    }

    pub fn target(&self) -> Target<'a> {
        Target {
            group: self.info.group,
            resource: self.info.plural,
            name: self.name,
        }
    }

    pub fn strategy(&self) -> &'static dyn Strategy {
        api::strategy::for_resource(self.info)
    }
}

/// Where a registry takes service addresses from.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub service_cidr: service_alloc::Ipv4Cidr,
    pub node_port_range: std::ops::RangeInclusive<u16>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            service_cidr: service_alloc::Ipv4Cidr::new(std::net::Ipv4Addr::new(10, 43, 0, 0), 16),
            node_port_range: 30000..=32767,
        }
    }
}

pub struct Registry {
    pub store: Arc<dyn Store>,
    pub catalogue: Arc<Catalogue>,
    pub cache: WatchCache,
    pub config: RegistryConfig,
    /// `ns/quota` → admissions that charged it and have not written their object yet.
    quota_in_flight: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl Registry {
    /// The object stored at `key` now and its mod revision, read from the store (not the
    /// watch cache); NotFound for `target` when there is none.
    pub(crate) async fn read_current(
        &self,
        key: &str,
        target: crate::status::Target<'_>,
    ) -> Result<(serde_json::Value, store::Revision), crate::status::ApiError> {
        let (kv, _) = self
            .store
            .get(key, None)
            .await
            .map_err(|e| crate::status::ApiError::from_store(e, target))?;
        let kv = kv.ok_or_else(|| crate::status::ApiError::not_found(target))?;
        Ok((meta::decode_kv(&kv)?, kv.mod_revision))
    }

    pub fn new(
        store: Arc<dyn Store>,
        catalogue: Arc<Catalogue>,
        cache: WatchCache,
        config: RegistryConfig,
    ) -> Self {
        Self {
            store,
            catalogue,
            cache,
            config,
            quota_in_flight: Default::default(),
        }
    }

    /// The cache of a kind and a receiver of its changes, for the registry's own
    /// controllers; None if the kind is not in the catalogue or its cache stopped.
    pub(crate) fn kind_changes(
        &self,
        group: &str,
        kind: &str,
    ) -> Option<(
        ResourceInfo,
        Arc<Cacher>,
        tokio::sync::broadcast::Receiver<CacheMessage>,
    )> {
        let Some(info) = self.info(group, kind).cloned() else {
            tracing::warn!(kind, "not in the catalogue; its controller does not start");
            return None;
        };
        let cacher = self.cache.cacher(&info.storage_prefix());
        let live = cacher.subscribe(&info.storage_prefix(), None).ok()?.live;
        Some((info, cacher, live))
    }

    /// The catalogue entry of a kind, for the registry's own cross-kind work.
    pub fn info(&self, group: &str, kind: &str) -> Option<&ResourceInfo> {
        self.catalogue
            .iter()
            .find(|r| r.group == group && r.kind == kind)
    }
}

/// Waits for the next change on a kind's channel (a missed one counts: the caller rereads
/// everything); false once the channel is closed.
pub(crate) async fn changed(live: &mut tokio::sync::broadcast::Receiver<CacheMessage>) -> bool {
    use tokio::sync::broadcast::error::RecvError;
    match live.recv().await {
        Ok(CacheMessage::Event(_) | CacheMessage::Reset) | Err(RecvError::Lagged(_)) => true,
        Err(RecvError::Closed) => false,
    }
}
