//! What the real kubectl 1.32/1.33 sends as protobuf decodes to the object it meant: each
//! typed create runs against a loopback stub that records the body and answers JSON.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use flotilla_apiserver::protobuf::{decode_request_body, is_protobuf};
use serde_json::{json, Value};

/// A recorded write: path and the body decoded to JSON.
type Writes = Arc<Mutex<Vec<(String, Value)>>>;

/// Stops the stub when the test ends, however it ends.
struct Stub {
    addr: std::net::SocketAddr,
    writes: Writes,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(writes): State<Writes>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if method != Method::POST {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "NotFound", "code": 404, "message": "not found"});
        return (StatusCode::NOT_FOUND, Json(status)).into_response();
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let object = if is_protobuf(content_type) {
        match decode_request_body(&body) {
            Ok(v) => v,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    } else {
        json!({"notProtobuf": content_type})
    };
    writes
        .lock()
        .expect("writes lock")
        .push((uri.path().to_string(), object.clone()));
    let mut answer = object;
    if answer["kind"] == "SelfSubjectAccessReview" {
        answer["status"] = json!({"allowed": true});
    }
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn start() -> Stub {
    let writes: Writes = Arc::default();
    let app = Router::new()
        .route(
            "/version",
            get(|| async {
                Json(json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0",
                    "platform": "linux/amd64"}))
            }),
        )
        .fallback(record)
        .with_state(Arc::clone(&writes));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Stub { addr, writes, task }
}

/// kubectl.1.32 and 1.33 (the versions that send protobuf) beside the dispatcher on PATH.
fn protobuf_kubectls() -> Vec<PathBuf> {
    let dispatcher = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.exists())
        .expect("kubectl is on PATH (the acceptance test of the API)");
    let dir = std::fs::canonicalize(&dispatcher)
        .expect("resolve kubectl")
        .parent()
        .expect("kubectl has a directory")
        .to_path_buf();
    let found: Vec<PathBuf> = ["kubectl.1.32", "kubectl.1.33"]
        .iter()
        .map(|name| dir.join(name))
        .filter(|p| p.exists())
        .collect();
    assert!(
        !found.is_empty(),
        "no kubectl.1.32/1.33 beside {dispatcher:?}"
    );
    found
}

fn kubeconfig(dir: &Path, addr: std::net::SocketAddr) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: t\n  context:\n    cluster: t\n    user: u\n    namespace: default\n\
         current-context: t\nusers:\n- name: u\n  user:\n    token: test\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

fn run(kubectl: &Path, home: &Path, config: &Path, args: &[&str]) {
    let out = Command::new(kubectl)
        .args(args)
        .arg("--kubeconfig")
        .arg(config)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .arg("--request-timeout=30s")
        .env("HOME", home)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "{kubectl:?} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_protobuf_creates_decode_to_their_objects() {
    let stub = start().await;
    let home = tempfile::tempdir().expect("temp home");
    let config = kubeconfig(home.path(), stub.addr);
    let home_path = home.path().to_path_buf();
    let writes = Arc::clone(&stub.writes);
    let commands: &[&[&str]] = &[
        &[
            "create",
            "configmap",
            "x",
            "--from-literal=a=b",
            "--dry-run=server",
        ],
        &[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=k=v\u{1}",
        ],
        &["create", "namespace", "team-a"],
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
        ],
        &["auth", "can-i", "create", "deployments.apps"],
    ];
    tokio::task::spawn_blocking(move || {
        for kubectl in protobuf_kubectls() {
            writes.lock().expect("writes lock").clear();
            for args in commands {
                run(&kubectl, &home_path, &config, args);
            }
            let got = writes.lock().expect("writes lock").clone();
            check(&kubectl, &got);
        }
    })
    .await
    .expect("kubectl runs");
    drop(stub);
}

fn check(kubectl: &Path, got: &[(String, Value)]) {
    for (path, object) in got {
        eprintln!("{kubectl:?} POST {path}: {object}");
    }
    let find = |path: &str| {
        got.iter()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{kubectl:?} sent no POST {path}; got {got:?}"))
    };
    let cm = find("/api/v1/namespaces/default/configmaps");
    assert_eq!(cm["apiVersion"], "v1", "{cm}");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "x");
    assert_eq!(cm["data"], json!({"a": "b"}));

    let secret = find("/api/v1/namespaces/default/secrets");
    assert_eq!(secret["kind"], "Secret");
    // kubectl leaves the type empty (unset) for the server to default to Opaque.
    assert!(secret.get("type").is_none(), "{secret}");
    // "v\x01", base64 as Secret data is in JSON.
    assert_eq!(secret["data"], json!({"k": "dgE="}), "{secret}");

    let ns = find("/api/v1/namespaces");
    assert_eq!(ns["kind"], "Namespace");
    assert_eq!(ns["metadata"]["name"], "team-a");

    let d = find("/apis/apps/v1/namespaces/default/deployments");
    assert_eq!(d["kind"], "Deployment");
    assert_eq!(d["spec"]["replicas"], 2, "{d}");
    assert_eq!(
        d["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(container["ports"][0]["containerPort"], 80);
    let typed: k8s_openapi::api::apps::v1::Deployment =
        serde_json::from_value(d.clone()).expect("a typed Deployment");
    assert_eq!(typed.metadata.name.as_deref(), Some("web"));

    let review = find("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews");
    assert_eq!(review["kind"], "SelfSubjectAccessReview");
    // Without discovery kubectl cannot split "deployments.apps" and sends it whole.
    let attrs = &review["spec"]["resourceAttributes"];
    assert_eq!(
        (&attrs["verb"], &attrs["resource"], &attrs["namespace"]),
        (
            &json!("create"),
            &json!("deployments.apps"),
            &json!("default")
        ),
        "{review}"
    );
    assert_eq!(review["status"]["allowed"], false);

    // Go writes every non-pointer field; empty strings come out unset, zeros stay.
    assert!(cm["metadata"].get("namespace").is_none(), "{cm}");
    assert!(
        d["spec"]["template"]["spec"].get("restartPolicy").is_none(),
        "{d}"
    );
}
