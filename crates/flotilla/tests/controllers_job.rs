//! The Job and CronJob controllers end to end: a real `flotilla server` with its scheduler,
//! simulated nodes that report bound pods Running, and the two controllers in process.
//! Simulated pods never finish by themselves, so the tests finish them by writing their
//! status (phase and terminated container), as a kubelet would.
//!
//! Each test starts its own server and nodes (unique name prefixes), so they run in parallel.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use support::sim::{eventually_for, merge_patch, phase_of, run_kubectl, until_gone, SimCluster};

const DEADLINE: Duration = Duration::from_secs(60);
const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

struct Harness {
    sim: SimCluster,
}

crate::deref_to_sim!(Harness);

impl Harness {
    async fn start(test: &str) -> Self {
        Self::start_with_clock(test, None).await
    }

    /// With `offset` (seconds), the CronJob controller's clock runs that far ahead.
    async fn start_with_clock(test: &str, offset: Option<Arc<AtomicI64>>) -> Self {
        let mut sim = SimCluster::with_nodes(&format!("{test}-node"), 2, false).await;
        sim.spawn_shared(controllers::job::run);
        let mut config = controllers::cronjob::Config::default();
        if let Some(offset) = offset {
            config.now = Arc::new(move || {
                jiff::Timestamp::now()
                    + jiff::SignedDuration::from_secs(offset.load(Ordering::SeqCst))
            });
        }
        sim.spawn(move |client, shutdown| controllers::cronjob::run_with(client, config, shutdown));
        Harness { sim }
    }

    async fn kubectl(&self, args: &[&str]) -> String {
        run_kubectl(self.server.kubectl("1.33"), args)
            .await
            .expect_success("kubectl")
            .to_string()
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn create_job(&self, name: &str, spec: serde_json::Value) -> Job {
        let mut spec = spec;
        spec["template"] = json!({"spec": {"restartPolicy": "Never",
            "containers": [{"name": "work", "image": "busybox"}]}});
        let job: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        self.jobs()
            .create(&PostParams::default(), &job)
            .await
            .unwrap()
    }

    async fn job_pods(&self, job: &str) -> Vec<Pod> {
        self.pods()
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
            .await
            .unwrap()
            .items
    }

    /// Waits for `n` Running, not terminating pods of `job`.
    async fn running(&self, job: &str, n: usize) -> Vec<Pod> {
        let what = format!("{n} running pods of job {job}");
        eventually_for(DEADLINE, &what, || async {
            let pods: Vec<Pod> = self
                .job_pods(job)
                .await
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| phase_of(p) == Some("Running"))
                .collect();
            (pods.len() == n).then_some(pods)
        })
        .await
    }

    /// Ends a pod as its kubelet would: terminal phase and a terminated container.
    async fn finish(&self, pod: &Pod, succeeded: bool) {
        self.end(pod, if succeeded { 0 } else { 1 }, None).await;
    }

    /// Ends a pod with its container's `exit_code` (Succeeded when 0), with `condition`
    /// True besides Ready=False.
    async fn end(&self, pod: &Pod, exit_code: i32, condition: Option<&str>) {
        let now = jiff::Timestamp::now().to_string();
        let succeeded = exit_code == 0;
        let mut conditions =
            vec![json!({"type": "Ready", "status": "False", "lastTransitionTime": now})];
        if let Some(c) = condition {
            conditions.push(json!({"type": c, "status": "True", "lastTransitionTime": now}));
        }
        let patch = json!({"status": {
            "phase": if succeeded { "Succeeded" } else { "Failed" },
            "conditions": conditions,
            "containerStatuses": [{
                "name": "work", "image": "busybox", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code,
                    "reason": if succeeded { "Completed" } else { "Error" },
                    "startedAt": now, "finishedAt": now}},
            }],
        }});
        self.pods()
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .unwrap();
    }

    /// Waits until `check` holds for Job `name`; returns it.
    async fn job_until(&self, name: &str, what: &str, check: impl Fn(&Job) -> bool) -> Job {
        eventually_for(DEADLINE, &format!("job {name}: {what}"), || async {
            let job = self.jobs().get(name).await.ok()?;
            check(&job).then_some(job)
        })
        .await
    }
}

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .and_then(|c| c.reason.as_deref())
}

fn counts(job: &Job) -> (i32, i32, i32) {
    let s = job.status.clone().unwrap_or_default();
    (
        s.active.unwrap_or(0),
        s.succeeded.unwrap_or(0),
        s.failed.unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_completions_with_parallelism_and_kubectl_sees_it_complete() {
    let h = Harness::start("jobcomp").await;
    h.create_job("pi", json!({"completions": 3, "parallelism": 2}))
        .await;

    // Two at a time, each controlled by the Job and held by the tracking finalizer.
    let pods = h.running("pi", 2).await;
    let job = h.jobs().get("pi").await.unwrap();
    for p in &pods {
        let owner = &p.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
        assert_eq!(owner.uid, job.uid().unwrap());
        assert!(p.finalizers().iter().any(|f| f == TRACKING_FINALIZER));
    }
    h.job_until("pi", "2 active, startTime", |j| {
        counts(j).0 == 2 && j.status.as_ref().unwrap().start_time.is_some()
    })
    .await;

    h.finish(&pods[0], true).await;
    h.job_until("pi", "1 succeeded", |j| counts(j).1 == 1).await;
    // The replacement: never more than the two completions still needed.
    let pods = h.running("pi", 2).await;
    h.finish(&pods[0], true).await;
    h.finish(&pods[1], true).await;

    let job = h
        .job_until("pi", "Complete", |j| condition(j, "Complete").is_some())
        .await;
    assert_eq!(counts(&job), (0, 3, 0));
    assert_eq!(
        condition(&job, "SuccessCriteriaMet"),
        Some("CompletionsReached")
    );
    assert!(job.status.as_ref().unwrap().completion_time.is_some());
    // Counted pods are released.
    let all = h.job_pods("pi").await;
    assert_eq!(all.len(), 3, "exactly three pods were made");
    assert!(all
        .iter()
        .all(|p| !p.finalizers().iter().any(|f| f == TRACKING_FINALIZER)));

    let out = h
        .kubectl(&[
            "wait",
            "--for=condition=complete",
            "job/pi",
            "--timeout=30s",
        ])
        .await;
    assert!(out.contains("condition met"), "{out}");
    let out = h.kubectl(&["get", "jobs"]).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("pi ") && l.contains("3/3")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_failure_policy_ignores_disruptions_and_fails_the_job_on_a_fatal_exit_code() {
    let h = Harness::start("jobpfp").await;
    h.create_job(
        "pfp",
        json!({"backoffLimit": 0, "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "work", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]}}),
    )
    .await;
    let first = h.running("pfp", 1).await.remove(0);
    // A disruption is ignored: with backoffLimit 0 the Job goes on, with a new pod.
    h.end(&first, 137, Some("DisruptionTarget")).await;
    let second = eventually_for(DEADLINE, "a replacement for the disrupted pod", || async {
        h.running("pfp", 1)
            .await
            .into_iter()
            .find(|p| p.metadata.uid != first.metadata.uid)
    })
    .await;
    let job = h
        .job_until("pfp", "the ignored pod released", |j| {
            j.status
                .as_ref()
                .and_then(|s| s.uncounted_terminated_pods.as_ref())
                .is_none_or(|u| u.failed.as_deref().unwrap_or_default().is_empty())
        })
        .await;
    assert_eq!(counts(&job).2, 0, "an ignored failure is not counted");
    assert!(condition(&job, "FailureTarget").is_none());
    let released = h.pods().get(&first.name_any()).await.unwrap();
    assert!(!released
        .finalizers()
        .iter()
        .any(|f| f == TRACKING_FINALIZER));

    // Exit code 42 fails the Job at once, saying why.
    h.end(&second, 42, None).await;
    let job = h
        .job_until("pfp", "Failed", |j| condition(j, "Failed").is_some())
        .await;
    assert_eq!(condition(&job, "Failed"), Some("PodFailurePolicy"));
    let message = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Failed"))
        .and_then(|c| c.message.clone());
    assert_eq!(
        message.as_deref(),
        Some(
            format!(
                "Container work for pod default/{} failed with exit code 42 matching FailJob rule at index 0",
                second.name_any()
            )
            .as_str()
        )
    );
    assert_eq!(counts(&job), (0, 0, 1));

    // The API refuses a policy that cannot work.
    let bad = h
        .server
        .kubectl("1.33")
        .stdin(
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad"},
                "spec": {"podFailurePolicy": {"rules": [{"action": "FailJob",
                    "onExitCodes": {"operator": "In", "values": [0]}}]},
                    "template": {"spec": {"restartPolicy": "OnFailure",
                        "containers": [{"name": "c", "image": "busybox"}]}}}})
            .to_string(),
        )
        .timeout(DEADLINE);
    let out = run_kubectl(bad, &["create", "-f", "-"]).await;
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr
            .contains("only \"Never\" is supported when podFailurePolicy is specified")
            && out.stderr.contains("must not be 0 for the In operator"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_past_the_backoff_limit_fail_the_job() {
    let h = Harness::start("jobbackoff").await;
    h.create_job(
        "flaky",
        json!({"completions": 4, "parallelism": 2, "backoffLimit": 1}),
    )
    .await;
    let pods = h.running("flaky", 2).await;
    h.finish(&pods[0], false).await;
    h.finish(&pods[1], false).await;
    let job = h
        .job_until("flaky", "Failed", |j| condition(j, "Failed").is_some())
        .await;
    assert_eq!(condition(&job, "Failed"), Some("BackoffLimitExceeded"));
    assert_eq!(
        condition(&job, "FailureTarget"),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(counts(&job), (0, 0, 2));
    assert!(condition(&job, "Complete").is_none());
    // No replacement was started.
    assert_eq!(h.job_pods("flaky").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_before_it_finished_counts_as_failed_and_is_replaced_after_back_off() {
    let h = Harness::start("jobdel").await;
    h.create_job("del", json!({"completions": 1})).await;
    let pods = h.running("del", 1).await;
    let started = std::time::Instant::now();
    h.pods()
        .delete(&pods[0].name_any(), &DeleteParams::default())
        .await
        .unwrap();
    h.job_until("del", "1 failed", |j| counts(j).2 == 1).await;
    // The finalizer released, the deleted pod goes away.
    until_gone(
        &h.pods(),
        &pods[0].name_any(),
        DEADLINE,
        "the deleted pod is removed once counted",
    )
    .await;
    let replacement = h.running("del", 1).await;
    assert_ne!(replacement[0].uid(), pods[0].uid());
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "the replacement waited the 10 s back-off: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_the_job_and_stops_its_pods() {
    let h = Harness::start("jobdeadline").await;
    h.create_job(
        "slow",
        // Long enough that the pod is seen Running before the deadline on a busy machine.
        json!({"completions": 1, "activeDeadlineSeconds": 10}),
    )
    .await;
    h.running("slow", 1).await;
    let job = h
        .job_until("slow", "Failed", |j| condition(j, "Failed").is_some())
        .await;
    assert_eq!(condition(&job, "Failed"), Some("DeadlineExceeded"));
    assert_eq!(counts(&job).0, 0);
    testkit::wait_for_async(DEADLINE, || async {
        h.job_pods("slow").await.is_empty().then_some(())
    })
    .await
    .expect("the running pod was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_gives_each_pod_its_index_and_tracks_completed_indexes() {
    let h = Harness::start("jobidx").await;
    h.create_job(
        "idx",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
    )
    .await;
    let mut pods = h.running("idx", 3).await;
    pods.sort_by_key(|p| p.annotations()["batch.kubernetes.io/job-completion-index"].clone());
    for (i, p) in pods.iter().enumerate() {
        assert_eq!(
            p.labels()["batch.kubernetes.io/job-completion-index"],
            i.to_string()
        );
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{i}").as_str()));
        let env = spec.containers[0].env.clone().unwrap();
        assert!(env.iter().any(
            |e| e.name == "JOB_COMPLETION_INDEX" && e.value.as_deref() == Some(&i.to_string())
        ));
    }
    h.finish(&pods[1], true).await;
    h.job_until("idx", "index 1 completed", |j| {
        j.status.as_ref().unwrap().completed_indexes.as_deref() == Some("1")
    })
    .await;
    h.finish(&pods[0], true).await;
    h.finish(&pods[2], true).await;
    let job = h
        .job_until("idx", "Complete", |j| condition(j, "Complete").is_some())
        .await;
    assert_eq!(
        job.status.as_ref().unwrap().completed_indexes.as_deref(),
        Some("0-2")
    );
    assert_eq!(counts(&job), (0, 3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume_then_ttl_deletes_the_finished_job() {
    let h = Harness::start("jobsuspend").await;
    h.create_job(
        "later",
        json!({"completions": 1, "suspend": true, "ttlSecondsAfterFinished": 2}),
    )
    .await;
    h.job_until("later", "Suspended", |j| {
        condition(j, "Suspended").is_some()
    })
    .await;
    assert!(h.job_pods("later").await.is_empty());

    merge_patch(&h.jobs(), "later", json!({"spec": {"suspend": false}})).await;
    let pods = h.running("later", 1).await;
    let job = h
        .job_until("later", "resumed", |j| condition(j, "Suspended").is_none())
        .await;
    let resumed = job
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Suspended")
        .unwrap();
    assert_eq!(
        (resumed.status.as_str(), resumed.reason.as_deref()),
        ("False", Some("JobResumed"))
    );

    // Suspending again stops the running pod without counting it.
    merge_patch(&h.jobs(), "later", json!({"spec": {"suspend": true}})).await;
    testkit::wait_for_async(DEADLINE, || async {
        h.job_pods("later").await.is_empty().then_some(())
    })
    .await
    .expect("suspension deletes the active pod");
    assert_eq!(counts(&h.jobs().get("later").await.unwrap()).2, 0);
    drop(pods);

    merge_patch(&h.jobs(), "later", json!({"spec": {"suspend": false}})).await;
    let pods = h.running("later", 1).await;
    h.finish(&pods[0], true).await;
    h.job_until("later", "Complete", |j| condition(j, "Complete").is_some())
        .await;
    until_gone(
        &h.jobs(),
        "later",
        DEADLINE,
        "ttlSecondsAfterFinished deletes the Job",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_fires_on_schedule_and_kubectl_creates_a_job_from_it() {
    let h = Harness::start("cron").await;
    let cj: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "work", "image": "busybox"}]}}}}},
    }))
    .unwrap();
    let cronjobs: Api<CronJob> = Api::namespaced(h.client.clone(), "default");
    let cj = cronjobs.create(&PostParams::default(), &cj).await.unwrap();

    // A manual run through kubectl, owned by the CronJob.
    h.kubectl(&["create", "job", "manual", "--from=cronjob/tick"])
        .await;
    let manual = h.jobs().get("manual").await.unwrap();
    assert_eq!(manual.owner_references()[0].uid, cj.uid().unwrap());
    h.running("manual", 1).await;

    // The scheduled run: at the next minute boundary.
    let job = testkit::wait_for_async(Duration::from_secs(65), || async {
        h.jobs()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|j| j.name_any().starts_with("tick-"))
    })
    .await
    .expect("the CronJob created a Job within a minute");
    let scheduled = &job.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"];
    let t: jiff::Timestamp = scheduled.parse().unwrap();
    assert_eq!(t.as_second() % 60, 0, "{scheduled}");
    assert_eq!(job.name_any(), format!("tick-{}", t.as_second() / 60));
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CronJob", Some(true))
    );

    let cj = testkit::wait_for_async(DEADLINE, || async {
        let cj = cronjobs.get("tick").await.unwrap();
        let st = cj.status.clone()?;
        let active = st.active.clone().unwrap_or_default();
        (st.last_schedule_time.map(|l| l.0) == Some(t)
            && active
                .iter()
                .any(|r| r.name.as_deref() == Some(job.name_any().as_str())))
        .then_some(cj)
    })
    .await
    .expect("status.active and lastScheduleTime name the run");
    assert!(cj.status.unwrap().last_successful_time.is_none());

    // Its completion shows as lastSuccessfulTime, and it leaves status.active.
    let pods = h.running(&job.name_any(), 1).await;
    h.finish(&pods[0], true).await;
    testkit::wait_for_async(DEADLINE, || async {
        let st = cronjobs.get("tick").await.unwrap().status?;
        (st.last_successful_time.is_some() && st.active.unwrap_or_default().is_empty())
            .then_some(())
    })
    .await
    .expect("lastSuccessfulTime set and no active run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_replace_policy_and_history_limit_with_a_moved_clock() {
    // The controller's clock starts at half past an hour, so that neither the real clock's
    // passing during the test nor each hour's advance lands near a scheduled time.
    let now = jiff::Timestamp::now().as_second();
    let offset = Arc::new(AtomicI64::new(1800 - now.rem_euclid(3600)));
    let h = Harness::start_with_clock("cronrepl", Some(offset.clone())).await;
    let cronjobs: Api<CronJob> = Api::namespaced(h.client.clone(), "default");
    // Hourly, so the real clock never crosses a scheduled time during the test; the
    // test moves the controller's clock an hour at a time.
    let cj: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "hourly"},
        "spec": {"schedule": "0 * * * *", "concurrencyPolicy": "Replace",
            "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0,
            "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "work", "image": "busybox"}]}}}}},
    }))
    .unwrap();
    cronjobs.create(&PostParams::default(), &cj).await.unwrap();
    let mut pokes = 0;
    let mut advance_an_hour = || {
        offset.fetch_add(3600, Ordering::SeqCst);
        pokes += 1;
        let cronjobs = cronjobs.clone();
        let n = pokes;
        async move {
            // Any change wakes the controller, which then reads its (moved) clock.
            merge_patch(
                &cronjobs,
                "hourly",
                json!({"metadata": {"annotations": {"poke": n.to_string()}}}),
            )
            .await;
        }
    };
    let runs = |h: &Harness| {
        let jobs = h.jobs();
        async move {
            let mut names: Vec<String> = jobs
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|j| j.name_any().starts_with("hourly-"))
                .map(|j| j.name_any())
                .collect();
            names.sort();
            names
        }
    };

    advance_an_hour().await;
    let first = testkit::wait_for_async(DEADLINE, || async {
        let r = runs(&h).await;
        (r.len() == 1).then(|| r[0].clone())
    })
    .await
    .expect("the missed hourly run starts");
    h.running(&first, 1).await;

    // Replace: the running Job goes and the next run takes its place.
    advance_an_hour().await;
    let second = testkit::wait_for_async(DEADLINE, || async {
        let r = runs(&h).await;
        (r.len() == 1 && r[0] != first).then(|| r[0].clone())
    })
    .await
    .expect("Replace deletes the running Job and starts the next");
    testkit::wait_for_async(DEADLINE, || async {
        let st = cronjobs.get("hourly").await.unwrap().status?;
        let active: Vec<String> = st.active?.into_iter().filter_map(|r| r.name).collect();
        (active == vec![second.clone()]).then_some(())
    })
    .await
    .expect("status.active names only the replacement");

    // History: with successfulJobsHistoryLimit 1 only the newest finished run stays.
    let pods = h.running(&second, 1).await;
    h.finish(&pods[0], true).await;
    h.job_until(&second, "Complete", |j| condition(j, "Complete").is_some())
        .await;
    advance_an_hour().await;
    let third = testkit::wait_for_async(DEADLINE, || async {
        let r = runs(&h).await;
        r.iter().find(|n| **n != first && **n != second).cloned()
    })
    .await
    .expect("the third run starts");
    let pods = h.running(&third, 1).await;
    h.finish(&pods[0], true).await;
    testkit::wait_for_async(DEADLINE, || async {
        (runs(&h).await == vec![third.clone()]).then_some(())
    })
    .await
    .expect("the older finished run is trimmed");
    let st = cronjobs.get("hourly").await.unwrap().status.unwrap();
    assert!(st.last_successful_time.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_a_manual_selector_adopts_a_matching_orphan() {
    let h = Harness::start("jobadopt").await;
    let orphan: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "labels": {"app": "adopt-me"}},
        "spec": {"restartPolicy": "Never",
            "containers": [{"name": "work", "image": "busybox"}]},
    }))
    .unwrap();
    let orphan = h
        .pods()
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "adopter"},
        "spec": {"completions": 1, "parallelism": 1, "manualSelector": true,
            "selector": {"matchLabels": {"app": "adopt-me"}},
            "template": {"metadata": {"labels": {"app": "adopt-me"}},
                "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "work", "image": "busybox"}]}}},
    }))
    .unwrap();
    let job = h.jobs().create(&PostParams::default(), &job).await.unwrap();

    let adopted = testkit::wait_for_async(DEADLINE, || async {
        let p = h.pods().get("stray").await.unwrap();
        let ours = p
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == job.metadata.uid.as_ref());
        (ours && phase_of(&p) == Some("Running")).then_some(p)
    })
    .await
    .expect("the orphan is adopted");
    assert_eq!(adopted.uid(), orphan.uid());
    assert!(adopted.finalizers().iter().any(|f| f == TRACKING_FINALIZER));
    h.job_until("adopter", "the adopted pod counts as active", |j| {
        counts(j).0 == 1
    })
    .await;
    h.finish(&adopted, true).await;
    let done = h
        .job_until("adopter", "Complete", |j| {
            condition(j, "Complete").is_some()
        })
        .await;
    assert_eq!(counts(&done), (0, 1, 0));
    // The adopted pod was enough: no other pod was made.
    let all = h
        .pods()
        .list(&ListParams::default().labels("app=adopt-me"))
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 1);
}
