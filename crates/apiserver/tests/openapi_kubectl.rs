//! The acceptance test of the OpenAPI documents: the real kubectl 1.27–1.33 binaries run
//! `explain` against them (1.27 and 1.28 first fetch /openapi/v2 as protobuf). The server here is the OpenAPI router plus the catalogue's
//! legacy discovery documents (kubectl maps `deployment` to a resource through discovery
//! before it reads OpenAPI), on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use api::{discovery, Catalogue};
use axum::extract::{Path as UrlPath, State};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{json, Value};

/// Stops the server when the test ends, however it ends.
struct Server {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Server {
    let catalogue = Arc::new(Catalogue::builtin());
    let discovery_routes =
        Router::new()
            .route(
                "/version",
                get(|| async {
                    Json(json!({
                        "major": "1", "minor": "33", "gitVersion": "v1.33.0",
                        "platform": "linux/amd64",
                    }))
                }),
            )
            .route(
                "/api",
                get(|| async { Json(discovery::api_versions("127.0.0.1")) }),
            )
            .route(
                "/apis",
                get(|State(c): State<Arc<Catalogue>>| async move {
                    Json(discovery::api_group_list(&c))
                }),
            )
            .route(
                "/api/{version}",
                get(
                    |State(c): State<Arc<Catalogue>>, UrlPath(v): UrlPath<String>| async move {
                        resource_list(&c, "", &v)
                    },
                ),
            )
            .route(
                "/apis/{group}/{version}",
                get(
                    |State(c): State<Arc<Catalogue>>,
                     UrlPath((g, v)): UrlPath<(String, String)>| async move {
                        resource_list(&c, &g, &v)
                    },
                ),
            )
            .with_state(Arc::clone(&catalogue));
    let app = discovery_routes.merge(flotilla_apiserver::openapi::router_for(catalogue));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { addr, task }
}

fn resource_list(c: &Catalogue, group: &str, version: &str) -> Result<Json<Value>, StatusCode> {
    discovery::api_resource_list(c, group, version)
        .map(Json)
        .ok_or(StatusCode::NOT_FOUND)
}

/// The versioned kubectl binaries next to the `kubectl` dispatcher on PATH.
fn kubectl_binaries() -> Vec<(String, PathBuf)> {
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
    let found: Vec<(String, PathBuf)> = (27..=33)
        .map(|minor| (format!("1.{minor}"), dir.join(format!("kubectl.1.{minor}"))))
        .filter(|(_, p)| p.exists())
        .collect();
    assert!(
        !found.is_empty(),
        "no kubectl.1.27..1.33 beside {dispatcher:?}"
    );
    found
}

fn kubeconfig(dir: &Path, addr: std::net::SocketAddr) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: t\n  context:\n    cluster: t\n    user: u\ncurrent-context: t\n\
         users:\n- name: u\n  user:\n    token: test\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

fn run(kubectl: &Path, home: &Path, config: &Path, args: &[&str]) -> String {
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
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{kubectl:?} {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_reads_the_documents() {
    let server = start().await;
    let addr = server.addr;
    let home = tempfile::tempdir().expect("temp home");
    let config = kubeconfig(home.path(), addr);
    let home_path = home.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        for (version, kubectl) in kubectl_binaries() {
            let out = run(
                &kubectl,
                &home_path,
                &config,
                &["explain", "deployment.spec.replicas"],
            );
            assert!(out.contains("GROUP:      apps"), "{version}: {out}");
            assert!(out.contains("KIND:       Deployment"), "{version}: {out}");
            assert!(
                out.contains("FIELD: replicas <integer>"),
                "{version}: {out}"
            );

            let out = run(
                &kubectl,
                &home_path,
                &config,
                &["explain", "pods.spec.containers"],
            );
            assert!(
                out.contains("FIELD: containers <[]Container>"),
                "{version}: {out}"
            );
            assert!(out.contains("image\t<string>"), "{version}: {out}");

            let out = run(
                &kubectl,
                &home_path,
                &config,
                &["explain", "pods", "--recursive"],
            );
            assert!(out.contains("KIND:       Pod"), "{version}: {out}");
            assert!(
                out.contains("containerPort\t<integer> -required-"),
                "{version}: {out}"
            );

            let out = run(&kubectl, &home_path, &config, &["explain", "configmaps"]);
            assert!(
                out.contains("data\t<map[string]string>"),
                "{version}: {out}"
            );
        }
    })
    .await
    .expect("kubectl runs");
    drop(server);
}
