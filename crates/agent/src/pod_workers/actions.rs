//! What a sync must do to move the runtime towards the pod's spec, decided without side
//! effects (the kubelet's computePodActions): sandbox (re)creation, the next init container,
//! app containers to start or kill, and the back-off waits that hold restarts.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use runtime::cri::{self, ContainerState, ContainerStatus, PodSandbox, SandboxState};

use super::backoff::{self, Backoff};

/// The runtime's view of one pod: its sandboxes and containers (found by their labels).
#[derive(Debug, Clone, Default)]
pub struct RuntimePod {
    pub sandboxes: Vec<PodSandbox>,
    pub containers: Vec<ContainerStatus>,
}

impl RuntimePod {
    pub fn from_lists(uid: &str, sandboxes: &[PodSandbox], containers: &[ContainerStatus]) -> Self {
        let mut sandboxes: Vec<PodSandbox> = sandboxes
            .iter()
            .filter(|s| {
                s.pod_uid == uid
                    || s.labels.get(cri::LABEL_POD_UID).map(String::as_str) == Some(uid)
            })
            .cloned()
            .collect();
        sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let containers = containers
            .iter()
            .filter(|c| c.labels.get(cri::LABEL_POD_UID).map(String::as_str) == Some(uid))
            .cloned()
            .collect();
        RuntimePod {
            sandboxes,
            containers,
        }
    }

    /// The newest sandbox that is ready.
    pub fn ready_sandbox(&self) -> Option<&PodSandbox> {
        self.sandboxes
            .iter()
            .find(|s| s.state == SandboxState::Ready)
    }

    /// Containers of `name`, newest attempt first.
    pub fn attempts(&self, name: &str) -> Vec<&ContainerStatus> {
        let mut v: Vec<&ContainerStatus> =
            self.containers.iter().filter(|c| c.name == name).collect();
        v.sort_by(|a, b| {
            b.attempt
                .cmp(&a.attempt)
                .then(b.created_at.cmp(&a.created_at))
        });
        v
    }

    pub fn latest(&self, name: &str) -> Option<&ContainerStatus> {
        self.attempts(name).into_iter().next()
    }

    pub fn running(&self) -> impl Iterator<Item = &ContainerStatus> {
        self.containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
    }
}

/// A container that will not run again by itself: exited, lost, or created and never
/// started (a start that failed, or an agent that died in between).
pub fn is_dead(c: &ContainerStatus) -> bool {
    match c.state {
        ContainerState::Running => false,
        ContainerState::Exited | ContainerState::Unknown => true,
        ContainerState::Created => true,
    }
}

/// Exit code of a dead container; a never-started one counts as the runtime's start error.
pub fn exit_code(c: &ContainerStatus) -> i32 {
    match (c.exit_code, c.state) {
        (Some(code), _) => code,
        (None, ContainerState::Created) => 128,
        (None, _) => -1,
    }
}

pub fn failed_at(c: &ContainerStatus) -> SystemTime {
    c.finished_at.or(c.started_at).unwrap_or(c.created_at)
}

pub fn should_restart(policy: &str, exit: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit != 0,
        _ => true,
    }
}

pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Index into spec.initContainers or spec.containers.
    pub index: usize,
    pub attempt: u32,
    /// A restart (it counts for back-off); false for the first run.
    pub restart: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    pub id: String,
    pub name: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Stop everything of the pod before anything else (the sandbox is gone or changed).
    pub kill_pod: bool,
    pub create_sandbox: bool,
    pub start_init: Option<Start>,
    pub start: Vec<Start>,
    pub kill: Vec<Kill>,
    /// Containers held back (CrashLoopBackOff), by name.
    pub waiting: BTreeMap<String, Waiting>,
    pub reset_backoff: Vec<String>,
    /// An init container failed and the pod may not restart it: the pod has failed.
    pub init_failed: bool,
    /// Every app container has finished and none will restart: the pod is done.
    pub pod_done: bool,
    pub requeue_after: Option<Duration>,
}

impl PodActions {
    fn requeue(&mut self, d: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(d, |r| r.min(d)));
    }
}

pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a RuntimePod,
    pub backoff: &'a Backoff,
    /// Liveness failure message by container id (the prober's verdict).
    pub liveness_failure: &'a dyn Fn(&str) -> Option<String>,
    pub now: SystemTime,
}

pub fn compute(i: &Inputs<'_>) -> PodActions {
    let mut a = PodActions::default();
    let Some(spec) = i.pod.spec.as_ref() else {
        return a;
    };
    let policy = restart_policy(i.pod);
    let inits = spec.init_containers.clone().unwrap_or_default();
    let rt = i.runtime;

    let app_done = |name: &str| {
        rt.latest(name)
            .is_some_and(|c| is_dead(c) && !should_restart(policy, exit_code(c)))
    };
    let all_done = !spec.containers.is_empty() && spec.containers.iter().all(|c| app_done(&c.name));
    if all_done {
        a.pod_done = true;
        return a;
    }

    let sandbox = rt.ready_sandbox();
    let needs_sandbox = match sandbox {
        None => true,
        Some(s) => s.ips.is_empty() && !spec.host_network.unwrap_or(false),
    };
    if needs_sandbox {
        a.kill_pod = !rt.sandboxes.is_empty() || rt.running().next().is_some();
        a.create_sandbox = true;
        // A new sandbox runs the init containers again from the first.
        if !inits.is_empty() {
            a.start_init = Some(next_attempt(rt, &inits[0].name, 0));
        } else {
            for (idx, c) in spec.containers.iter().enumerate() {
                if !app_done(&c.name) {
                    a.start.push(next_attempt(rt, &c.name, idx));
                }
            }
        }
        return a;
    }

    let initialized =
        inits.is_empty() || spec.containers.iter().any(|c| rt.latest(&c.name).is_some());
    if !initialized {
        for (idx, c) in inits.iter().enumerate() {
            match rt.latest(&c.name) {
                None => {
                    a.start_init = Some(Start {
                        index: idx,
                        attempt: 0,
                        restart: false,
                    });
                }
                Some(s) if !is_dead(s) => {}
                Some(s) if exit_code(s) == 0 => continue,
                Some(s) => {
                    if policy == "Never" {
                        a.init_failed = true;
                    } else {
                        restart_or_wait(i, &mut a, s, idx, true);
                    }
                }
            }
            return a;
        }
        // Every init container succeeded: fall through to the app containers.
    }

    for (idx, c) in spec.containers.iter().enumerate() {
        match rt.latest(&c.name) {
            None => a.start.push(Start {
                index: idx,
                attempt: 0,
                restart: false,
            }),
            Some(s) if s.state == ContainerState::Running => {
                if let Some(msg) = (i.liveness_failure)(&s.id) {
                    a.kill.push(Kill {
                        id: s.id.clone(),
                        name: c.name.clone(),
                        message: format!(
                            "Container {} failed liveness probe, will be restarted: {msg}",
                            c.name
                        ),
                    });
                    a.requeue(Duration::ZERO);
                }
            }
            Some(s) => {
                if should_restart(policy, exit_code(s)) {
                    restart_or_wait(i, &mut a, s, idx, false);
                }
            }
        }
    }
    a
}

fn next_attempt(rt: &RuntimePod, name: &str, index: usize) -> Start {
    match rt.latest(name) {
        Some(c) => Start {
            index,
            attempt: c.attempt + 1,
            restart: true,
        },
        None => Start {
            index,
            attempt: 0,
            restart: false,
        },
    }
}

fn restart_or_wait(
    i: &Inputs<'_>,
    a: &mut PodActions,
    dead: &ContainerStatus,
    index: usize,
    init: bool,
) {
    let ran = match (dead.started_at, dead.finished_at) {
        (Some(s), Some(f)) => f.duration_since(s).unwrap_or_default(),
        _ => Duration::ZERO,
    };
    let start = Start {
        index,
        attempt: dead.attempt + 1,
        restart: true,
    };
    if ran >= backoff::RESET_AFTER {
        a.reset_backoff.push(dead.name.clone());
    } else if let Some(wait) = i.backoff.remaining(&dead.name, failed_at(dead), i.now) {
        let delay = i.backoff.delay(&dead.name).unwrap_or(wait);
        let meta = &i.pod.metadata;
        a.waiting.insert(
            dead.name.clone(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})",
                    delay.as_secs(),
                    dead.name,
                    meta.name.as_deref().unwrap_or_default(),
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.uid.as_deref().unwrap_or_default(),
                ),
            },
        );
        a.requeue(wait);
        return;
    }
    if init {
        a.start_init = Some(start);
    } else {
        a.start.push(start);
    }
}

#[cfg(test)]
#[path = "actions_tests.rs"]
mod tests;
