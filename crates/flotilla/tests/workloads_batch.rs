//! Batch workloads end to end with real containers (root): `flotilla server` with its
//! scheduler and controllers, a real node agent (runc, CNI, a local registry), kubectl.
//! A Job runs to completion and a CronJob fires and its Job completes.
//!
//! One cluster serves the whole file; the CronJob is created first so that its wait for
//! the minute boundary overlaps the Job scenario.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::Cluster;

const KUBECTL: &str = "1.33";

fn kubectl(c: &Cluster, args: &[&str]) -> String {
    c.kubectl_run(KUBECTL, args)
        .expect_success(&args.join(" "))
        .to_string()
}

fn apply(c: &Cluster, manifest: String) {
    c.kubectl(KUBECTL)
        .stdin(manifest)
        .run(&["apply", "-f", "-"])
        .expect_success("kubectl apply");
}

#[test]
fn a_job_runs_to_completion_and_a_cronjob_fires() {
    let c = Cluster::start();
    let ns = testkit::unique_name("batch");
    kubectl(&c, &["create", "namespace", &ns]);

    apply(
        &c,
        format!(
            r#"
apiVersion: batch/v1
kind: CronJob
metadata: {{name: tick, namespace: {ns}}}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - {{name: tick, image: "{image}", command: [sh, -c, "echo tick"]}}
"#,
            image = c.image
        ),
    );
    apply(
        &c,
        format!(
            r#"
apiVersion: batch/v1
kind: Job
metadata: {{name: echo, namespace: {ns}}}
spec:
  completions: 2
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - {{name: echo, image: "{image}", command: [sh, -c, "echo done"]}}
"#,
            image = c.image
        ),
    );

    let out = kubectl(
        &c,
        &[
            "wait",
            "-n",
            &ns,
            "--for=condition=complete",
            "job/echo",
            "--timeout=180s",
        ],
    );
    assert!(out.contains("condition met"), "{out}");
    let logs = kubectl(&c, &["logs", "-n", &ns, "job/echo"]);
    assert_eq!(logs.trim(), "done", "{logs}");
    let jobs = kubectl(&c, &["get", "jobs", "-n", &ns, "echo", "--no-headers"]);
    assert!(jobs.contains("2/2"), "{jobs}");
    let job: Value = serde_json::from_str(&kubectl(
        &c,
        &["get", "job", "-n", &ns, "echo", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(job["status"]["succeeded"], 2, "{job}");
    assert_eq!(job["status"]["failed"], 0, "{job}");
    // Both pods ran, each to a clean exit.
    let pods: Value = serde_json::from_str(&kubectl(
        &c,
        &[
            "get",
            "pods",
            "-n",
            &ns,
            "-l",
            "batch.kubernetes.io/job-name=echo",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{pods}");
    for p in items {
        assert_eq!(p["status"]["phase"], "Succeeded", "{p}");
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 0,
            "{p}"
        );
    }

    // The CronJob's run: a Job it controls, which completes.
    let job_name = testkit::wait_for(Duration::from_secs(75), || {
        let out = c.kubectl_run(KUBECTL, &["get", "jobs", "-n", &ns, "-o", "json"]);
        let list: Value = serde_json::from_str(&out.stdout).ok()?;
        list["items"].as_array()?.iter().find_map(|j| {
            let owned = j["metadata"]["ownerReferences"]
                .as_array()?
                .iter()
                .any(|o| o["kind"] == "CronJob" && o["name"] == "tick");
            owned.then(|| j["metadata"]["name"].as_str().unwrap().to_string())
        })
    })
    .expect("the CronJob created a Job within a minute");
    let out = kubectl(
        &c,
        &[
            "wait",
            "-n",
            &ns,
            "--for=condition=complete",
            &format!("job/{job_name}"),
            "--timeout=120s",
        ],
    );
    assert!(out.contains("condition met"), "{out}");
    let logs = kubectl(&c, &["logs", "-n", &ns, &format!("job/{job_name}")]);
    assert_eq!(logs.trim(), "tick", "{logs}");
    testkit::wait_for(Duration::from_secs(30), || {
        let cj: Value = serde_json::from_str(&kubectl(
            &c,
            &["get", "cronjob", "-n", &ns, "tick", "-o", "json"],
        ))
        .ok()?;
        cj["status"]["lastSuccessfulTime"].as_str().map(|_| ())
    })
    .expect("the CronJob records its successful run");
}
