//! One probe worker: a task per (container, probe kind) that runs the probe every
//! `periodSeconds` after `initialDelaySeconds`, applies the success/failure thresholds and
//! publishes results, as the kubelet's prober worker does.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use tokio::time::MissedTickBehavior;

use super::probe::{self, Action, Outcome};
use super::{ProbeKind, ProbeUpdate, Shared};
use crate::events::EventType;

/// The probe's timing and thresholds with the API defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(probe: &Probe, kind: ProbeKind) -> Self {
        let secs = |v: Option<i32>, default: i32, min: i32| {
            Duration::from_secs(u64::try_from(v.unwrap_or(default).max(min)).unwrap_or(0))
        };
        let count =
            |v: Option<i32>, default: i32| u32::try_from(v.unwrap_or(default).max(1)).unwrap_or(1);
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            // Validation only allows 1 for liveness and startup; enforce it here too.
            success_threshold: match kind {
                ProbeKind::Readiness => count(probe.success_threshold, 1),
                _ => 1,
            },
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

pub(super) struct Worker {
    pub shared: Arc<Shared>,
    pub pod: Arc<Pod>,
    pub pod_uid: String,
    pub container: Container,
    /// `spec.containers{name}` or `spec.initContainers{name}`, for events.
    pub field_path: String,
    pub container_id: String,
    pub started_at: SystemTime,
    pub kind: ProbeKind,
    pub probe: Probe,
    pub action: Result<Action, String>,
}

/// Consecutive equal results, counted against the thresholds.
#[derive(Debug, Default)]
struct Run {
    last: Option<bool>,
    count: u32,
}

impl Worker {
    pub async fn run(self) {
        let timing = Timing::of(&self.probe, self.kind);
        let since_start = SystemTime::now()
            .duration_since(self.started_at)
            .unwrap_or_default();
        if let Some(wait) = timing.initial_delay.checked_sub(since_start) {
            tokio::time::sleep(wait).await;
        }
        let mut ticker = tokio::time::interval(timing.period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut run = Run::default();
        loop {
            ticker.tick().await;
            if !self.probe_once(&timing, &mut run).await {
                return;
            }
        }
    }

    /// One period's work; false when this worker has nothing more to do.
    async fn probe_once(&self, timing: &Timing, run: &mut Run) -> bool {
        let Some((has_startup, started)) =
            self.shared
                .gate(&self.pod_uid, &self.container.name, &self.container_id)
        else {
            return false;
        };
        match self.kind {
            // A passed startup probe is never run again for this container.
            ProbeKind::Startup if started => return false,
            // Liveness and readiness wait for the startup probe.
            ProbeKind::Liveness | ProbeKind::Readiness if has_startup && !started => return true,
            _ => {}
        }
        let outcome = match &self.action {
            Ok(action) => {
                probe::run(
                    action,
                    self.shared.runtime.as_ref(),
                    &self.container_id,
                    timing.timeout,
                )
                .await
            }
            Err(message) => Outcome::Error(message.clone()),
        };
        let kind = self.kind.label();
        let message = match &outcome {
            Outcome::Success(_) => String::new(),
            Outcome::Warning(m) => {
                self.event(
                    EventType::Warning,
                    "ProbeWarning",
                    format!("{kind} probe warning: {m}"),
                );
                String::new()
            }
            Outcome::Failure(m) => {
                self.event(
                    EventType::Warning,
                    "Unhealthy",
                    format!("{kind} probe failed: {m}"),
                );
                m.clone()
            }
            Outcome::Error(m) => {
                // A probe that could not run leaves the last result standing.
                self.event(
                    EventType::Warning,
                    "Unhealthy",
                    format!("{kind} probe errored: {m}"),
                );
                return true;
            }
        };
        let success = outcome.is_success();
        if run.last == Some(success) {
            run.count = run.count.saturating_add(1);
        } else {
            run.last = Some(success);
            run.count = 1;
        }
        let threshold = if success {
            timing.success_threshold
        } else {
            timing.failure_threshold
        };
        if run.count < threshold {
            return true;
        }
        let fatal = !success && matches!(self.kind, ProbeKind::Liveness | ProbeKind::Startup);
        let (changed, message) = if fatal {
            let kill = format!(
                "Container {} failed {} probe, will be restarted",
                self.container.name,
                kind.to_ascii_lowercase()
            );
            let grace = self
                .probe
                .termination_grace_period_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs);
            (
                self.shared.set_failed(
                    &self.pod_uid,
                    &self.container.name,
                    &self.container_id,
                    kill.clone(),
                    grace,
                ),
                kill,
            )
        } else {
            (
                self.shared.set_result(
                    &self.pod_uid,
                    &self.container.name,
                    &self.container_id,
                    self.kind,
                    success,
                ),
                message,
            )
        };
        if changed {
            let update = ProbeUpdate {
                pod_uid: self.pod_uid.clone(),
                container_name: self.container.name.clone(),
                container_id: self.container_id.clone(),
                kind: self.kind,
                success,
                message,
            };
            if self.shared.updates.send(update).await.is_err() {
                tracing::debug!("probe updates channel closed");
            }
        }
        // A failed liveness or startup probe holds until the container is replaced
        // (a new container ID gets a new worker).
        !fatal
    }

    fn event(&self, type_: EventType, reason: &str, message: String) {
        self.shared.recorder.pod_event(
            &self.pod,
            Some(self.field_path.clone()),
            type_,
            reason,
            message,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_api() {
        let t = Timing::of(&Probe::default(), ProbeKind::Readiness);
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!(t.initial_delay, Duration::ZERO);
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        let p = Probe {
            success_threshold: Some(4),
            failure_threshold: Some(0),
            timeout_seconds: Some(0),
            ..Default::default()
        };
        assert_eq!(Timing::of(&p, ProbeKind::Readiness).success_threshold, 4);
        assert_eq!(Timing::of(&p, ProbeKind::Liveness).success_threshold, 1);
        assert_eq!(Timing::of(&p, ProbeKind::Liveness).failure_threshold, 1);
        assert_eq!(
            Timing::of(&p, ProbeKind::Liveness).timeout,
            Duration::from_secs(1)
        );
    }
}
