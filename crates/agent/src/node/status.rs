//! The node status manager: conditions from real checks, reported to `nodes/status`.
//!
//! A pressure condition is True while its signal is below the node's hard eviction
//! threshold ([`super::eviction`]; by default MemoryPressure below 100Mi available,
//! DiskPressure below 10% of the data dir's filesystem available, PIDPressure below 10% of
//! `pid_max`). Ready is False while the runtime binary or the CNI plugins the node needs
//! are missing.
//!
//! A condition's `lastTransitionTime` moves only when its status changes;
//! `lastHeartbeatTime` moves on every report.

use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};

use super::eviction::EvictionThresholds;
use super::machine::{self, FsUsage, MemInfo, PidUsage};
use super::registration::{self, NodeFacts};
use super::NodeError;
use crate::events::{EventRecorder, EventType};

/// The CNI plugins every pod sandbox runs.
pub const REQUIRED_CNI_PLUGINS: &[&str] = &["bridge", "host-local", "loopback", "portmap"];

/// One round of measurements; `None` where the machine could not be read.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    pub memory: Option<MemInfo>,
    pub disk: Option<FsUsage>,
    pub pids: Option<PidUsage>,
    /// Why the node cannot run pods, if it cannot.
    pub runtime_problem: Option<String>,
    /// What the signals are judged against.
    pub thresholds: EvictionThresholds,
}

pub fn observe(facts: &NodeFacts) -> Observations {
    Observations {
        memory: machine::meminfo().ok(),
        disk: machine::fs_usage(&facts.data_dir).ok(),
        pids: machine::pid_usage().ok(),
        runtime_problem: runtime_problem(facts),
        thresholds: facts.eviction,
    }
}

fn runtime_problem(facts: &NodeFacts) -> Option<String> {
    if !is_executable(&facts.runtime_binary) {
        return Some(format!(
            "container runtime is down: {} is not an executable",
            facts.runtime_binary.display()
        ));
    }
    let missing: Vec<&str> = REQUIRED_CNI_PLUGINS
        .iter()
        .copied()
        .filter(|p| !is_executable(&facts.cni_bin_dir.join(p)))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:CNI plugins {} not found in {}",
            missing.join(", "),
            facts.cni_bin_dir.display()
        )
    })
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

struct Verdict {
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
    message: String,
}

fn verdicts(o: &Observations) -> [Verdict; 4] {
    let pressure = |type_, under: Option<bool>, yes, no, msg_yes: &str, msg_no: &str| match under {
        Some(true) => Verdict {
            type_,
            status: "True",
            reason: yes,
            message: msg_yes.to_string(),
        },
        Some(false) => Verdict {
            type_,
            status: "False",
            reason: no,
            message: msg_no.to_string(),
        },
        None => Verdict {
            type_,
            status: "Unknown",
            reason: "NodeStatusUnknown",
            message: "the kubelet could not read this signal".to_string(),
        },
    };
    let memory_low = o.memory.map(|m| o.thresholds.memory_pressure(m));
    let disk_low = o.disk.map(|d| o.thresholds.disk_pressure(d));
    let pids_low = o.pids.map(|p| o.thresholds.pid_pressure(p));
    let ready = match &o.runtime_problem {
        None => Verdict {
            type_: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "kubelet is posting ready status".into(),
        },
        Some(why) => Verdict {
            type_: "Ready",
            status: "False",
            reason: "KubeletNotReady",
            message: why.clone(),
        },
    };
    [
        pressure(
            "MemoryPressure",
            memory_low,
            "KubeletHasInsufficientMemory",
            "KubeletHasSufficientMemory",
            "kubelet has insufficient memory available",
            "kubelet has sufficient memory available",
        ),
        pressure(
            "DiskPressure",
            disk_low,
            "KubeletHasDiskPressure",
            "KubeletHasNoDiskPressure",
            "kubelet has disk pressure",
            "kubelet has no disk pressure",
        ),
        pressure(
            "PIDPressure",
            pids_low,
            "KubeletHasInsufficientPID",
            "KubeletHasSufficientPID",
            "kubelet has insufficient PID available",
            "kubelet has sufficient PID available",
        ),
        ready,
    ]
}

/// The four conditions now, keeping each one's transition time from `prev` unless its
/// status changed.
pub fn conditions(
    prev: &[NodeCondition],
    o: &Observations,
    now: jiff::Timestamp,
) -> Vec<NodeCondition> {
    verdicts(o)
        .into_iter()
        .map(|v| {
            let before = prev.iter().find(|c| c.type_ == v.type_);
            let transition = match before {
                Some(c) if c.status == v.status => c.last_transition_time.clone(),
                _ => None,
            }
            .unwrap_or(Time(now));
            NodeCondition {
                type_: v.type_.to_string(),
                status: v.status.to_string(),
                reason: Some(v.reason.to_string()),
                message: Some(v.message),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(transition),
            }
        })
        .collect()
}

fn status_of<'a>(conds: &'a [NodeCondition], type_: &str) -> Option<&'a str> {
    conds
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// Reports the node's status each time it is asked; remembers the last conditions so that
/// transition times and events follow real changes.
pub struct StatusReporter {
    client: kube::Client,
    facts: NodeFacts,
    recorder: EventRecorder,
    last: Vec<NodeCondition>,
    /// The Node's uid as last seen: it changes when the Node is deleted and registered again.
    uid: Option<String>,
}

impl StatusReporter {
    pub fn new(client: kube::Client, facts: NodeFacts, recorder: EventRecorder) -> Self {
        StatusReporter {
            client,
            facts,
            recorder,
            last: Vec::new(),
            uid: None,
        }
    }

    /// Measures and patches `nodes/status`. A Node deleted under us is registered again,
    /// as the kubelet does.
    pub async fn report(&mut self) -> Result<(), NodeError> {
        let api: Api<Node> = Api::all(self.client.clone());
        if self.last.is_empty() {
            // First report of this incarnation: continue from what the API has.
            match api.get_opt(&self.facts.name).await? {
                Some(node) => {
                    self.uid = node.metadata.uid.clone();
                    self.last = node.status.and_then(|s| s.conditions).unwrap_or_default();
                }
                None => {
                    let node = registration::register(&self.client, &self.facts).await?;
                    self.uid = node.metadata.uid;
                }
            }
        }
        let facts = self.facts.clone();
        let (observed, resources) =
            tokio::task::spawn_blocking(move || (observe(&facts), registration::resources(&facts)))
                .await
                .map_err(|e| NodeError::Machine(format!("the status task failed: {e}")))?;
        let (capacity, allocatable) = resources?;
        let now = jiff::Timestamp::now();
        let conds = conditions(&self.last, &observed, now);
        let patch = serde_json::json!({
            "status": {
                "capacity": capacity,
                "allocatable": allocatable,
                "conditions": conds,
                "addresses": registration::addresses(&self.facts),
                "daemonEndpoints": registration::daemon_endpoints(&self.facts),
                "nodeInfo": registration::node_info(&self.facts),
            }
        });
        let result = api
            .patch_status(
                &self.facts.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
        match result {
            Ok(node) => self.uid = node.metadata.uid,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::warn!(node = %self.facts.name, "the Node was deleted; registering it again");
                let node = registration::register(&self.client, &self.facts).await?;
                self.uid = node.metadata.uid;
            }
            Err(e) => return Err(e.into()),
        }
        self.record_transitions(&conds);
        self.last = conds;
        Ok(())
    }

    /// The Node's uid as of the last report.
    pub fn node_uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    fn record_transitions(&self, now: &[NodeCondition]) {
        let events = [
            (
                "Ready",
                "True",
                EventType::Normal,
                "NodeReady",
                "status is now: NodeReady",
            ),
            (
                "Ready",
                "False",
                EventType::Normal,
                "NodeNotReady",
                "status is now: NodeNotReady",
            ),
            (
                "MemoryPressure",
                "True",
                EventType::Normal,
                "NodeHasInsufficientMemory",
                "status is now: NodeHasInsufficientMemory",
            ),
            (
                "MemoryPressure",
                "False",
                EventType::Normal,
                "NodeHasSufficientMemory",
                "status is now: NodeHasSufficientMemory",
            ),
            (
                "DiskPressure",
                "True",
                EventType::Normal,
                "NodeHasDiskPressure",
                "status is now: NodeHasDiskPressure",
            ),
            (
                "DiskPressure",
                "False",
                EventType::Normal,
                "NodeHasNoDiskPressure",
                "status is now: NodeHasNoDiskPressure",
            ),
            (
                "PIDPressure",
                "True",
                EventType::Normal,
                "NodeHasInsufficientPID",
                "status is now: NodeHasInsufficientPID",
            ),
            (
                "PIDPressure",
                "False",
                EventType::Normal,
                "NodeHasSufficientPID",
                "status is now: NodeHasSufficientPID",
            ),
        ];
        for (type_, status, kind, reason, message) in events {
            let was = status_of(&self.last, type_);
            if status_of(now, type_) == Some(status) && was != Some(status) {
                self.recorder
                    .node_event(&self.facts.name, kind, reason, message.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Observations {
        Observations {
            memory: Some(MemInfo {
                total_bytes: 8 << 30,
                available_bytes: 4 << 30,
            }),
            disk: Some(FsUsage {
                capacity_bytes: 100,
                available_bytes: 50,
            }),
            pids: Some(PidUsage {
                used: 100,
                max: 32768,
            }),
            runtime_problem: None,
            thresholds: EvictionThresholds::default(),
        }
    }

    fn find<'a>(c: &'a [NodeCondition], t: &str) -> &'a NodeCondition {
        c.iter().find(|x| x.type_ == t).unwrap()
    }

    #[test]
    fn a_healthy_node_is_ready_without_pressure() {
        let c = conditions(&[], &healthy(), jiff::Timestamp::now());
        assert_eq!(find(&c, "Ready").status, "True");
        assert_eq!(find(&c, "Ready").reason.as_deref(), Some("KubeletReady"));
        for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(find(&c, t).status, "False", "{t}");
        }
    }

    #[test]
    fn pressures_follow_the_thresholds() {
        let mut o = healthy();
        o.memory = Some(MemInfo {
            total_bytes: 8 << 30,
            available_bytes: 50 << 20,
        });
        o.disk = Some(FsUsage {
            capacity_bytes: 1000,
            available_bytes: 99,
        });
        o.pids = Some(PidUsage {
            used: 30000,
            max: 32768,
        });
        let c = conditions(&[], &o, jiff::Timestamp::now());
        assert_eq!(find(&c, "MemoryPressure").status, "True");
        assert_eq!(find(&c, "DiskPressure").status, "True");
        assert_eq!(find(&c, "PIDPressure").status, "True");
        // Pressure does not make the node NotReady (the kubelet evicts instead).
        assert_eq!(find(&c, "Ready").status, "True");
        o.disk = Some(FsUsage {
            capacity_bytes: 1000,
            available_bytes: 101,
        });
        let c = conditions(&[], &o, jiff::Timestamp::now());
        assert_eq!(find(&c, "DiskPressure").status, "False");
        // The node's own thresholds decide, not fixed ones.
        o.thresholds = EvictionThresholds::parse("nodefs.available<20%").unwrap();
        let c = conditions(&[], &o, jiff::Timestamp::now());
        assert_eq!(find(&c, "DiskPressure").status, "True");
        assert_eq!(find(&c, "MemoryPressure").status, "False", "unwatched");
    }

    #[test]
    fn unreadable_signals_are_unknown_and_a_missing_runtime_is_not_ready() {
        let o = Observations {
            runtime_problem: Some("runc missing".into()),
            ..Default::default()
        };
        let c = conditions(&[], &o, jiff::Timestamp::now());
        assert_eq!(find(&c, "MemoryPressure").status, "Unknown");
        assert_eq!(find(&c, "Ready").status, "False");
        assert_eq!(find(&c, "Ready").message.as_deref(), Some("runc missing"));
    }

    #[test]
    fn transition_times_move_only_on_change() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let first = conditions(&[], &healthy(), t0);
        let mut sick = healthy();
        sick.runtime_problem = Some("x".into());
        let second = conditions(&first, &sick, t1);
        let ready = find(&second, "Ready");
        assert_eq!(ready.last_transition_time, Some(Time(t1)));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t1)));
        let mem = find(&second, "MemoryPressure");
        assert_eq!(mem.last_transition_time, Some(Time(t0)));
        assert_eq!(mem.last_heartbeat_time, Some(Time(t1)));
    }

    #[test]
    fn runtime_problems_name_what_is_missing() {
        let mut f = super::super::registration::tests::facts();
        let dir = tempfile::tempdir().unwrap();
        f.cni_bin_dir = dir.path().to_path_buf();
        f.runtime_binary = "/bin/sh".into();
        let why = runtime_problem(&f).unwrap();
        assert!(
            why.contains("bridge, host-local, loopback, portmap"),
            "{why}"
        );
        f.runtime_binary = dir.path().join("nope");
        assert!(runtime_problem(&f).unwrap().contains("runtime is down"));
    }
}
