//! The CronJob controller: creates a Job from `spec.jobTemplate` at each scheduled time,
//! as kube-controller-manager's (v2) does:
//!
//! - the schedule is five cron fields or a descriptor (`@hourly`, …, `@every <duration>`),
//!   evaluated in `spec.timeZone` (the controller's local zone when unset);
//! - only the most recent missed time runs; with `startingDeadlineSeconds`, times older than
//!   the deadline are skipped, and more than 100 missed times give a `TooManyMissedTimes`
//!   event;
//! - Jobs are named `<cronjob>-<scheduled time in minutes since the epoch>`, annotated with
//!   `batch.kubernetes.io/cronjob-scheduled-timestamp`, controlled by the CronJob;
//! - `concurrencyPolicy` Allow, Forbid (skip while a Job runs) and Replace (delete the
//!   running Jobs first); `suspend`;
//! - `successfulJobsHistoryLimit`/`failedJobsHistoryLimit` delete the oldest finished Jobs;
//! - `status.active`, `lastScheduleTime`, `lastSuccessfulTime`; each sync requeues itself
//!   for the next scheduled time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use crate::controller_utils::event_reference;
use crate::job::{find_condition, COND_COMPLETE, COND_FAILED};
use crate::runner::{drive, RetryBackoff};
use api::strategies::batch::{cron_parser, go_duration_seconds};
use events::{EventRecorder, EventType};

pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
const COMPONENT: &str = "cronjob-controller";
/// Upstream's limit before it says the controller is too far behind.
const TOO_MANY_MISSED: usize = 100;
/// Past the scheduled time, so the requeued sync finds it due.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("CronJob {0} has no namespace")]
    NoNamespace(String),
}

/// The controller's settings; tests move its clock instead of waiting for the schedule.
#[derive(Clone)]
pub struct Config {
    pub now: Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            now: Arc::new(jiff::Timestamp::now),
        }
    }
}

struct Context {
    now: Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>,
    client: kube::Client,
    recorder: EventRecorder,
    backoff: RetryBackoff<CronJob>,
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    run_with(client, Config::default(), shutdown).await
}

/// Runs the controller with `config` until `shutdown` completes.
pub async fn run_with(
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let ctx = Arc::new(Context {
        now: config.now,
        recorder: EventRecorder::for_component(client.clone(), COMPONENT, None),
        client: client.clone(),
        backoff: RetryBackoff::new(),
    });
    let controller = Controller::new(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client), watcher::Config::default());
    drive(
        "cronjob",
        controller,
        shutdown,
        reconcile,
        error_policy,
        ctx,
    )
    .await;
    Ok(())
}

fn error_policy(cj: Arc<CronJob>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.backoff.failed(&cj, err)
}

// ---------------------------------------------------------------------------------------
// Schedules (pure)
// ---------------------------------------------------------------------------------------

/// A parsed `spec.schedule`.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron(Box<croner::Cron>),
    /// `@every <duration>`: robfig/cron's constant delay, whole seconds, at least one.
    Every(jiff::SignedDuration),
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains("TZ") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        if let Some(every) = s.strip_prefix("@every ") {
            let secs = go_duration_seconds(every.trim())
                .ok_or_else(|| format!("failed to parse duration {s}"))?;
            return Ok(Schedule::Every(jiff::SignedDuration::from_secs(
                secs.floor().max(1.0) as i64,
            )));
        }
        if !s.starts_with('@') && s.split_whitespace().count() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: [{s}]",
                s.split_whitespace().count()
            ));
        }
        cron_parser()
            .parse(s)
            .map(|c| Schedule::Cron(Box::new(c)))
            .map_err(|e| e.to_string())
    }

    /// The first scheduled time strictly after `t`. For `@every`, times count from the
    /// previous one (`t` being the last schedule, or the CronJob's creation).
    pub fn next_after(&self, t: &jiff::Zoned) -> Option<jiff::Zoned> {
        match self {
            Schedule::Cron(c) => c.find_next_occurrence(t, false).ok(),
            Schedule::Every(d) => t.checked_add(*d).ok(),
        }
    }
}

/// The zone a CronJob's schedule is read in.
pub fn time_zone(cj: &CronJob) -> Result<jiff::tz::TimeZone, String> {
    match cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        Some(name) => {
            jiff::tz::TimeZone::get(name).map_err(|e| format!("unknown time zone {name}: {e}"))
        }
        None => Ok(jiff::tz::TimeZone::system()),
    }
}

/// The outcome of looking for a due run (upstream's `mostRecentScheduleTime`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The most recent scheduled time in (earliest, now], if any.
    pub scheduled: Option<jiff::Timestamp>,
    /// How many scheduled times were missed in that window (capped just above 100).
    pub missed: usize,
    /// The next scheduled time after `now`.
    pub next: Option<jiff::Timestamp>,
}

/// The window starts at the last schedule time (else the creation time), or at
/// `now − startingDeadlineSeconds` when that is later: older times are never run.
pub fn earliest_time(cj: &CronJob, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)?;
    if let Some(sds) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
        if let Ok(deadline) = now.checked_sub(jiff::SignedDuration::from_secs(sds)) {
            earliest = earliest.max(deadline);
        }
    }
    Some(earliest)
}

pub fn due(
    schedule: &Schedule,
    tz: &jiff::tz::TimeZone,
    earliest: jiff::Timestamp,
    now: jiff::Timestamp,
) -> Due {
    let now_z = now.to_zoned(tz.clone());
    let mut out = Due {
        scheduled: None,
        missed: 0,
        next: None,
    };
    if earliest > now {
        out.next = schedule
            .next_after(&earliest.to_zoned(tz.clone()))
            .map(|z| z.timestamp());
        return out;
    }
    match schedule {
        Schedule::Every(d) => {
            let span = now.duration_since(earliest);
            let k = span.as_secs() / d.as_secs().max(1);
            if k > 0 {
                out.missed = k as usize;
                out.scheduled = earliest.checked_add(*d * (k as i32)).ok();
            }
            let last = out.scheduled.unwrap_or(earliest);
            out.next = last.checked_add(*d).ok();
        }
        Schedule::Cron(c) => {
            // The most recent time at or before now, then a bounded count of the missed ones.
            let recent = c
                .find_previous_occurrence(&now_z, true)
                .ok()
                .map(|z| z.timestamp())
                .filter(|t| *t > earliest);
            if let Some(recent) = recent {
                out.scheduled = Some(recent);
                let mut t = earliest.to_zoned(tz.clone());
                while out.missed <= TOO_MANY_MISSED {
                    match schedule.next_after(&t) {
                        Some(n) if n.timestamp() <= recent => {
                            out.missed += 1;
                            t = n;
                        }
                        _ => break,
                    }
                }
            }
            out.next = schedule.next_after(&now_z).map(|z| z.timestamp());
        }
    }
    out
}

pub fn too_many_missed(missed: usize) -> bool {
    missed > TOO_MANY_MISSED
}

/// A scheduled time older than `startingDeadlineSeconds` is not started.
pub fn too_late(cj: &CronJob, scheduled: jiff::Timestamp, now: jiff::Timestamp) -> bool {
    cj.spec
        .as_ref()
        .and_then(|s| s.starting_deadline_seconds)
        .and_then(|sds| {
            scheduled
                .checked_add(jiff::SignedDuration::from_secs(sds))
                .ok()
        })
        .is_some_and(|deadline| deadline < now)
}

/// What `concurrencyPolicy` makes of a due run while `active` runs are going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    Start,
    /// Forbid: the due run is skipped (not recorded as scheduled).
    Skip,
    /// Replace: the running Jobs are deleted first.
    ReplaceThenStart,
}

pub fn concurrency_decision(policy: Option<&str>, active: usize) -> Concurrency {
    match policy {
        _ if active == 0 => Concurrency::Start,
        Some("Forbid") => Concurrency::Skip,
        Some("Replace") => Concurrency::ReplaceThenStart,
        _ => Concurrency::Start,
    }
}

/// `<cronjob>-<minutes since the epoch>`: the same scheduled time always gives the same
/// name, so a repeated sync cannot start a second Job for it.
pub fn job_name(cj: &CronJob, scheduled: jiff::Timestamp) -> String {
    format!("{}-{}", cj.name_any(), scheduled.as_second().div_euclid(60))
}

pub fn job_from_template(cj: &CronJob, scheduled: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.into(),
        scheduled
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.name_any(),
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Finished as Complete (true) or Failed (false).
pub fn job_finished(job: &Job) -> Option<bool> {
    if find_condition(job.status.as_ref(), COND_COMPLETE).is_some() {
        Some(true)
    } else if find_condition(job.status.as_ref(), COND_FAILED).is_some() {
        Some(false)
    } else {
        None
    }
}

/// The finished Jobs past the history limits, oldest first (by start time, then name).
pub fn jobs_to_trim<'a>(cj: &CronJob, jobs: &'a [Job]) -> Vec<&'a Job> {
    let spec = cj.spec.as_ref();
    let keep_ok = spec
        .and_then(|s| s.successful_jobs_history_limit)
        .unwrap_or(3)
        .max(0) as usize;
    let keep_failed = spec
        .and_then(|s| s.failed_jobs_history_limit)
        .unwrap_or(1)
        .max(0) as usize;
    let mut out = Vec::new();
    for (want_ok, keep) in [(true, keep_ok), (false, keep_failed)] {
        let mut finished: Vec<&Job> = jobs
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .filter(|j| job_finished(j) == Some(want_ok))
            .collect();
        finished.sort_by_key(|j| {
            (
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
                    .or(j.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                j.name_any(),
            )
        });
        let excess = finished.len().saturating_sub(keep);
        out.extend(finished.into_iter().take(excess));
    }
    out
}

fn until(now: jiff::Timestamp, at: jiff::Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO) + NEXT_SCHEDULE_DELTA
}

// ---------------------------------------------------------------------------------------
// Sync
// ---------------------------------------------------------------------------------------

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = cj.name_any();
    let ns = cj
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let cj_api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = cj.metadata.uid.as_deref();
    let jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
        })
        .collect();
    let now = (ctx.now)();
    let status = cj.status.clone().unwrap_or_default();
    let mut last_successful = status.last_successful_time.clone();
    let mut last_schedule = status.last_schedule_time.clone();

    // Active: the Jobs we listed as such that still exist and are not finished.
    let by_uid: HashMap<&str, &Job> = jobs
        .iter()
        .map(|j| (j.metadata.uid.as_deref().unwrap_or_default(), j))
        .collect();
    let mut active: Vec<ObjectReference> = Vec::new();
    for r in status.active.iter().flatten() {
        let Some(j) = by_uid.get(r.uid.as_deref().unwrap_or_default()) else {
            continue;
        };
        match job_finished(j) {
            Some(ok) => {
                if ok {
                    let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                    if done.as_ref().map(|t| t.0) > last_successful.as_ref().map(|t| t.0) {
                        last_successful = done;
                    }
                }
                ctx.recorder.object_event(
                    event_reference(&*cj),
                    EventType::Normal,
                    "SawCompletedJob",
                    format!(
                        "Saw completed job: {}, condition: {}",
                        j.name_any(),
                        if ok { COND_COMPLETE } else { COND_FAILED }
                    ),
                );
            }
            None => active.push(event_reference(*j)),
        }
    }
    for j in &jobs {
        let listed = active.iter().any(|r| r.uid == j.metadata.uid);
        if !listed && job_finished(j).is_none() && j.metadata.deletion_timestamp.is_none() {
            // Upstream reports it and leaves it out of status.active.
            ctx.recorder.object_event(
                event_reference(&*cj),
                EventType::Warning,
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    j.name_any()
                ),
            );
        }
    }

    let mut requeue = None;
    if cj.metadata.deletion_timestamp.is_none() {
        requeue = schedule_step(&ctx, &cj, &jobs_api, now, &mut active, &mut last_schedule).await?;
    }

    for j in jobs_to_trim(&cj, &jobs) {
        delete_job(&ctx, &cj, &jobs_api, j).await?;
    }

    let new = json!({
        "active": if active.is_empty() { serde_json::Value::Null } else { json!(active) },
        "lastScheduleTime": last_schedule,
        "lastSuccessfulTime": last_successful,
    });
    let old = json!({
        "active": status.active.as_ref().filter(|a| !a.is_empty()),
        "lastScheduleTime": status.last_schedule_time,
        "lastSuccessfulTime": status.last_successful_time,
    });
    if new != old {
        cj_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": new})),
            )
            .await?;
    }
    ctx.backoff.succeeded(&cj);
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Starts the due run, if any; returns when to come back.
async fn schedule_step(
    ctx: &Context,
    cj: &CronJob,
    jobs_api: &Api<Job>,
    now: jiff::Timestamp,
    active: &mut Vec<ObjectReference>,
    last_schedule: &mut Option<Time>,
) -> Result<Option<Duration>, Error> {
    let spec = cj.spec.clone().unwrap_or_default();
    let tz = match time_zone(cj) {
        Ok(tz) => tz,
        Err(msg) => {
            ctx.recorder.object_event(
                event_reference(cj),
                EventType::Warning,
                "UnknownTimeZone",
                msg,
            );
            return Ok(None);
        }
    };
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(msg) => {
            ctx.recorder.object_event(
                event_reference(cj),
                EventType::Warning,
                "InvalidSchedule",
                format!("invalid schedule: {}: {msg}", spec.schedule),
            );
            return Ok(None);
        }
    };
    if spec.suspend == Some(true) {
        return Ok(None);
    }
    let Some(earliest) = earliest_time(cj, now) else {
        return Ok(None);
    };
    let d = due(&schedule, &tz, earliest, now);
    let next = d.next.map(|n| until(now, n));
    let Some(scheduled) = d.scheduled else {
        return Ok(next);
    };
    if too_many_missed(d.missed) {
        ctx.recorder.object_event(
            event_reference(cj),
            EventType::Warning,
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".to_string(),
        );
    }
    if too_late(cj, scheduled, now) {
        ctx.recorder.object_event(
            event_reference(cj),
            EventType::Warning,
            "MissSchedule",
            format!("Missed scheduled time to start a job: {scheduled}"),
        );
        return Ok(next);
    }
    let name = job_name(cj, scheduled);
    if active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
    {
        return Ok(next);
    }
    match concurrency_decision(spec.concurrency_policy.as_deref(), active.len()) {
        Concurrency::Skip => {
            tracing::debug!(cronjob = %cj.name_any(), "prior run still active; Forbid skips this one");
            return Ok(next);
        }
        Concurrency::ReplaceThenStart => {
            for r in std::mem::take(active) {
                let Some(job_name) = r.name.clone() else {
                    continue;
                };
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..Default::default()
                };
                match jobs_api.delete(&job_name, &dp).await {
                    Ok(_) => ctx.recorder.object_event(
                        event_reference(cj),
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted job {job_name}"),
                    ),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        active.push(r);
                        return Err(e.into());
                    }
                }
            }
        }
        Concurrency::Start => {}
    }
    let job = job_from_template(cj, scheduled, &tz);
    match jobs_api.create(&PostParams::default(), &job).await {
        Ok(created) => {
            ctx.recorder.object_event(
                event_reference(cj),
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created job {}", created.name_any()),
            );
            active.push(event_reference(&created));
        }
        // Made by an earlier sync whose status write was lost: it is the same run.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            if let Ok(existing) = jobs_api.get(&name).await {
                let ours = existing
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| Some(&o.uid) == cj.metadata.uid.as_ref());
                if ours && job_finished(&existing).is_none() {
                    active.push(event_reference(&existing));
                }
            }
        }
        Err(e) => {
            ctx.recorder.object_event(
                event_reference(cj),
                EventType::Warning,
                "FailedCreate",
                format!("Error creating job: {e}"),
            );
            return Err(e.into());
        }
    }
    *last_schedule = Some(Time(scheduled));
    Ok(next)
}

async fn delete_job(ctx: &Context, cj: &CronJob, api: &Api<Job>, job: &Job) -> Result<(), Error> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(&job.name_any(), &dp).await {
        Ok(_) => {
            ctx.recorder.object_event(
                event_reference(cj),
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted job {}", job.name_any()),
            );
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::batch::v1::{CronJobSpec, CronJobStatus, JobCondition, JobStatus};

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn utc() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::UTC
    }

    fn cronjob(schedule: &str) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("hello".into()),
                namespace: Some("default".into()),
                uid: Some("cj-uid".into()),
                creation_timestamp: Some(Time(ts("2026-01-01T00:00:30Z"))),
                ..Default::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn next(s: &str, after: &str, tz: &str) -> String {
        let tz = jiff::tz::TimeZone::get(tz).unwrap();
        Schedule::parse(s)
            .unwrap()
            .next_after(&ts(after).to_zoned(tz))
            .unwrap()
            .timestamp()
            .to_string()
    }

    #[test]
    fn schedules_give_the_next_times() {
        assert_eq!(
            next("* * * * *", "2026-01-01T00:00:30Z", "UTC"),
            "2026-01-01T00:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T00:16:00Z", "UTC"),
            "2026-01-01T00:30:00Z"
        );
        assert_eq!(
            next("@hourly", "2026-01-01T00:16:00Z", "UTC"),
            "2026-01-01T01:00:00Z"
        );
        assert_eq!(
            next("@daily", "2026-01-01T00:16:00Z", "UTC"),
            "2026-01-02T00:00:00Z"
        );
        // 2026-01-01 is a Thursday: @weekly is Sunday midnight.
        assert_eq!(
            next("@weekly", "2026-01-01T00:16:00Z", "UTC"),
            "2026-01-04T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2026-01-01T00:16:00Z", "UTC"),
            "2026-02-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2026-01-01T00:16:00Z", "UTC"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("0 9 * * MON-FRI", "2026-01-02T10:00:00Z", "UTC"),
            "2026-01-05T09:00:00Z"
        );
        // Vixie cron: with both day fields restricted, either matches.
        assert_eq!(
            next("0 0 13 * FRI", "2026-02-01T00:00:00Z", "UTC"),
            "2026-02-06T00:00:00Z"
        );
        // In a zone: 09:00 in Berlin is 08:00 UTC in winter.
        assert_eq!(
            next("0 9 * * *", "2026-01-01T10:00:00Z", "Europe/Berlin"),
            "2026-01-02T08:00:00Z"
        );
        assert_eq!(
            next("@every 90s", "2026-01-01T00:00:00Z", "UTC"),
            "2026-01-01T00:01:30Z"
        );
    }

    #[test]
    fn invalid_schedules_are_refused() {
        assert!(Schedule::parse("* * * *").is_err());
        assert!(Schedule::parse("0 0 * * * *").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("@fortnightly").is_err());
        assert!(Schedule::parse("TZ=UTC * * * * *").is_err());
        assert!(Schedule::parse("@every soon").is_err());
    }

    #[test]
    fn the_most_recent_missed_time_runs_and_misses_are_counted() {
        let s = Schedule::parse("* * * * *").unwrap();
        let d = due(
            &s,
            &utc(),
            ts("2026-01-01T00:00:30Z"),
            ts("2026-01-01T00:00:45Z"),
        );
        assert_eq!(d.scheduled, None);
        assert_eq!(d.next, Some(ts("2026-01-01T00:01:00Z")));
        let d = due(
            &s,
            &utc(),
            ts("2026-01-01T00:00:30Z"),
            ts("2026-01-01T00:03:10Z"),
        );
        assert_eq!(d.scheduled, Some(ts("2026-01-01T00:03:00Z")));
        assert_eq!(d.missed, 3);
        assert_eq!(d.next, Some(ts("2026-01-01T00:04:00Z")));
        let d = due(
            &s,
            &utc(),
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-02T00:00:10Z"),
        );
        assert!(too_many_missed(d.missed));
        assert_eq!(d.scheduled, Some(ts("2026-01-02T00:00:00Z")));
        // The last schedule time itself is not due again.
        let d = due(
            &s,
            &utc(),
            ts("2026-01-01T00:03:00Z"),
            ts("2026-01-01T00:03:10Z"),
        );
        assert_eq!(d.scheduled, None);
        let every = Schedule::parse("@every 1m").unwrap();
        let d = due(
            &every,
            &utc(),
            ts("2026-01-01T00:00:30Z"),
            ts("2026-01-01T00:02:40Z"),
        );
        assert_eq!(d.scheduled, Some(ts("2026-01-01T00:02:30Z")));
        assert_eq!(d.missed, 2);
        assert_eq!(d.next, Some(ts("2026-01-01T00:03:30Z")));
    }

    #[test]
    fn starting_deadline_bounds_the_window() {
        let mut cj = cronjob("* * * * *");
        let now = ts("2026-01-01T02:00:10Z");
        assert_eq!(earliest_time(&cj, now), Some(ts("2026-01-01T00:00:30Z")));
        cj.status = Some(CronJobStatus {
            last_schedule_time: Some(Time(ts("2026-01-01T01:00:00Z"))),
            ..Default::default()
        });
        assert_eq!(earliest_time(&cj, now), Some(ts("2026-01-01T01:00:00Z")));
        cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(300);
        assert_eq!(earliest_time(&cj, now), Some(ts("2026-01-01T01:55:10Z")));
        assert!(!too_late(&cj, ts("2026-01-01T02:00:00Z"), now));
        assert!(too_late(&cj, ts("2026-01-01T01:50:00Z"), now));
    }

    #[test]
    fn concurrency_policies() {
        assert_eq!(concurrency_decision(None, 2), Concurrency::Start);
        assert_eq!(concurrency_decision(Some("Allow"), 2), Concurrency::Start);
        assert_eq!(concurrency_decision(Some("Forbid"), 1), Concurrency::Skip);
        assert_eq!(concurrency_decision(Some("Forbid"), 0), Concurrency::Start);
        assert_eq!(
            concurrency_decision(Some("Replace"), 1),
            Concurrency::ReplaceThenStart
        );
        assert_eq!(concurrency_decision(Some("Replace"), 0), Concurrency::Start);
    }

    #[test]
    fn jobs_are_named_and_annotated_by_their_scheduled_time() {
        let cj = cronjob("* * * * *");
        let t = ts("2026-01-01T00:03:00Z");
        let job = job_from_template(&cj, t, &utc());
        assert_eq!(
            job.metadata.name.as_deref(),
            Some(format!("hello-{}", t.as_second() / 60).as_str())
        );
        assert_eq!(
            job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION],
            "2026-01-01T00:03:00Z"
        );
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("CronJob", Some(true))
        );
    }

    fn finished_job(name: &str, start: &str, ok: bool) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: None,
            status: Some(JobStatus {
                start_time: Some(Time(ts(start))),
                conditions: Some(vec![JobCondition {
                    type_: if ok { COND_COMPLETE } else { COND_FAILED }.into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn history_keeps_the_newest_finished_jobs() {
        let mut cj = cronjob("* * * * *");
        let jobs = vec![
            finished_job("a", "2026-01-01T00:01:00Z", true),
            finished_job("b", "2026-01-01T00:02:00Z", false),
            finished_job("c", "2026-01-01T00:03:00Z", true),
            finished_job("d", "2026-01-01T00:04:00Z", true),
            finished_job("e", "2026-01-01T00:05:00Z", true),
            finished_job("f", "2026-01-01T00:06:00Z", false),
            Job {
                metadata: ObjectMeta {
                    name: Some("running".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        ];
        let names = |v: Vec<&Job>| v.iter().map(|j| j.name_any()).collect::<Vec<_>>();
        // Defaults: 3 successful, 1 failed.
        assert_eq!(names(jobs_to_trim(&cj, &jobs)), vec!["a", "b"]);
        cj.spec.as_mut().unwrap().successful_jobs_history_limit = Some(0);
        cj.spec.as_mut().unwrap().failed_jobs_history_limit = Some(2);
        assert_eq!(names(jobs_to_trim(&cj, &jobs)), vec!["a", "c", "d", "e"]);
    }
}
