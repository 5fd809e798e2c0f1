//! The kubectl acceptance suite: every installed kubectl release (1.29–1.33) drives a
//! freshly started server through the everyday commands — discovery, create, get in every
//! output format, describe with events, label/annotate/edit/replace, the three patch types,
//! client-side and server-side apply (with a field-manager conflict), kustomize, imperative
//! creates, scale, rollout history, auth can-i, watches and deletes — and checks both what
//! kubectl prints and the objects the server then holds. The same suite runs on etcd.
//!
//! Each case runs even when an earlier one failed, so one report lists every PASS/FAIL of a
//! version; the test fails at the end if any case failed.

mod support;

#[path = "kubectl_suite/ctx.rs"]
mod ctx;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use ctx::{assert_contains, make_executable, testdata, wait_line, Ctx, NS, WATCH_DEADLINE};
use serde_json::json;
use support::{Etcd, Server, ServerOptions};

// ---- cases -------------------------------------------------------------------------------

fn discovery(c: &Ctx) {
    let v = c.ok(&["version"]);
    assert_contains(&v, "Server Version: v1.33", "kubectl version");
    let res = c.ok(&["api-resources"]);
    let deploy = res
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap_or_else(|| panic!("no deployments in api-resources:\n{res}"));
    for word in ["deploy", "apps/v1", "true", "Deployment"] {
        assert_contains(deploy, word, "api-resources deployments row");
    }
    assert!(
        res.lines()
            .any(|l| l.starts_with("namespaces ") && l.contains("false")),
        "{res}"
    );
    let gv = c.ok(&["api-versions"]);
    for want in ["v1", "apps/v1", "batch/v1", "networking.k8s.io/v1"] {
        assert!(
            gv.lines().any(|l| l == want),
            "api-versions lacks {want}:\n{gv}"
        );
    }
    let explain = c.ok(&["explain", "deployment.spec.replicas"]);
    assert_contains(&explain, "replicas", "explain");
    assert_contains(&explain, "<integer>", "explain");
    assert_contains(&explain, "Deployment", "explain");
}

fn create_from_files(c: &Ctx) {
    let out = c.ok(&["create", "-f", &testdata("basic")]);
    for made in [
        "namespace/demo created",
        "configmap/app-config created",
        "secret/app-secret created",
        "service/web created",
        "deployment.apps/web created",
        "job.batch/once created",
        "networkpolicy.networking.k8s.io/deny-ingress created",
    ] {
        assert_contains(&out, made, "create -f basic/");
    }
    let ns = c.ok(&[
        "get",
        "namespace",
        "demo",
        "-o",
        "jsonpath={.metadata.labels.team}",
    ]);
    assert_eq!(ns, "e2e");
    assert_eq!(
        c.jsonpath(&["configmap", "app-config"], "{.data.color}"),
        "blue"
    );
    assert_eq!(
        c.jsonpath(&["secret", "app-secret"], "{.data.password}"),
        "czNjcmV0"
    );
    let svc = c.get_json(&["service", "web"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["type"], "ClusterIP", "defaulted type");
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.43.")),
        "{svc}"
    );
    let deploy = c.get_json(&["deployment", "web"]);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    assert_eq!(
        deploy["spec"]["strategy"]["type"], "RollingUpdate",
        "defaulted strategy"
    );
    assert!(deploy["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));
    let job = c.get_json(&["job", "once"]);
    assert_eq!(job["spec"]["backoffLimit"], 2);
    let np = c.get_json(&["networkpolicy", "deny-ingress"]);
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    // Creating again is a conflict reported the Kubernetes way.
    let again = c.run(&["create", "-f", &testdata("basic/10-configmap.yaml")]);
    assert!(!again.success());
    assert_contains(&again.stderr, "AlreadyExists", "second create");
}

fn get_formats(c: &Ctx) {
    let yaml = c.ok(&["get", "configmap", "app-config", "-n", NS, "-o", "yaml"]);
    assert_contains(&yaml, "kind: ConfigMap", "-o yaml");
    assert_contains(&yaml, "color: blue", "-o yaml");
    let list = c.get_json(&["configmaps"]);
    assert_eq!(list["kind"], "List");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert!(names.contains(&"app-config"), "{names:?}");
    let name = c.ok(&["get", "deployments", "-n", NS, "-o", "name"]);
    assert_eq!(name.trim(), "deployment.apps/web");
    let wide = c.ok(&["get", "deployments", "-n", NS, "-o", "wide"]);
    let header = wide.lines().next().unwrap_or_default();
    for col in [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ] {
        assert_contains(header, col, "-o wide header");
    }
    assert_contains(&wide, "nginx:1.25", "-o wide images");
    assert_contains(&wide, "app=web", "-o wide selector");
    let plain = c.ok(&["get", "services", "-n", NS]);
    assert_contains(
        plain.lines().next().unwrap_or_default(),
        "CLUSTER-IP",
        "service table",
    );
    let all = c.ok(&["get", "configmaps", "-A"]);
    assert!(all.starts_with("NAMESPACE"), "-A header:\n{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("demo ") && l.contains("app-config")),
        "-A rows:\n{all}"
    );
    let by_label = c.ok(&["get", "all", "-n", NS, "-l", "app=web", "-o", "name"]);
    let mut got: Vec<&str> = by_label.lines().collect();
    got.sort_unstable();
    assert_eq!(
        got,
        ["deployment.apps/web", "service/web"],
        "get all -l app=web"
    );
    let by_field = c.ok(&[
        "get",
        "configmaps",
        "-n",
        NS,
        "--field-selector",
        "metadata.name=app-config",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "configmap/app-config");
    let none = c.run(&[
        "get",
        "configmaps",
        "-n",
        NS,
        "--field-selector",
        "metadata.name=nope",
    ]);
    assert!(none.success(), "{none:?}");
    assert_contains(&none.stderr, "No resources found", "empty field selector");
    let labels = c.ok(&["get", "deployments", "-n", NS, "--show-labels"]);
    assert_contains(
        labels.lines().next().unwrap_or_default(),
        "LABELS",
        "--show-labels",
    );
    assert_contains(&labels, "app=web", "--show-labels");
    let missing = c.run(&["get", "configmap", "nope", "-n", NS]);
    assert!(!missing.success());
    assert_contains(
        &missing.stderr,
        "Error from server (NotFound)",
        "get missing",
    );
}

fn describe_with_events(c: &Ctx) {
    let uid = c.jsonpath(&["deployment", "web"], "{.metadata.uid}");
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web.e2e", "namespace": NS},
        "involvedObject": {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "name": "web", "namespace": NS, "uid": uid,
        },
        "reason": "ScalingReplicaSet",
        "message": "Scaled up replica set web-e2e to 1",
        "type": "Normal",
        "source": {"component": "deployment-controller"},
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 1,
    });
    c.ok_stdin(&event.to_string(), &["create", "-f", "-"]);
    let d = c.ok(&["describe", "deployment", "web", "-n", NS]);
    assert_contains(&d, "Name:", "describe");
    assert_contains(&d, "nginx:1.25", "describe pod template");
    assert_contains(&d, "Events:", "describe");
    assert_contains(&d, "ScalingReplicaSet", "describe events");
    assert_contains(&d, "Scaled up replica set web-e2e to 1", "describe events");
    let ev = c.ok(&[
        "get",
        "events",
        "-n",
        NS,
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert_contains(&ev, "ScalingReplicaSet", "get events by involvedObject");
    // A pod (no controllers run here, so made by hand) and an event about it.
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "solo", "namespace": NS, "labels": {"app": "solo"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}});
    c.ok_stdin(&pod.to_string(), &["create", "-f", "-"]);
    let pod_uid = c.jsonpath(&["pod", "solo"], "{.metadata.uid}");
    let event = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "solo.e2e", "namespace": NS},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "solo",
            "namespace": NS, "uid": pod_uid, "fieldPath": "spec.containers{main}"},
        "reason": "Pulled", "message": "Container image \"busybox:1.36\" already present",
        "type": "Normal", "source": {"component": "kubelet"},
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 3});
    c.ok_stdin(&event.to_string(), &["create", "-f", "-"]);
    let d = c.ok(&["describe", "pod", "solo", "-n", NS]);
    assert_contains(&d, "busybox:1.36", "describe pod");
    assert_contains(&d, "Pulled", "describe pod events");
    assert_contains(&d, "already present", "describe pod events");
    assert_contains(&d, "(x3 over", "describe pod event count");
}

fn label_annotate(c: &Ctx) {
    let out = c.ok(&["label", "configmap", "app-config", "-n", NS, "tier=backend"]);
    assert_contains(&out, "configmap/app-config labeled", "label");
    c.ok(&[
        "annotate",
        "configmap",
        "app-config",
        "-n",
        NS,
        "note=hello",
    ]);
    let cm = c.get_json(&["configmap", "app-config"]);
    assert_eq!(cm["metadata"]["labels"]["tier"], "backend");
    assert_eq!(cm["metadata"]["labels"]["app"], "web", "other labels kept");
    assert_eq!(cm["metadata"]["annotations"]["note"], "hello");
    // Changing a label needs --overwrite; removing uses the `key-` form.
    let clash = c.run(&["label", "configmap", "app-config", "-n", NS, "tier=front"]);
    assert!(!clash.success(), "relabel without --overwrite: {clash:?}");
    c.ok(&[
        "label",
        "configmap",
        "app-config",
        "-n",
        NS,
        "tier=front",
        "--overwrite",
    ]);
    assert_eq!(
        c.jsonpath(&["configmap", "app-config"], "{.metadata.labels.tier}"),
        "front"
    );
    c.ok(&["label", "configmap", "app-config", "-n", NS, "tier-"]);
    let labels = c.get_json(&["configmap", "app-config"])["metadata"]["labels"].clone();
    assert_eq!(labels, json!({"app": "web"}));
}

fn edit(c: &Ctx) {
    let script = c
        .server
        .scratch_dir()
        .join(format!("editor-{}.sh", c.version));
    std::fs::write(
        &script,
        "#!/bin/sh\nsed -i 's/color: blue/color: green/' \"$1\"\n",
    )
    .expect("write the editor script");
    make_executable(&script);
    let editor = script.to_string_lossy().into_owned();
    let p = c.spawn(
        &["edit", "configmap", "app-config", "-n", NS],
        &[("KUBE_EDITOR", &editor), ("EDITOR", &editor)],
    );
    let (ok, out, err) = p.finish(Duration::from_secs(60));
    assert!(ok, "kubectl edit failed\nstdout:\n{out}\nstderr:\n{err}");
    assert_contains(&out, "configmap/app-config edited", "edit");
    assert_eq!(
        c.jsonpath(&["configmap", "app-config"], "{.data.color}"),
        "green"
    );
}

fn replace(c: &Ctx) {
    let mut cm = c.get_json(&["configmap", "app-config"]);
    cm["data"]["size"] = json!("small");
    cm["data"]["added"] = json!("by-replace");
    let out = c.ok_stdin(&cm.to_string(), &["replace", "-f", "-"]);
    assert_contains(&out, "configmap/app-config replaced", "replace");
    let after = c.get_json(&["configmap", "app-config"]);
    assert_eq!(after["data"]["size"], "small");
    assert_eq!(after["data"]["added"], "by-replace");
    assert_ne!(
        after["metadata"]["resourceVersion"],
        cm["metadata"]["resourceVersion"]
    );
    // A stale resourceVersion is a conflict.
    let stale = c.run_stdin(&cm.to_string(), &["replace", "-f", "-"]);
    assert!(!stale.success(), "stale replace succeeded: {stale:?}");
    assert_contains(&stale.stderr, "Conflict", "stale replace");
}

fn patches(c: &Ctx) {
    let d = ["deployment", "web", "-n", NS];
    let patch = |kind: &str, body: &str| {
        let mut args = vec!["patch"];
        args.extend_from_slice(&d);
        args.extend_from_slice(&["--type", kind, "-p", body]);
        let out = c.ok(&args);
        assert_contains(&out, "deployment.apps/web patched", kind);
    };
    patch(
        "json",
        r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#,
    );
    assert_eq!(c.jsonpath(&["deployment", "web"], "{.spec.replicas}"), "2");
    patch("merge", r#"{"metadata":{"labels":{"patched":"merge"}}}"#);
    let labels = c.get_json(&["deployment", "web"])["metadata"]["labels"].clone();
    assert_eq!(labels, json!({"app": "web", "patched": "merge"}));
    patch(
        "strategic",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#,
    );
    let names = c.jsonpath(
        &["deployment", "web"],
        "{.spec.template.spec.containers[*].name}",
    );
    let mut names: Vec<&str> = names.split_whitespace().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["sidecar", "web"],
        "strategic merge by container name"
    );
    // A JSON patch test that fails leaves the object alone.
    let bad = c.run(&[
        "patch", "deployment", "web", "-n", NS, "--type", "json", "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":7},{"op":"replace","path":"/spec/replicas","value":9}]"#,
    ]);
    assert!(!bad.success(), "failing test op succeeded: {bad:?}");
    assert_eq!(c.jsonpath(&["deployment", "web"], "{.spec.replicas}"), "2");
}

fn apply_client_side(c: &Ctx) {
    let out = c.ok(&["apply", "-f", &testdata("apply/v1.yaml")]);
    assert_contains(&out, "deployment.apps/api created", "first apply");
    let last = c.jsonpath(
        &["deployment", "api"],
        "{.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}",
    );
    assert_contains(&last, "\"DROP\"", "last-applied annotation");
    let out = c.ok(&["apply", "-f", &testdata("apply/v1.yaml")]);
    assert_contains(&out, "deployment.apps/api unchanged", "re-apply");
    let out = c.ok(&["apply", "-f", &testdata("apply/v2.yaml")]);
    assert_contains(&out, "deployment.apps/api configured", "changed apply");
    let d = c.get_json(&["deployment", "api"]);
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["api", "sidecar"]);
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "KEEP", "value": "yes"}]),
        "DROP removed"
    );
    assert_eq!(containers[1]["command"], json!(["sleep", "infinity"]));

    let out = c.ok(&["apply", "-f", &format!("{}/", testdata("apply-dir"))]);
    assert_contains(&out, "configmap/dir-one created", "apply dir/");
    assert_contains(&out, "configmap/dir-two created", "apply dir/");
    assert_eq!(c.jsonpath(&["configmap", "dir-two"], "{.data.count}"), "2");

    let out = c.ok(&["apply", "-k", &testdata("kustomize")]);
    assert_contains(&out, "service/kz-backend created", "apply -k");
    assert_contains(
        &out,
        "configmap/kz-settings-",
        "apply -k generated configmap",
    );
    let gen = c.ok(&[
        "get",
        "configmaps",
        "-n",
        NS,
        "-l",
        "via=kustomize",
        "-o",
        "jsonpath={.items[*].data.mode}",
    ]);
    assert_eq!(gen, "fast");
    let svc = c.get_json(&["service", "kz-backend"]);
    assert_eq!(svc["metadata"]["labels"]["via"], "kustomize");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
}

fn apply_server_side(c: &Ctx) {
    let out = c.ok(&["apply", "--server-side", "-f", &testdata("apply/ssa.yaml")]);
    assert_contains(
        &out,
        "configmap/ssa serverside-applied",
        "server-side apply",
    );
    let cm = c.get_json(&["configmap", "ssa", "--show-managed-fields"]);
    assert_eq!(cm["data"]["owner"], "first");
    let managers: Vec<&str> = cm["metadata"]["managedFields"]
        .as_array()
        .map(|m| m.iter().filter_map(|e| e["manager"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        managers.contains(&"kubectl"),
        "managedFields: {}",
        cm["metadata"]
    );
    let other = testdata("apply/ssa-other.yaml");
    let clash = c.run(&[
        "apply",
        "--server-side",
        "--field-manager",
        "other",
        "-f",
        &other,
    ]);
    assert!(!clash.success(), "conflicting apply succeeded: {clash:?}");
    assert_contains(&clash.stderr, "conflict", "server-side apply conflict");
    assert_contains(&clash.stderr, ".data.owner", "conflict names the field");
    assert_eq!(c.jsonpath(&["configmap", "ssa"], "{.data.owner}"), "first");
    let out = c.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "other",
        "--force-conflicts",
        "-f",
        &other,
    ]);
    assert_contains(&out, "configmap/ssa serverside-applied", "forced apply");
    let cm = c.get_json(&["configmap", "ssa", "--show-managed-fields"]);
    assert_eq!(cm["data"]["owner"], "second");
    let owners: Vec<&str> = cm["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter(|e| e["fieldsV1"]["f:data"].get("f:owner").is_some())
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert_eq!(owners, ["other"], "the forced manager owns the field alone");
}

fn imperative_creates(c: &Ctx) {
    let out = c.ok(&["create", "namespace", "scratch"]);
    assert_contains(&out, "namespace/scratch created", "create namespace");
    let out = c.ok(&[
        "create",
        "deployment",
        "made",
        "--image=nginx:1.25",
        "--replicas=2",
        "-n",
        NS,
    ]);
    assert_contains(&out, "deployment.apps/made created", "create deployment");
    let d = c.get_json(&["deployment", "made"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "made");
    c.ok(&[
        "create",
        "configmap",
        "literal",
        "--from-literal=a=b",
        "-n",
        NS,
    ]);
    assert_eq!(c.jsonpath(&["configmap", "literal"], "{.data.a}"), "b");
    c.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=user=admin",
        "-n",
        NS,
    ]);
    assert_eq!(c.jsonpath(&["secret", "sec"], "{.data.user}"), "YWRtaW4=");
}

fn scale_rollout(c: &Ctx) {
    let out = c.ok(&["scale", "deployment", "web", "--replicas=4", "-n", NS]);
    assert_contains(&out, "deployment.apps/web scaled", "scale");
    assert_eq!(c.jsonpath(&["deployment", "web"], "{.spec.replicas}"), "4");
    let h = c.ok(&["rollout", "history", "deployment/web", "-n", NS]);
    assert_contains(&h, "deployment.apps/web", "rollout history");
}

fn auth_can_i(c: &Ctx) {
    let yes = c.run(&["auth", "can-i", "create", "pods"]);
    assert_eq!(yes.stdout.trim(), "yes", "auth can-i: {yes:?}");
    assert!(yes.success());
}

fn watch(c: &Ctx) {
    let mut w = c.spawn(&["get", "configmaps", "-n", NS, "-w"], &[]);
    let rx = w.lines();
    wait_line(&rx, WATCH_DEADLINE, |l| l.starts_with("app-config "));
    // From a manifest: `create configmap` sends protobuf from 1.32, a separate case.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "watched", "namespace": NS}, "data": {"x": "y"}});
    c.ok_stdin(&cm.to_string(), &["create", "-f", "-"]);
    let line = wait_line(&rx, WATCH_DEADLINE, |l| l.starts_with("watched "));
    assert!(
        line.split_whitespace().nth(1) == Some("1"),
        "DATA column: {line}"
    );
    c.ok(&["label", "configmap", "app-config", "-n", NS, "seen=yes"]);
    wait_line(&rx, WATCH_DEADLINE, |l| l.starts_with("app-config "));
    drop(w);
}

fn deletes(c: &Ctx) {
    // Its own objects from manifests, so the case does not hang on the imperative creates.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "doomed", "namespace": NS}, "data": {"a": "b"}});
    c.ok_stdin(&cm.to_string(), &["create", "-f", "-"]);
    let out = c.ok(&["delete", "configmap", "doomed", "-n", NS, "--wait=true"]);
    assert_contains(&out, "configmap \"doomed\" deleted", "delete");
    let gone = c.run(&["get", "configmap", "doomed", "-n", NS]);
    assert_contains(&gone.stderr, "NotFound", "get after delete");
    let out = c.ok(&["delete", "configmaps", "-l", "group=applied", "-n", NS]);
    assert_contains(&out, "configmap \"dir-one\" deleted", "delete -l");
    assert_contains(&out, "configmap \"dir-two\" deleted", "delete -l");
    let left = c.run(&["get", "configmaps", "-l", "group=applied", "-n", NS]);
    assert_contains(&left.stderr, "No resources found", "after delete -l");
    assert_eq!(
        c.jsonpath(&["configmap", "app-config"], "{.metadata.name}"),
        "app-config"
    );
    let out = c.ok(&[
        "delete",
        "-f",
        &testdata("apply/v1.yaml"),
        "--wait=true",
        "--timeout=30s",
    ]);
    assert_contains(
        &out,
        "deployment.apps \"api\" deleted",
        "delete -f deployment",
    );
    let gone = c.run(&["get", "deployment", "api", "-n", NS]);
    assert_contains(&gone.stderr, "NotFound", "get deployment after delete");
    let missing = c.run(&["delete", "configmap", "doomed", "-n", NS]);
    assert!(!missing.success());
    assert_contains(&missing.stderr, "NotFound", "delete missing");
}

type Case = (&'static str, fn(&Ctx));

const CASES: [Case; 15] = [
    (
        "discovery (version, api-resources, api-versions, explain)",
        discovery,
    ),
    ("create -f (7 kinds)", create_from_files),
    (
        "get -o yaml|json|name|wide|jsonpath, -A, -l, --field-selector, --show-labels",
        get_formats,
    ),
    ("describe with events", describe_with_events),
    ("label, annotate", label_annotate),
    ("edit", edit),
    ("replace", replace),
    ("patch json|merge|strategic", patches),
    (
        "apply client-side (create, unchanged, changed, dir/, -k)",
        apply_client_side,
    ),
    (
        "apply --server-side (conflict, --force-conflicts)",
        apply_server_side,
    ),
    (
        "create deployment|configmap|secret generic|namespace",
        imperative_creates,
    ),
    ("scale, rollout history", scale_rollout),
    ("auth can-i create pods", auth_can_i),
    ("get -w", watch),
    ("delete (--wait, -l)", deletes),
];

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic without message".into())
}

/// Runs every case with kubectl `version` against `server`; fails listing each failed case.
fn run_suite(server: &Server, version: &str, backend: &str) {
    let c = Ctx { server, version };
    let mut failures = Vec::new();
    let mut report = String::new();
    let suite_start = Instant::now();
    for (name, case) in CASES {
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| case(&c)));
        let verdict = if result.is_ok() { "PASS" } else { "FAIL" };
        report.push_str(&format!(
            "kubectl {version} [{backend}] {verdict} {name} ({} ms)\n",
            start.elapsed().as_millis()
        ));
        if let Err(p) = result {
            failures.push(format!("--- {name} ---\n{}", panic_message(p.as_ref())));
        }
    }
    report.push_str(&format!(
        "kubectl {version} [{backend}] total {} ms\n",
        suite_start.elapsed().as_millis()
    ));
    println!("{report}");
    assert!(
        failures.is_empty(),
        "kubectl {version} [{backend}]: {} of {} cases failed\n{report}\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

fn suite_on_embedded_store(version: &str) {
    let server = Server::start();
    run_suite(&server, version, "embedded");
}

#[test]
fn kubectl_1_29() {
    suite_on_embedded_store("1.29");
}

#[test]
fn kubectl_1_30() {
    suite_on_embedded_store("1.30");
}

#[test]
fn kubectl_1_31() {
    suite_on_embedded_store("1.31");
}

#[test]
fn kubectl_1_32() {
    suite_on_embedded_store("1.32");
}

#[test]
fn kubectl_1_33() {
    suite_on_embedded_store("1.33");
}

fn suite_on_etcd(version: &str) {
    let etcd = Etcd::start();
    let server = Server::start_with(ServerOptions::etcd(&etcd));
    run_suite(&server, version, "etcd");
}

/// The whole suite again with every kubectl version, the server on a real etcd.
#[test]
fn kubectl_1_29_on_etcd() {
    suite_on_etcd("1.29");
}

#[test]
fn kubectl_1_30_on_etcd() {
    suite_on_etcd("1.30");
}

#[test]
fn kubectl_1_31_on_etcd() {
    suite_on_etcd("1.31");
}

#[test]
fn kubectl_1_32_on_etcd() {
    suite_on_etcd("1.32");
}

#[test]
fn kubectl_1_33_on_etcd() {
    suite_on_etcd("1.33");
}
