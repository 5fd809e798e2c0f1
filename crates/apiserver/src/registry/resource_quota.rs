//! ResourceQuota: the admission check on create and the controller that keeps
//! `status.used`, as upstream's ResourceQuota admission plugin and quota controller.
//!
//! - Admission: a create in a namespace with quotas is refused (403) when the object would
//!   take a constrained resource past `hard` (`exceeded quota: q, requested: pods=1, used:
//!   pods=2, limited: pods=2`), when a pod leaves a constrained compute resource unspecified
//!   (`failed quota: q: must specify requests.cpu for: c`), or while the quota has no status
//!   for it yet. Otherwise `status.used` grows by the object's use (compare-and-swap), and
//!   the object is written.
//! - The controller recomputes `status.hard` and `status.used` from a consistent list of
//!   the objects: at once for a new or changed `spec.hard`, and every [`RESYNC`] for the
//!   rest, which is how deletions and finished pods give their share back. A quota written
//!   in the last [`SETTLE`] is left alone: admission charges it just before the object it
//!   charged for is written, and a recount in between would undo the charge.
//!
//! Upstream's controller runs in kube-controller-manager; here it runs beside the
//! namespace controller in the API server, which has every kind's objects as JSON at hand.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::quota::{self, Usage};
use api::ResourceInfo;
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::debug;

use super::update::{Preconditions, Transition};
use super::{meta, ObjectRef, Registry};
use crate::status::ApiError;

/// How often every quota's use is recomputed from the objects.
pub const RESYNC: Duration = Duration::from_secs(2);
/// How long a quota must have gone unwritten before it is recounted.
pub const SETTLE: Duration = Duration::from_secs(1);

/// The core kinds the legacy usage names count, with the names they feed.
const LEGACY: &[(&str, &[&str])] = &[
    ("pods", &["pods", "cpu", "memory", "ephemeral-storage"]),
    (
        "services",
        &["services", "services.loadbalancers", "services.nodeports"],
    ),
    ("configmaps", &["configmaps"]),
    ("secrets", &["secrets"]),
    ("persistentvolumeclaims", &["persistentvolumeclaims"]),
    ("replicationcontrollers", &["replicationcontrollers"]),
    ("resourcequotas", &["resourcequotas"]),
];

impl Registry {
    fn quota_info(&self) -> Option<&ResourceInfo> {
        self.info("", "ResourceQuota")
    }

    /// The quotas of `ns` as the watch cache has them.
    fn quotas_in(&self, ns: &str) -> Vec<Value> {
        let Some(info) = self.quota_info() else {
            return Vec::new();
        };
        let prefix = format!("{}{ns}/", info.storage_prefix());
        self.cache
            .cacher(&info.storage_prefix())
            .snapshot(&prefix)
            .0
            .iter()
            .map(|o| o.value())
            .collect()
    }

    /// ResourceQuota admission for a new object; charges the quotas unless `dry_run`.
    pub(super) async fn admit_quota(
        &self,
        info: &ResourceInfo,
        ns: &str,
        obj: &Value,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let quotas = self.quotas_in(ns);
        if quotas.is_empty() {
            return Ok(());
        }
        let Some(quota_info) = self.quota_info().cloned() else {
            return Ok(());
        };
        let name = meta::name(obj).unwrap_or_default().to_string();
        let forbidden = |msg: String| {
            ApiError::forbidden(format!("{} {name:?} is forbidden: {msg}", info.plural))
        };
        let usage = quota::usage(info.group, info.plural, obj, jiff::Timestamp::now());
        let is_pod = info.group.is_empty() && info.plural == "pods";
        let mut charges: Vec<(String, Usage)> = Vec::new();
        for q in &quotas {
            if !quota::in_scope(q, info.group, info.plural, obj) {
                continue;
            }
            let hard = quota::hard_of(q, "/spec/hard");
            let qname = meta::name(q).unwrap_or_default().to_string();
            if is_pod {
                if let Some(msg) = quota::missing_compute(&hard, obj) {
                    return Err(forbidden(format!("failed quota: {qname}: {msg}")));
                }
            }
            let delta: Usage = usage
                .iter()
                .filter(|(k, _)| hard.contains_key(*k))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            if !delta.is_empty() {
                charges.push((qname, delta));
            }
        }
        for (qname, delta) in charges {
            let r = ObjectRef::new(&quota_info, Some(ns), &qname);
            let check = |q: &Value| -> Result<Usage, ApiError> {
                let status_hard = quota::hard_of(q, "/status/hard");
                if let Some(missing) = delta.keys().find(|k| !status_hard.contains_key(*k)) {
                    return Err(forbidden(format!(
                        "status unknown for quota: {qname}, resource: {missing}"
                    )));
                }
                let used = quota::hard_of(q, "/status/used");
                let over = quota::exceeded(&status_hard, &used, &delta);
                if !over.is_empty() {
                    let list = |f: &dyn Fn(&(String, _, _, _)) -> String| {
                        over.iter().map(f).collect::<Vec<_>>().join(",")
                    };
                    return Err(forbidden(format!(
                        "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                        list(&|(n, d, _, _)| format!("{n}={}", quota::render(n, *d))),
                        list(&|(n, _, u, _)| format!("{n}={}", quota::render(n, *u))),
                        list(&|(n, _, _, h)| format!("{n}={}", quota::render(n, *h))),
                    )));
                }
                Ok(used)
            };
            if dry_run {
                let (current, _) = self.read_current(&r.key(), r.target()).await?;
                check(&current)?;
                continue;
            }
            self.guaranteed_update(r, &Preconditions::default(), false, |mut q: Value| {
                let mut used = check(&q)?;
                for (k, v) in &delta {
                    let total = used.get(k).copied().unwrap_or_default() + *v;
                    used.insert(k.clone(), total);
                }
                set_used(&mut q, &used);
                Ok(Transition::Write(q))
            })
            .await?;
        }
        Ok(())
    }

    /// The quota's status as the objects of its namespace make it now.
    async fn computed_status(&self, q: &Value) -> Result<Value, ApiError> {
        let ns = meta::namespace(q).unwrap_or_default();
        let hard = q.pointer("/spec/hard").cloned().unwrap_or(json!({}));
        let wanted = quota::hard_of(q, "/spec/hard");
        let mut used: Usage = wanted
            .keys()
            .map(|k| (k.clone(), api::quantity::Quantity::default()))
            .collect();
        let now = jiff::Timestamp::now();
        for info in self.kinds_for(&wanted) {
            let objects = self
                .list(&info, Some(ns), &super::ListParams::default())
                .await?
                .items;
            for o in objects.iter() {
                let obj = o.value();
                if !quota::in_scope(q, info.group, info.plural, &obj) {
                    continue;
                }
                for (k, v) in quota::usage(info.group, info.plural, &obj, now) {
                    if let Some(total) = used.get_mut(&k) {
                        *total += v;
                    }
                }
            }
        }
        let used: serde_json::Map<String, Value> = used
            .iter()
            .map(|(k, v)| (k.clone(), json!(quota::render(k, *v))))
            .collect();
        Ok(json!({"hard": hard, "used": used}))
    }

    /// The kinds whose objects feed the resources of `hard`.
    fn kinds_for(&self, hard: &Usage) -> Vec<ResourceInfo> {
        let mut plurals: BTreeMap<(String, String), ()> = BTreeMap::new();
        for name in hard.keys() {
            if let Some(rest) = name.strip_prefix("count/") {
                let (plural, group) = rest.split_once('.').unwrap_or((rest, ""));
                plurals.insert((group.to_string(), plural.to_string()), ());
            } else if name.starts_with("requests.") || name.starts_with("limits.") {
                let kind = if name == "requests.storage" {
                    "persistentvolumeclaims"
                } else {
                    "pods"
                };
                plurals.insert((String::new(), kind.to_string()), ());
            } else if name.contains(".storageclass.storage.k8s.io/") {
                plurals.insert((String::new(), "persistentvolumeclaims".into()), ());
            } else if let Some((plural, _)) = LEGACY
                .iter()
                .find(|(_, names)| names.contains(&name.as_str()))
            {
                plurals.insert((String::new(), plural.to_string()), ());
            }
        }
        plurals
            .keys()
            .filter_map(|(g, p)| {
                self.catalogue
                    .iter()
                    .find(|i| i.group == g && i.plural == p && i.verbs.contains(&"watch"))
                    .cloned()
            })
            .collect()
    }

    /// Writes the quota's recomputed status if it changed.
    async fn sync_quota(&self, q: &Value) -> Result<(), ApiError> {
        let Some(info) = self.quota_info().cloned() else {
            return Ok(());
        };
        let status = self.computed_status(q).await?;
        if q.get("status") == Some(&status) {
            return Ok(());
        }
        let (ns, name) = (
            meta::namespace(q).unwrap_or_default().to_string(),
            meta::name(q).unwrap_or_default().to_string(),
        );
        let uid = meta::uid(q).map(str::to_string);
        let r = ObjectRef::new(&info, Some(&ns), &name);
        let pre = Preconditions {
            uid,
            ..Default::default()
        };
        let seen_rv = meta::resource_version(q).map(str::to_string);
        self.guaranteed_update(r, &pre, false, |mut obj: Value| {
            // Written since it was looked at (a charge, most likely): the next pass recounts.
            let moved = meta::resource_version(&obj).map(str::to_string) != seen_rv;
            if moved
                || obj.get("status") == Some(&status)
                || meta::deletion_timestamp(&obj).is_some()
            {
                return Ok(Transition::Unchanged(obj));
            }
            obj["status"] = status.clone();
            Ok(Transition::Write(obj))
        })
        .await
        .map(drop)
    }
}

fn set_used(q: &mut Value, used: &Usage) {
    let rendered: serde_json::Map<String, Value> = used
        .iter()
        .map(|(k, v)| (k.clone(), json!(quota::render(k, *v))))
        .collect();
    if !q.get("status").is_some_and(Value::is_object) {
        q["status"] = json!({});
    }
    q["status"]["used"] = Value::Object(rendered);
}

/// The quota controller: runs until `shutdown` fires.
pub async fn run(registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
    let Some((info, cacher, mut live)) = registry.kind_changes("", "ResourceQuota") else {
        return;
    };
    let mut tick = tokio::time::interval(RESYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // uid → the resourceVersion last seen and when it was first seen (None: at startup).
    let mut seen: HashMap<String, (String, Option<Instant>)> = HashMap::new();
    loop {
        if !cacher.ready().await {
            return;
        }
        let quotas: Vec<Value> = cacher
            .snapshot(&info.storage_prefix())
            .0
            .iter()
            .map(|o| o.value())
            .collect();
        let now = Instant::now();
        for q in &quotas {
            let uid = meta::uid(q).unwrap_or_default().to_string();
            let rv = meta::resource_version(q).unwrap_or_default().to_string();
            let entry = seen.entry(uid).or_insert_with(|| (rv.clone(), None));
            if entry.0 != rv {
                *entry = (rv, Some(now));
            }
            let new_spec = q.pointer("/status/hard") != q.pointer("/spec/hard");
            let settling = entry.1.is_some_and(|t| now.duration_since(t) < SETTLE);
            if settling && !new_spec {
                continue;
            }
            if let Err(e) = registry.sync_quota(q).await {
                debug!(quota = ?meta::name(q), error = %e, "quota status not written; retried on the next pass");
            }
        }
        seen.retain(|uid, _| quotas.iter().any(|q| meta::uid(q) == Some(uid.as_str())));
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            open = super::changed(&mut live) => if !open { return },
            _ = tick.tick() => {}
        }
    }
}
