//! The scheduling queue: pending pods by priority (then age), a back-off area for pods whose
//! attempt failed with an error, and an unschedulable area whose pods return when the
//! cluster changes (a node added or updated, a pod deleted) or after a minute.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::framework::PodInfo;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often even if nothing seems to change.
pub const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Active,
    Backoff,
    Unschedulable(Instant),
    /// Popped and being scheduled.
    InFlight,
}

struct Entry {
    info: Arc<PodInfo>,
    attempts: u32,
    area: Area,
    seq: u64,
}

#[derive(Default)]
pub struct SchedulingQueue {
    pods: HashMap<String, Entry>,
    /// (priority, oldest first, key); stale entries are skipped on pop.
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    backoff: BinaryHeap<Reverse<(Instant, String)>>,
    /// (when the pod is due for its periodic retry, key); stale entries (the pod moved or
    /// was marked again) are skipped. Keeps `flush` from walking every pending pod on each
    /// turn of the scheduler's loop, which at 10,000 queued pods cost more than a cycle.
    unschedulable: BinaryHeap<Reverse<(Instant, String)>>,
    seq: u64,
}

impl SchedulingQueue {
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// A new or changed pending pod. An update of a pod that waits as unschedulable moves
    /// it back to active: the change may be what makes it fit.
    pub fn add_or_update(&mut self, info: Arc<PodInfo>) {
        let key = info.key.clone();
        let priority = info.priority;
        match self.pods.get_mut(&key) {
            Some(e) => {
                e.info = info;
                if matches!(e.area, Area::Unschedulable(_)) {
                    e.area = Area::Active;
                    self.active.push((priority, Reverse(e.seq), key));
                }
            }
            None => {
                self.seq += 1;
                self.pods.insert(
                    key.clone(),
                    Entry {
                        info,
                        attempts: 0,
                        area: Area::Active,
                        seq: self.seq,
                    },
                );
                self.active.push((priority, Reverse(self.seq), key));
            }
        }
    }

    pub fn delete(&mut self, key: &str) {
        self.pods.remove(key);
    }

    /// The next pod to schedule, highest priority first.
    pub fn pop(&mut self) -> Option<Arc<PodInfo>> {
        while let Some((_, Reverse(seq), key)) = self.active.pop() {
            if let Some(e) = self.pods.get_mut(&key) {
                if e.area == Area::Active && e.seq == seq {
                    e.area = Area::InFlight;
                    e.attempts += 1;
                    return Some(e.info.clone());
                }
            }
        }
        None
    }

    /// Scheduled (bound or assumed): the pod leaves the queue.
    pub fn done(&mut self, key: &str) {
        self.pods.remove(key);
    }

    /// No node fits: wait for a cluster change.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        if let Some(e) = self.pods.get_mut(key) {
            e.area = Area::Unschedulable(now);
            self.unschedulable
                .push(Reverse((now + UNSCHEDULABLE_FLUSH, key.to_string())));
        }
    }

    /// The attempt failed (binding refused, API error): retry after back-off.
    pub fn backoff(&mut self, key: &str, now: Instant) {
        if let Some(e) = self.pods.get_mut(key) {
            e.area = Area::Backoff;
            let shift = e.attempts.saturating_sub(1).min(8);
            let delay = (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF);
            self.backoff.push(Reverse((now + delay, key.to_string())));
        }
    }

    /// Something changed in the cluster: every unschedulable pod gets another try.
    pub fn move_all_unschedulable(&mut self) {
        for (key, e) in self.pods.iter_mut() {
            if matches!(e.area, Area::Unschedulable(_)) {
                e.area = Area::Active;
                self.active
                    .push((e.info.priority, Reverse(e.seq), key.clone()));
            }
        }
    }

    /// Moves pods whose back-off expired, and unschedulable pods older than the flush
    /// interval, to active. Returns the next instant worth waking up for.
    pub fn flush(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse((at, _))) = self.backoff.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, key))) = self.backoff.pop() else {
                break;
            };
            if let Some(e) = self.pods.get_mut(&key) {
                if e.area == Area::Backoff {
                    e.area = Area::Active;
                    self.active.push((e.info.priority, Reverse(e.seq), key));
                }
            }
        }
        while let Some(Reverse((due, key))) = self.unschedulable.peek() {
            let current = self
                .pods
                .get(key)
                .is_some_and(|e| e.area == Area::Unschedulable(*due - UNSCHEDULABLE_FLUSH));
            if current && *due > now {
                break;
            }
            let Some(Reverse((_, key))) = self.unschedulable.pop() else {
                break;
            };
            if current {
                if let Some(e) = self.pods.get_mut(&key) {
                    e.area = Area::Active;
                    self.active.push((e.info.priority, Reverse(e.seq), key));
                }
            }
        }
        let backoff = self.backoff.peek().map(|Reverse((at, _))| *at);
        let unschedulable = self.unschedulable.peek().map(|Reverse((at, _))| *at);
        match (backoff, unschedulable) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::types::testing::*;

    fn prio(name: &str, p: i32) -> Arc<PodInfo> {
        let mut pod = pod(name, "1m", "1");
        pod.spec.as_mut().unwrap().priority = Some(p);
        Arc::new(info(pod))
    }

    #[test]
    fn priority_then_age() {
        let mut q = SchedulingQueue::default();
        q.add_or_update(prio("low", 0));
        q.add_or_update(prio("high", 10));
        q.add_or_update(prio("low2", 0));
        let order: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|p| p.key.clone())
            .collect();
        assert_eq!(order, ["default/high", "default/low", "default/low2"]);
    }

    #[test]
    fn unschedulable_pods_return_on_change_or_flush() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        q.add_or_update(prio("p", 0));
        let p = q.pop().unwrap();
        q.unschedulable(&p.key, now);
        assert!(q.pop().is_none());
        q.move_all_unschedulable();
        assert!(q.pop().is_some());
        q.unschedulable(&p.key, now);
        assert_eq!(q.flush(now), Some(now + UNSCHEDULABLE_FLUSH));
        q.flush(now + UNSCHEDULABLE_FLUSH);
        assert!(q.pop().is_some());
    }

    #[test]
    fn a_retried_unschedulable_pod_is_flushed_from_its_latest_mark_only() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        q.add_or_update(prio("p", 0));
        let key = q.pop().unwrap().key.clone();
        q.unschedulable(&key, now);
        q.move_all_unschedulable();
        assert!(q.pop().is_some());
        let later = now + Duration::from_secs(5);
        q.unschedulable(&key, later);
        assert_eq!(
            q.flush(now + UNSCHEDULABLE_FLUSH),
            Some(later + UNSCHEDULABLE_FLUSH),
            "the first mark is stale: no early retry"
        );
        assert!(q.pop().is_none());
        q.flush(later + UNSCHEDULABLE_FLUSH);
        assert!(q.pop().is_some());
        q.unschedulable(&key, later);
        q.done(&key);
        assert_eq!(
            q.flush(later),
            None,
            "a bound pod leaves nothing to wake for"
        );
    }

    #[test]
    fn backoff_grows_and_expires() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        q.add_or_update(prio("p", 0));
        let key = q.pop().unwrap().key.clone();
        q.backoff(&key, now);
        assert_eq!(q.flush(now), Some(now + INITIAL_BACKOFF));
        q.flush(now + INITIAL_BACKOFF);
        assert!(q.pop().is_some());
        q.backoff(&key, now);
        assert_eq!(
            q.flush(now),
            Some(now + INITIAL_BACKOFF * 2),
            "second failure waits longer"
        );
        q.delete(&key);
        q.flush(now + MAX_BACKOFF);
        assert!(q.pop().is_none());
        assert!(q.is_empty());
    }
}
