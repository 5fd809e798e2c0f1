//! Leader election over a coordination.k8s.io/v1 Lease, as client-go's leaderelection does,
//! so that several servers can run the scheduler and the controllers side by side safely.
//!
//! A candidate reads the Lease and, when it is free (no holder, or the holder's
//! `renewTime + leaseDurationSeconds` has passed) or already its own, writes itself in with
//! the resourceVersion it read: the API server's compare-and-swap makes sure that of two
//! candidates racing for an expired Lease exactly one wins. The leader renews every
//! `retry_period`; when it cannot renew for `renew_deadline` (shorter than the lease
//! duration, so it stops before anyone else may start) it steps down. On shutdown it
//! releases the Lease (holder cleared) so a successor takes over at once instead of
//! waiting for the lease to expire.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("invalid leader election configuration: {0}")]
    Config(String),
}

/// client-go's defaults (kube-controller-manager's and kube-scheduler's flags).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
/// client-go's JitterFactor: waits between acquire attempts are spread over
/// `[retry_period, retry_period * (1 + JITTER))` so candidates do not collide in lockstep.
const JITTER: f64 = 1.2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    pub lease_namespace: String,
    pub lease_name: String,
    /// Unique per candidate process: `<hostname>_<uuid>` as kube-controller-manager uses.
    pub identity: String,
    /// How long others wait after the last renewal before taking the Lease over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// The wait between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// A candidate for `namespace/name` with the default timings and a fresh identity.
    pub fn new(namespace: &str, name: &str) -> Self {
        LeaderElectionConfig {
            lease_namespace: namespace.to_string(),
            lease_name: name.to_string(),
            identity: default_identity(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    /// client-go's checks: a leader must give up before its lease can expire under it.
    pub fn validate(&self) -> Result<(), Error> {
        if self.identity.is_empty() {
            return Err(Error::Config("the identity is empty".into()));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(Error::Config(
                "the lease duration must be greater than the renew deadline".into(),
            ));
        }
        if self.renew_deadline.as_secs_f64() <= JITTER * self.retry_period.as_secs_f64() {
            return Err(Error::Config(
                "the renew deadline must be greater than retry period × 1.2".into(),
            ));
        }
        if self.retry_period.is_zero() || self.lease_duration.as_secs() < 1 {
            return Err(Error::Config(
                "the retry period and lease duration must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// `<hostname>_<uuid>`: unique even for two processes on one host.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// What a candidate does with the Lease it just read.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// No Lease yet: create it holding it.
    Create(LeaseSpec),
    /// Write this record with the resourceVersion read (a renewal or a takeover).
    Update(LeaseSpec),
    /// Someone else holds a valid Lease.
    HeldBy(String),
}

/// Whether `spec`'s holder still holds it at `now`.
pub fn is_held(spec: &LeaseSpec, now: jiff::Timestamp) -> bool {
    if spec.holder_identity.as_deref().unwrap_or("").is_empty() {
        return false;
    }
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return false;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    match renewed.checked_add(jiff::SignedDuration::from_secs(duration)) {
        Ok(expires) => expires > now,
        Err(_) => true,
    }
}

/// client-go's tryAcquireOrRenew decision: the record `identity` would write, given the
/// Lease read (`None`: it does not exist). The holder keeps its acquireTime and the
/// transition count; a new holder sets acquireTime and counts one more transition.
pub fn attempt(
    current: Option<&LeaseSpec>,
    identity: &str,
    lease_duration: Duration,
    now: jiff::Timestamp,
) -> Attempt {
    let duration_seconds = i32::try_from(lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(current) = current else {
        return Attempt::Create(LeaseSpec {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(duration_seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..Default::default()
        });
    };
    let holder = current.holder_identity.as_deref().unwrap_or("");
    if holder == identity {
        return Attempt::Update(LeaseSpec {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(duration_seconds),
            acquire_time: current.acquire_time.clone().or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(current.lease_transitions.unwrap_or(0)),
            ..current.clone()
        });
    }
    if is_held(current, now) {
        return Attempt::HeldBy(holder.to_string());
    }
    Attempt::Update(LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(duration_seconds),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(current.lease_transitions.unwrap_or(0).saturating_add(1)),
        ..current.clone()
    })
}

/// The record a leader leaves behind on a clean shutdown: no holder, so anyone may take it
/// at once; the transition count stays for the successor to increment.
pub fn released(current: &LeaseSpec, now: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: current.lease_transitions,
        ..current.clone()
    }
}

/// How one read-decide-write round ended.
#[derive(Debug)]
enum Round {
    /// This candidate holds the Lease now.
    Leading,
    /// Another candidate holds a valid Lease.
    HeldBy(String),
    /// Someone wrote the Lease between our read and our write (the compare-and-swap lost).
    Conflict,
}

/// One candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
}

impl LeaderElector {
    pub fn new(client: kube::Client, config: LeaderElectionConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(LeaderElector {
            api: Api::namespaced(client, &config.lease_namespace),
            config,
        })
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Campaigns, leads, and campaigns again after losing the Lease, until `shutdown`;
    /// `leading` says at every moment whether this candidate leads. A leader that shuts
    /// down releases the Lease.
    pub async fn run(self, leading: watch::Sender<bool>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let lease = format!("{}/{}", self.config.lease_namespace, self.config.lease_name);
        loop {
            // Campaign: the first attempt at once, so a lone server leads immediately.
            let mut wait = Duration::ZERO;
            let mut renewed = loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(wait) => {}
                }
                let attempted = Instant::now();
                match self.try_acquire_or_renew().await {
                    Ok(Round::Leading) => break attempted,
                    Ok(Round::HeldBy(holder)) => {
                        tracing::debug!(%lease, %holder, "the lease is held by another candidate")
                    }
                    Ok(Round::Conflict) => {
                        tracing::debug!(%lease, "another candidate wrote the lease first")
                    }
                    Err(e) => tracing::warn!(%lease, error = %e, "acquiring the lease failed"),
                }
                wait = jittered(self.config.retry_period);
            };
            tracing::info!(%lease, identity = %self.config.identity, "became leader");
            let _ = leading.send(true);

            let stepped_down = loop {
                tokio::select! {
                    () = &mut shutdown => break false,
                    () = tokio::time::sleep(self.config.retry_period) => {}
                }
                let left = self.config.renew_deadline.saturating_sub(renewed.elapsed());
                // The renewTime written is taken before the request: count from then, so a
                // slow round cannot stretch our tenure past what the others see.
                let attempted = Instant::now();
                match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                    Ok(Ok(Round::Leading)) => renewed = attempted,
                    Ok(Ok(Round::HeldBy(holder))) => {
                        tracing::warn!(%lease, %holder, "another candidate took the lease");
                        break true;
                    }
                    // Re-read on the next round: it tells whether the Lease is still ours.
                    Ok(Ok(Round::Conflict)) => {
                        tracing::debug!(%lease, "the lease changed under the renewal")
                    }
                    Ok(Err(e)) => tracing::warn!(%lease, error = %e, "renewing the lease failed"),
                    Err(_) => tracing::warn!(%lease, "renewing the lease timed out"),
                }
                if renewed.elapsed() >= self.config.renew_deadline {
                    tracing::warn!(%lease, "failed to renew the lease within the renew deadline");
                    break true;
                }
            };
            let _ = leading.send(false);
            if !stepped_down {
                if let Err(e) = self.release().await {
                    tracing::warn!(%lease, error = %e, "releasing the lease failed");
                } else {
                    tracing::info!(%lease, "released the lease");
                }
                return;
            }
            tracing::warn!(%lease, "stopped leading; campaigning again");
        }
    }

    /// One read-decide-write round.
    async fn try_acquire_or_renew(&self) -> Result<Round, kube::Error> {
        let now = jiff::Timestamp::now();
        let current = self.api.get_opt(&self.config.lease_name).await?;
        let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        match attempt(
            spec.as_ref(),
            &self.config.identity,
            self.config.lease_duration,
            now,
        ) {
            Attempt::HeldBy(holder) => Ok(Round::HeldBy(holder)),
            Attempt::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.lease_name.clone()),
                        namespace: Some(self.config.lease_namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(Round::Leading),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Conflict),
                    Err(e) => Err(e),
                }
            }
            Attempt::Update(spec) => {
                let Some(mut lease) = current else {
                    return Ok(Round::Conflict);
                };
                lease.spec = Some(spec);
                // The resourceVersion read rides along: a concurrent writer makes this 409.
                match self
                    .api
                    .replace(&self.config.lease_name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(Round::Leading),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Conflict),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        lease.spec = Some(released(&spec, jiff::Timestamp::now()));
        self.api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }
}

fn jittered(period: Duration) -> Duration {
    period.mul_f64(1.0 + rand::random::<f64>() * JITTER)
}

/// What an elected component gets: completes when it must stop.
pub type StopSignal = futures::future::BoxFuture<'static, ()>;

/// How long a component gets to stop after its leadership ends before it is aborted.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The pause before a component that ended by itself while leading is started again.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Runs `start(stop)` only while this candidate leads, as kube-controller-manager and
/// kube-scheduler run their loops from OnStartedLeading: `stop` completes when the Lease
/// is lost or on `shutdown`; a component that has not finished [`STOP_GRACE`] later is
/// aborted; one that ends by itself while leading is started again. After losing the Lease
/// the candidate campaigns again, and starts a fresh component when it wins. On shutdown
/// the component is stopped first and the Lease released after, so the successor never
/// overlaps with it.
pub async fn run_while_leading<F, Fut>(
    elector: LeaderElector,
    shutdown: impl Future<Output = ()> + Send,
    mut start: F,
) where
    F: FnMut(StopSignal) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let lease = format!(
        "{}/{}",
        elector.config.lease_namespace, elector.config.lease_name
    );
    let (leading_tx, mut leading) = watch::channel(false);
    let (elector_stop_tx, elector_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let elector_task = tokio::spawn(elector.run(leading_tx, async move {
        let _ = elector_stop_rx.await;
    }));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            r = leading.wait_for(|l| *l) => if r.is_err() { break },
        }
        let (stop_tx, _) = watch::channel(false);
        let signal = |tx: &watch::Sender<bool>| -> StopSignal {
            let mut rx = tx.subscribe();
            Box::pin(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
        };
        let mut task = tokio::spawn(start(signal(&stop_tx)));
        let mut finished = false;
        let restart = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(restart);
        let shutting_down = loop {
            tokio::select! {
                () = &mut shutdown => break true,
                r = leading.wait_for(|l| !*l) => {
                    let _ = r;
                    break false;
                }
                done = &mut task, if !finished => {
                    finished = true;
                    if let Err(e) = done {
                        tracing::error!(%lease, error = %e, "the elected component's task failed");
                    } else {
                        tracing::warn!(%lease, "the elected component stopped while leading");
                    }
                    // Still the leader: nobody else will run it, so start it again.
                    restart.as_mut().reset(tokio::time::Instant::now() + RESTART_DELAY);
                }
                () = &mut restart, if finished => {
                    tracing::info!(%lease, "restarting the elected component");
                    task = tokio::spawn(start(signal(&stop_tx)));
                    finished = false;
                }
            }
        };
        let _ = stop_tx.send(true);
        if !finished && tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            tracing::warn!(%lease, "the elected component did not stop in time; aborting it");
            task.abort();
        }
        if shutting_down {
            break;
        }
    }
    let _ = elector_stop_tx.send(());
    let _ = elector_task.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn held(holder: &str, renewed: i64, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(at(0))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn a_missing_lease_is_created_held_by_the_candidate() {
        let Attempt::Create(spec) = attempt(None, "a", D, at(5)) else {
            panic!("expected a create");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(5))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
        assert_eq!(spec.lease_transitions, Some(0));
    }

    #[test]
    fn a_valid_lease_of_another_holder_is_not_taken() {
        let lease = held("b", 10, 3);
        assert_eq!(
            attempt(Some(&lease), "a", D, at(10)),
            Attempt::HeldBy("b".into())
        );
        // Still valid one second before renewTime + leaseDurationSeconds.
        assert_eq!(
            attempt(Some(&lease), "a", D, at(24)),
            Attempt::HeldBy("b".into())
        );
    }

    #[test]
    fn an_expired_lease_is_taken_over_counting_a_transition() {
        let lease = held("b", 10, 3);
        let Attempt::Update(spec) = attempt(Some(&lease), "a", D, at(25)) else {
            panic!("expected a takeover");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(25))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(25))));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn the_holder_renews_keeping_acquire_time_and_transitions() {
        let lease = held("a", 10, 3);
        // Even after expiry the holder may renew (nobody else took it).
        for now in [12, 40] {
            let Attempt::Update(spec) = attempt(Some(&lease), "a", D, at(now)) else {
                panic!("expected a renewal");
            };
            assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
            assert_eq!(spec.renew_time, Some(MicroTime(at(now))));
            assert_eq!(spec.lease_transitions, Some(3));
        }
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let lease = released(&held("b", 10, 3), at(11));
        assert!(!is_held(&lease, at(11)));
        assert_eq!(lease.lease_transitions, Some(3));
        let Attempt::Update(spec) = attempt(Some(&lease), "a", D, at(11)) else {
            panic!("expected an acquisition");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[test]
    fn a_lease_without_renew_time_or_holder_is_free() {
        let mut lease = held("b", 10, 0);
        lease.renew_time = None;
        assert!(!is_held(&lease, at(11)));
        let mut lease = held("", 10, 0);
        lease.holder_identity = Some(String::new());
        assert!(!is_held(&lease, at(11)));
        assert!(is_held(&held("b", 10, 0), at(11)));
    }

    #[test]
    fn the_timings_are_checked_as_client_go_does() {
        let mut c = LeaderElectionConfig::new("kube-system", "x");
        assert!(c.validate().is_ok());
        assert!(c.identity.contains('_'));
        c.renew_deadline = c.lease_duration;
        assert!(c.validate().is_err());
        c.renew_deadline = Duration::from_secs(2);
        assert!(c.validate().is_err());
        let other = LeaderElectionConfig::new("kube-system", "x");
        assert_ne!(
            other.identity,
            LeaderElectionConfig::new("kube-system", "x").identity
        );
    }

    /// An in-memory coordination/v1 Lease endpoint with the API server's semantics that
    /// matter here: create conflicts when the Lease exists, update conflicts when the
    /// resourceVersion is stale. Each candidate's client can be cut off (500s).
    mod fake {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};

        use bytes::Bytes;
        use http_body_util::{BodyExt, Full};
        use k8s_openapi::api::coordination::v1::Lease;

        #[derive(Default)]
        pub struct Leases {
            pub lease: Mutex<Option<Lease>>,
            version: Mutex<u64>,
        }

        fn status(code: u16, reason: &str) -> http::Response<Full<Bytes>> {
            let body = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": reason, "code": code, "message": reason,
            });
            http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap()
        }

        fn ok(code: u16, lease: &Lease) -> http::Response<Full<Bytes>> {
            http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(lease).unwrap())))
                .unwrap()
        }

        impl Leases {
            fn handle(&self, method: &http::Method, body: &[u8]) -> http::Response<Full<Bytes>> {
                let mut current = self.lease.lock().unwrap();
                let mut version = self.version.lock().unwrap();
                match *method {
                    http::Method::GET => match &*current {
                        Some(l) => ok(200, l),
                        None => status(404, "NotFound"),
                    },
                    http::Method::POST | http::Method::PUT => {
                        let mut lease: Lease = serde_json::from_slice(body).unwrap();
                        let creating = *method == http::Method::POST;
                        let rv_matches = current.as_ref().is_some_and(|c| {
                            c.metadata.resource_version == lease.metadata.resource_version
                        });
                        if (creating && current.is_some()) || (!creating && !rv_matches) {
                            return status(409, "Conflict");
                        }
                        *version += 1;
                        lease.metadata.resource_version = Some(version.to_string());
                        *current = Some(lease.clone());
                        ok(if creating { 201 } else { 200 }, &lease)
                    }
                    _ => status(405, "MethodNotAllowed"),
                }
            }
        }

        /// A client of `leases` that fails every request while `cut` is set.
        pub fn client(leases: Arc<Leases>, cut: Arc<AtomicBool>) -> kube::Client {
            let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
                let leases = leases.clone();
                let cut = cut.clone();
                async move {
                    let method = req.method().clone();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    if cut.load(Ordering::SeqCst) {
                        return Ok::<_, std::convert::Infallible>(status(500, "InternalError"));
                    }
                    Ok(leases.handle(&method, &body))
                }
            });
            kube::Client::new(service, "kube-system")
        }
    }

    fn fast(identity: &str) -> LeaderElectionConfig {
        LeaderElectionConfig {
            identity: identity.into(),
            lease_duration: Duration::from_secs(3),
            renew_deadline: Duration::from_millis(1500),
            retry_period: Duration::from_millis(100),
            ..LeaderElectionConfig::new("kube-system", "test")
        }
    }

    async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Two candidates on one Lease: exactly one leads; cut off from the API it steps down
    /// within the renew deadline and the other takes over once the lease expires; a
    /// leader that shuts down releases the Lease and the other leads at once.
    #[tokio::test]
    async fn candidates_take_turns_step_down_when_cut_off_and_release_on_shutdown() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        let leases = Arc::new(fake::Leases::default());
        let cut = [
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        ];
        let mut leading = Vec::new();
        let mut stops = Vec::new();
        for (i, id) in ["a", "b"].into_iter().enumerate() {
            let elector =
                LeaderElector::new(fake::client(leases.clone(), cut[i].clone()), fast(id)).unwrap();
            let (tx, rx) = watch::channel(false);
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(elector.run(tx, async move {
                let _ = stop_rx.await;
            }));
            leading.push(rx);
            stops.push(Some(stop_tx));
        }
        let holder = || {
            leases
                .lease
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|l| l.spec.clone())
                .and_then(|s| s.holder_identity)
        };
        wait_until("someone leads", || {
            *leading[0].borrow() || *leading[1].borrow()
        })
        .await;
        // Both keep campaigning for a while: never two leaders.
        for _ in 0..20 {
            assert!(!(*leading[0].borrow() && *leading[1].borrow()));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let first = usize::from(*leading[1].borrow());
        let other = 1 - first;
        assert_eq!(holder().as_deref(), Some(["a", "b"][first]));

        // The leader loses the API: it steps down, and the other waits for expiry.
        cut[first].store(true, Ordering::SeqCst);
        let t = tokio::time::Instant::now();
        wait_until("the cut-off leader steps down", || {
            !*leading[first].borrow()
        })
        .await;
        assert!(
            t.elapsed() < Duration::from_millis(2500),
            "within the renew deadline"
        );
        wait_until("the other takes over", || *leading[other].borrow()).await;
        assert!(
            t.elapsed() >= Duration::from_millis(2500),
            "not before expiry"
        );
        let spec = leases.lock_spec();
        assert_eq!(spec.holder_identity.as_deref(), Some(["a", "b"][other]));
        assert_eq!(spec.lease_transitions, Some(1));
        assert!(
            !*leading[first].borrow(),
            "the cut-off one stays a follower"
        );

        // Back on the API it campaigns again; the leader shuts down and releases.
        cut[first].store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !*leading[first].borrow(),
            "the Lease is held: no second leader"
        );
        let t = tokio::time::Instant::now();
        let _ = stops[other].take().unwrap().send(());
        wait_until("the first leads again after the release", || {
            *leading[first].borrow()
        })
        .await;
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a released Lease is taken at once, not after its 3 s expiry"
        );
        let spec = leases.lock_spec();
        assert_eq!(spec.holder_identity.as_deref(), Some(["a", "b"][first]));
        assert_eq!(spec.lease_transitions, Some(2));
    }

    impl fake::Leases {
        fn lock_spec(&self) -> LeaseSpec {
            self.lease
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|l| l.spec.clone())
                .unwrap()
        }
    }

    #[test]
    fn jitter_stays_within_client_go_bounds() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(2));
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_millis(4400));
        }
    }
}
