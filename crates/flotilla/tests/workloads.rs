//! Workloads end to end with real containers (root): `flotilla server` with its own scheduler
//! and controllers, a real node agent (runc, CNI, a local registry), driven by kubectl.
//! Users declare the end state; the cluster gets there and stays there.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::Cluster;

const KUBECTL: &str = "1.33";

fn kubectl(c: &Cluster, args: &[&str]) -> String {
    c.kubectl_run(KUBECTL, args)
        .expect_success(&args.join(" "))
        .to_string()
}

/// Running pods with `app=<app>`: (name, image, containerID).
fn running(c: &Cluster, app: &str) -> Vec<(String, String, String)> {
    let out = c.kubectl_run(
        KUBECTL,
        &["get", "pods", "-l", &format!("app={app}"), "-o", "json"],
    );
    if !out.success() {
        return Vec::new();
    }
    let list: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| p["status"]["phase"] == "Running")
        .filter(|p| {
            p["status"]["containerStatuses"][0]["ready"]
                .as_bool()
                .unwrap_or(false)
        })
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["status"]["containerStatuses"][0]["containerID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Waits until exactly `n` pods of `app` run `image` (and no other pods of it remain).
fn wait_replicas(c: &Cluster, app: &str, n: usize, image: &str) -> Vec<(String, String, String)> {
    let all_gone_but = || {
        let out = c.kubectl_run(
            KUBECTL,
            &["get", "pods", "-l", &format!("app={app}"), "--no-headers"],
        );
        out.stdout.lines().filter(|l| !l.trim().is_empty()).count()
    };
    testkit::wait_for(Duration::from_secs(120), || {
        let pods = running(c, app);
        (pods.len() == n && pods.iter().all(|p| p.1 == image) && all_gone_but() == n)
            .then_some(pods)
    })
    .unwrap_or_else(|| {
        panic!(
            "{app}: not {n} running pods of {image}\npods: {}\nrs: {}\n--- agent log ---\n{}",
            c.kubectl_run(KUBECTL, &["get", "pods", "-o", "wide"])
                .stdout,
            c.kubectl_run(KUBECTL, &["get", "rs", "-o", "wide"]).stdout,
            {
                let log = c.agent_log();
                log[log.len().saturating_sub(4000)..].to_string()
            }
        )
    })
}

#[test]
fn a_deployment_runs_scales_heals_and_rolls_out() {
    let c = Cluster::start();
    let v1 = c.image.clone();
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "web", "image": v1, "command": ["sleep", "3600"]}]
                }
            }
        }
    });
    c.kubectl(KUBECTL)
        .stdin(deployment.to_string())
        .run(&["apply", "-f", "-"])
        .expect_success("kubectl apply");
    wait_replicas(&c, "web", 3, &v1);

    kubectl(&c, &["scale", "deployment", "web", "--replicas=5"]);
    wait_replicas(&c, "web", 5, &v1);
    kubectl(&c, &["scale", "deployment", "web", "--replicas=2"]);
    let pods = wait_replicas(&c, "web", 2, &v1);

    // A deleted pod is replaced.
    kubectl(&c, &["delete", "pod", &pods[0].0, "--wait=false"]);
    let healed = testkit::wait_for(Duration::from_secs(120), || {
        let now = running(&c, "web");
        (now.len() == 2 && now.iter().all(|p| p.0 != pods[0].0)).then_some(())
    });
    assert!(healed.is_some(), "the deleted pod was not replaced");

    // A rollout to a new template (an env change stands for a new image tag) completes,
    // and `rollout status` agrees.
    kubectl(&c, &["set", "env", "deployment/web", "VERSION=2"]);
    let out = c.kubectl(KUBECTL).timeout(Duration::from_secs(150)).run(&[
        "rollout",
        "status",
        "deployment/web",
        "--timeout=140s",
    ]);
    assert!(
        out.success(),
        "rollout status: {}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("successfully rolled out"),
        "{}",
        out.stdout
    );
    let rs = kubectl(
        &c,
        &[
            "get",
            "rs",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.spec.replicas} {end}",
        ],
    );
    let mut counts: Vec<&str> = rs.split_whitespace().collect();
    counts.sort();
    assert_eq!(
        counts,
        ["0", "2"],
        "old ReplicaSet scaled to 0, new one to 2"
    );
    wait_replicas(&c, "web", 2, &v1);

    // Undo goes back to the previous template.
    kubectl(&c, &["rollout", "undo", "deployment/web"]);
    let out = c.kubectl(KUBECTL).timeout(Duration::from_secs(150)).run(&[
        "rollout",
        "status",
        "deployment/web",
        "--timeout=140s",
    ]);
    assert!(
        out.success(),
        "rollout status after undo: {}\n{}",
        out.stdout,
        out.stderr
    );
    let env = kubectl(
        &c,
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env}",
        ],
    );
    assert!(!env.contains("VERSION"), "undo kept the new env: {env}");

    // Deleting the Deployment takes its ReplicaSets and pods with it (garbage collector).
    kubectl(&c, &["delete", "deployment", "web"]);
    let gone = testkit::wait_for(Duration::from_secs(120), || {
        let rs = c.kubectl_run(KUBECTL, &["get", "rs", "-l", "app=web", "--no-headers"]);
        let pods = c.kubectl_run(KUBECTL, &["get", "pods", "-l", "app=web", "--no-headers"]);
        (rs.stdout.trim().is_empty() && pods.stdout.trim().is_empty()).then_some(())
    });
    assert!(
        gone.is_some(),
        "the Deployment's ReplicaSets and pods were not collected"
    );
}
