//! `kubectl top` end to end (root): metrics.k8s.io served by the API server from the
//! agent's Summary API, read by kubectl 1.29 and 1.33. A pod that burns CPU (capped by a
//! limit) and holds ~20 MiB must show non-zero figures, and so must the node.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::Cluster;

/// "250m" → 250, "2" → 2000 millicores.
fn millicores(q: &str) -> Option<u64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<u64>().ok().map(|c| c * 1000),
    }
}

/// "21Mi" → 21 (kubectl prints memory in Mi).
fn mebibytes(q: &str) -> Option<u64> {
    q.strip_suffix("Mi")?.parse().ok()
}

/// The row of `name` in `kubectl top` output, split into columns.
fn row(out: &str, name: &str) -> Option<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(name))
}

#[test]
fn kubectl_top_pod_shows_usage() {
    let c = Cluster::start();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "burner", "namespace": "default", "labels": {"app": "burner"}},
        "spec": {"containers": [{
            "name": "burn", "image": c.image,
            "command": ["sh", "-c", "x=$(head -c 20000000 /dev/zero | tr '\\0' a); while :; do :; done"],
            "resources": {"limits": {"cpu": "200m", "memory": "128Mi"}},
        }]}
    });
    c.kubectl("1.33")
        .stdin(pod.to_string())
        .run(&["apply", "-f", "-"])
        .expect_success("kubectl apply");
    let running = testkit::wait_for(Duration::from_secs(90), || {
        let out = c.kubectl_run("1.33", &["get", "pod", "burner", "-o", "json"]);
        let p: Value = serde_json::from_str(&out.stdout).ok()?;
        (p["status"]["phase"] == "Running").then_some(())
    });
    assert!(running.is_some(), "burner not Running\n{}", c.agent_log());

    for version in ["1.29", "1.33"] {
        // Metrics need a moment (two CPU samples); retry until the figures show.
        let pod_row = testkit::wait_for(Duration::from_secs(60), || {
            let out = c.kubectl_run(version, &["top", "pod", "-l", "app=burner"]);
            let cols = row(&out.stdout, "burner")?;
            let cpu = millicores(cols.get(1)?)?;
            let mem = mebibytes(cols.get(2)?)?;
            // The shell builds its 20 MB string under a 200m cap, which takes a while on a
            // busy machine: wait for it rather than judge a sample taken mid-way.
            (cpu > 0 && mem >= 15).then_some((cpu, mem))
        });
        let (cpu, mem) = pod_row.unwrap_or_else(|| {
            let out = c.kubectl_run(version, &["top", "pod", "-l", "app=burner"]);
            panic!(
                "kubectl {version} top pod: {}{}\n{}",
                out.stdout,
                out.stderr,
                c.server.log()
            )
        });
        // The CPU limit caps the loop at 200m; the shell holds its 20 MB string.
        assert!(cpu <= 260, "kubectl {version}: {cpu}m over a 200m limit");
        assert!(
            mem >= 15,
            "kubectl {version}: {mem}Mi for a 20 MB shell variable"
        );
    }

    // The API underneath: one PodMetrics with the container's usage, by name.
    let out = c.kubectl_run(
        "1.33",
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/burner",
        ],
    );
    let pm: Value = serde_json::from_str(out.expect_success("get PodMetrics")).unwrap();
    assert_eq!(pm["kind"], "PodMetrics");
    assert_eq!(pm["metadata"]["labels"]["app"], "burner");
    assert_eq!(pm["containers"][0]["name"], "burn");
    assert!(pm["window"].as_str().unwrap().ends_with('s'));
    let missing = c.kubectl_run(
        "1.33",
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope",
        ],
    );
    assert!(!missing.success(), "metrics for a pod that does not exist");
}

#[test]
fn kubectl_top_node_shows_usage() {
    let c = Cluster::start();
    for version in ["1.29", "1.33"] {
        let node_row = testkit::wait_for(Duration::from_secs(60), || {
            let out = c.kubectl_run(version, &["top", "node"]);
            let cols = row(&out.stdout, &c.node_name)?;
            let cpu = millicores(cols.get(1)?)?;
            let mem = mebibytes(cols.get(3)?)?;
            (cpu > 0 && mem > 0 && cols.get(2)?.ends_with('%')).then_some(())
        });
        if node_row.is_none() {
            let out = c.kubectl_run(version, &["top", "node"]);
            panic!(
                "kubectl {version} top node: {}{}\n--- server log ---\n{}",
                out.stdout,
                out.stderr,
                c.server.log()
            );
        }
    }
    let out = c.kubectl_run(
        "1.33",
        &["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"],
    );
    let list: Value = serde_json::from_str(out.expect_success("list NodeMetrics")).unwrap();
    assert_eq!(list["kind"], "NodeMetricsList");
    let item = &list["items"][0];
    assert_eq!(item["metadata"]["name"], c.node_name.as_str());
    assert!(
        item["usage"]["cpu"].is_string() && item["usage"]["memory"].is_string(),
        "{item}"
    );
    // The Summary API itself, through the API server's node proxy as users reach it.
    let path = format!("/api/v1/nodes/{}/proxy/stats/summary", c.node_name);
    let out = c.kubectl_run("1.33", &["get", "--raw", &path]);
    let summary: Value = serde_json::from_str(out.expect_success("GET stats/summary")).unwrap();
    assert_eq!(summary["node"]["nodeName"], c.node_name.as_str());
    assert!(
        summary["node"]["cpu"]["usageCoreNanoSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        summary["node"]["memory"]["workingSetBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(summary["pods"].is_array());
    let missing = c.kubectl_run(
        "1.33",
        &["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/nope"],
    );
    assert!(!missing.success(), "metrics for a node that does not exist");
}
