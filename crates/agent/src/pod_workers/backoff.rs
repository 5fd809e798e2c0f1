//! Exponential back-off per key (a container, or an image pull): 10 s doubling to 300 s,
//! forgotten once the thing ran cleanly for 10 minutes (the kubelet's flowcontrol.Backoff).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting starts its back-off afresh.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    since: SystemTime,
}

#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, Entry>,
}

impl Backoff {
    /// The wait remaining before `key` may run again after failing at `failed_at`, or None
    /// when it may run now.
    pub fn remaining(&self, key: &str, failed_at: SystemTime, now: SystemTime) -> Option<Duration> {
        let e = self.entries.get(key)?;
        // A failure older than the entry belongs to an attempt already waited out.
        if failed_at < e.since {
            return None;
        }
        let until = failed_at + e.delay;
        until.duration_since(now).ok().filter(|d| !d.is_zero())
    }

    /// Records a (re)start of `key` at `now`: the next failure waits the doubled delay.
    pub fn next(&mut self, key: &str, now: SystemTime) {
        let delay = match self.entries.get(key) {
            None => INITIAL,
            Some(e) => (e.delay * 2).min(MAX),
        };
        self.entries
            .insert(key.to_string(), Entry { delay, since: now });
    }

    /// The current delay of `key` (for messages).
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut b = Backoff::default();
        assert_eq!(b.remaining("c", t0, t0), None, "first restart is immediate");
        b.next("c", t0);
        let fail = t0 + Duration::from_secs(1);
        assert_eq!(b.remaining("c", fail, fail), Some(INITIAL));
        assert_eq!(
            b.remaining("c", fail, fail + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(b.remaining("c", fail, fail + INITIAL), None);
        let mut delays = vec![];
        let mut t = fail + INITIAL;
        for _ in 0..8 {
            b.next("c", t);
            delays.push(b.delay("c").map(|d| d.as_secs()));
            t += Duration::from_secs(400);
        }
        assert_eq!(
            delays,
            [20, 40, 80, 160, 300, 300, 300, 300].map(Some).to_vec()
        );
        b.reset("c");
        assert_eq!(b.delay("c"), None);
        // A failure from before the last restart is not waited on again.
        b.next("c", t);
        assert_eq!(b.remaining("c", t - Duration::from_secs(1), t), None);
    }
}
