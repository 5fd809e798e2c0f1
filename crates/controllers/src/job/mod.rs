//! The Job controller: runs pods from `spec.template` until `completions` of them succeed
//! (or, without completions, until one succeeds and none is left running), as
//! kube-controller-manager's does:
//!
//! - at most `parallelism` active pods, never more than the completions still needed;
//!   `NonIndexed` and `Indexed` completion modes (index annotation and label,
//!   `JOB_COMPLETION_INDEX`, hostname `<job>-<index>`, `status.completedIndexes`);
//! - finished pods are counted through the `batch.kubernetes.io/job-tracking` finalizer:
//!   a finished pod's uid is first written to `status.uncountedTerminatedPods`, then its
//!   finalizer is removed, then the uid moves to `succeeded`/`failed`, so a pod deleted
//!   before it was counted is neither lost nor counted twice;
//! - `backoffLimit` (container restarts count too under `restartPolicy: OnFailure`),
//!   `activeDeadlineSeconds`, `suspend`; a failed pod's replacement waits an exponential
//!   back-off (10 s doubling, at most 6 min);
//! - `podFailurePolicy` ([`pod_failure_policy`]): a failed pod matching a `FailJob` rule
//!   fails the Job (reason `PodFailurePolicy`), one matching `Ignore` is released without
//!   being counted or backing off the next;
//! - terminal conditions as in 1.33: `SuccessCriteriaMet`/`FailureTarget` first, then
//!   `Complete`/`Failed` once no pod of the Job is left running;
//! - `ttlSecondsAfterFinished` (the TTL-after-finished controller's job) deletes a finished
//!   Job with Background propagation.
//!
//! Every sync lists the Job's pods from the API, as the ReplicaSet controller does, so it
//! never acts on a stale view of its own creations; matching orphans are adopted.

pub mod pod_failure_policy;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

use crate::controller_utils::{self, controller_of, event_reference};
use crate::informers::Informers;
use crate::replicaset::{
    deletion_order, is_namespace_terminating, is_pod_ready, selector_matches, slow_start_batches,
};
use crate::runner::{drive, RetryBackoff};
use events::{EventRecorder, EventType};

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

const COMPONENT: &str = "job-controller";
/// The most pods one sync creates (kube-controller-manager's `MaxPodCreateDeletePerSync`).
const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
const RESYNC: Duration = Duration::from_secs(300);
const IN_FLIGHT: usize = 32;
/// A failed pod's replacement waits `DEFAULT_BACKOFF · 2^(failures−1)`, at most `MAX_BACKOFF`.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(360);

pub const COND_COMPLETE: &str = "Complete";
pub const COND_FAILED: &str = "Failed";
pub const COND_SUSPENDED: &str = "Suspended";
pub const COND_SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const COND_FAILURE_TARGET: &str = "FailureTarget";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Job {0} has no namespace")]
    NoNamespace(String),
    #[error("{0}")]
    ManagePods(String),
}

struct Context {
    client: kube::Client,
    recorder: EventRecorder,
    backoff: RetryBackoff<Job>,
    /// Per Job uid: failures since the last success, kept past the pods themselves (a
    /// deleted pod vanishes once counted, its back-off must not).
    backoffs: Mutex<HashMap<String, BackoffRecord>>,
}

/// Runs the controller on the controller manager's `informers` until `shutdown` completes.
pub async fn run(
    informers: Informers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = informers.client().clone();
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    let orphans = tokio::spawn(release_orphaned_pods(
        client.clone(),
        store,
        informers.pods(),
    ));
    let ctx = Arc::new(Context {
        recorder: EventRecorder::for_component(client.clone(), COMPONENT, None),
        client: client.clone(),
        backoff: RetryBackoff::new(),
        backoffs: Mutex::new(HashMap::new()),
    });
    let controller = controller.owns_stream(informers.pods().touched_objects());
    drive("job", controller, shutdown, reconcile, error_policy, ctx).await;
    orphans.abort();
    Ok(())
}

/// Removes the tracking finalizer from pods whose Job is gone or being deleted: no sync of
/// that Job will count them, and the finalizer would keep them from ever being deleted.
async fn release_orphaned_pods(
    client: kube::Client,
    jobs: Store<Job>,
    pod_events: futures::stream::BoxStream<'static, Result<watcher::Event<Pod>, watcher::Error>>,
) {
    // The Job controller's runner waits on this store too.
    if !crate::controller_utils::store_ready(&jobs).await {
        return;
    }
    let mut pods = std::pin::pin!(pod_events.applied_objects());
    while let Some(event) = pods.next().await {
        let Ok(pod) = event else { continue };
        if !has_tracking_finalizer(&pod) {
            continue;
        }
        let owner = controller_of(&pod.metadata);
        let job_alive = owner.is_some_and(|o| {
            o.kind == "Job"
                && jobs
                    .get(&ObjectRef::new(&o.name).within(&pod.namespace().unwrap_or_default()))
                    .is_some_and(|j| {
                        j.metadata.uid.as_deref() == Some(o.uid.as_str())
                            && j.metadata.deletion_timestamp.is_none()
                    })
        });
        let finished_or_going = pod.metadata.deletion_timestamp.is_some()
            || matches!(pod_phase(&pod), Some("Succeeded" | "Failed"));
        if !job_alive && (finished_or_going || owner.is_none()) {
            let api: Api<Pod> =
                Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            if let Err(e) = remove_tracking_finalizer(&api, &pod).await {
                tracing::debug!(pod = %pod.name_any(), error = %e, "releasing an orphaned job pod");
            }
        }
    }
}

fn error_policy(job: Arc<Job>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.backoff.failed(&job, err)
}

fn pod_phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

/// Removes the tracking finalizer as upstream does, with a strategic merge patch's
/// `$deleteFromPrimitiveList`, which leaves any other finalizer alone.
async fn remove_tracking_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    if !has_tracking_finalizer(pod) {
        return Ok(());
    }
    let patch = json!({"metadata": {
        "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER],
    }});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------
// Decision logic (pure)
// ---------------------------------------------------------------------------------------

fn spec_i32(
    job: &Job,
    f: impl Fn(&k8s_openapi::api::batch::v1::JobSpec) -> Option<i32>,
) -> Option<i32> {
    job.spec.as_ref().and_then(f)
}

pub fn parallelism(job: &Job) -> i32 {
    spec_i32(job, |s| s.parallelism).unwrap_or(1).max(0)
}

pub fn completions(job: &Job) -> Option<i32> {
    spec_i32(job, |s| s.completions).map(|c| c.max(0))
}

pub fn backoff_limit(job: &Job) -> i32 {
    spec_i32(job, |s| s.backoff_limit).unwrap_or(6).max(0)
}

pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

pub fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// `podReplacementPolicy: Failed`: a terminating pod is replaced only once it has failed.
fn only_replace_failed(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.pod_replacement_policy.as_deref())
        == Some("Failed")
}

fn restart_policy(job: &Job) -> Option<&str> {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref())
}

pub fn find_condition<'a>(status: Option<&'a JobStatus>, type_: &str) -> Option<&'a JobCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Finished: `Complete` or `Failed` is True.
pub fn finished_condition(job: &Job) -> Option<&JobCondition> {
    find_condition(job.status.as_ref(), COND_COMPLETE)
        .or_else(|| find_condition(job.status.as_ref(), COND_FAILED))
}

/// Adds or updates a condition; the transition time moves only when the status changes.
pub fn set_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) {
    let new = JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => {
            if c.reason.as_deref() != Some(reason) || c.message.as_deref() != Some(message) {
                c.reason = new.reason;
                c.message = new.message;
                c.last_probe_time = new.last_probe_time;
            }
        }
        Some(c) => *c = new,
        None => conds.push(new),
    }
}

/// How a pod of the Job ended, if it did: upstream's `isPodFailed` counts a pod that is
/// being deleted without having succeeded as failed (unless only failed pods are replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
}

pub fn pod_outcome(job: &Job, pod: &Pod) -> Option<Outcome> {
    match pod_phase(pod) {
        Some("Succeeded") => Some(Outcome::Succeeded),
        Some("Failed") => Some(Outcome::Failed),
        _ if pod.metadata.deletion_timestamp.is_some() && !only_replace_failed(job) => {
            Some(Outcome::Failed)
        }
        _ => None,
    }
}

/// Running or about to: neither finished nor being deleted.
pub fn is_active(pod: &Pod) -> bool {
    controller_utils::is_pod_active(pod)
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && !matches!(pod_phase(pod), Some("Succeeded" | "Failed"))
}

/// The completion index a pod carries, if valid.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX_ANNOTATION)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

/// Parses `status.completedIndexes` ("1,3-5,7").
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// Formats indexes as Kubernetes does: ascending, consecutive runs as `a-b`.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// Container restarts of the running pods, which count towards backoffLimit under
/// `restartPolicy: OnFailure` (upstream's `pastBackoffLimitOnFailure`).
pub fn past_backoff_limit_on_failure(job: &Job, active: &[&Pod]) -> bool {
    if restart_policy(job) != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = active
        .iter()
        .filter(|p| matches!(pod_phase(p), Some("Running" | "Pending")))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    let limit = backoff_limit(job);
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// `startTime + activeDeadlineSeconds`, if the Job has a deadline and has started.
pub fn active_deadline(job: &Job) -> Option<jiff::Timestamp> {
    let secs = job.spec.as_ref()?.active_deadline_seconds?;
    let start = job.status.as_ref()?.start_time.as_ref()?.0;
    start
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .ok()
}

/// When a finished pod finished: its last container's end, else, for a pod being deleted,
/// when the deletion was asked for (the deletion timestamp less the grace period, as
/// upstream), else its creation.
fn finish_time(pod: &Pod) -> Option<jiff::Timestamp> {
    let deleted_at = pod.metadata.deletion_timestamp.as_ref().map(|t| {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        t.0.checked_sub(jiff::SignedDuration::from_secs(grace))
            .unwrap_or(t.0)
    });
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
        .or(deleted_at)
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Until when new pods wait after failures: failures since the last success, counted from
/// the finished pods still present (upstream's back-off record), give
/// `10 s · 2^(n−1)` (at most 6 min) after the last failure.
pub fn backoff_until(job: &Job, pods: &[Pod]) -> Option<jiff::Timestamp> {
    let mut finished: Vec<(jiff::Timestamp, Outcome)> = pods
        .iter()
        .filter(|p| !ignored_by_policy(job, p))
        .filter_map(|p| Some((finish_time(p)?, pod_outcome(job, p)?)))
        .collect();
    finished.sort_by_key(|(t, _)| *t);
    let last_success = finished.iter().rposition(|(_, o)| *o == Outcome::Succeeded);
    let after = &finished[last_success.map_or(0, |i| i + 1)..];
    let last_failure = after.last()?.0;
    let delay = pod_backoff(after.len() as u32);
    last_failure
        .checked_add(jiff::SignedDuration::try_from(delay).ok()?)
        .ok()
}

/// A failed pod the Job's podFailurePolicy says to ignore.
fn ignored_by_policy(job: &Job, pod: &Pod) -> bool {
    pod_phase(pod) == Some("Failed")
        && pod_failure_policy::verdict(job, pod) == pod_failure_policy::Verdict::Ignore
}

/// The first (earliest finished) failed pod whose failure fails the Job by its
/// podFailurePolicy, as that rule's message. Read from the pods present, so a decision
/// interrupted by a restart is made again.
pub fn failed_by_policy(job: &Job, pods: &[Pod]) -> Option<String> {
    let mut failed: Vec<&Pod> = pods
        .iter()
        .filter(|p| pod_phase(p) == Some("Failed"))
        .collect();
    failed.sort_by_key(|p| finish_time(p));
    failed
        .into_iter()
        .find_map(|p| match pod_failure_policy::verdict(job, p) {
            pod_failure_policy::Verdict::FailJob(message) => Some(message),
            _ => None,
        })
}

/// Upstream's back-off record: consecutive failures since the last success and when the
/// last of them finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures_after_last_success: u32,
    pub last_failure: Option<jiff::Timestamp>,
}

impl BackoffRecord {
    /// Folds in newly finished pods (in any order): a success resets the count.
    pub fn record(&mut self, finished: &mut [(jiff::Timestamp, Outcome)]) {
        finished.sort_by_key(|(t, _)| *t);
        for (t, outcome) in finished.iter() {
            match outcome {
                Outcome::Succeeded => *self = BackoffRecord::default(),
                Outcome::Failed => {
                    self.failures_after_last_success += 1;
                    self.last_failure = Some(self.last_failure.map_or(*t, |l| l.max(*t)));
                }
            }
        }
    }

    pub fn until(&self) -> Option<jiff::Timestamp> {
        let delay = pod_backoff(self.failures_after_last_success);
        self.last_failure?
            .checked_add(jiff::SignedDuration::try_from(delay).ok()?)
            .ok()
    }
}

/// The replacement delay after `failures` consecutive failures.
pub fn pod_backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    DEFAULT_BACKOFF
        .checked_mul(2u32.saturating_pow(failures - 1))
        .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF))
}

/// Whether the success criteria hold: `completions` pods (or indexes) succeeded, or, for a
/// work queue (no completions), one pod succeeded and none is running.
pub fn success_criteria_met(job: &Job, succeeded: i32, active: usize) -> bool {
    match completions(job) {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active == 0,
    }
}

/// Pods to create and pods to delete for a `NonIndexed` Job, given its counts. `terminating`
/// pods still occupy a slot when only failed pods are replaced.
pub fn non_indexed_diff(
    job: &Job,
    active: usize,
    terminating: usize,
    succeeded: i32,
) -> (usize, usize) {
    let parallelism = parallelism(job) as usize;
    let want = match completions(job) {
        Some(c) => (c - succeeded).max(0) as usize,
        // A work queue stops starting pods once one succeeded.
        None if succeeded > 0 => active,
        None => parallelism,
    }
    .min(parallelism);
    let occupied = active
        + if only_replace_failed(job) {
            terminating
        } else {
            0
        };
    if active > want {
        (0, active - want)
    } else {
        (want.saturating_sub(occupied), 0)
    }
}

/// For an `Indexed` Job: the indexes to start (lowest first, up to `parallelism` running)
/// and the active pods to delete (out of range, without index, duplicates of an index, or
/// of an index already completed).
pub fn indexed_diff(
    job: &Job,
    active: &[&Pod],
    terminating: &[&Pod],
    completed: &BTreeSet<i32>,
) -> (Vec<i32>, Vec<usize>) {
    let completions = completions(job).unwrap_or(0);
    let mut seen = BTreeSet::new();
    let mut delete = Vec::new();
    for (i, p) in active.iter().enumerate() {
        match completion_index(p) {
            Some(ix) if ix < completions && !completed.contains(&ix) && seen.insert(ix) => {}
            _ => delete.push(i),
        }
    }
    let kept = active.len() - delete.len();
    let mut busy = seen;
    if only_replace_failed(job) {
        busy.extend(terminating.iter().filter_map(|p| completion_index(p)));
    }
    let parallelism = parallelism(job) as usize;
    let room = parallelism.saturating_sub(kept);
    let start = (0..completions)
        .filter(|ix| !completed.contains(ix) && !busy.contains(ix))
        .take(room)
        .collect();
    (start, delete)
}

/// The pod the Job creates (for `index`, when Indexed): the template's labels, annotations
/// and spec, the tracking finalizer, and the Job as controller.
pub fn pod_from_template(job: &Job, index: Option<i32>) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    let mut spec = template.spec;
    let name = job.name_any();
    let generate_name = match index {
        Some(ix) => {
            labels.insert(COMPLETION_INDEX_ANNOTATION.into(), ix.to_string());
            annotations.insert(COMPLETION_INDEX_ANNOTATION.into(), ix.to_string());
            if let Some(spec) = spec.as_mut() {
                if spec.hostname.as_deref().is_none_or(str::is_empty) {
                    spec.hostname = Some(format!("{name}-{ix}"));
                }
                let env = EnvVar {
                    name: COMPLETION_INDEX_ENV.into(),
                    value: Some(ix.to_string()),
                    value_from: None,
                };
                for c in spec
                    .containers
                    .iter_mut()
                    .chain(spec.init_containers.iter_mut().flatten())
                {
                    let vars = c.env.get_or_insert_with(Vec::new);
                    if !vars.iter().any(|v| v.name == COMPLETION_INDEX_ENV) {
                        vars.push(env.clone());
                    }
                }
            }
            format!("{name}-{ix}-")
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref(job)]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

pub fn controller_ref(job: &Job) -> OwnerReference {
    controller_utils::controller_ref(job)
}

/// When a finished Job with `ttlSecondsAfterFinished` is due for deletion.
pub fn ttl_expiry(job: &Job) -> Option<jiff::Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finished_condition(job)?;
    let at = finished
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| job.status.as_ref()?.completion_time.as_ref().map(|t| t.0))?;
    at.checked_add(jiff::SignedDuration::from_secs(i64::from(ttl)))
        .ok()
}

fn until(now: jiff::Timestamp, at: jiff::Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now))
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_millis(100))
}

// ---------------------------------------------------------------------------------------
// Sync
// ---------------------------------------------------------------------------------------

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = job.name_any();
    let ns = job
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = list_job_pods(&job, &pods_api, &jobs_api).await?;

    // A Job on its way out counts nothing more; its pods must not stay pinned by our finalizer.
    if job.metadata.deletion_timestamp.is_some() || finished_condition(&job).is_some() {
        for p in pods.iter().filter(|p| has_tracking_finalizer(p)) {
            remove_tracking_finalizer(&pods_api, p).await?;
        }
        ctx.backoffs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(job.metadata.uid.as_deref().unwrap_or_default());
        if job.metadata.deletion_timestamp.is_none() {
            return ttl_action(&job, &jobs_api, &ctx).await;
        }
        return Ok(Action::await_change());
    }

    let now = jiff::Timestamp::now();
    let mut status = job.status.clone().unwrap_or_default();
    let mut writer = StatusWriter::new(jobs_api.clone(), &job);
    let mut newly_finished =
        track_finished_pods(&job, &pods, &mut status, &pods_api, &mut writer).await?;
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let recorded_backoff = {
        let mut backoffs = ctx.backoffs.lock().unwrap_or_else(|p| p.into_inner());
        let record = backoffs.entry(uid.clone()).or_default();
        record.record(&mut newly_finished);
        record.until()
    };

    let active: Vec<&Pod> = pods.iter().filter(|p| is_active(p)).collect();
    let terminating: Vec<&Pod> = pods.iter().filter(|p| is_terminating(p)).collect();
    let succeeded = status.succeeded.unwrap_or(0);
    let failed = status.failed.unwrap_or(0);
    let mut conds = status.conditions.clone().unwrap_or_default();
    let mut requeue = RESYNC;

    // Terminal decisions, once made, are kept until every pod is gone.
    let mut target = find_condition(Some(&status), COND_FAILURE_TARGET)
        .map(|c| {
            (
                false,
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
        .or_else(|| {
            find_condition(Some(&status), COND_SUCCESS_CRITERIA_MET).map(|c| {
                (
                    true,
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            })
        });
    let suspended = is_suspended(&job);
    if target.is_none() && !suspended {
        if let Some(message) = failed_by_policy(&job, &pods) {
            target = Some((false, "PodFailurePolicy".into(), message));
        } else if failed > backoff_limit(&job) || past_backoff_limit_on_failure(&job, &active) {
            target = Some((
                false,
                "BackoffLimitExceeded".into(),
                "Job has reached the specified backoff limit".into(),
            ));
        } else if active_deadline(&job).is_some_and(|d| d <= now) {
            target = Some((
                false,
                "DeadlineExceeded".into(),
                "Job was active longer than specified deadline".into(),
            ));
        } else if success_criteria_met(&job, succeeded, active.len()) {
            target = Some((
                true,
                "CompletionsReached".into(),
                "Reached expected number of succeeded pods".into(),
            ));
        }
        if let Some((ok, reason, message)) = &target {
            let t = if *ok {
                COND_SUCCESS_CRITERIA_MET
            } else {
                COND_FAILURE_TARGET
            };
            set_condition(&mut conds, t, "True", reason, message, now);
            if !*ok {
                ctx.recorder.object_event(
                    event_reference(&*job),
                    EventType::Warning,
                    reason,
                    message.clone(),
                );
            }
        }
    }

    let mut manage_err = None;
    let mut active_after = active.len();
    if let Some((ok, reason, message)) = &target {
        // Upstream counts the pods a failing Job deletes as failed: they keep the finalizer.
        if let Err(e) = delete_pods(&ctx, &job, &pods_api, &active, *ok).await {
            manage_err = Some(e);
        }
        active_after = 0;
        let left = pods
            .iter()
            .filter(|p| has_tracking_finalizer(p) || is_terminating(p))
            .count();
        if active.is_empty() && left == 0 {
            let t = if *ok { COND_COMPLETE } else { COND_FAILED };
            set_condition(&mut conds, t, "True", reason, message, now);
            if *ok {
                status.completion_time = Some(Time(now));
                ctx.recorder.object_event(
                    event_reference(&*job),
                    EventType::Normal,
                    "Completed",
                    "Job completed".to_string(),
                );
            }
        } else {
            requeue = Duration::from_secs(1);
        }
    } else if suspended {
        if let Err(e) = delete_pods(&ctx, &job, &pods_api, &active, true).await {
            manage_err = Some(e);
        }
        active_after = 0;
        if find_condition(Some(&status), COND_SUSPENDED).is_none() {
            set_condition(
                &mut conds,
                COND_SUSPENDED,
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
            ctx.recorder.object_event(
                event_reference(&*job),
                EventType::Normal,
                "Suspended",
                "Job suspended".to_string(),
            );
        }
    } else {
        if find_condition(Some(&status), COND_SUSPENDED).is_some() {
            // Resuming restarts the clock of activeDeadlineSeconds.
            set_condition(
                &mut conds,
                COND_SUSPENDED,
                "False",
                "JobResumed",
                "Job resumed",
                now,
            );
            status.start_time = Some(Time(now));
            ctx.recorder.object_event(
                event_reference(&*job),
                EventType::Normal,
                "Resumed",
                "Job resumed".to_string(),
            );
        }
        if status.start_time.is_none() {
            status.start_time = Some(Time(now));
        }
        // After a restart the record is empty: the finished pods still present stand in.
        let backoff = recorded_backoff
            .max(backoff_until(&job, &pods))
            .filter(|t| *t > now);
        let (create, delete): (Vec<Option<i32>>, Vec<&Pod>) = if is_indexed(&job) {
            let completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
            let (start, del) = indexed_diff(&job, &active, &terminating, &completed);
            (
                start.into_iter().map(Some).collect(),
                del.into_iter().map(|i| active[i]).collect(),
            )
        } else {
            let (c, d) = non_indexed_diff(&job, active.len(), terminating.len(), succeeded);
            let victims: Vec<&Pod> = if d > 0 {
                let owned: Vec<Pod> = active.iter().map(|p| (*p).clone()).collect();
                deletion_order(&owned, &active, now)
                    .into_iter()
                    .take(d)
                    .map(|i| active[i])
                    .collect()
            } else {
                Vec::new()
            };
            (vec![None; c], victims)
        };
        if !delete.is_empty() {
            if let Err(e) = delete_pods(&ctx, &job, &pods_api, &delete, true).await {
                manage_err = Some(e);
            }
            active_after -= delete.len();
        }
        if !create.is_empty() {
            match backoff {
                Some(t) => requeue = until(now, t),
                None => {
                    let (n, err) = create_pods(&ctx, &job, &pods_api, &create).await;
                    active_after += n;
                    if let Some(e) = err {
                        manage_err = Some(e);
                    }
                }
            }
        }
        if let Some(d) = active_deadline(&job) {
            requeue = requeue.min(until(now, d));
        }
    }

    status.active = Some(active_after as i32);
    status.ready = Some(
        active
            .iter()
            .filter(|p| is_pod_ready(p))
            .count()
            .min(active_after) as i32,
    );
    status.terminating = Some(terminating.len() as i32);
    status.succeeded = Some(succeeded);
    status.failed = Some(failed);
    status.conditions = (!conds.is_empty()).then_some(conds);
    writer.write(&status).await?;

    if let Some(msg) = manage_err {
        return Err(Error::ManagePods(msg));
    }
    ctx.backoff.succeeded(&job);
    if finished_condition(&Job {
        status: Some(status.clone()),
        ..(*job).clone()
    })
    .is_some()
    {
        if let Some(at) = ttl_expiry(&Job {
            status: Some(status),
            ..(*job).clone()
        }) {
            return Ok(Action::requeue(until(now, at)));
        }
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(requeue))
}

/// The Job's pods: those it controls that match its selector, plus matching orphans it
/// adopts (upstream's ClaimPods; adoption adds the tracking finalizer too).
async fn list_job_pods(job: &Job, api: &Api<Pod>, jobs_api: &Api<Job>) -> Result<Vec<Pod>, Error> {
    let selector = job
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let labels = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let lp = if labels.is_empty() {
        ListParams::default()
    } else {
        ListParams::default().labels(&labels)
    };
    let uid = job.metadata.uid.as_deref();
    let mut owned = Vec::new();
    let mut can_adopt = None;
    for p in api.list(&lp).await?.items {
        if !selector_matches(&selector, p.metadata.labels.as_ref()) {
            continue;
        }
        if controller_of(&p.metadata).is_some_and(|o| Some(o.uid.as_str()) == uid) {
            owned.push(p);
            continue;
        }
        if !adoptable(job, &p) {
            continue;
        }
        if can_adopt.is_none() {
            // A fresh read: never adopt for a Job that is gone or going.
            let fresh = jobs_api.get_opt(&job.name_any()).await?;
            can_adopt = Some(fresh.is_some_and(|f| {
                f.metadata.uid.as_deref() == uid && f.metadata.deletion_timestamp.is_none()
            }));
        }
        if can_adopt != Some(true) {
            continue;
        }
        let mut refs = p.metadata.owner_references.clone().unwrap_or_default();
        refs.push(controller_ref(job));
        let mut finalizers = p.metadata.finalizers.clone().unwrap_or_default();
        if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
            finalizers.push(TRACKING_FINALIZER.into());
        }
        let patch = json!({"metadata": {
            "resourceVersion": p.metadata.resource_version,
            "ownerReferences": refs,
            "finalizers": finalizers,
        }});
        match api
            .patch(
                &p.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(adopted) => owned.push(adopted),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(owned)
}

/// An orphan (no controller) of the Job's namespace, not being deleted: an unfinished Job
/// may adopt it when its selector matches.
pub fn adoptable(job: &Job, pod: &Pod) -> bool {
    finished_condition(job).is_none()
        && controller_of(&pod.metadata).is_none()
        && pod.metadata.deletion_timestamp.is_none()
        && pod.metadata.namespace == job.metadata.namespace
}

/// Counts finished pods through the tracking finalizer, in upstream's order: record the
/// uids as uncounted (and, for Indexed Jobs, their indexes as completed), remove the
/// finalizers, then move the uids whose finalizer is gone into the counters.
async fn track_finished_pods(
    job: &Job,
    pods: &[Pod],
    status: &mut JobStatus,
    pods_api: &Api<Pod>,
    writer: &mut StatusWriter,
) -> Result<Vec<(jiff::Timestamp, Outcome)>, Error> {
    let mut newly = Vec::new();
    let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut ok: BTreeSet<String> = uncounted
        .succeeded
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut bad: BTreeSet<String> = uncounted
        .failed
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let indexed = is_indexed(job);
    let completions = completions(job).unwrap_or(0);
    let mut completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
    let mut changed = false;
    for p in pods.iter().filter(|p| has_tracking_finalizer(p)) {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        if ok.contains(&uid) || bad.contains(&uid) {
            continue;
        }
        if ignored_by_policy(job, p) {
            // Not counted at all: released, and no uid to carry through the status.
            remove_tracking_finalizer(pods_api, p).await?;
            continue;
        }
        let outcome = pod_outcome(job, p);
        if let (Some(o), Some(t)) = (outcome, finish_time(p)) {
            newly.push((t, o));
        }
        match outcome {
            Some(Outcome::Succeeded) if indexed => {
                if let Some(ix) = completion_index(p).filter(|ix| *ix < completions) {
                    completed.insert(ix);
                }
                ok.insert(uid);
                changed = true;
            }
            Some(Outcome::Succeeded) => changed |= ok.insert(uid),
            Some(Outcome::Failed) => changed |= bad.insert(uid),
            None => {}
        }
    }
    if indexed {
        status.completed_indexes = Some(format_indexes(&completed));
    }
    uncounted.succeeded = Some(ok.iter().cloned().collect());
    uncounted.failed = Some(bad.iter().cloned().collect());
    status.uncounted_terminated_pods = Some(uncounted);
    if changed {
        writer.write(status).await?;
    }

    let by_uid: HashMap<&str, &Pod> = pods
        .iter()
        .map(|p| (p.metadata.uid.as_deref().unwrap_or_default(), p))
        .collect();
    let mut released = Vec::new();
    for uid in ok.iter().chain(bad.iter()) {
        match by_uid.get(uid.as_str()) {
            Some(p) if has_tracking_finalizer(p) => {
                remove_tracking_finalizer(pods_api, p).await?;
                released.push(uid.clone());
            }
            _ => released.push(uid.clone()),
        }
    }
    if released.is_empty() {
        return Ok(newly);
    }
    let mut succeeded = status.succeeded.unwrap_or(0);
    let mut failed = status.failed.unwrap_or(0);
    for uid in &released {
        if ok.remove(uid) && !indexed {
            succeeded += 1;
        } else if bad.remove(uid) {
            failed += 1;
        }
    }
    if indexed {
        succeeded = completed.len() as i32;
    }
    status.succeeded = Some(succeeded);
    status.failed = Some(failed);
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(ok.into_iter().collect()),
        failed: Some(bad.into_iter().collect()),
    });
    writer.write(status).await?;
    Ok(newly)
}

fn status_json(s: &JobStatus) -> serde_json::Value {
    let uncounted = s.uncounted_terminated_pods.clone().unwrap_or_default();
    json!({
        "startTime": s.start_time,
        "completionTime": s.completion_time,
        "active": s.active.unwrap_or(0),
        "ready": s.ready.unwrap_or(0),
        "terminating": s.terminating.unwrap_or(0),
        "succeeded": s.succeeded.unwrap_or(0),
        "failed": s.failed.unwrap_or(0),
        "completedIndexes": s.completed_indexes,
        "conditions": s.conditions,
        "uncountedTerminatedPods": {
            "succeeded": uncounted.succeeded.unwrap_or_default(),
            "failed": uncounted.failed.unwrap_or_default(),
        },
    })
}

/// The Job's status as stored: each write is conditioned on the resourceVersion of the
/// previous one, so two syncs never both count a pod.
struct StatusWriter {
    api: Api<Job>,
    name: String,
    resource_version: Option<String>,
    stored: serde_json::Value,
}

impl StatusWriter {
    fn new(api: Api<Job>, job: &Job) -> Self {
        StatusWriter {
            api,
            name: job.name_any(),
            resource_version: job.metadata.resource_version.clone(),
            stored: status_json(&job.status.clone().unwrap_or_default()),
        }
    }

    /// Writes the status if it differs from the stored one.
    async fn write(&mut self, status: &JobStatus) -> Result<(), Error> {
        let new = status_json(status);
        if new == self.stored {
            return Ok(());
        }
        let patch = json!({
            "metadata": {"resourceVersion": self.resource_version},
            "status": new,
        });
        let written = self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.resource_version = written.metadata.resource_version;
        self.stored = new;
        Ok(())
    }
}

async fn create_pods(
    ctx: &Context,
    job: &Job,
    api: &Api<Pod>,
    indexes: &[Option<i32>],
) -> (usize, Option<String>) {
    let wanted = &indexes[..indexes.len().min(MAX_POD_CREATE_DELETE_PER_SYNC)];
    let mut created = 0;
    let mut offset = 0;
    for batch in slow_start_batches(wanted.len()) {
        let pods: Vec<Pod> = wanted[offset..offset + batch]
            .iter()
            .map(|ix| pod_from_template(job, *ix))
            .collect();
        let results: Vec<_> = futures::stream::iter(pods.into_iter().map(|pod| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &pod).await }
        }))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
        offset += batch;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(p) => {
                    created += 1;
                    ctx.recorder.object_event(
                        event_reference(job),
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.name_any()),
                    );
                }
                Err(e) if is_namespace_terminating(&e) => {}
                Err(e) => {
                    let msg = e.to_string();
                    ctx.recorder.object_event(
                        event_reference(job),
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {msg}"),
                    );
                    first_err.get_or_insert(msg);
                }
            }
        }
        if first_err.is_some() {
            return (created, first_err);
        }
    }
    (created, None)
}

/// Deletes pods; with `release`, their finalizer goes first, so they are not counted as
/// failed (a scale-down, suspension or the leftovers of a succeeded Job).
async fn delete_pods(
    ctx: &Context,
    job: &Job,
    api: &Api<Pod>,
    pods: &[&Pod],
    release: bool,
) -> Result<(), String> {
    let owned: Vec<Pod> = pods.iter().map(|p| (*p).clone()).collect();
    let results: Vec<_> = futures::stream::iter(owned.into_iter().map(|p| {
        let api = api.clone();
        async move {
            if release {
                remove_tracking_finalizer(&api, &p).await?;
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: p.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&p.name_any(), &dp).await {
                Ok(_) => Ok(p.name_any()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(p.name_any()),
                Err(e) => Err(e),
            }
        }
    }))
    .buffer_unordered(IN_FLIGHT)
    .collect()
    .await;
    let mut first_err = None;
    for r in results {
        match r {
            Ok(name) => ctx.recorder.object_event(
                event_reference(job),
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            ),
            Err(e) => {
                let msg = e.to_string();
                ctx.recorder.object_event(
                    event_reference(job),
                    EventType::Warning,
                    "FailedDelete",
                    format!("Error deleting: {msg}"),
                );
                first_err.get_or_insert(msg);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// `ttlSecondsAfterFinished`: deletes the finished Job (Background propagation, so the
/// garbage collector removes its pods) once due, else comes back when it is.
async fn ttl_action(job: &Job, api: &Api<Job>, ctx: &Context) -> Result<Action, Error> {
    let Some(at) = ttl_expiry(job) else {
        return Ok(Action::await_change());
    };
    let now = jiff::Timestamp::now();
    if at > now {
        return Ok(Action::requeue(until(now, at)));
    }
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&job.name_any(), &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.backoff.succeeded(job);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec, PodStatus,
        PodTemplateSpec,
    };
    use std::collections::BTreeMap;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn job(completions: Option<i32>, parallelism: i32) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("default".into()),
                uid: Some("job-uid".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(6),
                completion_mode: Some("NonIndexed".into()),
                pod_replacement_policy: Some("TerminatingOrFailed".into()),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("job-name".into(), "pi".into())])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".into()),
                        containers: vec![Default::default()],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn indexed(completions: i32, parallelism: i32) -> Job {
        let mut j = job(Some(completions), parallelism);
        j.spec.as_mut().unwrap().completion_mode = Some("Indexed".into());
        j
    }

    fn pod(phase: &str, index: Option<i32>, finished: Option<&str>) -> Pod {
        let terminated = finished.map(|f| ContainerStatus {
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    finished_at: Some(Time(ts(f))),
                    exit_code: i32::from(phase != "Succeeded"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        Pod {
            metadata: ObjectMeta {
                annotations: index
                    .map(|i| BTreeMap::from([(COMPLETION_INDEX_ANNOTATION.into(), i.to_string())])),
                creation_timestamp: Some(Time(ts("2026-01-01T00:00:00Z"))),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: terminated.map(|t| vec![t]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn non_indexed_creates_up_to_parallelism_but_not_past_completions() {
        let j = job(Some(5), 2);
        assert_eq!(non_indexed_diff(&j, 0, 0, 0), (2, 0));
        assert_eq!(non_indexed_diff(&j, 1, 0, 0), (1, 0));
        // Four done: one more is all that is needed, so one of the two running goes.
        assert_eq!(non_indexed_diff(&j, 2, 0, 4), (0, 1));
        assert_eq!(non_indexed_diff(&j, 0, 0, 5), (0, 0));
    }

    #[test]
    fn work_queue_stops_starting_pods_after_a_success() {
        let j = job(None, 3);
        assert_eq!(non_indexed_diff(&j, 0, 0, 0), (3, 0));
        assert_eq!(non_indexed_diff(&j, 2, 0, 1), (0, 0));
        assert!(!success_criteria_met(&j, 1, 2));
        assert!(success_criteria_met(&j, 1, 0));
        assert!(!success_criteria_met(&j, 0, 0));
    }

    #[test]
    fn terminating_pods_hold_a_slot_only_when_only_failed_pods_are_replaced() {
        let mut j = job(Some(3), 3);
        assert_eq!(non_indexed_diff(&j, 1, 2, 0), (2, 0));
        j.spec.as_mut().unwrap().pod_replacement_policy = Some("Failed".into());
        assert_eq!(non_indexed_diff(&j, 1, 2, 0), (0, 0));
        // And a terminating pod is then not yet failed.
        let mut p = pod("Running", None, None);
        p.metadata.deletion_timestamp = Some(Time(ts("2026-01-01T00:00:01Z")));
        assert_eq!(pod_outcome(&j, &p), None);
        assert_eq!(pod_outcome(&job(Some(1), 1), &p), Some(Outcome::Failed));
    }

    #[test]
    fn indexed_starts_the_lowest_missing_indexes_and_drops_duplicates() {
        let j = indexed(5, 3);
        let a = pod("Running", Some(1), None);
        let dup = pod("Running", Some(1), None);
        let out_of_range = pod("Running", Some(9), None);
        let active = vec![&a, &dup, &out_of_range];
        let completed = BTreeSet::from([0]);
        let (start, delete) = indexed_diff(&j, &active, &[], &completed);
        assert_eq!(start, vec![2, 3]);
        assert_eq!(delete, vec![1, 2]);
    }

    #[test]
    fn completed_indexes_round_trip() {
        let set = BTreeSet::from([0, 1, 2, 4, 6, 7]);
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), set);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let j = indexed(3, 3);
        let p = pod_from_template(&j, Some(2));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(
            p.metadata.annotations.unwrap()[COMPLETION_INDEX_ANNOTATION],
            "2"
        );
        assert_eq!(p.metadata.labels.unwrap()[COMPLETION_INDEX_ANNOTATION], "2");
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = spec.containers[0].env.clone().unwrap();
        assert!(env
            .iter()
            .any(|e| e.name == COMPLETION_INDEX_ENV && e.value.as_deref() == Some("2")));
        assert_eq!(
            p.metadata.finalizers.unwrap(),
            vec![TRACKING_FINALIZER.to_string()]
        );
        let owner = &p.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let plain = pod_from_template(&job(Some(1), 1), None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(plain.metadata.annotations.is_none());
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        assert_eq!(pod_backoff(0), Duration::ZERO);
        assert_eq!(pod_backoff(1), Duration::from_secs(10));
        assert_eq!(pod_backoff(2), Duration::from_secs(20));
        assert_eq!(pod_backoff(4), Duration::from_secs(80));
        assert_eq!(pod_backoff(6), Duration::from_secs(320));
        assert_eq!(pod_backoff(7), Duration::from_secs(360));
        assert_eq!(pod_backoff(40), Duration::from_secs(360));
    }

    #[test]
    fn only_live_orphans_of_the_namespace_are_adopted() {
        let j = job(Some(1), 1);
        let mut p = pod("Running", None, None);
        p.metadata.namespace = Some("default".into());
        assert!(adoptable(&j, &p));
        p.metadata.namespace = Some("other".into());
        assert!(!adoptable(&j, &p));
        p.metadata.namespace = Some("default".into());
        p.metadata.owner_references = Some(vec![OwnerReference {
            controller: Some(true),
            ..Default::default()
        }]);
        assert!(!adoptable(&j, &p));
        p.metadata.owner_references = None;
        p.metadata.deletion_timestamp = Some(Time(ts("2026-01-01T00:00:00Z")));
        assert!(!adoptable(&j, &p));
    }

    #[test]
    fn a_deleted_pod_finished_when_its_deletion_was_asked_for() {
        let mut p = pod("Running", None, None);
        p.metadata.deletion_timestamp = Some(Time(ts("2026-01-01T00:00:40Z")));
        p.metadata.deletion_grace_period_seconds = Some(30);
        assert_eq!(finish_time(&p), Some(ts("2026-01-01T00:00:10Z")));
    }

    #[test]
    fn backoff_counts_failures_since_the_last_success() {
        let j = job(Some(3), 1);
        let pods = vec![
            pod("Failed", None, Some("2026-01-01T00:00:10Z")),
            pod("Succeeded", None, Some("2026-01-01T00:00:20Z")),
            pod("Failed", None, Some("2026-01-01T00:00:30Z")),
            pod("Failed", None, Some("2026-01-01T00:00:40Z")),
        ];
        // Two failures after the success: 20 s after the last one.
        assert_eq!(backoff_until(&j, &pods), Some(ts("2026-01-01T00:01:00Z")));
        assert_eq!(backoff_until(&j, &pods[..2]), None);
        assert_eq!(backoff_until(&j, &[]), None);
    }

    #[test]
    fn the_backoff_record_outlives_the_pods_and_resets_on_success() {
        let mut r = BackoffRecord::default();
        assert_eq!(r.until(), None);
        r.record(&mut [
            (ts("2026-01-01T00:00:20Z"), Outcome::Failed),
            (ts("2026-01-01T00:00:10Z"), Outcome::Failed),
        ]);
        assert_eq!(r.failures_after_last_success, 2);
        assert_eq!(r.until(), Some(ts("2026-01-01T00:00:40Z")));
        r.record(&mut [(ts("2026-01-01T00:00:30Z"), Outcome::Failed)]);
        assert_eq!(r.until(), Some(ts("2026-01-01T00:01:10Z")));
        r.record(&mut [(ts("2026-01-01T00:00:40Z"), Outcome::Succeeded)]);
        assert_eq!(r, BackoffRecord::default());
    }

    #[test]
    fn restarts_count_towards_the_backoff_limit_under_on_failure() {
        let mut j = job(Some(1), 1);
        j.spec.as_mut().unwrap().backoff_limit = Some(2);
        let mut p = pod("Running", None, None);
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            restart_count: 2,
            ..Default::default()
        }]);
        assert!(!past_backoff_limit_on_failure(&j, &[&p]));
        j.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .restart_policy = Some("OnFailure".into());
        assert!(past_backoff_limit_on_failure(&j, &[&p]));
        j.spec.as_mut().unwrap().backoff_limit = Some(3);
        assert!(!past_backoff_limit_on_failure(&j, &[&p]));
        j.spec.as_mut().unwrap().backoff_limit = Some(0);
        assert!(past_backoff_limit_on_failure(&j, &[&p]));
    }

    #[test]
    fn deadline_and_ttl_count_from_start_and_finish() {
        let mut j = job(Some(1), 1);
        j.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
        assert_eq!(active_deadline(&j), None);
        j.status = Some(JobStatus {
            start_time: Some(Time(ts("2026-01-01T00:00:00Z"))),
            ..Default::default()
        });
        assert_eq!(active_deadline(&j), Some(ts("2026-01-01T00:00:30Z")));

        j.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(5);
        assert_eq!(ttl_expiry(&j), None);
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            COND_COMPLETE,
            "True",
            "CompletionsReached",
            "done",
            ts("2026-01-01T00:01:00Z"),
        );
        j.status.as_mut().unwrap().conditions = Some(conds);
        assert_eq!(ttl_expiry(&j), Some(ts("2026-01-01T00:01:05Z")));
    }

    #[test]
    fn condition_transition_time_moves_only_on_status_change() {
        let mut conds = Vec::new();
        let t0 = ts("2026-01-01T00:00:00Z");
        let t1 = ts("2026-01-01T00:01:00Z");
        set_condition(
            &mut conds,
            COND_SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            t0,
        );
        set_condition(
            &mut conds,
            COND_SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            t1,
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, Some(Time(t0)));
        set_condition(
            &mut conds,
            COND_SUSPENDED,
            "False",
            "JobResumed",
            "Job resumed",
            t1,
        );
        assert_eq!(conds[0].last_transition_time, Some(Time(t1)));
        assert_eq!(conds[0].status, "False");
        assert!(find_condition(
            Some(&JobStatus {
                conditions: Some(conds),
                ..Default::default()
            }),
            COND_SUSPENDED
        )
        .is_none());
    }
}
