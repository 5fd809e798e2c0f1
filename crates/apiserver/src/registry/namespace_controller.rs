//! The namespace controller: empties a Terminating namespace — deleting every namespaced
//! object in it, through the registry like any client — then removes the `kubernetes`
//! finalizer and the namespace itself.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::update::{Preconditions, Transition};
use super::{meta, DeleteOptions, ListParams, ObjectRef, Registry};
use crate::status::ApiError;
use crate::watch_cache::CacheMessage;

/// How often a namespace whose contents are still going away is looked at again.
const RESYNC: Duration = Duration::from_millis(250);

/// Runs until `shutdown` fires.
pub async fn run(registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
    let Some(ns_info) = registry.info("", "Namespace").cloned() else {
        warn!("no namespaces in the catalogue; namespace controller not started");
        return;
    };
    let cacher = registry.cache.cacher(&ns_info.storage_prefix());
    let mut live = match cacher.subscribe(&ns_info.storage_prefix(), None) {
        Ok(s) => s.live,
        Err(_) => return,
    };
    loop {
        let terminating: Vec<String> = {
            if !cacher.ready().await {
                return;
            }
            cacher
                .snapshot(&ns_info.storage_prefix())
                .0
                .iter()
                .filter(|o| meta::deletion_timestamp(&o.value).is_some())
                .filter_map(|o| meta::name(&o.value).map(str::to_string))
                .collect()
        };
        let mut pending = false;
        for ns in &terminating {
            match finalize(&registry, &ns_info, ns).await {
                Ok(done) => pending |= !done,
                Err(e) => {
                    debug!(namespace = %ns, error = %e, "namespace not empty yet");
                    pending = true;
                }
            }
        }
        let resync = async {
            if pending {
                tokio::time::sleep(RESYNC).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            msg = live.recv() => match msg {
                Ok(CacheMessage::Event(_)) | Ok(CacheMessage::Reset) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = resync => {}
        }
    }
}

/// Deletes what is left in `ns`; true once the namespace itself is gone.
async fn finalize(
    registry: &Registry,
    ns_info: &api::ResourceInfo,
    ns: &str,
) -> Result<bool, ApiError> {
    let mut remaining = 0usize;
    let infos: Vec<api::ResourceInfo> = registry
        .catalogue
        .iter()
        .filter(|i| i.namespaced && i.verbs.contains(&"list") && i.verbs.contains(&"delete"))
        .cloned()
        .collect();
    let mut seen_prefixes = std::collections::HashSet::new();
    for info in &infos {
        // Two group-versions may share storage (events, events.k8s.io): visit once.
        if !seen_prefixes.insert(info.storage_prefix()) {
            continue;
        }
        let deleted = registry
            .delete_collection(
                info,
                Some(ns),
                &ListParams::default(),
                &DeleteOptions::default(),
            )
            .await?;
        remaining += deleted.len();
    }
    if remaining > 0 {
        return Ok(false);
    }
    let r = ObjectRef::new(ns_info, None, ns);
    let result = registry
        .guaranteed_update(r, &Preconditions::default(), false, |mut obj: Value| {
            let spec_finalizers: Vec<Value> = obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let kept: Vec<Value> = spec_finalizers
                .iter()
                .filter(|f| f.as_str() != Some("kubernetes"))
                .cloned()
                .collect();
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("finalizers".into(), json!(kept));
            }
            if kept.is_empty() && meta::finalizers(&obj).is_empty() {
                Ok(Transition::Delete(obj))
            } else if kept.len() != spec_finalizers.len() {
                Ok(Transition::Write(obj))
            } else {
                Ok(Transition::Unchanged(obj))
            }
        })
        .await;
    match result {
        Ok(obj) => Ok(registry_gone(registry, ns, &obj).await),
        Err(e) if e.code == 404 => Ok(true),
        Err(e) => Err(e),
    }
}

async fn registry_gone(registry: &Registry, ns: &str, _last: &Value) -> bool {
    matches!(
        registry
            .store
            .get(&format!("/registry/namespaces/{ns}"), None)
            .await,
        Ok((None, _))
    )
}
