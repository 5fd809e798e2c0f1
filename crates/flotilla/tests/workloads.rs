//! Workloads end to end with real containers (root): `flotilla server` with its own scheduler
//! and controllers, a real node agent (runc, CNI, a local registry), driven by kubectl.
//! Users declare the end state; the cluster gets there and stays there.
//!
//! One cluster serves the whole file (starting one costs a registry, an image push and a
//! node): the namespace clean-up runs in its own namespace beside the Deployment scenario.

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
fn workloads_run_heal_roll_out_and_are_cleaned_up() {
    let c = Cluster::start();
    std::thread::scope(|s| {
        let cleanup = s.spawn(|| deleting_a_namespace_cleans_it_up(&c));
        a_deployment_runs_scales_heals_and_rolls_out(&c);
        if let Err(panic) = cleanup.join() {
            std::panic::resume_unwind(panic);
        }
    });
}

/// A pod's JSON as the API has it, if it exists.
fn get_pod(c: &Cluster, ns: &str, name: &str) -> Option<Value> {
    let out = c.kubectl_run(KUBECTL, &["get", "pod", name, "-n", ns, "-o", "json"]);
    out.success()
        .then(|| serde_json::from_str(&out.stdout).ok())
        .flatten()
}

fn pod_ready(p: &Value) -> bool {
    support::cluster::node_condition(p, "Ready").is_some_and(|c| c["status"] == "True")
}

/// The host PID of a runc container (`runc://<id>` as the pod status names it).
fn container_pid(c: &Cluster, container_id: &str) -> i32 {
    let id = container_id.strip_prefix("runc://").unwrap_or(container_id);
    let out = std::process::Command::new(&c.resources.runtime_binary)
        .arg("--root")
        .arg(&c.resources.runtime_root)
        .args(["state", id])
        .output()
        .unwrap();
    assert!(out.status.success(), "runc state {id}: {out:?}");
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0, "runc state {id}: {state}");
    pid
}

/// SIGKILLs a running pod's container from the host, as an OOM kill or a crash would end
/// it: the kubelet restarts it in place (restartPolicy Always), the pod stays the same.
fn a_killed_container_is_healed(c: &Cluster, pod: &str) {
    let before = get_pod(c, "default", pod).unwrap();
    let status = &before["status"]["containerStatuses"][0];
    let restarts = status["restartCount"].as_i64().unwrap();
    let container_id = status["containerID"].as_str().unwrap().to_string();
    let pid = container_pid(c, &container_id);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let healed = testkit::wait_for(Duration::from_secs(90), || {
        let p = get_pod(c, "default", pod)?;
        let s = &p["status"]["containerStatuses"][0];
        (s["restartCount"].as_i64()? > restarts
            && s["containerID"].as_str()? != container_id
            && !s["state"]["running"].is_null()
            && s["ready"] == true
            && p["status"]["phase"] == "Running"
            && pod_ready(&p))
        .then_some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "{pod}: not restarted and Ready after its container was killed: {}\n--- agent log ---\n{}",
            get_pod(c, "default", pod).unwrap_or_default()["status"],
            {
                let log = c.agent_log();
                log[log.len().saturating_sub(4000)..].to_string()
            }
        )
    });
    // Healed in place, not replaced.
    assert_eq!(healed["metadata"]["uid"], before["metadata"]["uid"]);
    let last = &healed["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "killed by SIGKILL: {last}");
}

/// A namespace holding a Deployment (real containers), a Service, a ConfigMap and a Secret:
/// `kubectl delete namespace --wait` returns once the namespace and everything in it are
/// gone, and no container of its pods is left on the node.
fn deleting_a_namespace_cleans_it_up(c: &Cluster) {
    let ns = "wl-doomed";
    kubectl(c, &["create", "namespace", ns]);
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "doomed", "namespace": ns},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "doomed"}},
                "template": {
                    "metadata": {"labels": {"app": "doomed"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "app", "image": c.image,
                                        "command": ["sleep", "3600"]}]
                    }
                }
            }
        },
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "doomed", "namespace": ns},
            "spec": {"selector": {"app": "doomed"}, "ports": [{"port": 80}]}
        },
        {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "doomed", "namespace": ns},
            "data": {"k": "v"}
        },
        {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "doomed", "namespace": ns},
            "stringData": {"k": "v"}
        }
    ]});
    c.kubectl(KUBECTL)
        .stdin(objects.to_string())
        .run(&["apply", "-f", "-"])
        .expect_success("kubectl apply the namespace's objects");
    let containers: Vec<String> = testkit::wait_for(Duration::from_secs(120), || {
        let out = c.kubectl_run(KUBECTL, &["get", "pods", "-n", ns, "-o", "json"]);
        let list: Value = serde_json::from_str(&out.stdout).ok()?;
        let items = list["items"].as_array()?;
        let ids: Vec<String> = items
            .iter()
            .filter(|p| pod_ready(p))
            .filter_map(|p| p["status"]["containerStatuses"][0]["containerID"].as_str())
            .map(|id| id.trim_start_matches("runc://").to_string())
            .collect();
        (items.len() == 2 && ids.len() == 2).then_some(ids)
    })
    .unwrap_or_else(|| {
        panic!(
            "{ns}: the Deployment's two pods never ran: {}",
            c.kubectl_run(KUBECTL, &["get", "pods", "-n", ns, "-o", "wide"])
                .stdout
        )
    });
    let on_node: Vec<String> = c.runc_containers().into_iter().map(|(id, _)| id).collect();
    assert!(
        containers.iter().all(|id| on_node.contains(id)),
        "{containers:?} not in runc list {on_node:?}"
    );

    let out = c.kubectl(KUBECTL).timeout(Duration::from_secs(130)).run(&[
        "delete",
        "namespace",
        ns,
        "--wait",
        "--timeout=120s",
    ]);
    assert!(
        out.success(),
        "kubectl delete namespace: {}\n{}",
        out.stdout,
        out.stderr
    );
    // --wait returned: the namespace is gone, and with it everything it held.
    let get_ns = c.kubectl_run(KUBECTL, &["get", "namespace", ns]);
    assert!(
        !get_ns.success(),
        "namespace still there: {}",
        get_ns.stdout
    );
    assert!(get_ns.stderr.contains("NotFound"), "{}", get_ns.stderr);
    for kind in [
        "deployments",
        "replicasets",
        "pods",
        "services",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "endpoints",
        "events",
    ] {
        let out = c.kubectl_run(KUBECTL, &["get", kind, "-n", ns, "-o", "name"]);
        let left = out.expect_success(&format!("kubectl get {kind}"));
        assert!(left.trim().is_empty(), "{kind} left in {ns}: {left}");
    }
    // The node stopped and removed the pods' containers.
    let left = testkit::wait_for(Duration::from_secs(30), || {
        let on_node = c.runc_containers();
        (!on_node.iter().any(|(id, _)| containers.contains(id))).then_some(())
    });
    assert!(
        left.is_some(),
        "containers of {ns} still on the node: {:?}",
        c.runc_containers()
    );
}

fn a_deployment_runs_scales_heals_and_rolls_out(c: &Cluster) {
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
    wait_replicas(c, "web", 3, &v1);

    kubectl(c, &["scale", "deployment", "web", "--replicas=5"]);
    wait_replicas(c, "web", 5, &v1);
    kubectl(c, &["scale", "deployment", "web", "--replicas=2"]);
    let pods = wait_replicas(c, "web", 2, &v1);

    // A deleted pod is replaced.
    kubectl(c, &["delete", "pod", &pods[0].0, "--wait=false"]);
    let healed = testkit::wait_for(Duration::from_secs(120), || {
        let now = running(c, "web");
        (now.len() == 2 && now.iter().all(|p| p.0 != pods[0].0)).then_some(())
    });
    assert!(healed.is_some(), "the deleted pod was not replaced");

    // A killed container is restarted in place.
    let survivor = running(c, "web")
        .into_iter()
        .map(|p| p.0)
        .find(|name| name != &pods[0].0)
        .unwrap();
    a_killed_container_is_healed(c, &survivor);

    // A rollout to a new template (an env change stands for a new image tag) completes,
    // and `rollout status` agrees.
    kubectl(c, &["set", "env", "deployment/web", "VERSION=2"]);
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
        c,
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
    wait_replicas(c, "web", 2, &v1);

    // Undo goes back to the previous template.
    kubectl(c, &["rollout", "undo", "deployment/web"]);
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
        c,
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
    kubectl(c, &["delete", "deployment", "web"]);
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
