//! Pods end to end (root): real runc, real CNI, a local registry. What the pod workers do:
//! shared volumes and pod IPs, crash-loop back-off, OOM kills, graceful deletion with
//! preStop, agent restarts that disturb nothing, cleanup of pods deleted while the agent
//! was down, no leaks after 100 pods, and failures that say why.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{Cluster, ClusterOptions};

const KUBECTL: &str = "1.33";

fn apply(c: &Cluster, manifest: &Value) {
    // A list of a hundred pods is applied one request at a time while they start.
    c.kubectl(KUBECTL)
        .timeout(Duration::from_secs(300))
        .stdin(manifest.to_string())
        .run(&["apply", "-f", "-"])
        .expect_success("kubectl apply");
}

fn pod_manifest(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn get_pod(c: &Cluster, name: &str) -> Option<Value> {
    let out = c.kubectl_run(KUBECTL, &["get", "pod", name, "-o", "json"]);
    out.success()
        .then(|| serde_json::from_str(&out.stdout).ok())?
}

/// Waits until `check` accepts the pod; panics with the pod, events and agent log.
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
            "pod {name}: {what} not within {deadline:?}\npod: {}\nevents: {}\n--- agent log ---\n{}",
            get_pod(c, name).map(|p| p["status"].to_string()).unwrap_or_default(),
            events(c, name),
            tail(&c.agent_log(), 8000)
        ),
    }
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

fn events(c: &Cluster, name: &str) -> String {
    c.kubectl_run(
        KUBECTL,
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "json",
        ],
    )
    .stdout
}

/// Waits for an event about `name` whose reason and message match. Events are written
/// by the agent's recorder queue, so they may trail the status that reports the same thing.
fn wait_event(c: &Cluster, name: &str, matches: impl Fn(&str, &str) -> bool) {
    let found = testkit::wait_for(Duration::from_secs(30), || {
        event_reasons(c, name)
            .iter()
            .any(|(r, m)| matches(r, m))
            .then_some(())
    });
    assert!(
        found.is_some(),
        "no such event for {name}: {:?}",
        event_reasons(c, name)
    );
}

fn event_reasons(c: &Cluster, name: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(&events(c, name)).unwrap_or_default();
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

fn running(p: &Value) -> bool {
    p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
}

fn container_status<'a>(p: &'a Value, name: &str) -> Option<&'a Value> {
    p["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn two_containers_share_an_empty_dir_served_on_the_pod_ip() {
    let c = Cluster::start();
    let spec = json!({
        "volumes": [{"name": "www", "emptyDir": {}}],
        "containers": [
            {"name": "writer", "image": c.image, "command": ["sh", "-c", "echo hello-from-the-writer > /www/index.html; exec sleep 3600"],
             "volumeMounts": [{"name": "www", "mountPath": "/www"}]},
            {"name": "server", "image": c.image, "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
             "volumeMounts": [{"name": "www", "mountPath": "/www"}]}
        ]
    });
    apply(&c, &pod_manifest("web", spec));
    let p = wait_pod(&c, "web", "Running", Duration::from_secs(90), running);
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    assert_eq!(p["status"]["hostIP"], "127.0.0.1");
    assert!(
        ip.starts_with(c.pod_cidr.trim_end_matches("0/24")),
        "{ip} in {}",
        c.pod_cidr
    );
    let body = testkit::wait_for(Duration::from_secs(30), || {
        http_get(&format!("{ip}:8080"), "/index.html")
            .filter(|b| b.contains("hello-from-the-writer"))
    });
    assert!(
        body.is_some(),
        "page not served from {ip}:8080; pod: {}",
        p["status"]
    );
    for name in ["writer", "server"] {
        let s = container_status(&p, name).unwrap();
        assert!(
            s["containerID"].as_str().unwrap().starts_with("runc://"),
            "{s}"
        );
        assert_eq!(s["ready"], true);
    }
    for reason in ["Pulled", "Created", "Started"] {
        wait_event(&c, "web", |r, _| r == reason);
    }
}

#[test]
fn a_crashing_container_backs_off_with_growing_delays() {
    let c = Cluster::start();
    let spec = json!({"containers": [{"name": "crash", "image": c.image, "command": ["sh", "-c", "exit 3"]}]});
    apply(&c, &pod_manifest("crash", spec));
    // restartCount → the start time the agent recorded for that attempt, read while the
    // container waits out its back-off (lastState is then that attempt). The agent's own
    // times, not when a poll happened to notice, so a slow kubectl cannot skew the gaps.
    let mut started: std::collections::BTreeMap<i64, i64> = Default::default();
    let mut saw_backoff = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !started.contains_key(&3) {
        assert!(
            Instant::now() < deadline,
            "attempt starts seen: {started:?}\n{}",
            tail(&c.agent_log(), 6000)
        );
        if let Some(s) = get_pod(&c, "crash").and_then(|p| container_status(&p, "crash").cloned()) {
            if s["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
                saw_backoff = true;
                let last = &s["lastState"]["terminated"];
                assert_eq!(last["exitCode"], 3, "{s}");
                let at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time =
                    serde_json::from_value(last["startedAt"].clone()).unwrap();
                let n = s["restartCount"].as_i64().unwrap_or(0);
                started.entry(n).or_insert(at.0.as_second());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(saw_backoff, "never reported CrashLoopBackOff");
    let gap = |a: i64, b: i64| match (started.get(&a), started.get(&b)) {
        (Some(x), Some(y)) => Duration::from_secs(y.saturating_sub(*x).max(0) as u64),
        _ => panic!("attempt starts skipped: {started:?}"),
    };
    let (g1, g2) = (gap(1, 2), gap(2, 3));
    assert!(g1 >= Duration::from_secs(8), "first back-off {g1:?}");
    assert!(
        g2 > g1 + Duration::from_secs(5),
        "back-off did not grow: {g1:?} then {g2:?}"
    );
    assert!(event_reasons(&c, "crash")
        .iter()
        .any(|(r, _)| r == "BackOff"));
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    let c = Cluster::start();
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [{"name": "hog", "image": c.image,
            "command": ["sh", "-c", "x=0123456789abcdef; while true; do x=$x$x; done"],
            "resources": {"limits": {"memory": "16Mi"}}}]
    });
    apply(&c, &pod_manifest("hog", spec));
    let p = wait_pod(&c, "hog", "terminated", Duration::from_secs(90), |p| {
        container_status(p, "hog").is_some_and(|s| s["state"]["terminated"].is_object())
    });
    let t = &container_status(&p, "hog").unwrap()["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{t}");
    assert_eq!(t["exitCode"], 137);
    assert_eq!(p["status"]["phase"], "Failed");
    assert_eq!(p["status"]["qosClass"], "Burstable");
}

#[test]
fn graceful_deletion_runs_pre_stop_and_honours_the_grace_period() {
    let c = Cluster::start();
    let marks = c.scratch_dir().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let spec = json!({
        "terminationGracePeriodSeconds": 4,
        "volumes": [{"name": "marks", "hostPath": {"path": marks, "type": "Directory"}}],
        "containers": [{"name": "stubborn", "image": c.image,
            "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
            "volumeMounts": [{"name": "marks", "mountPath": "/marks"}],
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo ran > /marks/pre-stop"]}}}}]
    });
    apply(&c, &pod_manifest("graceful", spec));
    let p = wait_pod(&c, "graceful", "Running", Duration::from_secs(90), running);
    let id = container_status(&p, "stubborn").unwrap()["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("runc://")
        .to_string();
    let started = Instant::now();
    c.kubectl_run(KUBECTL, &["delete", "pod", "graceful", "--wait=false"])
        .expect_success("delete");
    // Timed to the container's end, not to the API object's removal after the pod's
    // teardown, which a busy machine can stretch past any grace period.
    let took = testkit::wait_for(Duration::from_secs(60), || {
        (!c.runc_containers()
            .iter()
            .any(|(i, state)| *i == id && state == "running"))
        .then(|| started.elapsed())
    })
    .unwrap_or_else(|| panic!("container never stopped\n{}", tail(&c.agent_log(), 6000)));
    let gone = testkit::wait_for(Duration::from_secs(60), || {
        get_pod(&c, "graceful").is_none().then_some(())
    });
    assert!(
        gone.is_some(),
        "pod not deleted\n{}",
        tail(&c.agent_log(), 6000)
    );
    assert_eq!(
        std::fs::read_to_string(marks.join("pre-stop"))
            .unwrap_or_default()
            .trim(),
        "ran"
    );
    // The container ignores SIGTERM: only SIGKILL after the 4 s grace period ends it.
    assert!(
        took >= Duration::from_secs(3),
        "stopped after {took:?}, before the grace period"
    );
    assert!(took < Duration::from_secs(30), "stopped after {took:?}");
    let events = event_reasons(&c, "graceful");
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Killing" && m.contains("stubborn")),
        "no Killing event: {events:?}"
    );
}

/// SIGKILLs the agent and leaves it down (the harness restarts it later).
fn kill_agent(c: &Cluster) {
    let pid = nix::unistd::Pid::from_raw(c.agent_pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
}

#[test]
fn an_agent_restart_leaves_containers_untouched_and_statuses_right() {
    let mut c = Cluster::start_with(ClusterOptions::default());
    let flags = c.scratch_dir().join("flags");
    std::fs::create_dir_all(&flags).unwrap();
    apply(
        &c,
        &pod_manifest(
            "steady",
            json!({"containers": [{"name": "s", "image": c.image, "command": ["sleep", "3600"]}]}),
        ),
    );
    apply(
        &c,
        &pod_manifest(
            "exits",
            json!({
                "restartPolicy": "Never",
                "volumes": [{"name": "flags", "hostPath": {"path": flags, "type": "Directory"}}],
                "containers": [{"name": "e", "image": c.image,
                    "command": ["sh", "-c", "while [ ! -f /flags/go ]; do sleep 0.2; done; touch /flags/exiting; exit 3"],
                    "volumeMounts": [{"name": "flags", "mountPath": "/flags"}]}]
            }),
        ),
    );
    let before = wait_pod(&c, "steady", "Running", Duration::from_secs(90), running);
    wait_pod(&c, "exits", "Running", Duration::from_secs(90), running);
    let id = container_status(&before, "s").unwrap()["containerID"].clone();
    let started_at =
        container_status(&before, "s").unwrap()["state"]["running"]["startedAt"].clone();

    kill_agent(&c);
    std::fs::write(flags.join("go"), b"").unwrap();
    assert!(
        testkit::wait_for(Duration::from_secs(30), || flags
            .join("exiting")
            .exists()
            .then_some(()))
        .is_some(),
        "the container did not exit while the agent was down"
    );
    c.kill_agent_and_restart();

    let exited = wait_pod(
        &c,
        "exits",
        "Failed with exit 3",
        Duration::from_secs(60),
        |p| p["status"]["phase"] == "Failed",
    );
    let t = &container_status(&exited, "e").unwrap()["state"]["terminated"];
    assert_eq!(t["exitCode"], 3, "{t}");
    assert_eq!(t["reason"], "Error");
    let after = get_pod(&c, "steady").unwrap();
    let s = container_status(&after, "s").unwrap();
    assert_eq!(s["containerID"], id, "the running container was replaced");
    assert_eq!(s["state"]["running"]["startedAt"], started_at);
    assert_eq!(s["restartCount"], 0);
    assert_eq!(after["status"]["phase"], "Running");
}

fn runc_ids(c: &Cluster) -> Vec<String> {
    let out = std::process::Command::new(&c.resources.runtime_binary)
        .arg("--root")
        .arg(&c.resources.runtime_root)
        .args(["list", "-q"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

fn netns_left(c: &Cluster) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(&c.resources.netns_prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn veths_on_bridge(c: &Cluster) -> String {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &c.resources.bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// host-local keeps one file per allocated IP, named after it.
fn ip_files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if e.path().is_dir() {
            ip_files(&e.path(), prefix, out);
        } else if name.starts_with(prefix) {
            out.push(e.path().display().to_string());
        }
    }
}

fn pod_cgroups(c: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    for ctrl in ["memory", "cpu,cpuacct", "pids", "unified", ""] {
        let root = Path::new("/sys/fs/cgroup")
            .join(ctrl)
            .join(&c.resources.cgroup_root);
        for qos in ["guaranteed", "burstable", "besteffort"] {
            if let Ok(rd) = std::fs::read_dir(root.join(qos)) {
                out.extend(
                    rd.flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.path().display().to_string()),
                );
            }
        }
    }
    out
}

fn supervisors(c: &Cluster) -> Vec<String> {
    let root = c.resources.runtime_root.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("supervise") && cmd.contains(&root) {
            out.push(cmd);
        }
    }
    out
}

fn mounts_under(dir: &Path) -> Vec<String> {
    support::node_cleanup::mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .map(|m| m.display().to_string())
        .collect()
}

/// Everything a node holds for pods; empty when no pod is left.
fn leftovers(c: &Cluster) -> Vec<String> {
    let mut left = Vec::new();
    left.extend(
        runc_ids(c)
            .into_iter()
            .map(|i| format!("runc container {i}")),
    );
    left.extend(netns_left(c).into_iter().map(|n| format!("netns {n}")));
    let veths = veths_on_bridge(c);
    if !veths.is_empty() {
        left.push(format!("veths: {veths}"));
    }
    let mut ips = Vec::new();
    ip_files(
        &c.agent_data_dir,
        c.pod_cidr.trim_end_matches("0/24"),
        &mut ips,
    );
    left.extend(ips.into_iter().map(|f| format!("IP allocation {f}")));
    left.extend(pod_cgroups(c).into_iter().map(|g| format!("cgroup {g}")));
    left.extend(
        supervisors(c)
            .into_iter()
            .map(|s| format!("supervisor {s}")),
    );
    left.extend(
        mounts_under(&c.agent_data_dir)
            .into_iter()
            .map(|m| format!("mount {m}")),
    );
    left
}

#[test]
fn a_pod_deleted_while_the_agent_is_down_is_cleaned_up_after_restart() {
    let mut c = Cluster::start();
    let spec = json!({"volumes": [{"name": "v", "emptyDir": {"medium": "Memory"}}],
        "containers": [{"name": "s", "image": c.image, "command": ["sleep", "3600"],
                        "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]});
    apply(&c, &pod_manifest("doomed", spec));
    let p = wait_pod(&c, "doomed", "Running", Duration::from_secs(90), running);
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    assert!(!leftovers(&c).is_empty(), "a running pod holds something");
    kill_agent(&c);
    c.kubectl_run(
        KUBECTL,
        &["delete", "pod", "doomed", "--grace-period=0", "--force"],
    )
    .expect_success("force delete");
    c.kill_agent_and_restart();
    // Housekeeping removes the log directory after the runtime's leftovers: wait for both.
    let logs = c.agent_data_dir.join("pod-logs");
    let stale_logs = || {
        std::fs::read_dir(&logs)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(&uid))
                    .count()
            })
            .unwrap_or(0)
    };
    let clean = testkit::wait_for(Duration::from_secs(60), || {
        (leftovers(&c).is_empty() && stale_logs() == 0).then_some(())
    });
    assert!(
        clean.is_some(),
        "left behind: {:?}, {} log directories of {uid} in {}\n{}",
        leftovers(&c),
        stale_logs(),
        logs.display(),
        tail(&c.agent_log(), 6000)
    );
}

#[test]
fn a_hundred_pods_created_and_deleted_leave_nothing_behind() {
    let c = Cluster::start();
    let items: Vec<Value> = (0..100)
        .map(|i| {
            pod_manifest(
                &format!("many-{i}"),
                json!({"terminationGracePeriodSeconds": 1,
                       "containers": [{"name": "s", "image": c.image, "command": ["sleep", "3600"]}]}),
            )
        })
        .collect();
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "List", "items": items}),
    );
    let all_running = testkit::wait_for(Duration::from_secs(600), || {
        let out = c.kubectl_run(KUBECTL, &["get", "pods", "-o", "json"]);
        let v: Value = serde_json::from_str(&out.stdout).ok()?;
        let n = v["items"].as_array()?.iter().filter(|p| running(p)).count();
        (n == 100).then_some(())
    });
    assert!(
        all_running.is_some(),
        "not all 100 pods ran\n{}",
        tail(&c.agent_log(), 6000)
    );
    c.kubectl(KUBECTL)
        .timeout(Duration::from_secs(300))
        .run(&["delete", "pods", "--all", "--wait=false"])
        .expect_success("delete all");
    let all_gone = testkit::wait_for(Duration::from_secs(300), || {
        let out = c.kubectl_run(KUBECTL, &["get", "pods", "-o", "name"]);
        (out.success() && out.stdout.trim().is_empty()).then_some(())
    });
    assert!(
        all_gone.is_some(),
        "pods not deleted\n{}",
        tail(&c.agent_log(), 6000)
    );
    let clean = testkit::wait_for(Duration::from_secs(60), || {
        leftovers(&c).is_empty().then_some(())
    });
    assert!(clean.is_some(), "left behind: {:?}", leftovers(&c));
}

#[test]
fn pods_that_cannot_start_say_why_and_the_agent_keeps_going() {
    let c = Cluster::start();
    let closed = testkit::free_port();
    let missing_image = format!("{}/no-such-image:1", c.registry.host());
    let unknown_registry = format!("127.0.0.1:{closed}/busybox:1");
    apply(
        &c,
        &pod_manifest(
            "no-image",
            json!({"containers": [{"name": "c", "image": missing_image}]}),
        ),
    );
    apply(
        &c,
        &pod_manifest(
            "no-registry",
            json!({"containers": [{"name": "c", "image": unknown_registry}]}),
        ),
    );
    apply(
        &c,
        &pod_manifest(
            "bad-cmd",
            json!({"containers": [{"name": "c", "image": c.image, "command": ["/no/such/binary"]}]}),
        ),
    );
    apply(
        &c,
        &pod_manifest(
            "no-cm",
            json!({"containers": [{"name": "c", "image": c.image, "command": ["sleep", "3600"],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing-cm", "key": "k"}}}]}]}),
        ),
    );
    let waiting = |p: &Value| {
        container_status(p, "c")
            .map(|s| s["state"]["waiting"].clone())
            .unwrap_or_default()
    };
    let pull_failed = |p: &Value| {
        matches!(
            waiting(p)["reason"].as_str(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    };
    for name in ["no-image", "no-registry"] {
        let p = wait_pod(
            &c,
            name,
            "ErrImagePull",
            Duration::from_secs(90),
            pull_failed,
        );
        assert_eq!(p["status"]["phase"], "Pending");
        assert!(
            !waiting(&p)["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{}",
            p["status"]
        );
        wait_event(&c, name, |r, m| {
            r == "Failed" && m.contains("Failed to pull image")
        });
    }
    let p = wait_pod(
        &c,
        "bad-cmd",
        "a start error",
        Duration::from_secs(90),
        |p| {
            container_status(p, "c").is_some_and(|s| {
                s["lastState"]["terminated"]["exitCode"] == 128
                    || s["state"]["terminated"]["exitCode"] == 128
            })
        },
    );
    let s = container_status(&p, "c").unwrap();
    let text = s.to_string();
    assert!(
        text.contains("StartError") || text.contains("RunContainerError"),
        "{s}"
    );
    assert!(
        text.contains("no such file"),
        "runc's message is reported: {s}"
    );
    let p = wait_pod(
        &c,
        "no-cm",
        "CreateContainerConfigError",
        Duration::from_secs(90),
        |p| waiting(p)["reason"] == "CreateContainerConfigError",
    );
    assert_eq!(waiting(&p)["message"], "configmap \"missing-cm\" not found");
    // The agent keeps going: a good pod still starts, and the missing ConfigMap, once
    // created, unblocks its pod.
    apply(
        &c,
        &pod_manifest(
            "fine",
            json!({"containers": [{"name": "c", "image": c.image, "command": ["sleep", "3600"]}]}),
        ),
    );
    wait_pod(&c, "fine", "Running", Duration::from_secs(90), running);
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "missing-cm"}, "data": {"k": "v"}}),
    );
    wait_pod(
        &c,
        "no-cm",
        "Running once the ConfigMap exists",
        Duration::from_secs(90),
        running,
    );
}
