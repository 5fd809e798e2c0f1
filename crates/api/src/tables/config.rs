//! Cluster and namespace configuration objects: Namespaces, ConfigMaps, Secrets,
//! ServiceAccounts, ResourceQuotas, Leases and PriorityClasses.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::columns::{col, AGE, NAME};
use super::fields::{age, int_at, list_at, map_at, map_len, name, opt_bool_at, opt_str_at, str_at};
use crate::table::{Column, TablePrinter};

pub struct NamespacePrinter;

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

impl TablePrinter for NamespacePrinter {
    fn columns(&self) -> Vec<Column> {
        NAMESPACE_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            name(obj),
            json!(str_at(obj, "/status/phase")),
            age(obj, now),
        ]
    }
}

pub struct ConfigMapPrinter;

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process."),
    AGE,
];

impl TablePrinter for ConfigMapPrinter {
    fn columns(&self) -> Vec<Column> {
        CONFIG_MAP_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let keys = map_len(obj, "/data") + map_len(obj, "/binaryData");
        vec![name(obj), json!(keys), age(obj, now)]
    }
}

pub struct SecretPrinter;

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "Used to facilitate programmatic handling of secret data."),
    col("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here."),
    AGE,
];

impl TablePrinter for SecretPrinter {
    fn columns(&self) -> Vec<Column> {
        SECRET_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            name(obj),
            json!(str_at(obj, "/type")),
            json!(map_len(obj, "/data")),
            age(obj, now),
        ]
    }
}

pub struct ServiceAccountPrinter;

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
    AGE,
];

impl TablePrinter for ServiceAccountPrinter {
    fn columns(&self) -> Vec<Column> {
        SERVICE_ACCOUNT_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            name(obj),
            json!(list_at(obj, "/secrets").len()),
            age(obj, now),
        ]
    }
}

pub struct PodDisruptionBudgetPrinter;

const PDB_COLUMNS: &[Column] = &[
    NAME,
    col("Min Available", "string", "The minimum number of pods that must be available simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\"."),
    col("Max Unavailable", "string", "The maximum number of pods that may be unavailable simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\"."),
    col("Allowed Disruptions", "integer", "Number of pod disruptions that are currently allowed."),
    AGE,
];

impl TablePrinter for PodDisruptionBudgetPrinter {
    fn columns(&self) -> Vec<Column> {
        PDB_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let int_or_percent = |p: &str| match obj.pointer(p) {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => "N/A".to_string(),
        };
        vec![
            name(obj),
            json!(int_or_percent("/spec/minAvailable")),
            json!(int_or_percent("/spec/maxUnavailable")),
            json!(int_at(obj, "/status/disruptionsAllowed")),
            age(obj, now),
        ]
    }
}

pub struct ResourceQuotaPrinter;

const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
    AGE,
];

impl TablePrinter for ResourceQuotaPrinter {
    fn columns(&self) -> Vec<Column> {
        RESOURCE_QUOTA_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let (requests, limits) = quota_usage(obj);
        vec![name(obj), json!(requests), json!(limits), age(obj, now)]
    }
}

/// "resource: used/hard" for every hard limit, sorted by resource name; `limits.*`
/// resources go to the second string, everything else to the first.
fn quota_usage(obj: &Value) -> (String, String) {
    let Some(hard) = map_at(obj, "/status/hard") else {
        return (String::new(), String::new());
    };
    let mut resources: Vec<&String> = hard.keys().collect();
    resources.sort();
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    for resource in resources {
        let hard_qty = hard.get(resource).and_then(Value::as_str).unwrap_or("0");
        let used = obj
            .pointer("/status/used")
            .and_then(|u| u.get(resource.as_str()))
            .and_then(Value::as_str)
            .unwrap_or("0");
        let entry = format!("{resource}: {used}/{hard_qty}");
        match resource.split_once('.') {
            Some(("limits", _)) => limits.push(entry),
            _ => requests.push(entry),
        }
    }
    (requests.join(", "), limits.join(", "))
}

pub struct LeasePrinter;

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."),
    AGE,
];

impl TablePrinter for LeasePrinter {
    fn columns(&self) -> Vec<Column> {
        LEASE_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            name(obj),
            json!(str_at(obj, "/spec/holderIdentity")),
            age(obj, now),
        ]
    }
}

pub struct PriorityClassPrinter;

const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Value", "integer", "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."),
    col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority."),
    AGE,
    col("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."),
];

impl TablePrinter for PriorityClassPrinter {
    fn columns(&self) -> Vec<Column> {
        PRIORITY_CLASS_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            name(obj),
            json!(int_at(obj, "/value")),
            json!(opt_bool_at(obj, "/globalDefault").unwrap_or(false)),
            age(obj, now),
            json!(opt_str_at(obj, "/preemptionPolicy").unwrap_or("")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-06-01T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn small_kinds() {
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": "2024-06-01T11:59:00Z"}, "status": {"phase": "Active"}});
        assert_eq!(
            NamespacePrinter.cells(&ns, now()),
            [json!("default"), json!("Active"), json!("60s")]
        );

        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(ConfigMapPrinter.cells(&cm, now())[1], json!(3));

        let secret = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            &SecretPrinter.cells(&secret, now())[1..3],
            &[json!("kubernetes.io/tls"), json!(2)]
        );

        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(ServiceAccountPrinter.cells(&sa, now())[1], json!(0));

        let lease = json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}});
        assert_eq!(LeasePrinter.cells(&lease, now())[1], json!("n1"));

        let pc = json!({"metadata": {"name": "system-node-critical"}, "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            &PriorityClassPrinter.cells(&pc, now())[1..],
            &[
                json!(2000001000),
                json!(false),
                json!("<unknown>"),
                json!("PreemptLowerPriority")
            ]
        );
    }

    #[test]
    fn resource_quota_usage() {
        let rq = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"pods": "10", "limits.memory": "2Gi", "requests.cpu": "1", "limits.cpu": "2"},
            "used": {"pods": "3", "requests.cpu": "500m", "limits.cpu": "1"},
        }});
        let c = ResourceQuotaPrinter.cells(&rq, now());
        assert_eq!(
            (&c[1], &c[2]),
            (
                &json!("pods: 3/10, requests.cpu: 500m/1"),
                &json!("limits.cpu: 1/2, limits.memory: 0/2Gi")
            )
        );
        let empty = json!({"metadata": {"name": "q"}});
        assert_eq!(
            &ResourceQuotaPrinter.cells(&empty, now())[1..3],
            &[json!(""), json!("")]
        );
    }
}
