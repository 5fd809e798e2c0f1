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
//!   rest, which is how deletions and finished pods give their share back. Admission
//!   charges a quota just before the object it charged for is written, and a recount in
//!   between would undo the charge: a quota with an admission of this server in between is
//!   not recounted, nor one written in the last [`SETTLE`] (another server's admission).
//! - Every quota that applies is checked before any is charged, and the charges are
//!   refunded when the object is then not written (a name taken, a store error).
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

    /// ResourceQuota admission for a new object: checks every quota that applies first,
    /// then charges them (unless `dry_run`). The caller hands the result to
    /// [`Self::finish_charges`] once the object is written or refused.
    pub(super) async fn admit_quota(
        &self,
        info: &ResourceInfo,
        ns: &str,
        obj: &Value,
        dry_run: bool,
    ) -> Result<Charges, ApiError> {
        let mut out = Charges {
            ns: ns.to_string(),
            charged: Vec::new(),
        };
        let quotas = self.quotas_in(ns);
        let Some(quota_info) = self.quota_info().cloned().filter(|_| !quotas.is_empty()) else {
            return Ok(out);
        };
        let name = meta::name(obj).unwrap_or_default().to_string();
        let forbidden = |msg: String| {
            ApiError::forbidden(format!("{} {name:?} is forbidden: {msg}", info.plural))
        };
        let usage = quota::usage(info.group, info.plural, obj, jiff::Timestamp::now());
        let is_pod = info.group.is_empty() && info.plural == "pods";
        let mut wanted: Vec<(String, Usage)> = Vec::new();
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
                wanted.push((qname, delta));
            }
        }
        let check = |qname: &str, delta: &Usage, q: &Value| -> Result<Usage, ApiError> {
            let status_hard = quota::hard_of(q, "/status/hard");
            if let Some(missing) = delta.keys().find(|k| !status_hard.contains_key(*k)) {
                return Err(forbidden(format!(
                    "status unknown for quota: {qname}, resource: {missing}"
                )));
            }
            let used = quota::hard_of(q, "/status/used");
            let over = quota::exceeded(&status_hard, &used, delta);
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
        // Every quota is checked before any is charged, so a refusal charges none.
        let mut applicable = Vec::new();
        for (qname, delta) in wanted {
            let r = ObjectRef::new(&quota_info, Some(ns), &qname);
            match self.read_current(&r.key(), r.target()).await {
                Ok((current, _)) => {
                    check(&qname, &delta, &current)?;
                    applicable.push((qname, delta));
                }
                // Deleted since the cache listed it: it no longer applies.
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        if dry_run {
            return Ok(out);
        }
        for (qname, delta) in applicable {
            self.mark_in_flight(ns, &qname, true);
            let r = ObjectRef::new(&quota_info, Some(ns), &qname);
            let charged = self
                .guaranteed_update(r, &Preconditions::default(), false, |mut q: Value| {
                    let mut used = check(&qname, &delta, &q)?;
                    for (k, v) in &delta {
                        let total = used.get(k).copied().unwrap_or_default() + *v;
                        used.insert(k.clone(), total);
                    }
                    set_used(&mut q, &used);
                    Ok(Transition::Write(q))
                })
                .await;
            match charged {
                Ok(_) => out.charged.push((qname, delta)),
                Err(e) if e.code == 404 => self.mark_in_flight(ns, &qname, false),
                Err(e) => {
                    // Another writer took the room in between: undo what was charged.
                    self.mark_in_flight(ns, &qname, false);
                    self.finish_charges(out, false).await;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Ends an admission: refunds the charges if the object was not written, and lets the
    /// controller recount these quotas again.
    pub(super) async fn finish_charges(&self, charges: Charges, written: bool) {
        let Some(quota_info) = self.quota_info().cloned() else {
            return;
        };
        for (qname, delta) in &charges.charged {
            if !written {
                let r = ObjectRef::new(&quota_info, Some(&charges.ns), qname);
                let refunded = self
                    .guaranteed_update(r, &Preconditions::default(), false, |mut q: Value| {
                        let mut used = quota::hard_of(&q, "/status/used");
                        for (k, v) in delta {
                            let left = used.get(k).copied().unwrap_or_default() - *v;
                            let left = if left.nanos() < 0 {
                                Default::default()
                            } else {
                                left
                            };
                            used.insert(k.clone(), left);
                        }
                        set_used(&mut q, &used);
                        Ok(Transition::Write(q))
                    })
                    .await;
                if let Err(e) = refunded {
                    // The controller's next recount puts it right.
                    debug!(quota = %qname, error = %e, "refunding a quota charge failed");
                }
            }
            self.mark_in_flight(&charges.ns, qname, false);
        }
    }

    /// Counts admissions between charging a quota and writing their object: the controller
    /// must not recount a quota while one is in between.
    fn mark_in_flight(&self, ns: &str, quota: &str, start: bool) {
        let key = format!("{ns}/{quota}");
        let mut map = self
            .quota_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.clone()).or_insert(0);
        if start {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&key);
            }
        }
    }

    fn in_flight(&self, ns: &str, quota: &str) -> bool {
        self.quota_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&format!("{ns}/{quota}"))
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

/// The quotas an admission charged, to refund if its object is not written.
#[derive(Debug, Default)]
pub struct Charges {
    ns: String,
    charged: Vec<(String, Usage)>,
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
    let mut full = true;
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
        for q in quotas.iter().filter(|q| full || needs_status(q)) {
            let uid = meta::uid(q).unwrap_or_default().to_string();
            let rv = meta::resource_version(q).unwrap_or_default().to_string();
            let entry = seen.entry(uid).or_insert_with(|| (rv.clone(), None));
            if entry.0 != rv {
                *entry = (rv, Some(now));
            }
            let settling = entry.1.is_some_and(|t| now.duration_since(t) < SETTLE);
            let ns = meta::namespace(q).unwrap_or_default();
            let name = meta::name(q).unwrap_or_default();
            if registry.in_flight(ns, name) || (settling && !needs_status(q)) {
                continue;
            }
            if let Err(e) = registry.sync_quota(q).await {
                debug!(quota = ?meta::name(q), error = %e, "quota status not written; retried on the next pass");
            }
        }
        seen.retain(|uid, _| quotas.iter().any(|q| meta::uid(q) == Some(uid.as_str())));
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            // A quota's own change only matters when its spec.hard moved; a charge or this
            // loop's write needs no recount before the next tick.
            open = super::changed(&mut live) => { if !open { return } full = false; }
            _ = tick.tick() => full = true,
        }
    }
}

/// A quota whose status does not show its current `spec.hard` yet (new or edited).
fn needs_status(q: &Value) -> bool {
    q.pointer("/status/hard") != q.pointer("/spec/hard")
}
