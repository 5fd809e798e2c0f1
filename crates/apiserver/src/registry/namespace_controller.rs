//! The namespace controller: empties a Terminating namespace — deleting every namespaced
//! object in it, through the registry like any client — then removes the `kubernetes`
//! finalizer and the namespace itself.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::debug;

use super::update::{Preconditions, Transition};
use super::{meta, DeleteOptions, ListParams, ObjectRef, Registry};
use crate::status::ApiError;

/// How often a namespace whose contents are still going away is looked at again.
const RESYNC: Duration = Duration::from_millis(250);

/// Runs until `shutdown` fires.
pub async fn run(registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
    let Some((ns_info, cacher, mut live)) = registry.kind_changes("", "Namespace") else {
        return;
    };
    loop {
        // By name and uid: the cache may lag the store, and a namespace deleted and made
        // again under the same name must not be emptied for its predecessor.
        let terminating: Vec<(String, String)> = {
            if !cacher.ready().await {
                return;
            }
            cacher
                .snapshot(&ns_info.storage_prefix())
                .0
                .iter()
                .map(|o| o.value())
                .filter(|o| meta::deletion_timestamp(o).is_some())
                .filter_map(|o| Some((meta::name(&o)?.to_string(), meta::uid(&o)?.to_string())))
                .collect()
        };
        let mut pending = false;
        for (ns, uid) in &terminating {
            match finalize(&registry, &ns_info, ns, uid).await {
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
            open = super::changed(&mut live) => if !open { return },
            _ = resync => {}
        }
    }
}

/// Whether the stored namespace is the one being deleted: same uid, deletionTimestamp set.
fn is_terminating(obj: &Value, uid: &str) -> bool {
    meta::uid(obj) == Some(uid) && meta::deletion_timestamp(obj).is_some()
}

/// Deletes what is left in `ns` (whose uid is `uid`); true once that namespace is gone.
async fn finalize(
    registry: &Registry,
    ns_info: &api::ResourceInfo,
    ns: &str,
    uid: &str,
) -> Result<bool, ApiError> {
    let r = ObjectRef::new(ns_info, None, ns);
    match registry.read_current(&r.key(), r.target()).await {
        Ok((current, _)) if is_terminating(&current, uid) => {}
        // Gone, or a new namespace of that name: nothing left to do for this one.
        Ok(_) => return Ok(true),
        Err(e) if e.code == 404 => return Ok(true),
        Err(e) => return Err(e),
    }
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
    let result = registry
        .guaranteed_update(r, &Preconditions::default(), false, |mut obj: Value| {
            if !is_terminating(&obj, uid) {
                return Ok(Transition::Unchanged(obj));
            }
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
        // Unchanged because a new namespace took the name: this one is gone.
        Ok(obj) if !is_terminating(&obj, uid) => Ok(true),
        Ok(_) => Ok(registry_gone(registry, &r, uid).await),
        Err(e) if e.code == 404 => Ok(true),
        Err(e) => Err(e),
    }
}

/// True when no namespace with this uid is stored any more.
async fn registry_gone(registry: &Registry, r: &ObjectRef<'_>, uid: &str) -> bool {
    match registry.read_current(&r.key(), r.target()).await {
        Ok((obj, _)) => meta::uid(&obj) != Some(uid),
        Err(e) => e.code == 404,
    }
}
