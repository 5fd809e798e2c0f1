//! apps/v1 workloads: Deployments, ReplicaSets, StatefulSets, DaemonSets and the
//! ControllerRevisions they keep.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::columns::{col, AGE, CONTAINERS, IMAGES, NAME, SELECTOR};
use super::fields::{age, int_at, list_at, map_at, name, opt_int_at, str_at};
use super::format;
use crate::table::{Column, TablePrinter};

/// The replica count a workload asks for; unset means Kubernetes' default of 1.
fn desired_replicas(obj: &Value) -> i64 {
    opt_int_at(obj, "/spec/replicas").unwrap_or(1)
}

fn template_containers(obj: &Value) -> (String, String) {
    format::containers(list_at(obj, "/spec/template/spec/containers"))
}

pub struct DeploymentPrinter;

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

impl TablePrinter for DeploymentPrinter {
    fn columns(&self) -> Vec<Column> {
        DEPLOYMENT_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let (names, images) = template_containers(obj);
        // Unlike the other workloads, an empty Deployment selector prints as "".
        let selector = format::selector(obj.pointer("/spec/selector"))
            .unwrap_or_else(|_| "<invalid>".to_string());
        vec![
            name(obj),
            json!(format!(
                "{}/{}",
                int_at(obj, "/status/readyReplicas"),
                desired_replicas(obj)
            )),
            json!(int_at(obj, "/status/updatedReplicas")),
            json!(int_at(obj, "/status/availableReplicas")),
            age(obj, now),
            json!(names),
            json!(images),
            json!(selector),
        ]
    }
}

pub struct ReplicaSetPrinter;

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1."),
    col("Current", "integer", "Replicas is the most recently observed number of non-terminating pods."),
    col("Ready", "integer", "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

impl TablePrinter for ReplicaSetPrinter {
    fn columns(&self) -> Vec<Column> {
        REPLICA_SET_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let (names, images) = template_containers(obj);
        vec![
            name(obj),
            json!(desired_replicas(obj)),
            json!(int_at(obj, "/status/replicas")),
            json!(int_at(obj, "/status/readyReplicas")),
            age(obj, now),
            json!(names),
            json!(images),
            json!(format::label_selector(obj.pointer("/spec/selector"))),
        ]
    }
}

pub struct StatefulSetPrinter;

const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

impl TablePrinter for StatefulSetPrinter {
    fn columns(&self) -> Vec<Column> {
        STATEFUL_SET_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let (names, images) = template_containers(obj);
        vec![
            name(obj),
            json!(format!(
                "{}/{}",
                int_at(obj, "/status/readyReplicas"),
                desired_replicas(obj)
            )),
            age(obj, now),
            json!(names),
            json!(images),
        ]
    }
}

pub struct DaemonSetPrinter;

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
    col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
    col("Ready", "integer", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

impl TablePrinter for DaemonSetPrinter {
    fn columns(&self) -> Vec<Column> {
        DAEMON_SET_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let (names, images) = template_containers(obj);
        vec![
            name(obj),
            json!(int_at(obj, "/status/desiredNumberScheduled")),
            json!(int_at(obj, "/status/currentNumberScheduled")),
            json!(int_at(obj, "/status/numberReady")),
            json!(int_at(obj, "/status/updatedNumberScheduled")),
            json!(int_at(obj, "/status/numberAvailable")),
            json!(format::labels(map_at(
                obj,
                "/spec/template/spec/nodeSelector"
            ))),
            age(obj, now),
            json!(names),
            json!(images),
            json!(format::label_selector(obj.pointer("/spec/selector"))),
        ]
    }
}

/// autoscaling/v1 Scale, the `scale` subresource of Deployments, ReplicaSets and
/// StatefulSets (`kubectl get deploy/web --subresource=scale`).
pub struct ScalePrinter;

const SCALE_COLUMNS: &[Column] = &[
    // Kubernetes gives this Name column no "name" format.
    col("Name", "string", super::columns::NAME_DOC),
    col(
        "Desired",
        "integer",
        "replicas is the desired number of instances for the scaled object.",
    ),
    col(
        "Available",
        "integer",
        "replicas is the actual number of observed instances of the scaled object.",
    ),
    AGE,
];

impl TablePrinter for ScalePrinter {
    fn columns(&self) -> Vec<Column> {
        SCALE_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            name(obj),
            json!(int_at(obj, "/spec/replicas")),
            json!(int_at(obj, "/status/replicas")),
            age(obj, now),
        ]
    }
}

pub struct ControllerRevisionPrinter;

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

impl TablePrinter for ControllerRevisionPrinter {
    fn columns(&self) -> Vec<Column> {
        CONTROLLER_REVISION_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            name(obj),
            json!(controller_of(obj)),
            json!(int_at(obj, "/revision")),
            age(obj, now),
        ]
    }
}

/// The owner reference marked `controller: true`, as `kind.group/name` in lower case
/// ("daemonset.apps/fluentd"), or `<none>`.
fn controller_of(obj: &Value) -> String {
    let Some(owner) = list_at(obj, "/metadata/ownerReferences")
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
    else {
        return "<none>".to_string();
    };
    let api_version = str_at(owner, "/apiVersion");
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let kind = str_at(owner, "/kind");
    let owner_name = str_at(owner, "/name");
    let group_kind = match (kind.is_empty(), group.is_empty()) {
        (true, true) => return owner_name.to_string(),
        (_, true) => kind.to_string(),
        _ => format!("{kind}.{group}"),
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-06-01T12:00:00Z".parse().expect("time")
    }

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-06-01T11:57:58Z"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.27"},
                    {"name": "log", "image": "busybox"},
                ]}},
            },
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        })
    }

    #[test]
    fn deployment_row() {
        let names: Vec<&str> = DeploymentPrinter.columns().iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            DeploymentPrinter.cells(&deployment(), now()),
            [
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("2m2s"),
                json!("nginx,log"),
                json!("nginx:1.27,busybox"),
                json!("app=web"),
            ]
        );
    }

    #[test]
    fn deployment_without_status_or_replicas() {
        let d =
            json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": []}}}});
        let c = DeploymentPrinter.cells(&d, now());
        assert_eq!(
            (&c[1], &c[2], &c[4], &c[7]),
            (&json!("0/1"), &json!(0), &json!("<unknown>"), &json!(""))
        );
        let bad =
            json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]}}});
        assert_eq!(DeploymentPrinter.cells(&bad, now())[7], json!("<invalid>"));
    }

    #[test]
    fn replica_set_and_stateful_set_rows() {
        let d = deployment();
        let rs = ReplicaSetPrinter.cells(&d, now());
        assert_eq!(&rs[1..4], &[json!(3), json!(3), json!(2)]);
        assert_eq!(rs[7], json!("app=web"));
        let sts = StatefulSetPrinter.cells(&d, now());
        assert_eq!(sts.len(), StatefulSetPrinter.columns().len());
        assert_eq!(sts[1], json!("2/3"));
    }

    #[test]
    fn daemon_set_row() {
        let ds = json!({
            "metadata": {"name": "agent"},
            "spec": {"selector": {}, "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "i"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2},
        });
        let c = DaemonSetPrinter.cells(&ds, now());
        assert_eq!(c.len(), DaemonSetPrinter.columns().len());
        assert_eq!(
            &c[1..7],
            &[
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux")
            ]
        );
        assert_eq!(c[10], json!("<none>"));
    }

    #[test]
    fn scale_row() {
        let scale = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}});
        assert_eq!(
            &ScalePrinter.cells(&scale, now())[..3],
            &[json!("web"), json!(3), json!(2)]
        );
        assert_eq!(ScalePrinter.columns()[0].format, "");
    }

    #[test]
    fn controller_revision_names_its_controller() {
        let cr = json!({
            "metadata": {"name": "agent-5d4f", "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": "other"},
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": true},
            ]},
            "revision": 2,
        });
        let c = ControllerRevisionPrinter.cells(&cr, now());
        assert_eq!((&c[1], &c[2]), (&json!("daemonset.apps/agent"), &json!(2)));
        let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
        assert_eq!(
            ControllerRevisionPrinter.cells(&orphan, now())[1],
            json!("<none>")
        );
    }
}
