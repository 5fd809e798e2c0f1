//! batch/v1: Jobs (with the selector and labels Kubernetes generates from the uid) and
//! CronJobs (schedule syntax, time zone, history limits).

use serde_json::{json, Map, Value};

use super::json::{bool_of, child_mut, default_field, selector_value, str_of};
use super::pod_spec::{default_pod_template, validate_pod_template};
use super::selector;
use super::workloads::{non_negative, reset_status, selector_immutable};
use crate::field_error::FieldError;
use crate::strategy::Strategy;
use crate::validation::not_supported;

pub struct JobStrategy;
pub struct CronJobStrategy;

pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
const LEGACY_JOB_NAME_LABEL: &str = "job-name";
const JOB_RESTART_POLICIES: &[&str] = &["OnFailure", "Never"];
/// A CronJob's name becomes part of its Jobs' names plus an 11-character suffix.
const CRONJOB_NAME_MAX: usize = 52;

/// `SetDefaults_Job` on a Job's `spec`.
fn default_job_spec(spec: &mut Value) {
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        default_field(spec, "completions", json!(1));
    }
    default_field(spec, "parallelism", json!(1));
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    default_field(
        spec,
        "backoffLimit",
        json!(if per_index { i64::from(i32::MAX) } else { 6 }),
    );
    default_field(spec, "completionMode", json!("NonIndexed"));
    default_field(spec, "suspend", json!(false));
    let has_failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    default_field(
        spec,
        "podReplacementPolicy",
        json!(if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    super::pod_failure_policy::default(spec);
    default_pod_template(spec);
}

/// Job labels default to the template's when the Job has none (`SetDefaults_Job`).
fn labels_from_template(obj: &mut Value) {
    let has_labels = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_some_and(|l| !l.is_empty());
    if has_labels {
        return;
    }
    let Some(template_labels) = obj.pointer("/spec/template/metadata/labels").cloned() else {
        return;
    };
    if let Some(meta) = child_mut(obj, "metadata") {
        if let Some(map) = meta.as_object_mut() {
            map.insert("labels".into(), template_labels);
        }
    }
}

/// `generateSelector`: labels the template with the Job's uid and name and selects by uid.
fn generate_selector(obj: &mut Value) {
    let uid = str_of(obj.get("metadata").unwrap_or(&Value::Null), "uid")
        .unwrap_or("")
        .to_string();
    let name = str_of(obj.get("metadata").unwrap_or(&Value::Null), "name")
        .unwrap_or("")
        .to_string();
    if uid.is_empty() {
        tracing::warn!(job = %name, "job has no uid yet; selector not generated");
        return;
    }
    let Some(spec) = child_mut(obj, "spec") else {
        return;
    };
    if let Some(labels) = child_mut(spec, "template")
        .and_then(|t| child_mut(t, "metadata"))
        .and_then(|m| child_mut(m, "labels"))
    {
        for (key, value) in [
            (LEGACY_CONTROLLER_UID_LABEL, &uid),
            (CONTROLLER_UID_LABEL, &uid),
            (LEGACY_JOB_NAME_LABEL, &name),
            (JOB_NAME_LABEL, &name),
        ] {
            default_field(labels, key, json!(value));
        }
    }
    if let Some(match_labels) =
        child_mut(spec, "selector").and_then(|s| child_mut(s, "matchLabels"))
    {
        default_field(match_labels, CONTROLLER_UID_LABEL, json!(uid));
    }
}

fn validate_job_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        errs.extend(non_negative(spec, key, path));
    }
    match str_of(spec, "completionMode") {
        Some("Indexed") if spec.get("completions").is_none_or(Value::is_null) => {
            errs.push(FieldError::required(
                format!("{path}.completions"),
                "when completion mode is Indexed",
            ))
        }
        Some(m) if !["NonIndexed", "Indexed"].contains(&m) => errs.push(not_supported(
            format!("{path}.completionMode"),
            json!(m),
            &["NonIndexed", "Indexed"],
        )),
        _ => {}
    }
    if let Some(p) = str_of(spec, "podReplacementPolicy") {
        // With a podFailurePolicy a pod counts only once it has failed: only Failed fits.
        let valid: &[&str] = if spec.get("podFailurePolicy").is_some_and(|v| !v.is_null()) {
            &["Failed"]
        } else {
            &["TerminatingOrFailed", "Failed"]
        };
        if !valid.contains(&p) {
            errs.push(not_supported(
                format!("{path}.podReplacementPolicy"),
                json!(p),
                valid,
            ));
        }
    }
    errs.extend(super::pod_failure_policy::validate(spec, path));
    let template_path = format!("{path}.template");
    if let Some(sel) = spec.get("selector").filter(|s| s.is_object()) {
        errs.extend(selector::validate(sel, &format!("{path}.selector")));
        let labels = spec.pointer("/template/metadata/labels");
        if selector::is_empty(sel) || !selector::matches(sel, labels) {
            errs.push(FieldError::invalid(
                format!("{template_path}.metadata.labels"),
                labels.cloned().unwrap_or(json!({})),
                "`selector` does not match template `labels`",
            ));
        }
    }
    errs.extend(validate_pod_template(
        spec.get("template"),
        &template_path,
        JOB_RESTART_POLICIES,
    ));
}

impl Strategy for JobStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = child_mut(obj, "spec") {
            default_job_spec(spec);
        }
        labels_from_template(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({}));
        if obj.pointer("/spec/manualSelector") != Some(&json!(true)) {
            generate_selector(obj);
        }
        labels_from_template(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        if spec.get("selector").is_none_or(Value::is_null) {
            errs.push(FieldError::required("spec.selector", ""));
        }
        validate_job_spec(spec, "spec", &mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = selector_immutable(new, old);
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        let new_spec = new.get("spec").unwrap_or(&Value::Null);
        // A suspended Job that never started may still have its template adjusted (the
        // "mutable scheduling directives" of queueing controllers).
        let never_started = bool_of(old_spec, "suspend") == Some(true)
            && old.pointer("/status/startTime").is_none_or(Value::is_null);
        let mut immutable = vec!["completionMode", "podFailurePolicy", "backoffLimitPerIndex"];
        if !never_started {
            immutable.push("template");
        }
        let elastic = str_of(new_spec, "completionMode") == Some("Indexed")
            && new_spec.get("completions") == new_spec.get("parallelism")
            && old_spec.get("completions") == old_spec.get("parallelism");
        if !elastic {
            immutable.push("completions");
        }
        for key in immutable {
            if new_spec.get(key) != old_spec.get(key) {
                errs.push(FieldError {
                    value: new_spec.get(key).cloned(),
                    ..FieldError::immutable(format!("spec.{key}"))
                });
            }
        }
        errs
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.successful")
            .then(|| selector_value(obj.pointer("/status/successful"), "0"))
    }
}

impl Strategy for CronJobStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = child_mut(obj, "spec") else {
            return;
        };
        default_field(spec, "concurrencyPolicy", json!("Allow"));
        default_field(spec, "suspend", json!(false));
        default_field(spec, "successfulJobsHistoryLimit", json!(3));
        default_field(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(job_spec) = child_mut(spec, "jobTemplate").and_then(|t| child_mut(t, "spec")) {
            default_pod_template(job_spec);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, Value::Object(Map::new()));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) {
            if name.len() > CRONJOB_NAME_MAX {
                errs.push(FieldError::invalid(
                    "metadata.name",
                    json!(name),
                    format!("must be no more than {CRONJOB_NAME_MAX} characters"),
                ));
            }
        }
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let schedule = str_of(spec, "schedule").unwrap_or("");
        if schedule.is_empty() {
            errs.push(FieldError::required("spec.schedule", ""));
        } else {
            for msg in schedule_errors(schedule) {
                errs.push(FieldError::invalid("spec.schedule", json!(schedule), msg));
            }
        }
        if let Some(tz) = str_of(spec, "timeZone") {
            errs.extend(time_zone_error(tz));
        }
        if let Some(p) = str_of(spec, "concurrencyPolicy") {
            let allowed = ["Allow", "Forbid", "Replace"];
            if !allowed.contains(&p) {
                errs.push(not_supported("spec.concurrencyPolicy", json!(p), &allowed));
            }
        }
        for key in [
            "startingDeadlineSeconds",
            "successfulJobsHistoryLimit",
            "failedJobsHistoryLimit",
        ] {
            errs.extend(non_negative(spec, key, "spec"));
        }
        match spec.pointer("/jobTemplate/spec") {
            Some(job_spec) => validate_job_spec(job_spec, "spec.jobTemplate.spec", &mut errs),
            None => errs.push(FieldError::required("spec.jobTemplate", "")),
        }
        errs
    }
}

const DESCRIPTORS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Checks a schedule as Kubernetes' standard cron parser does: five fields or a descriptor,
/// and no TZ=/CRON_TZ= prefix (the timeZone field replaces it).
pub fn schedule_errors(schedule: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if schedule.contains("TZ") {
        errs.push("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".to_string());
        return errs;
    }
    let trimmed = schedule.trim();
    if let Some(every) = trimmed.strip_prefix("@every ") {
        if go_duration_seconds(every.trim()).is_none() {
            errs.push(format!(
                "failed to parse duration {trimmed}: time: invalid duration {:?}",
                every.trim()
            ));
        }
        return errs;
    }
    if trimmed.starts_with('@') {
        if !DESCRIPTORS.contains(&trimmed) {
            errs.push(format!("unrecognized descriptor: {trimmed}"));
        }
        return errs;
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    if fields.len() != 5 {
        errs.push(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
        return errs;
    }
    if let Err(e) = cron_parser().parse(trimmed) {
        errs.push(e.to_string());
    }
    errs
}

/// The standard five-field cron parser (no seconds, no year), as Kubernetes' robfig/cron
/// `ParseStandard`: the API server validates with it and the CronJob controller schedules
/// with it, so both read a schedule the same way.
pub fn cron_parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
}

/// Parses a Go duration such as `1h30m` or `90s` to seconds (an `@every` schedule's
/// interval; shared with the CronJob controller).
pub fn go_duration_seconds(s: &str) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn time_zone_error(tz: &str) -> Option<FieldError> {
    if tz.eq_ignore_ascii_case("Local") {
        return Some(FieldError::invalid(
            "spec.timeZone",
            json!(tz),
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    let db = jiff::tz::db();
    // Without a zone database on this machine every name would look unknown.
    if db.is_definitively_empty() || db.get(tz).is_ok() {
        return None;
    }
    Some(FieldError::invalid(
        "spec.timeZone",
        json!(tz),
        format!("unknown time zone {tz}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::tests_support::messages;

    fn job() -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "pi", "image": "perl:5.34"}]}}}})
    }

    #[test]
    fn job_defaults_and_generated_selector() {
        let mut j = job();
        JobStrategy.default(&mut j);
        JobStrategy.prepare_for_create(&mut j);
        let spec = &j["spec"];
        assert_eq!(spec["completions"], json!(1));
        assert_eq!(spec["parallelism"], json!(1));
        assert_eq!(spec["backoffLimit"], json!(6));
        assert_eq!(spec["completionMode"], json!("NonIndexed"));
        assert_eq!(spec["suspend"], json!(false));
        assert_eq!(spec["podReplacementPolicy"], json!("TerminatingOrFailed"));
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {CONTROLLER_UID_LABEL: "u-1"}})
        );
        let labels = json!({"controller-uid": "u-1", CONTROLLER_UID_LABEL: "u-1",
            "job-name": "pi", JOB_NAME_LABEL: "pi"});
        assert_eq!(spec["template"]["metadata"]["labels"], labels);
        assert_eq!(j["metadata"]["labels"], labels);
        assert!(
            JobStrategy.validate(&j).is_empty(),
            "{:?}",
            JobStrategy.validate(&j)
        );
    }

    #[test]
    fn job_validation_and_immutables() {
        let mut j = job();
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        j["spec"]["completionMode"] = json!("Indexed");
        j["spec"]["completions"] = json!(null);
        j["spec"]["parallelism"] = json!(2);
        JobStrategy.default(&mut j);
        JobStrategy.prepare_for_create(&mut j);
        assert_eq!(messages(&JobStrategy.validate(&j)), vec![
            "spec.completions: Required value: when completion mode is Indexed",
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
        ]);
        let mut old = job();
        JobStrategy.default(&mut old);
        JobStrategy.prepare_for_create(&mut old);
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5.36");
        new["spec"]["parallelism"] = json!(3);
        let msgs = messages(&JobStrategy.validate_update(&new, &old));
        assert_eq!(msgs.len(), 1);
        assert!(
            msgs[0].starts_with("spec.template: Invalid value: {")
                && msgs[0].ends_with("field is immutable")
        );
        assert_eq!(
            JobStrategy
                .field_value(&old, "status.successful")
                .as_deref(),
            Some("0")
        );
    }

    #[test]
    fn a_pod_failure_policy_defaults_replacement_to_failed_and_allows_nothing_else() {
        let mut j = job();
        j["spec"]["podFailurePolicy"] = json!({"rules": [{"action": "Ignore",
            "onPodConditions": [{"type": "DisruptionTarget"}]}]});
        JobStrategy.default(&mut j);
        JobStrategy.prepare_for_create(&mut j);
        assert_eq!(j["spec"]["podReplacementPolicy"], json!("Failed"));
        assert_eq!(
            j.pointer("/spec/podFailurePolicy/rules/0/onPodConditions/0/status"),
            Some(&json!("True"))
        );
        assert!(JobStrategy.validate(&j).is_empty());
        j["spec"]["podReplacementPolicy"] = json!("TerminatingOrFailed");
        assert_eq!(
            messages(&JobStrategy.validate(&j)),
            vec!["spec.podReplacementPolicy: Unsupported value: \"TerminatingOrFailed\": supported values: \"Failed\""]
        );
    }

    #[test]
    fn schedules() {
        assert!(schedule_errors("*/5 * * * *").is_empty());
        assert!(schedule_errors("0 3 * * MON-FRI").is_empty());
        assert!(schedule_errors("@hourly").is_empty());
        assert!(schedule_errors("@every 1h30m").is_empty());
        assert_eq!(
            schedule_errors("* * *"),
            vec!["expected exactly 5 fields, found 3: [* * *]"]
        );
        assert_eq!(
            schedule_errors("@often"),
            vec!["unrecognized descriptor: @often"]
        );
        assert_eq!(
            schedule_errors("TZ=UTC 0 * * * *"),
            vec!["cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
        assert_eq!(schedule_errors("61 * * * *").len(), 1);
        assert_eq!(schedule_errors("@every 1x").len(), 1);
    }

    #[test]
    fn cronjob_defaults_and_validation() {
        let mut c = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "c".repeat(53), "namespace": "default"},
            "spec": {"schedule": "bad", "concurrencyPolicy": "Sometimes",
                "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                    "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        CronJobStrategy.default(&mut c);
        assert_eq!(c["spec"]["successfulJobsHistoryLimit"], json!(3));
        assert_eq!(c["spec"]["failedJobsHistoryLimit"], json!(1));
        assert_eq!(c["spec"]["suspend"], json!(false));
        let msgs = messages(&CronJobStrategy.validate(&c));
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].ends_with("must be no more than 52 characters"));
        assert_eq!(
            msgs[1],
            "spec.schedule: Invalid value: \"bad\": expected exactly 5 fields, found 1: [bad]"
        );
        assert!(msgs[2].starts_with("spec.concurrencyPolicy: Unsupported value: \"Sometimes\""));
    }
}
