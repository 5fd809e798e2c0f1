//! Scraping nodes' Summary API and turning cumulative CPU counters into rates, as
//! metrics-server does: CPU use is the slope of `usageCoreNanoSeconds` between two scrapes
//! at least [`MIN_WINDOW`] apart, so `window` is exactly the interval measured. A scrape
//! that meets a cgroup for the first time takes a second one a window later.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

/// The shortest interval a rate is measured over.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// Older scrapes are forgotten (only the newest per cgroup old enough is needed).
const MAX_AGE: Duration = Duration::from_secs(60);

// The Summary subset this needs (k8s.io/kubelet/pkg/apis/stats/v1alpha1).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    #[serde(default)]
    pub node: NodeStats,
    #[serde(default)]
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    #[serde(default)]
    pub node_name: String,
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub uid: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodRef,
    #[serde(default)]
    pub containers: Vec<ContainerStats>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: jiff::Timestamp,
    pub usage_core_nano_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub working_set_bytes: Option<u64>,
}

/// CPU and memory of one cgroup over a measured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub nano_cores: u64,
    pub memory_bytes: u64,
    pub timestamp: jiff::Timestamp,
    pub window: Duration,
}

/// Earlier cumulative samples per cgroup key.
#[derive(Default)]
pub struct Rates {
    history: Mutex<HashMap<String, VecDeque<(jiff::Timestamp, u64)>>>,
}

impl Rates {
    /// Records the sample and returns usage against the newest sample at least
    /// [`MIN_WINDOW`] older, if any.
    pub fn usage(&self, key: &str, cpu: &CpuStats, memory: Option<&MemoryStats>) -> Option<Usage> {
        let total = cpu.usage_core_nano_seconds?;
        let now = cpu.time;
        let mut all = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let h = all.entry(key.to_string()).or_default();
        if h.back().is_some_and(|(_, c)| *c > total) {
            h.clear();
        }
        let elapsed = |t: jiff::Timestamp| Duration::try_from(now.duration_since(t)).ok();
        let base = h
            .iter()
            .rev()
            .find(|(t, _)| elapsed(*t).is_some_and(|d| d >= MIN_WINDOW))
            .copied();
        if h.back().is_none_or(|(t, _)| *t < now) {
            h.push_back((now, total));
        }
        while h.len() > 2
            && h.get(1)
                .is_some_and(|(t, _)| elapsed(*t).is_some_and(|d| d >= MAX_AGE))
        {
            h.pop_front();
        }
        let (t, c) = base?;
        let window = elapsed(t)?;
        let rate = u128::from(total - c) * 1_000_000_000 / window.as_nanos().max(1);
        Some(Usage {
            nano_cores: u64::try_from(rate).unwrap_or(u64::MAX),
            memory_bytes: memory.and_then(|m| m.working_set_bytes).unwrap_or(0),
            timestamp: now,
            window,
        })
    }
}

impl Rates {
    /// Forgets cgroups not scraped for [`MAX_AGE`] (deleted pods, gone nodes).
    pub fn forget_stale(&self) {
        let now = jiff::Timestamp::now();
        let mut all = self.history.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, h| {
            h.back().is_some_and(|(t, _)| {
                Duration::try_from(now.duration_since(*t)).map_or(true, |d| d < MAX_AGE)
            })
        });
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.history.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(secs: i64, total: u64) -> CpuStats {
        CpuStats {
            time: jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap(),
            usage_core_nano_seconds: Some(total),
        }
    }

    #[test]
    fn usage_is_measured_between_scrapes() {
        let r = Rates::default();
        let mem = MemoryStats {
            working_set_bytes: Some(4096),
        };
        assert_eq!(r.usage("p/c", &cpu(0, 1_000), Some(&mem)), None);
        let u = r.usage("p/c", &cpu(4, 2_000_001_000), Some(&mem)).unwrap();
        assert_eq!(u.nano_cores, 500_000_000);
        assert_eq!(u.window, Duration::from_secs(4));
        assert_eq!(u.memory_bytes, 4096);
        // A restarted container's counter starts over.
        assert_eq!(r.usage("p/c", &cpu(5, 10), None), None);
        r.forget_stale();
        assert_eq!(r.keys(), 0, "samples from 2023 are stale");
        // Without a cumulative counter there is nothing to measure.
        let none = CpuStats {
            usage_core_nano_seconds: None,
            ..cpu(9, 0)
        };
        assert_eq!(r.usage("p/c", &none, None), None);
    }

    #[test]
    fn the_kubelet_summary_decodes() {
        let s: Summary = serde_json::from_str(
            r#"{"node":{"nodeName":"n1","cpu":{"time":"2026-01-01T00:00:00Z","usageNanoCores":5,"usageCoreNanoSeconds":9},
                "memory":{"time":"2026-01-01T00:00:00Z","workingSetBytes":100,"usageBytes":200}},
               "pods":[{"podRef":{"name":"p","namespace":"default","uid":"u"},"startTime":"2026-01-01T00:00:00Z",
                 "containers":[{"name":"c","cpu":{"time":"2026-01-01T00:00:00Z","usageCoreNanoSeconds":7}}]}]}"#,
        )
        .unwrap();
        assert_eq!(s.node.node_name, "n1");
        assert_eq!(
            s.pods[0].containers[0]
                .cpu
                .as_ref()
                .unwrap()
                .usage_core_nano_seconds,
            Some(7)
        );
        assert_eq!(s.node.memory.unwrap().working_set_bytes, Some(100));
    }
}
