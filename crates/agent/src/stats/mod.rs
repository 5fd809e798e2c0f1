//! Resource usage: the kubelet's Summary API (`GET /stats/summary`) from cgroup figures.
//!
//! The node's figures come from the root cgroup, each pod's from its sandbox's cgroup
//! parent, each container's from its own cgroup. Pods and containers are found through the
//! runtime (sandboxes and containers carry the io.kubernetes.* labels), so a restarted agent
//! reports what runs without any state of its own. CPU rates need two samples: the first
//! scrape that meets a new cgroup waits [`rates::MIN_WINDOW`] and samples again.

pub mod rates;
pub mod summary;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use runtime::cri::{CgroupStats, ContainerState, SandboxState};

use rates::{RateTracker, Sample};
use summary::{ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary};

/// GET /stats/summary.
pub fn router(
    containers: Arc<dyn runtime::ContainerRuntime>,
    sandboxes: Arc<dyn runtime::SandboxRuntime>,
    node_name: String,
) -> axum::Router {
    let collector = Arc::new(Collector::new(containers, sandboxes, node_name));
    axum::Router::new()
        .route("/stats/summary", get(serve))
        .with_state(collector)
}

async fn serve(State(c): State<Arc<Collector>>) -> Response {
    match c.summary().await {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("collecting stats: {e}"),
        )
            .into_response(),
    }
}

pub struct Collector {
    containers: Arc<dyn runtime::ContainerRuntime>,
    sandboxes: Arc<dyn runtime::SandboxRuntime>,
    node_name: String,
    rates: RateTracker,
}

/// Figures before rates are applied: (rate key, stats) for every cgroup of one scrape.
struct Raw {
    node: Option<CgroupStats>,
    pods: Vec<RawPod>,
}

struct RawPod {
    key: String,
    pod_ref: PodReference,
    start: SystemTime,
    stats: Option<CgroupStats>,
    containers: Vec<(String, String, Option<SystemTime>, Option<CgroupStats>)>,
}

impl Collector {
    pub fn new(
        containers: Arc<dyn runtime::ContainerRuntime>,
        sandboxes: Arc<dyn runtime::SandboxRuntime>,
        node_name: String,
    ) -> Self {
        Collector {
            containers,
            sandboxes,
            node_name,
            rates: RateTracker::default(),
        }
    }

    pub async fn summary(&self) -> runtime::cri::Result<Summary> {
        let mut raw = self.collect().await?;
        let (mut summary, complete) = self.build(&raw);
        if !complete {
            // A new cgroup has no earlier sample: measure over one window now.
            tokio::time::sleep(rates::MIN_WINDOW).await;
            raw = self.collect().await?;
            summary = self.build(&raw).0;
        }
        let live: HashSet<String> = std::iter::once("node".to_string())
            .chain(raw.pods.iter().flat_map(|p| {
                std::iter::once(p.key.clone()).chain(p.containers.iter().map(|c| c.0.clone()))
            }))
            .collect();
        self.rates.retain(&live);
        Ok(summary)
    }

    async fn collect(&self) -> runtime::cri::Result<Raw> {
        let node = match self.containers.cgroup_stats("").await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(error = %e, "node cgroup stats");
                None
            }
        };
        let sandboxes = self.sandboxes.list_pod_sandboxes().await?;
        let containers = self.containers.list_containers().await?;
        let mut pods = Vec::new();
        for sb in sandboxes.iter().filter(|s| s.state == SandboxState::Ready) {
            let stats = if sb.cgroup_parent.is_empty() {
                None
            } else {
                self.containers.cgroup_stats(&sb.cgroup_parent).await.ok()
            };
            let mut cs = Vec::new();
            for c in containers
                .iter()
                .filter(|c| c.sandbox_id == sb.id && c.state == ContainerState::Running)
            {
                let st = self.containers.container_stats(&c.id).await.ok();
                cs.push((format!("ctr/{}", c.id), c.name.clone(), c.started_at, st));
            }
            pods.push(RawPod {
                key: format!("pod/{}", sb.id),
                pod_ref: PodReference {
                    name: sb.name.clone(),
                    namespace: sb.namespace.clone(),
                    uid: sb.pod_uid.clone(),
                },
                start: sb.created_at,
                stats,
                containers: cs,
            });
        }
        Ok(Raw { node, pods })
    }

    /// The summary, and whether every cgroup had a CPU rate.
    fn build(&self, raw: &Raw) -> (Summary, bool) {
        let mut complete = true;
        let mut figures = |key: &str, s: &Option<CgroupStats>| {
            let Some(s) = s else {
                return (None, None);
            };
            let (cpu, memory) = self.figures(key, s);
            complete &= cpu.usage_nano_cores.is_some();
            (Some(cpu), Some(memory))
        };
        let (cpu, mut memory) = figures("node", &raw.node);
        if let Some(m) = memory.as_mut() {
            m.available_bytes =
                mem_total().map(|total| total.saturating_sub(m.working_set_bytes.unwrap_or(0)));
        }
        let node = NodeStats {
            node_name: self.node_name.clone(),
            start_time: boot_time(),
            cpu,
            memory,
        };
        let pods = raw
            .pods
            .iter()
            .map(|p| {
                let (cpu, memory) = figures(&p.key, &p.stats);
                let containers = p
                    .containers
                    .iter()
                    .map(|(key, name, started, st)| {
                        let (cpu, memory) = figures(key, st);
                        ContainerStats {
                            name: name.clone(),
                            start_time: started.and_then(rfc3339),
                            cpu,
                            memory,
                        }
                    })
                    .collect();
                PodStats {
                    pod_ref: p.pod_ref.clone(),
                    start_time: rfc3339(p.start),
                    containers,
                    cpu,
                    memory,
                }
            })
            .collect();
        (Summary { node, pods }, complete)
    }

    fn figures(&self, key: &str, s: &CgroupStats) -> (CpuStats, MemoryStats) {
        let time = rfc3339(s.timestamp).unwrap_or_default();
        let rate = self.rates.observe(
            key,
            Sample {
                time: s.timestamp,
                cpu_nanos: s.cpu_usage_nanos,
            },
        );
        (
            CpuStats {
                time: time.clone(),
                usage_nano_cores: rate.map(|r| r.nano_cores),
                usage_core_nano_seconds: Some(s.cpu_usage_nanos),
            },
            MemoryStats {
                time,
                available_bytes: None,
                usage_bytes: Some(s.memory_usage_bytes),
                working_set_bytes: Some(s.memory_working_set_bytes),
            },
        )
    }
}

fn rfc3339(t: SystemTime) -> Option<String> {
    jiff::Timestamp::try_from(t).ok().map(|t| t.to_string())
}

/// When the machine booted (`btime` of /proc/stat), the node's start time.
fn boot_time() -> Option<String> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let secs: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    jiff::Timestamp::from_second(secs)
        .ok()
        .map(|t| t.to_string())
}

fn mem_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests;
