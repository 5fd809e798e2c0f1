//! Pods: NAME READY STATUS RESTARTS AGE | IP NODE NOMINATED NODE READINESS GATES.
//!
//! STATUS is the one-word summary kubectl users read first, derived as Kubernetes' printer
//! does: the phase or reason, overridden by the first failing init container ("Init:1/2",
//! "Init:CrashLoopBackOff"), then by the first app container that is waiting or terminated,
//! then by "Terminating" while the pod is being deleted.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::columns::{col, wide, AGE, NAME};
use super::duration;
use super::fields::{age, int_at, list_at, name, opt_bool_at, opt_str_at, str_at, time_at};
use crate::table::{Column, TablePrinter};

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName."),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\""),
];

/// The reason the node controller gives pods on a node that stopped reporting.
const NODE_UNREACHABLE_REASON: &str = "NodeLost";

pub struct PodPrinter;

impl TablePrinter for PodPrinter {
    fn columns(&self) -> Vec<Column> {
        COLUMNS.to_vec()
    }

    fn cells(&self, pod: &Value, now: Timestamp) -> Vec<Value> {
        let summary = summarize(pod);
        let restarts = match summary.last_restart {
            Some(at) if summary.restarts != 0 => {
                format!(
                    "{} ({} ago)",
                    summary.restarts,
                    duration::since(Some(at), now)
                )
            }
            _ => summary.restarts.to_string(),
        };
        let mut ip = list_at(pod, "/status/podIPs")
            .first()
            .map(|p| str_at(p, "/ip"))
            .unwrap_or("");
        if ip.is_empty() {
            // Objects written before podIPs existed carry only podIP; the API server's
            // conversion fills podIPs from it.
            ip = str_at(pod, "/status/podIP");
        }
        vec![
            name(pod),
            json!(format!("{}/{}", summary.ready, summary.total)),
            json!(summary.reason),
            json!(restarts),
            age(pod, now),
            json!(placeholder(ip)),
            json!(placeholder(str_at(pod, "/spec/nodeName"))),
            json!(placeholder(str_at(pod, "/status/nominatedNodeName"))),
            json!(readiness_gates(pod)),
        ]
    }
}

fn placeholder(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

/// What the READY, STATUS and RESTARTS cells are computed from.
#[derive(Debug, PartialEq)]
struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

/// Sidecars are init containers with `restartPolicy: Always`: they keep running beside the
/// app containers and count towards READY.
fn is_sidecar(pod: &Value, container_name: &str) -> bool {
    list_at(pod, "/spec/initContainers")
        .iter()
        .any(|c| str_at(c, "/name") == container_name && str_at(c, "/restartPolicy") == "Always")
}

fn has_condition(pod: &Value, type_: &str) -> bool {
    list_at(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == type_ && str_at(c, "/status") == "True")
}

fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn last_termination(status: &Value) -> Option<Timestamp> {
    time_at(status, "/lastState/terminated/finishedAt")
}

/// "Signal:9" / "ExitCode:1" for a termination without a reason.
fn exit_reason(terminated: &Value) -> String {
    match int_at(terminated, "/signal") {
        0 => format!("ExitCode:{}", int_at(terminated, "/exitCode")),
        signal => format!("Signal:{signal}"),
    }
}

fn summarize(pod: &Value) -> Summary {
    let init_specs = list_at(pod, "/spec/initContainers");
    let sidecars = init_specs
        .iter()
        .filter(|c| str_at(c, "/restartPolicy") == "Always")
        .count();
    let total = list_at(pod, "/spec/containers").len() + sidecars;
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;

    let phase = str_at(pod, "/status/phase");
    let mut reason = match str_at(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if list_at(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    for (i, status) in list_at(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        restarts += int_at(status, "/restartCount");
        last_restart = later(last_restart, last_termination(status));
        let sidecar = is_sidecar(pod, str_at(status, "/name"));
        if sidecar {
            sidecar_restarts += int_at(status, "/restartCount");
            last_sidecar_restart = later(last_sidecar_restart, last_termination(status));
        }
        let terminated = status.pointer("/state/terminated");
        let waiting_reason = opt_str_at(status, "/state/waiting/reason").unwrap_or("");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && opt_bool_at(status, "/started") == Some(true) {
            if opt_bool_at(status, "/ready") == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            match str_at(t, "/reason") {
                "" => format!("Init:{}", exit_reason(t)),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Backwards, so that the first container's state is the one that shows.
        for status in list_at(pod, "/status/containerStatuses").iter().rev() {
            restarts += int_at(status, "/restartCount");
            last_restart = later(last_restart, last_termination(status));
            let waiting = opt_str_at(status, "/state/waiting/reason").unwrap_or("");
            let terminated = status.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = match str_at(t, "/reason") {
                    "" => exit_reason(t),
                    r => r.to_string(),
                };
            } else if opt_bool_at(status, "/ready") == Some(true)
                && status.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        // A finished container beside a running one does not make the pod "Completed".
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && str_at(pod, "/status/reason") == NODE_UNREACHABLE_REASON {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    Summary {
        ready,
        total,
        reason,
        restarts,
        last_restart,
    }
}

/// "true conditions/gates" for the pod's readiness gates, or `<none>`.
fn readiness_gates(pod: &Value) -> String {
    let gates = list_at(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = list_at(pod, "/status/conditions");
    let passing = gates
        .iter()
        .filter(|gate| {
            let wanted = str_at(gate, "/conditionType");
            conditions
                .iter()
                .find(|c| str_at(c, "/type") == wanted)
                .is_some_and(|c| str_at(c, "/status") == "True")
        })
        .count();
    format!("{passing}/{}", gates.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-06-01T12:00:00Z".parse().expect("time")
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": "web-1", "creationTimestamp": "2024-06-01T11:00:00Z"},
            "spec": spec,
            "status": status,
        })
    }

    fn cells(p: &Value) -> Vec<Value> {
        PodPrinter.cells(p, now())
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts,
               "state": {"running": {"startedAt": "2024-06-01T11:00:05Z"}}})
    }

    #[test]
    fn columns_match_kubectl() {
        let names: Vec<&str> = PodPrinter.columns().iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        let wide: Vec<i32> = PodPrinter.columns().iter().map(|c| c.priority).collect();
        assert_eq!(wide, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn running_pod() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"}),
            json!({"phase": "Running", "podIPs": [{"ip": "10.42.0.5"}],
                   "containerStatuses": [running("a", true, 0), running("b", false, 0)]}),
        );
        assert_eq!(
            cells(&p),
            [
                json!("web-1"),
                json!("1/2"),
                json!("Running"),
                json!("0"),
                json!("60m"),
                json!("10.42.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn pending_unscheduled_pod() {
        let p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Pending"}),
        );
        let c = cells(&p);
        assert_eq!(
            (&c[1], &c[2], &c[5], &c[6]),
            (
                &json!("0/1"),
                &json!("Pending"),
                &json!("<none>"),
                &json!("<none>")
            )
        );
    }

    #[test]
    fn waiting_reason_wins_and_restarts_show_when() {
        let mut crashing = running("a", false, 5);
        crashing["state"] = json!({"waiting": {"reason": "CrashLoopBackOff"}});
        crashing["lastState"] =
            json!({"terminated": {"exitCode": 1, "finishedAt": "2024-06-01T11:55:00Z"}});
        let p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Running", "containerStatuses": [crashing]}),
        );
        let c = cells(&p);
        assert_eq!(
            (&c[2], &c[3]),
            (&json!("CrashLoopBackOff"), &json!("5 (5m ago)"))
        );
    }

    #[test]
    fn first_container_state_shows() {
        let mut a = running("a", false, 0);
        a["state"] = json!({"waiting": {"reason": "ImagePullBackOff"}});
        let mut b = running("b", false, 0);
        b["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            json!({"phase": "Pending", "containerStatuses": [a, b]}),
        );
        assert_eq!(cells(&p)[2], json!("ImagePullBackOff"));
    }

    #[test]
    fn init_containers() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]});
        let done =
            json!({"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let busy = json!({"name": "i2", "state": {"running": {}}});
        let p = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [done.clone(), busy]}),
        );
        assert_eq!(cells(&p)[2], json!("Init:1/2"));

        let failed =
            json!({"name": "i2", "restartCount": 2, "state": {"terminated": {"exitCode": 3}}});
        let p = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [done.clone(), failed]}),
        );
        let c = cells(&p);
        assert_eq!((&c[2], &c[3]), (&json!("Init:ExitCode:3"), &json!("2")));

        let backoff = json!({"name": "i2", "state": {"waiting": {"reason": "CrashLoopBackOff"}}});
        let p = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [done.clone(), backoff]}),
        );
        assert_eq!(cells(&p)[2], json!("Init:CrashLoopBackOff"));

        let init_wait = json!({"name": "i1", "state": {"waiting": {"reason": "PodInitializing"}}});
        let p = pod(
            spec,
            json!({"phase": "Pending", "initContainerStatuses": [init_wait]}),
        );
        assert_eq!(cells(&p)[2], json!("Init:0/2"));
    }

    #[test]
    fn sidecars_count_towards_ready() {
        let spec = json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "a"}]});
        let proxy = json!({"name": "proxy", "started": true, "ready": true, "restartCount": 1, "state": {"running": {}}});
        let p = pod(
            spec,
            json!({"phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [proxy], "containerStatuses": [running("a", true, 0)]}),
        );
        let c = cells(&p);
        assert_eq!(
            (&c[1], &c[2], &c[3]),
            (&json!("2/2"), &json!("Running"), &json!("1"))
        );
    }

    #[test]
    fn completed_and_errored() {
        let done =
            json!({"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Succeeded", "containerStatuses": [done.clone()]}),
        );
        assert_eq!(cells(&p)[2], json!("Completed"));

        // A completed container beside a running one: Running if the pod is Ready.
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [done, running("b", true, 0)]}),
        );
        assert_eq!(cells(&p)[2], json!("NotReady"));

        let killed = json!({"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}});
        let p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Failed", "containerStatuses": [killed]}),
        );
        assert_eq!(cells(&p)[2], json!("Signal:9"));
    }

    #[test]
    fn terminating_and_node_lost() {
        let mut p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Running", "containerStatuses": [running("a", true, 0)]}),
        );
        p["metadata"]["deletionTimestamp"] = json!("2024-06-01T11:59:00Z");
        assert_eq!(cells(&p)[2], json!("Terminating"));
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells(&p)[2], json!("Unknown"));
        // A finished pod being deleted keeps its final status.
        let mut done = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Succeeded"}),
        );
        done["metadata"]["deletionTimestamp"] = json!("2024-06-01T11:59:00Z");
        assert_eq!(cells(&done)[2], json!("Succeeded"));
    }

    #[test]
    fn evicted_and_gated() {
        let p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Failed", "reason": "Evicted"}),
        );
        assert_eq!(cells(&p)[2], json!("Evicted"));
        let p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(cells(&p)[2], json!("SchedulingGated"));
    }

    #[test]
    fn readiness_gates_and_legacy_pod_ip() {
        let p = pod(
            json!({"containers": [], "readinessGates": [{"conditionType": "lb/ready"}, {"conditionType": "x"}]}),
            json!({"podIP": "10.42.1.9", "conditions": [{"type": "lb/ready", "status": "True"}]}),
        );
        let c = cells(&p);
        assert_eq!((&c[5], &c[8]), (&json!("10.42.1.9"), &json!("1/2")));
    }
}
