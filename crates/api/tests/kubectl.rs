//! Unmodified kubectl binaries (1.27 and 1.33) against a stub API server on loopback that
//! serves this crate's discovery documents and tables: the acceptance test that kubectl
//! resolves every resource, short name and category, and prints our tables as a cluster's.
//!
//! The stub is only HTTP plumbing; every document it returns comes from `flotilla_api`.
//! When the versioned kubectl binaries are not installed the tests say so and skip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use flotilla_api::discovery::{self, AggregatedFormat};
use flotilla_api::table::printer_for;
use flotilla_api::Catalogue;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// Objects by plural, as of a moment.
type Objects = Vec<(&'static str, Vec<Value>)>;

/// What the stub serves.
struct Served {
    catalogue: Catalogue,
    /// Answer aggregated discovery when asked; otherwise only the legacy documents.
    aggregated: bool,
    minor: &'static str,
    /// Objects by plural as of a moment (ages are rendered per request, so they are built
    /// then, not once before several slow kubectl runs); every other list is empty.
    objects: fn(Timestamp) -> Objects,
}

/// A stub server on a free loopback port, stopped on drop.
struct Stub {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(served: Served) -> Stub {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let app = Router::new().fallback(handle).with_state(Arc::new(served));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Stub { addr, task }
}

/// The aggregated format the client accepts, if any (an Accept entry with
/// `g=apidiscovery.k8s.io;v=v2|v2beta1;as=APIGroupDiscoveryList`), first match wins.
fn negotiated(headers: &HeaderMap) -> Option<AggregatedFormat> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    accept.split(',').find_map(|entry| {
        let params: Vec<&str> = entry.split(';').map(str::trim).collect();
        if !params.contains(&"g=apidiscovery.k8s.io")
            || !params.contains(&"as=APIGroupDiscoveryList")
        {
            return None;
        }
        if params.contains(&"v=v2") {
            Some(AggregatedFormat::V2)
        } else if params.contains(&"v=v2beta1") {
            Some(AggregatedFormat::V2Beta1)
        } else {
            None
        }
    })
}

fn json_response(body: Value, content_type: &str) -> Response {
    let mut resp = (StatusCode::OK, body.to_string()).into_response();
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn not_found(path: &str) -> Response {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": format!("{path} not found"), "reason": "NotFound", "code": 404});
    let mut resp = (StatusCode::NOT_FOUND, status.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn handle(State(served): State<Arc<Served>>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let cat = &served.catalogue;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let aggregated = if served.aggregated {
        negotiated(&headers)
    } else {
        None
    };
    match segments.as_slice() {
        ["version"] => json_response(
            json!({"major": "1", "minor": served.minor, "gitVersion": format!("v1.{}.0", served.minor),
                   "platform": "linux/amd64"}),
            "application/json",
        ),
        ["api"] | ["apis"] => {
            let core = segments[0] == "api";
            match aggregated {
                Some(format) => json_response(
                    discovery::aggregated(cat, core, format),
                    &format!(
                        "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList",
                        match format {
                            AggregatedFormat::V2 => "v2",
                            AggregatedFormat::V2Beta1 => "v2beta1",
                        }
                    ),
                ),
                None if core => {
                    json_response(discovery::api_versions("127.0.0.1"), "application/json")
                }
                None => json_response(discovery::api_group_list(cat), "application/json"),
            }
        }
        ["api", "v1"] => match discovery::api_resource_list(cat, "", "v1") {
            Some(doc) => json_response(doc, "application/json"),
            None => not_found(path),
        },
        ["apis", group] => match discovery::api_group(cat, group) {
            Some(doc) => json_response(doc, "application/json"),
            None => not_found(path),
        },
        ["apis", group, version] => match discovery::api_resource_list(cat, group, version) {
            Some(doc) => json_response(doc, "application/json"),
            None => not_found(path),
        },
        ["api", "v1", "namespaces", _, plural] => list(&served, "", "v1", plural),
        ["apis", group, version, "namespaces", _, plural] => list(&served, group, version, plural),
        ["api", "v1", plural] => list(&served, "", "v1", plural),
        ["apis", group, version, plural] => list(&served, group, version, plural),
        _ => not_found(path),
    }
}

/// A Table of the objects served for a resource, built only from the crate's printer.
fn list(served: &Served, group: &str, version: &str, plural: &str) -> Response {
    let Some(info) = served.catalogue.lookup(group, version, plural) else {
        return not_found(plural);
    };
    let printer = printer_for(info);
    let now = Timestamp::now();
    let all = (served.objects)(now);
    let objects = all
        .iter()
        .find(|(p, _)| *p == plural)
        .map_or(&[][..], |(_, objs)| objs.as_slice());
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            json!({
                "cells": printer.cells(obj, now),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": obj["metadata"].clone()},
            })
        })
        .collect();
    let columns: Vec<Value> = printer.columns().iter().map(|c| c.to_json()).collect();
    json_response(
        json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "7"},
               "columnDefinitions": columns, "rows": rows}),
        "application/json",
    )
}

/// A versioned kubectl binary (`kubectl.1.33`), looked for on PATH and next to the
/// `kubectl` dispatcher, which may be a symlink into another directory.
fn kubectl_binary(minor: &str) -> Option<PathBuf> {
    let name = format!("kubectl.1.{minor}");
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let direct = dir.join(&name);
        if direct.is_file() {
            return Some(direct);
        }
        if let Ok(real) = std::fs::canonicalize(dir.join("kubectl")) {
            if let Some(candidate) = real.parent().map(|d| d.join(&name)) {
                if candidate.is_file() {
                    return Some(candidate);
                }
            }
        }
    }
    None
}

/// A kubeconfig and HOME of its own, so discovery caches never leak between tests.
struct Client {
    binary: PathBuf,
    dir: TempDir,
}

impl Client {
    fn new(binary: PathBuf, stub: &Stub) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "stub", "cluster": {"server": format!("http://{}", stub.addr)}}],
            "users": [{"name": "stub", "user": {}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub", "namespace": "default"}}],
            "current-context": "stub",
        });
        std::fs::write(dir.path().join("config"), config.to_string()).expect("kubeconfig");
        Self { binary, dir }
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    /// Runs kubectl; returns stdout, failing the test on a non-zero exit.
    async fn run(&self, args: &[&str]) -> String {
        let output = tokio::process::Command::new(&self.binary)
            .args(args)
            .arg("--request-timeout=10s")
            .arg(format!(
                "--cache-dir={}",
                self.home().join("cache").display()
            ))
            .env("HOME", self.home())
            .env("KUBECONFIG", self.home().join("config"))
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), output)
            .await
            .expect("kubectl finished in time")
            .expect("kubectl ran");
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {stderr}\n{stdout}"
        );
        assert!(
            !stderr.contains("couldn't get resource list")
                && !stderr.contains("unable to retrieve"),
            "discovery complaints: {stderr}"
        );
        stdout
    }
}

/// The cells of a kubectl table line: columns are separated by at least two spaces.
fn columns(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn find_line(output: &str, first: &str) -> Vec<String> {
    output
        .lines()
        .map(columns)
        .find(|c| c.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("no line for {first} in:\n{output}"))
}

/// Every catalogue resource shows in `kubectl api-resources -o wide` with its short names,
/// API version, scope, kind and categories.
async fn check_api_resources(minor: &str, aggregated: bool) {
    let Some(binary) = kubectl_binary(minor) else {
        eprintln!("kubectl.1.{minor} is not installed: skipped");
        return;
    };
    let catalogue = Catalogue::builtin();
    let stub = start(Served {
        catalogue: catalogue.clone(),
        aggregated,
        minor: if minor == "27" { "27" } else { "33" },
        objects: |_| Vec::new(),
    })
    .await;
    let out = Client::new(binary, &stub)
        .run(&["api-resources", "-o", "wide"])
        .await;
    for info in catalogue.iter() {
        let line = output_line(&out, info.plural, &info.api_version());
        let mut expected = vec![info.plural.to_string()];
        if !info.short_names.is_empty() {
            expected.push(info.short_names.join(","));
        }
        expected.push(info.api_version());
        expected.push(info.namespaced.to_string());
        expected.push(info.kind.to_string());
        assert_eq!(
            &line[..expected.len()],
            expected.as_slice(),
            "kubectl {minor}: {line:?}"
        );
        let verbs = info.verbs.join(",");
        assert!(line.contains(&verbs), "verbs of {}: {line:?}", info.plural);
        if !info.categories.is_empty() {
            assert_eq!(
                line.last(),
                Some(&info.categories.join(",")),
                "categories of {}",
                info.plural
            );
        }
    }
}

/// The api-resources line of a resource in a group-version (events exist twice).
fn output_line(output: &str, plural: &str, api_version: &str) -> Vec<String> {
    output
        .lines()
        .map(columns)
        .find(|c| {
            c.first().map(String::as_str) == Some(plural) && c.iter().any(|x| x == api_version)
        })
        .unwrap_or_else(|| panic!("{plural} ({api_version}) missing from:\n{output}"))
}

#[tokio::test]
async fn kubectl_1_33_reads_aggregated_discovery_v2() {
    check_api_resources("33", true).await;
}

#[tokio::test]
async fn kubectl_1_27_reads_aggregated_discovery_v2beta1() {
    check_api_resources("27", true).await;
}

#[tokio::test]
async fn kubectl_reads_legacy_discovery() {
    check_api_resources("33", false).await;
}

fn ago(now: Timestamp, secs: i64) -> String {
    (now - SignedDuration::from_secs(secs)).to_string()
}

fn sample_objects(now: Timestamp) -> Objects {
    // Ages sit mid-bucket ("62m", "15m") so that a slow run cannot change the text.
    let created = ago(now, 62 * 60 + 30);
    let web = json!({
        "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": created},
        "spec": {"nodeName": "n1", "containers": [{"name": "app"}, {"name": "log"}]},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.5"}], "containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 3, "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(now, 15 * 60 + 30)}}},
            {"name": "log", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
        ]},
    });
    let init = json!({
        "metadata": {"name": "init-1", "namespace": "default", "creationTimestamp": created},
        "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "app"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{"name": "setup", "state": {"running": {}}}]},
    });
    let service = json!({
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": created},
        "spec": {"type": "NodePort", "clusterIPs": ["10.43.0.20"], "selector": {"app": "web"},
                 "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}]},
    });
    let deployment = json!({
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": created},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}},
        "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1},
    });
    let node = json!({
        "metadata": {"name": "n1", "creationTimestamp": created,
                     "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "192.168.50.2"}],
                   "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                                "kernelVersion": "6.1.0", "containerRuntimeVersion": "runc://1.1.12"}},
    });
    let event = json!({
        "metadata": {"name": "web-1.1", "namespace": "default", "creationTimestamp": created},
        "involvedObject": {"kind": "Pod", "name": "web-1"}, "type": "Warning", "reason": "BackOff",
        "message": "Back-off restarting failed container", "count": 4,
        "firstTimestamp": created, "lastTimestamp": ago(now, 15 * 60 + 30),
    });
    vec![
        ("nodes", vec![node]),
        ("events", vec![event]),
        ("pods", vec![web, init]),
        ("services", vec![service]),
        ("deployments", vec![deployment]),
    ]
}

#[tokio::test]
async fn kubectl_1_33_prints_tables() {
    print_tables("33").await;
}

#[tokio::test]
async fn kubectl_1_27_prints_tables() {
    print_tables("27").await;
}

async fn print_tables(minor: &'static str) {
    let Some(binary) = kubectl_binary(minor) else {
        eprintln!("kubectl.1.{minor} is not installed: skipped");
        return;
    };
    let stub = start(Served {
        catalogue: Catalogue::builtin(),
        aggregated: true,
        minor,
        objects: sample_objects,
    })
    .await;
    let client = Client::new(binary, &stub);

    let nodes = client.run(&["get", "nodes", "-o", "wide"]).await;
    assert_eq!(
        find_line(&nodes, "n1"),
        [
            "n1",
            "Ready,SchedulingDisabled",
            "control-plane",
            "62m",
            "v1.33.0",
            "192.168.50.2",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "6.1.0",
            "runc://1.1.12"
        ]
    );

    let events = client.run(&["get", "events"]).await;
    assert_eq!(
        columns(events.lines().next().unwrap_or("")),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert_eq!(
        find_line(&events, "15m"),
        [
            "15m",
            "Warning",
            "BackOff",
            "pod/web-1",
            "Back-off restarting failed container"
        ]
    );

    let out = client.run(&["get", "pods"]).await;
    assert_eq!(
        columns(out.lines().next().unwrap_or("")),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert_eq!(
        find_line(&out, "web-1"),
        ["web-1", "1/2", "ContainerCreating", "3 (15m ago)", "62m"]
    );
    assert_eq!(
        find_line(&out, "init-1"),
        ["init-1", "0/1", "Init:0/1", "0", "62m"]
    );

    let wide = client.run(&["get", "po", "-o", "wide"]).await;
    assert_eq!(
        columns(wide.lines().next().unwrap_or("")),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    assert_eq!(
        find_line(&wide, "web-1")[5..],
        ["10.42.0.5", "n1", "<none>", "<none>"]
    );
}

#[tokio::test]
async fn kubectl_get_all_uses_categories() {
    let Some(binary) = kubectl_binary("33") else {
        eprintln!("kubectl.1.33 is not installed: skipped");
        return;
    };
    let stub = start(Served {
        catalogue: Catalogue::builtin(),
        aggregated: true,
        minor: "33",
        objects: sample_objects,
    })
    .await;
    let out = Client::new(binary, &stub).run(&["get", "all"]).await;
    assert_eq!(
        find_line(&out, "service/web"),
        [
            "service/web",
            "NodePort",
            "10.43.0.20",
            "<none>",
            "80/TCP,443:30443/TCP",
            "62m"
        ]
    );
    assert_eq!(
        find_line(&out, "deployment.apps/web"),
        ["deployment.apps/web", "1/2", "2", "1", "62m"]
    );
    assert_eq!(find_line(&out, "pod/web-1")[1], "1/2");
}
