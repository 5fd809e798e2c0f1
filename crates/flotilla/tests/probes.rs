//! Probes end to end (root): real runc, real CNI, a local registry. A failing liveness
//! probe restarts its container; a readiness probe flips the pod's Ready condition both
//! ways, driven by a file the test creates and removes on the host (a hostPath volume), so
//! the flips happen exactly when the test says.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::Cluster;

const KUBECTL: &str = "1.33";

fn apply(c: &Cluster, manifest: &Value) {
    c.kubectl(KUBECTL)
        .stdin(manifest.to_string())
        .run(&["apply", "-f", "-"])
        .expect_success("kubectl apply");
}

fn get_pod(c: &Cluster, name: &str) -> Option<Value> {
    let out = c.kubectl_run(KUBECTL, &["get", "pod", name, "-o", "json"]);
    out.success()
        .then(|| serde_json::from_str(&out.stdout).ok())?
}

/// (reason, message) of the events about the pod.
fn events(c: &Cluster, name: &str) -> Vec<(String, String)> {
    let out = c.kubectl_run(
        KUBECTL,
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "json",
        ],
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|e| {
                    (
                        e["reason"].as_str().unwrap_or_default().to_string(),
                        e["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

/// Waits until `check` accepts the pod; panics with the pod, its events and the agent log.
fn wait_pod(
    c: &Cluster,
    name: &str,
    what: &str,
    deadline: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    match testkit::wait_for(deadline, || get_pod(c, name).filter(|p| check(p))) {
        Some(p) => p,
        None => panic!(
            "pod {name}: {what} not within {deadline:?}\npod: {}\nevents: {:?}\n--- agent log ---\n{}",
            get_pod(c, name).map(|p| p["status"].to_string()).unwrap_or_default(),
            events(c, name),
            tail(&c.agent_log(), 8000)
        ),
    }
}

fn container<'a>(p: &'a Value, name: &str) -> Option<&'a Value> {
    p["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn pod_ready(p: &Value) -> Option<bool> {
    let conds = p["status"]["conditions"].as_array()?;
    let ready = conds.iter().find(|c| c["type"] == "Ready")?;
    Some(ready["status"] == "True")
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let c = Cluster::start();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "liveness", "namespace": "default"},
        "spec": {"containers": [{
            "name": "app", "image": c.image,
            // Healthy for a few seconds, then not: every instance goes the same way.
            "command": ["sh", "-c", "touch /tmp/healthy; sleep 4; rm /tmp/healthy; exec sleep 3600"],
            "livenessProbe": {
                "exec": {"command": ["cat", "/tmp/healthy"]},
                "periodSeconds": 1, "failureThreshold": 2,
            },
        }]}
    });
    apply(&c, &pod);
    let p = wait_pod(
        &c,
        "liveness",
        "a restart after the liveness probe failed",
        Duration::from_secs(120),
        |p| container(p, "app").is_some_and(|s| s["restartCount"].as_i64().unwrap_or(0) >= 1),
    );
    let s = container(&p, "app").unwrap();
    assert!(
        s["lastState"]["terminated"].is_object(),
        "the killed instance is the last state: {s}"
    );
    let ev = events(&c, "liveness");
    assert!(
        ev.iter()
            .any(|(r, m)| r == "Unhealthy" && m.starts_with("Liveness probe failed")),
        "no Unhealthy event: {ev:?}"
    );
    assert!(
        ev.iter().any(|(r, _)| r == "Killing"),
        "no Killing event: {ev:?}"
    );
}

#[test]
fn a_readiness_probe_flips_ready_both_ways() {
    let c = Cluster::start();
    let flag_dir = c.scratch_dir().join("flag");
    std::fs::create_dir_all(&flag_dir).unwrap();
    let flag = flag_dir.join("ready");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "readiness", "namespace": "default"},
        "spec": {
            "volumes": [{"name": "flag", "hostPath": {"path": flag_dir.to_string_lossy(), "type": "Directory"}}],
            "containers": [
                {"name": "app", "image": c.image, "command": ["sleep", "3600"],
                 "volumeMounts": [{"name": "flag", "mountPath": "/flag"}],
                 "readinessProbe": {"exec": {"command": ["cat", "/flag/ready"]}, "periodSeconds": 1, "failureThreshold": 1, "timeoutSeconds": 5}},
                // An HTTP server probed over the pod IP, by port name: always ready and live.
                // The 5 s probe timeouts keep a busy machine's slow reply from counting as a
                // failure; a missing file or a closed port still fails at once.
                {"name": "web", "image": c.image,
                 "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"],
                 "ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1, "timeoutSeconds": 5},
                 "livenessProbe": {"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1, "timeoutSeconds": 5}}
            ]
        }
    });
    apply(&c, &pod);
    wait_pod(
        &c,
        "readiness",
        "web ready, app not",
        Duration::from_secs(90),
        |p| {
            container(p, "web").is_some_and(|s| s["ready"] == true)
                && container(p, "app")
                    .is_some_and(|s| s["ready"] == false && s["state"]["running"].is_object())
                && pod_ready(p) == Some(false)
        },
    );
    std::fs::write(&flag, "yes").unwrap();
    wait_pod(
        &c,
        "readiness",
        "Ready after the flag appeared",
        Duration::from_secs(30),
        |p| pod_ready(p) == Some(true) && container(p, "app").is_some_and(|s| s["ready"] == true),
    );
    std::fs::remove_file(&flag).unwrap();
    let p = wait_pod(
        &c,
        "readiness",
        "not Ready after the flag went",
        Duration::from_secs(30),
        |p| pod_ready(p) == Some(false) && container(p, "app").is_some_and(|s| s["ready"] == false),
    );
    // Readiness failures never restart anything; the HTTP liveness probe kept passing.
    for name in ["app", "web"] {
        assert_eq!(
            container(&p, name).unwrap()["restartCount"],
            0,
            "{name}: {}",
            p["status"]
        );
    }
    let ev = events(&c, "readiness");
    assert!(
        ev.iter()
            .any(|(r, m)| r == "Unhealthy" && m.starts_with("Readiness probe failed")),
        "no Unhealthy event: {ev:?}"
    );
    assert!(
        !ev.iter()
            .any(|(_, m)| m.starts_with("Liveness probe failed")),
        "{ev:?}"
    );
}

#[test]
fn a_startup_probe_holds_back_liveness_and_readiness_until_it_passes() {
    let c = Cluster::start();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "slow-start", "namespace": "default"},
        "spec": {"containers": [{
            "name": "app", "image": c.image,
            // Listens only after a slow start; liveness over TCP would fail until then.
            "command": ["sh", "-c", "sleep 6; touch /tmp/started; exec httpd -f -p 8080 -h /tmp"],
            "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1, "failureThreshold": 30},
            "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 1, "timeoutSeconds": 5},
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "timeoutSeconds": 5},
        }]}
    });
    apply(&c, &pod);
    let p = wait_pod(
        &c,
        "slow-start",
        "running, not yet started",
        Duration::from_secs(90),
        |p| container(p, "app").is_some_and(|s| s["state"]["running"].is_object()),
    );
    let s = container(&p, "app").unwrap();
    if s["started"] == false {
        assert_eq!(s["ready"], false, "ready before started: {s}");
    }
    let p = wait_pod(
        &c,
        "slow-start",
        "started and ready",
        Duration::from_secs(60),
        |p| container(p, "app").is_some_and(|s| s["started"] == true && s["ready"] == true),
    );
    // Liveness never ran during the slow start, so nothing was restarted.
    assert_eq!(
        container(&p, "app").unwrap()["restartCount"],
        0,
        "{}",
        p["status"]
    );
    let ev = events(&c, "slow-start");
    assert!(
        ev.iter()
            .any(|(r, m)| r == "Unhealthy" && m.starts_with("Startup probe failed")),
        "no failed startup probe during the slow start: {ev:?}"
    );
    assert!(
        !ev.iter()
            .any(|(_, m)| m.starts_with("Liveness probe failed")),
        "{ev:?}"
    );
}
