//! The pod's API status from the runtime's view (the kubelet's generateAPIPodStatus and
//! getPhase): phase, conditions, container statuses with last states, IPs, QoS class.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiStatus, HostIP, Pod, PodCondition, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use runtime::cri::{ContainerState, ContainerStatus};

use super::actions::{exit_code, is_dead, restart_policy, should_restart, RuntimePod, Waiting};
use super::qos;

pub struct StatusInputs<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a RuntimePod,
    /// Why a container is not running, by name (back-off, pull and config errors).
    pub waiting: &'a BTreeMap<String, Waiting>,
    pub is_ready: &'a dyn Fn(&str) -> bool,
    pub is_started: &'a dyn Fn(&str) -> bool,
    pub node_ip: IpAddr,
    /// Image reference → repo digest (what imageID reports), from pulls.
    pub image_ids: &'a HashMap<String, String>,
    pub start_time: SystemTime,
    pub now: SystemTime,
}

pub fn time(t: SystemTime) -> Time {
    let ts = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    // Second precision, as the API stores it, so regenerated statuses compare equal.
    Time(jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

fn terminated(c: &ContainerStatus) -> ContainerStateTerminated {
    let code = exit_code(c);
    let reason = c.reason.clone().unwrap_or_else(|| match (c.state, code) {
        (ContainerState::Created, _) => "StartError".into(),
        (_, 0) => "Completed".into(),
        _ => "Error".into(),
    });
    ContainerStateTerminated {
        exit_code: code,
        reason: Some(reason),
        message: c.message.clone().filter(|m| !m.is_empty()),
        started_at: c.started_at.map(time).or_else(|| Some(time(c.created_at))),
        finished_at: Some(time(c.finished_at.or(c.started_at).unwrap_or(c.created_at))),
        container_id: Some(format!("runc://{}", c.id)),
        signal: None,
    }
}

fn container_status(
    i: &StatusInputs<'_>,
    spec: &Container,
    default_waiting: &str,
    restartable: bool,
) -> ApiStatus {
    let attempts = i.runtime.attempts(&spec.name);
    let latest = attempts.first().copied();
    let previous = attempts.get(1).copied();
    let image = spec.image.clone().unwrap_or_default();
    let mut st = ApiStatus {
        name: spec.name.clone(),
        image: image.clone(),
        image_id: String::new(),
        ..Default::default()
    };
    let waiting = |w: Option<&Waiting>, fallback: &str| ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(w.map_or(fallback.to_string(), |w| w.reason.clone())),
            message: w.map(|w| w.message.clone()).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    };
    let held = i.waiting.get(&spec.name);
    let Some(c) = latest else {
        st.state = Some(waiting(held, default_waiting));
        return st;
    };
    st.restart_count = c.attempt as i32;
    st.container_id = Some(format!("runc://{}", c.id));
    st.image_id = i
        .image_ids
        .get(&image)
        .cloned()
        .unwrap_or_else(|| c.image_id.clone());
    match c.state {
        ContainerState::Running => {
            st.state = Some(ApiState {
                running: Some(ContainerStateRunning {
                    started_at: c.started_at.map(time),
                }),
                ..Default::default()
            });
            st.started = Some((i.is_started)(&c.id));
            st.ready = st.started == Some(true) && (i.is_ready)(&c.id);
            st.last_state = previous.filter(|p| is_dead(p)).map(|p| ApiState {
                terminated: Some(terminated(p)),
                ..Default::default()
            });
        }
        _ if is_dead(c) && restartable && should_restart(restart_policy(i.pod), exit_code(c)) => {
            // Dead and due for a restart: waiting, with the dead one as the last state.
            st.state = Some(waiting(held, "ContainerCreating"));
            st.started = Some(false);
            st.last_state = Some(ApiState {
                terminated: Some(terminated(c)),
                ..Default::default()
            });
        }
        _ => {
            st.state = Some(ApiState {
                terminated: Some(terminated(c)),
                ..Default::default()
            });
            st.started = Some(false);
            st.last_state = previous.map(|p| ApiState {
                terminated: Some(terminated(p)),
                ..Default::default()
            });
        }
    }
    st
}

fn condition(
    type_: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: if ok { None } else { reason },
        message: if ok { None } else { message },
        ..Default::default()
    }
}

pub fn generate(i: &StatusInputs<'_>, terminal_failure: bool) -> PodStatus {
    let pod = i.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let policy = restart_policy(pod);

    let app_started = spec
        .containers
        .iter()
        .any(|c| i.runtime.latest(&c.name).is_some());
    let init_statuses: Vec<ApiStatus> = inits
        .iter()
        .map(|c| {
            let mut s = container_status(i, c, "PodInitializing", !app_started);
            s.ready =
                matches!(&s.state, Some(ApiState { terminated: Some(t), .. }) if t.exit_code == 0);
            s
        })
        .collect();
    let init_pending: Vec<String> = if app_started {
        Vec::new()
    } else {
        inits
            .iter()
            .zip(&init_statuses)
            .filter(|(_, s)| !s.ready)
            .map(|(c, _)| c.name.clone())
            .collect()
    };
    let initialized = init_pending.is_empty();
    let default_waiting = if initialized {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let statuses: Vec<ApiStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(i, c, default_waiting, true))
        .collect();

    let mut phase = phase(&statuses, initialized, terminal_failure, policy);
    // A pod that finished never runs again: its phase is final.
    match old.phase.as_deref() {
        Some("Succeeded") => phase = "Succeeded",
        Some("Failed") => phase = "Failed",
        _ => {}
    }
    let unready: Vec<String> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.clone())
        .collect();
    let containers_ready = unready.is_empty();
    let gates_ok = spec.readiness_gates.iter().flatten().all(|g| {
        old.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == g.condition_type && c.status == "True")
    });
    let done = phase == "Succeeded" || phase == "Failed";
    let not_ready_reason = if done {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let sandbox = i.runtime.ready_sandbox();
    let host_network = spec.host_network.unwrap_or(false);
    let mut ips: Vec<IpAddr> = sandbox.map(|s| s.ips.clone()).unwrap_or_default();
    if host_network && sandbox.is_some() {
        ips = vec![i.node_ip];
    }
    if ips.is_empty() && i.runtime.ready_sandbox().is_none() {
        // A stopped sandbox has released its address; the pod keeps reporting the one it had.
        ips = old
            .pod_ips
            .iter()
            .flatten()
            .filter_map(|p| p.ip.parse().ok())
            .collect();
    }
    let list = |v: &[String]| format!("[{}]", v.join(" "));
    let ours = vec![
        condition("PodReadyToStartContainers", sandbox.is_some(), None, None),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized".into()),
            Some(format!(
                "containers with incomplete status: {}",
                list(&init_pending)
            )),
        ),
        condition(
            "Ready",
            containers_ready && gates_ok && !done,
            Some(if containers_ready && !done {
                "ReadinessGatesNotReady".into()
            } else {
                not_ready_reason.into()
            }),
            Some(if containers_ready && !done {
                "the status of pod readiness gates is not ready".into()
            } else {
                format!("containers with unready status: {}", list(&unready))
            }),
        ),
        condition(
            "ContainersReady",
            containers_ready && !done,
            Some(not_ready_reason.into()),
            Some(format!(
                "containers with unready status: {}",
                list(&unready)
            )),
        ),
        condition("PodScheduled", true, None, None),
    ];
    let mut conditions: Vec<PodCondition> = Vec::new();
    for mut c in ours {
        let prev = old.conditions.iter().flatten().find(|p| p.type_ == c.type_);
        c.last_transition_time = match prev {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Some(time(i.now)),
        };
        conditions.push(c);
    }
    // Conditions others own (readiness gates, DisruptionTarget) stay as they are.
    for c in old.conditions.iter().flatten() {
        if !conditions.iter().any(|o| o.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }
    let node_ip = i.node_ip.to_string();
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(node_ip.clone()),
        host_ips: Some(vec![HostIP { ip: node_ip }]),
        pod_ip: ips.first().map(|ip| ip.to_string()),
        pod_ips: (!ips.is_empty())
            .then(|| ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
        start_time: old.start_time.clone().or_else(|| Some(time(i.start_time))),
        container_statuses: Some(statuses),
        init_container_statuses: (!inits.is_empty()).then_some(init_statuses),
        qos_class: Some(qos::pod_qos(pod).as_str().to_string()),
        ..Default::default()
    }
}

/// The kubelet's getPhase.
fn phase(
    statuses: &[ApiStatus],
    initialized: bool,
    init_failed: bool,
    policy: &str,
) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !initialized {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .is_some_and(|l| l.terminated.is_some())
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            let all_terminated = statuses
                .iter()
                .all(|s| s.state.as_ref().is_some_and(|st| st.terminated.is_some()));
            if all_terminated {
                "Failed"
            } else {
                "Running"
            }
        }
    } else {
        "Pending"
    }
}

/// The merge patch that sets `status` on pods/status: every field the agent owns is
/// written, null when unset, so stale values are cleared.
pub fn merge_patch(status: &PodStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        for k in [
            "podIP",
            "podIPs",
            "initContainerStatuses",
            "reason",
            "message",
        ] {
            obj.entry(k).or_insert(serde_json::Value::Null);
        }
    }
    serde_json::json!({ "status": v })
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
