//! ResourceQuota arithmetic, as upstream's quota evaluators: what an object uses, which
//! quotas it falls under, and whether adding it stays within them. Shared by the API
//! server's admission (a create that would exceed a quota is refused) and its quota
//! controller (`status.used` recomputed from the objects).
//!
//! Usage names: `count/<resource>[.<group>]` for every kind; the legacy object counts
//! `pods`, `services`, `services.loadbalancers`, `services.nodeports`, `configmaps`,
//! `secrets`, `persistentvolumeclaims`, `replicationcontrollers`, `resourcequotas`; a
//! non-terminal pod's `requests.{cpu,memory,ephemeral-storage}` (also under the bare names)
//! and `limits.*`; a claim's `requests.storage` and the per-StorageClass names.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::quantity::{self, Quantity};

/// Resource name → amount.
pub type Usage = BTreeMap<String, Quantity>;

const POD_COMPUTE: &[&str] = &["cpu", "memory", "ephemeral-storage"];
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// The count name of a resource: `count/pods`, `count/deployments.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// What one object of `group`/`plural` uses. Terminal pods use nothing.
pub fn usage(group: &str, plural: &str, obj: &Value, now: jiff::Timestamp) -> Usage {
    let mut u = Usage::new();
    let one = Quantity::from_value(1);
    if group.is_empty() && plural == "pods" && !pod_counts(obj, now) {
        return u;
    }
    u.insert(count_name(group, plural), one);
    if !group.is_empty() {
        return u;
    }
    match plural {
        "pods" => {
            u.insert("pods".into(), one);
            for (kind, totals) in [
                ("requests", pod_totals(obj, "requests")),
                ("limits", pod_totals(obj, "limits")),
            ] {
                for (resource, q) in totals {
                    if kind == "requests" {
                        u.insert(resource.clone(), q);
                    }
                    u.insert(format!("{kind}.{resource}"), q);
                }
            }
        }
        "services" => {
            u.insert("services".into(), one);
            let type_ = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            if type_ == "LoadBalancer" {
                u.insert("services.loadbalancers".into(), one);
            }
            if type_ == "LoadBalancer" || type_ == "NodePort" {
                let ports = obj
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                u.insert(
                    "services.nodeports".into(),
                    Quantity::from_value(ports as i64),
                );
            }
        }
        "persistentvolumeclaims" => {
            u.insert("persistentvolumeclaims".into(), one);
            let storage = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(|s| quantity::parse(s).ok());
            let class = obj
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty());
            if let Some(class) = class {
                u.insert(
                    format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                    one,
                );
            }
            if let Some(q) = storage {
                u.insert("requests.storage".into(), q);
                if let Some(class) = class {
                    u.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), q);
                }
            }
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            u.insert(plural.to_string(), one);
        }
        _ => {}
    }
    u
}

/// A pod counts until it is terminal or its deletion grace period has run out.
fn pod_counts(pod: &Value, now: jiff::Timestamp) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let deleted = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    match deleted {
        Some(t) => t + jiff::SignedDuration::from_secs(grace) > now,
        None => true,
    }
}

/// A pod's effective requests or limits: the larger of the containers' sum and any one init
/// container, plus the pod overhead.
fn pod_totals(pod: &Value, which: &str) -> BTreeMap<String, Quantity> {
    let of = |c: &Value, r: &str| -> Option<Quantity> {
        c.pointer(&format!("/resources/{which}/{r}"))
            .and_then(Value::as_str)
            .and_then(|s| quantity::parse(s).ok())
    };
    let list = |k: &str| -> Vec<Value> {
        pod.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (containers, inits) = (list("containers"), list("initContainers"));
    let mut out = BTreeMap::new();
    for r in POD_COMPUTE {
        let sum: Option<Quantity> = containers
            .iter()
            .filter_map(|c| of(c, r))
            .reduce(|a, b| a + b);
        let init_max = inits
            .iter()
            .filter_map(|c| of(c, r))
            .max_by_key(|q| q.nanos());
        let overhead = pod
            .pointer(&format!("/spec/overhead/{r}"))
            .and_then(Value::as_str)
            .and_then(|s| quantity::parse(s).ok());
        let base = match (sum, init_max) {
            (Some(s), Some(i)) => Some(if i.nanos() > s.nanos() { i } else { s }),
            (s, i) => s.or(i),
        };
        if let Some(total) = match (base, overhead) {
            (Some(b), Some(o)) => Some(b + o),
            (b, o) => b.or(o),
        } {
            out.insert(r.to_string(), total);
        }
    }
    out
}

/// Whether a quota's scopes (and scopeSelector) admit `obj`. A scoped quota tracks pods only.
pub fn in_scope(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let scopes: Vec<&str> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let selector: Vec<&Value> = quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if scopes.is_empty() && selector.is_empty() {
        return true;
    }
    if !(group.is_empty() && plural == "pods") {
        return false;
    }
    let scope_holds = |scope: &str| -> bool {
        match scope {
            "Terminating" => obj
                .pointer("/spec/activeDeadlineSeconds")
                .is_some_and(|v| !v.is_null()),
            "NotTerminating" => obj
                .pointer("/spec/activeDeadlineSeconds")
                .is_none_or(Value::is_null),
            "BestEffort" => is_best_effort(obj),
            "NotBestEffort" => !is_best_effort(obj),
            _ => false,
        }
    };
    let priority = obj
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    let expression_holds = |e: &Value| -> bool {
        let scope = e.get("scopeName").and_then(Value::as_str).unwrap_or("");
        let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if scope != "PriorityClass" {
            return match op {
                "Exists" => scope_holds(scope),
                "DoesNotExist" => !scope_holds(scope),
                _ => false,
            };
        }
        match op {
            "In" => priority.is_some_and(|p| values.contains(&p)),
            "NotIn" => priority.is_none_or(|p| !values.contains(&p)),
            "Exists" => priority.is_some(),
            "DoesNotExist" => priority.is_none(),
            _ => false,
        }
    };
    scopes.iter().all(|s| scope_holds(s)) && selector.iter().all(|e| expression_holds(e))
}

fn is_best_effort(pod: &Value) -> bool {
    ["containers", "initContainers"].iter().all(|k| {
        pod.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_array)
            .is_none_or(|cs| {
                cs.iter().all(|c| {
                    ["requests", "limits"].iter().all(|w| {
                        ["cpu", "memory"]
                            .iter()
                            .all(|r| c.pointer(&format!("/resources/{w}/{r}")).is_none())
                    })
                })
            })
    })
}

/// A quota's `spec.hard` (or `status.hard`), parsed; unparsable entries are left out.
pub fn hard_of(quota: &Value, pointer: &str) -> Usage {
    quota
        .pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), quantity::parse(v.as_str()?).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Upstream's pod constraint: with a compute resource under quota, every container must
/// say how much of it it requests (or limits). The message lists what each lacks.
pub fn missing_compute(hard: &Usage, pod: &Value) -> Option<String> {
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}"))?.as_array())
        .flatten()
        .collect();
    for r in POD_COMPUTE {
        for (which, names) in [
            ("requests", vec![format!("requests.{r}"), r.to_string()]),
            ("limits", vec![format!("limits.{r}")]),
        ] {
            if !names.iter().any(|n| hard.contains_key(n)) {
                continue;
            }
            for c in &containers {
                if c.pointer(&format!("/resources/{which}/{r}")).is_none() {
                    let name = c
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    missing
                        .entry(format!("{which}.{r}"))
                        .or_default()
                        .push(name);
                }
            }
        }
    }
    (!missing.is_empty()).then(|| {
        let parts: Vec<String> = missing
            .iter()
            .map(|(r, names)| format!("{r} for: {}", names.join(",")))
            .collect();
        format!("must specify {}", parts.join("; "))
    })
}

/// The resources of `delta` the quota constrains whose use would pass the limit:
/// `(name, requested, used, hard)`.
pub fn exceeded(
    hard: &Usage,
    used: &Usage,
    delta: &Usage,
) -> Vec<(String, Quantity, Quantity, Quantity)> {
    delta
        .iter()
        .filter_map(|(name, d)| {
            let h = *hard.get(name)?;
            let u = used.get(name).copied().unwrap_or_default();
            ((u + *d).nanos() > h.nanos()).then(|| (name.clone(), *d, u, h))
        })
        .collect()
}

/// Renders a quantity as upstream would for a resource: binary suffixes for bytes that
/// divide evenly, plain numbers and millis otherwise.
pub fn render(name: &str, q: Quantity) -> String {
    let bytes = ["memory", "storage", "ephemeral-storage"].iter().any(|r| {
        name == *r || name.ends_with(&format!(".{r}")) || name.ends_with(&format!("/{r}"))
    });
    let nanos = q.nanos();
    if bytes && nanos > 0 && nanos % 1_000_000_000 == 0 {
        let mut v = nanos / 1_000_000_000;
        for suffix in ["", "Ki", "Mi", "Gi", "Ti", "Pi"] {
            if v % 1024 != 0 || suffix == "Pi" {
                return format!("{v}{suffix}");
            }
            v /= 1024;
        }
    }
    q.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        quantity::parse(s).unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    #[test]
    fn a_pod_uses_its_count_and_effective_requests_and_limits() {
        let mut p = pod(json!([
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
            {"name": "b", "resources": {"requests": {"cpu": "200m"}}},
        ]));
        p["spec"]["initContainers"] =
            json!([{"name": "i", "resources": {"requests": {"cpu": "500m"}}}]);
        let u = usage("", "pods", &p, now());
        assert_eq!(u["pods"], q("1"));
        assert_eq!(u["count/pods"], q("1"));
        assert_eq!(
            u["requests.cpu"],
            q("500m"),
            "the init container's is larger"
        );
        assert_eq!(u["cpu"], q("500m"));
        assert_eq!(u["requests.memory"], q("64Mi"));
        assert_eq!(u["limits.cpu"], q("1"));
        assert!(!u.contains_key("limits.memory"));

        p["status"] = json!({"phase": "Succeeded"});
        assert!(
            usage("", "pods", &p, now()).is_empty(),
            "terminal pods use nothing"
        );
        p["status"] = json!({"phase": "Running"});
        p["metadata"]["deletionTimestamp"] = json!("2025-12-31T23:59:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        assert!(
            usage("", "pods", &p, now()).is_empty(),
            "past its grace period"
        );
        p["metadata"]["deletionGracePeriodSeconds"] = json!(3600);
        assert_eq!(usage("", "pods", &p, now())["pods"], q("1"));
    }

    #[test]
    fn other_kinds_use_their_counts() {
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        let u = usage("", "services", &svc, now());
        assert_eq!(u["services"], q("1"));
        assert_eq!(u["services.nodeports"], q("2"));
        assert!(!u.contains_key("services.loadbalancers"));
        let pvc = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}});
        let u = usage("", "persistentvolumeclaims", &pvc, now());
        assert_eq!(u["requests.storage"], q("1Gi"));
        assert_eq!(
            u["fast.storageclass.storage.k8s.io/requests.storage"],
            q("1Gi")
        );
        assert_eq!(
            u["fast.storageclass.storage.k8s.io/persistentvolumeclaims"],
            q("1")
        );
        let u = usage("apps", "deployments", &json!({}), now());
        assert_eq!(u.keys().collect::<Vec<_>>(), ["count/deployments.apps"]);
        assert_eq!(
            usage("", "configmaps", &json!({}), now())["configmaps"],
            q("1")
        );
    }

    #[test]
    fn scopes_restrict_a_quota_to_some_pods() {
        let best_effort = pod(json!([{"name": "a"}]));
        let burstable = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        let scoped = |scopes: Value| json!({"spec": {"scopes": scopes}});
        assert!(in_scope(&json!({"spec": {}}), "", "configmaps", &json!({})));
        assert!(!in_scope(
            &scoped(json!(["BestEffort"])),
            "",
            "configmaps",
            &json!({})
        ));
        assert!(in_scope(
            &scoped(json!(["BestEffort"])),
            "",
            "pods",
            &best_effort
        ));
        assert!(!in_scope(
            &scoped(json!(["BestEffort"])),
            "",
            "pods",
            &burstable
        ));
        assert!(in_scope(
            &scoped(json!(["NotBestEffort", "NotTerminating"])),
            "",
            "pods",
            &burstable
        ));
        let mut terminating = burstable.clone();
        terminating["spec"]["activeDeadlineSeconds"] = json!(60);
        assert!(in_scope(
            &scoped(json!(["Terminating"])),
            "",
            "pods",
            &terminating
        ));
        let by_priority = json!({"spec": {"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        let mut high = burstable.clone();
        high["spec"]["priorityClassName"] = json!("high");
        assert!(in_scope(&by_priority, "", "pods", &high));
        assert!(!in_scope(&by_priority, "", "pods", &burstable));
    }

    #[test]
    fn limits_and_missing_resources() {
        let hard: Usage = [
            ("pods".to_string(), q("2")),
            ("requests.cpu".to_string(), q("1")),
        ]
        .into();
        let used: Usage = [
            ("pods".to_string(), q("2")),
            ("requests.cpu".to_string(), q("600m")),
        ]
        .into();
        let delta: Usage = [
            ("pods".to_string(), q("1")),
            ("requests.cpu".to_string(), q("300m")),
            ("count/pods".to_string(), q("1")),
        ]
        .into();
        let over = exceeded(&hard, &used, &delta);
        assert_eq!(over, vec![("pods".to_string(), q("1"), q("2"), q("2"))]);
        assert!(exceeded(&hard, &Usage::new(), &delta).is_empty());

        let p = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}, {"name": "b"}]));
        assert_eq!(
            missing_compute(&hard, &p).as_deref(),
            Some("must specify requests.cpu for: b")
        );
        let limits: Usage = [("limits.memory".to_string(), q("1Gi"))].into();
        assert_eq!(
            missing_compute(&limits, &p).as_deref(),
            Some("must specify limits.memory for: a,b")
        );
        assert_eq!(
            missing_compute(&[("pods".to_string(), q("1"))].into(), &p),
            None
        );
    }

    #[test]
    fn rendering_keeps_bytes_readable() {
        assert_eq!(render("requests.memory", q("128Mi")), "128Mi");
        assert_eq!(render("requests.storage", q("1000")), "1000");
        assert_eq!(render("requests.cpu", q("1500m")), "1500m");
        assert_eq!(render("pods", q("3")), "3");
        assert_eq!(render("memory", q("0")), "0");
    }
}
