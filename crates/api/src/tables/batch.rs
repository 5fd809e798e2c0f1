//! batch/v1: Jobs (STATUS COMPLETIONS DURATION AGE, as of Kubernetes 1.30) and CronJobs.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::columns::{col, AGE, CONTAINERS, IMAGES, NAME, SELECTOR};
use super::duration::{human_duration, since};
use super::fields::{
    age, int_at, list_at, name, opt_bool_at, opt_int_at, opt_str_at, str_at, time_at,
};
use super::format;
use crate::table::{Column, TablePrinter};

pub struct JobPrinter;

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn has_condition(obj: &Value, type_: &str) -> bool {
    // The first condition of the type decides, as in Kubernetes' printer.
    list_at(obj, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == type_)
        .is_some_and(|c| str_at(c, "/status") == "True")
}

fn job_status(obj: &Value) -> &'static str {
    let deleting = obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if has_condition(obj, "Complete") {
        "Complete"
    } else if has_condition(obj, "Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if has_condition(obj, "Suspended") {
        "Suspended"
    } else if has_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

fn completions(obj: &Value) -> String {
    let succeeded = int_at(obj, "/status/succeeded");
    if let Some(want) = opt_int_at(obj, "/spec/completions") {
        return format!("{succeeded}/{want}");
    }
    // A work-queue job (no completions) is done when one pod succeeds.
    match opt_int_at(obj, "/spec/parallelism").unwrap_or(0) {
        p if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    }
}

fn job_duration(obj: &Value, now: Timestamp) -> String {
    let Some(start) = time_at(obj, "/status/startTime") else {
        return String::new();
    };
    match time_at(obj, "/status/completionTime") {
        Some(end) => human_duration(end.duration_since(start)),
        None => since(Some(start), now),
    }
}

impl TablePrinter for JobPrinter {
    fn columns(&self) -> Vec<Column> {
        JOB_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let (names, images) = format::containers(list_at(obj, "/spec/template/spec/containers"));
        vec![
            name(obj),
            json!(job_status(obj)),
            json!(completions(obj)),
            json!(job_duration(obj, now)),
            age(obj, now),
            json!(names),
            json!(images),
            json!(format::label_selector(obj.pointer("/spec/selector"))),
        ]
    }
}

pub struct CronJobPrinter;

const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
    col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions. Defaults to false."),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

impl TablePrinter for CronJobPrinter {
    fn columns(&self) -> Vec<Column> {
        CRON_JOB_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let last_schedule = match time_at(obj, "/status/lastScheduleTime") {
            Some(t) => since(Some(t), now),
            None => "<none>".to_string(),
        };
        let suspend = match opt_bool_at(obj, "/spec/suspend") {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let template = "/spec/jobTemplate/spec/template/spec/containers";
        let (names, images) = format::containers(list_at(obj, template));
        vec![
            name(obj),
            json!(str_at(obj, "/spec/schedule")),
            json!(opt_str_at(obj, "/spec/timeZone").unwrap_or("<none>")),
            json!(suspend),
            json!(list_at(obj, "/status/active").len()),
            json!(last_schedule),
            age(obj, now),
            json!(names),
            json!(images),
            json!(format::label_selector(
                obj.pointer("/spec/jobTemplate/spec/selector")
            )),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-06-01T12:00:00Z".parse().expect("time")
    }

    fn job(status: Value) -> Value {
        json!({
            "metadata": {"name": "pi", "creationTimestamp": "2024-06-01T11:00:00Z"},
            "spec": {"completions": 1, "parallelism": 1,
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": status,
        })
    }

    #[test]
    fn running_and_complete_jobs() {
        let running = job(json!({"startTime": "2024-06-01T11:58:00Z", "active": 1}));
        let c = JobPrinter.cells(&running, now());
        assert_eq!(
            &c[..5],
            &[
                json!("pi"),
                json!("Running"),
                json!("0/1"),
                json!("2m"),
                json!("60m")
            ]
        );
        assert_eq!(c[7], json!("batch.kubernetes.io/controller-uid=u1"));

        let done = job(json!({
            "startTime": "2024-06-01T11:00:00Z", "completionTime": "2024-06-01T11:00:09Z", "succeeded": 1,
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}],
        }));
        let c = JobPrinter.cells(&done, now());
        assert_eq!(&c[1..4], &[json!("Complete"), json!("1/1"), json!("9s")]);
    }

    #[test]
    fn job_statuses_and_work_queues() {
        let failed = job(json!({"conditions": [{"type": "Failed", "status": "True"}]}));
        assert_eq!(JobPrinter.cells(&failed, now())[1], json!("Failed"));
        let suspended = job(json!({"conditions": [{"type": "Suspended", "status": "True"}]}));
        assert_eq!(JobPrinter.cells(&suspended, now())[1], json!("Suspended"));
        let mut deleting = job(json!({}));
        deleting["metadata"]["deletionTimestamp"] = json!("2024-06-01T11:59:00Z");
        assert_eq!(JobPrinter.cells(&deleting, now())[1], json!("Terminating"));
        assert_eq!(JobPrinter.cells(&deleting, now())[3], json!(""));

        let mut queue = job(json!({"succeeded": 2}));
        queue["spec"] = json!({"parallelism": 3});
        assert_eq!(JobPrinter.cells(&queue, now())[2], json!("2/1 of 3"));
        queue["spec"] = json!({});
        assert_eq!(JobPrinter.cells(&queue, now())[2], json!("2/1"));
    }

    #[test]
    fn cron_job_row() {
        let cj = json!({
            "metadata": {"name": "nightly", "creationTimestamp": "2024-05-30T12:00:00Z"},
            "spec": {"schedule": "0 3 * * *", "suspend": false,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "img"}]}}}}},
            "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": "2024-06-01T03:00:00Z"},
        });
        let c = CronJobPrinter.cells(&cj, now());
        assert_eq!(c.len(), CronJobPrinter.columns().len());
        assert_eq!(
            &c[..7],
            &[
                json!("nightly"),
                json!("0 3 * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("9h"),
                json!("2d")
            ]
        );
        assert_eq!(&c[7..], &[json!("c"), json!("img"), json!("<none>")]);
    }
}
