//! CPU rates from cumulative counters. cgroups count CPU time; "cores in use" is the
//! slope between two samples, so the tracker keeps a short history per cgroup (as cAdvisor
//! keeps its housekeeping samples) and measures against one at least [`MIN_WINDOW`] old.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The shortest window a rate is computed over: shorter ones are mostly noise.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// Samples closer together than this are not kept (frequent scrapes must not grow memory).
const SPACING: Duration = Duration::from_millis(250);
/// Samples older than this are dropped, except the one a rate still needs.
const MAX_AGE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub time: SystemTime,
    pub cpu_nanos: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub nano_cores: u64,
    pub window: Duration,
}

#[derive(Default)]
pub struct RateTracker {
    history: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl RateTracker {
    /// Records `cur` for `key` and returns the rate since the newest earlier sample at least
    /// [`MIN_WINDOW`] older, or None when there is none yet.
    pub fn observe(&self, key: &str, cur: Sample) -> Option<Rate> {
        let mut all = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let h = all.entry(key.to_string()).or_default();
        // A counter that went backwards belongs to a recreated cgroup: start over.
        if h.back().is_some_and(|last| last.cpu_nanos > cur.cpu_nanos) {
            h.clear();
        }
        let base = h
            .iter()
            .rev()
            .find(|s| {
                cur.time
                    .duration_since(s.time)
                    .is_ok_and(|d| d >= MIN_WINDOW)
            })
            .copied();
        let spaced = h.back().is_none_or(|last| {
            cur.time
                .duration_since(last.time)
                .is_ok_and(|d| d >= SPACING)
        });
        if spaced {
            h.push_back(cur);
        }
        // Keep the base (the next rate's likely base too) even when old.
        while h.len() > 2
            && h.get(1)
                .is_some_and(|s| cur.time.duration_since(s.time).is_ok_and(|d| d >= MAX_AGE))
        {
            h.pop_front();
        }
        let base = base?;
        let window = cur.time.duration_since(base.time).ok()?;
        let used = u128::from(cur.cpu_nanos - base.cpu_nanos);
        let nano_cores = used * 1_000_000_000 / window.as_nanos().max(1);
        Some(Rate {
            nano_cores: u64::try_from(nano_cores).unwrap_or(u64::MAX),
            window,
        })
    }

    /// Forgets every cgroup not in `live`.
    pub fn retain(&self, live: &HashSet<String>) {
        let mut all = self.history.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|k, _| live.contains(k));
    }

    #[cfg(test)]
    fn len(&self, key: &str) -> usize {
        let all = self.history.lock().unwrap_or_else(|e| e.into_inner());
        all.get(key).map(VecDeque::len).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, cpu: u64) -> Sample {
        Sample {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            cpu_nanos: cpu,
        }
    }

    #[test]
    fn rate_is_the_slope_over_at_least_the_minimum_window() {
        let t = RateTracker::default();
        assert_eq!(t.observe("c", at(0, 0)), None);
        // 500 ms later: too short a window.
        assert_eq!(t.observe("c", at(500, 250_000_000)), None);
        // Half a core, measured from the newest sample at least a window old (500 ms).
        assert_eq!(
            t.observe("c", at(2_000, 1_000_000_000)),
            Some(Rate {
                nano_cores: 500_000_000,
                window: Duration::from_millis(1_500)
            })
        );
        // The newest sample at least 1 s old is the base: (2000 ms, 1e9).
        assert_eq!(
            t.observe("c", at(3_000, 3_000_000_000)),
            Some(Rate {
                nano_cores: 2_000_000_000,
                window: Duration::from_secs(1)
            })
        );
    }

    #[test]
    fn a_reset_counter_starts_over_and_keys_are_separate() {
        let t = RateTracker::default();
        t.observe("a", at(0, 5_000));
        assert_eq!(t.observe("a", at(2_000, 10)), None);
        assert_eq!(t.observe("b", at(2_000, 10)), None);
        assert!(t.observe("a", at(4_000, 10)).is_some());
        t.retain(&HashSet::from(["a".to_string()]));
        assert_eq!(t.len("b"), 0);
        assert!(t.len("a") > 0);
    }

    #[test]
    fn history_stays_bounded_under_frequent_scrapes() {
        let t = RateTracker::default();
        for i in 0..10_000u64 {
            t.observe("c", at(i * 10, i * 1000));
        }
        // 100 s of scrapes every 10 ms: at most MAX_AGE / SPACING samples survive.
        assert!(t.len("c") <= 130, "{}", t.len("c"));
        let r = t.observe("c", at(100_010, 10_001_000)).expect("a rate");
        assert_eq!(r.nano_cores, 100_000);
    }
}
