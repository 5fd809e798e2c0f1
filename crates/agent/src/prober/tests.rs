//! Prober tests: workers against a fake runtime (time paused, so thresholds and delays are
//! exact), and the HTTP prober against a real listener on 127.0.0.1.

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ExecAction, HTTPHeader, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use runtime::cri::{
    CgroupStats, ContainerConfig, ContainerStatus, ExecResult, PodSandbox, RuntimeError,
    StreamOptions, StreamSession,
};
use tokio::sync::mpsc;

use super::*;

/// An exec-only runtime: `cmd[0]` names a switch whose exit code the test sets.
#[derive(Default)]
pub(crate) struct FakeRuntime {
    pub exits: StdMutex<HashMap<String, (i32, u32)>>,
}

impl FakeRuntime {
    pub fn set(&self, name: &str, code: i32) {
        let mut m = self.exits.lock().unwrap();
        m.entry(name.to_string()).or_insert((0, 0)).0 = code;
    }
    pub fn calls(&self, name: &str) -> u32 {
        self.exits
            .lock()
            .unwrap()
            .get(name)
            .map(|e| e.1)
            .unwrap_or(0)
    }
}

fn fake<T>() -> runtime::cri::Result<T> {
    Err(RuntimeError::Other("not in the fake".into()))
}

#[async_trait]
impl runtime::ContainerRuntime for FakeRuntime {
    async fn create_container(
        &self,
        _: &PodSandbox,
        _: &ContainerConfig,
    ) -> runtime::cri::Result<String> {
        fake()
    }
    async fn start_container(&self, _: &str) -> runtime::cri::Result<()> {
        fake()
    }
    async fn stop_container(&self, _: &str, _: Duration) -> runtime::cri::Result<()> {
        fake()
    }
    async fn remove_container(&self, _: &str) -> runtime::cri::Result<()> {
        fake()
    }
    async fn container_status(&self, _: &str) -> runtime::cri::Result<ContainerStatus> {
        fake()
    }
    async fn list_containers(&self) -> runtime::cri::Result<Vec<ContainerStatus>> {
        fake()
    }
    async fn exec_sync(
        &self,
        _: &str,
        cmd: &[String],
        _: Duration,
    ) -> runtime::cri::Result<ExecResult> {
        let mut m = self.exits.lock().unwrap();
        let e = m.entry(cmd[0].clone()).or_insert((0, 0));
        e.1 += 1;
        Ok(ExecResult {
            exit_code: e.0,
            stdout: format!("{} says {}", cmd[0], e.0).into_bytes(),
            ..Default::default()
        })
    }
    async fn exec(
        &self,
        _: &str,
        _: &[String],
        _: StreamOptions,
    ) -> runtime::cri::Result<StreamSession> {
        fake()
    }
    async fn attach(&self, _: &str, _: StreamOptions) -> runtime::cri::Result<StreamSession> {
        fake()
    }
    async fn container_stats(&self, _: &str) -> runtime::cri::Result<CgroupStats> {
        fake()
    }
    async fn cgroup_stats(&self, _: &str) -> runtime::cri::Result<CgroupStats> {
        fake()
    }
}

fn exec_probe(name: &str, period: i32, failure: i32, success: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![name.to_string()]),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure),
        success_threshold: Some(success),
        ..Default::default()
    }
}

fn pod(container: Container) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn setup() -> (Arc<FakeRuntime>, ProbeManager, mpsc::Receiver<ProbeUpdate>) {
    let rt = Arc::new(FakeRuntime::default());
    let (tx, rx) = mpsc::channel(16);
    let pm = ProbeManager::new(rt.clone(), EventRecorder::discard(), tx);
    (rt, pm, rx)
}

/// The wake-up sync_pod sends for a container that is started from the outset.
async fn started(rx: &mut mpsc::Receiver<ProbeUpdate>, id: &str) {
    let u = next(rx).await;
    assert_eq!(
        (u.kind, u.success, u.container_id.as_str()),
        (ProbeKind::Startup, true, id)
    );
}

async fn next(rx: &mut mpsc::Receiver<ProbeUpdate>) -> ProbeUpdate {
    tokio::time::timeout(Duration::from_secs(300), rx.recv())
        .await
        .expect("an update in time")
        .expect("channel open")
}

#[tokio::test(start_paused = true)]
async fn failing_liveness_asks_for_a_restart_after_the_threshold() {
    let (rt, pm, mut rx) = setup();
    rt.set("live", 1);
    let c = Container {
        name: "web".into(),
        liveness_probe: Some(Probe {
            termination_grace_period_seconds: Some(7),
            ..exec_probe("live", 5, 3, 1)
        }),
        ..Default::default()
    };
    let t_start = SystemTime::now();
    pm.sync_pod(&pod(c), None, &[("web".into(), "c1".into(), t_start)]);
    assert!(
        pm.is_ready("uid-1", "c1"),
        "no readiness probe: ready once running"
    );
    started(&mut rx, "c1").await;
    assert_eq!(pm.liveness_failure("uid-1", "c1"), None);
    let t0 = tokio::time::Instant::now();
    let u = next(&mut rx).await;
    assert_eq!(u.kind, ProbeKind::Liveness);
    assert!(!u.success);
    // Probes at 0, 5 and 10 s: the third failure crosses the threshold.
    assert_eq!(t0.elapsed(), Duration::from_secs(10));
    assert_eq!(rt.calls("live"), 3);
    assert_eq!(
        pm.liveness_failure("uid-1", "c1").as_deref(),
        Some("Container web failed liveness probe, will be restarted")
    );
    assert_eq!(
        pm.liveness_failure_grace("uid-1", "c1"),
        Some(Duration::from_secs(7))
    );
    assert!(!pm.is_ready("uid-1", "c1"));
    // The worker holds: no more probes of this container.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(rt.calls("live"), 3);
    // A restarted container (new ID) starts afresh.
    rt.set("live", 0);
    let c = Container {
        name: "web".into(),
        liveness_probe: Some(exec_probe("live", 5, 3, 1)),
        ..Default::default()
    };
    pm.sync_pod(
        &pod(c),
        None,
        &[("web".into(), "c2".into(), SystemTime::now())],
    );
    assert_eq!(pm.liveness_failure("uid-1", "c1"), None);
    assert_eq!(pm.liveness_failure("uid-1", "c2"), None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rt.calls("live"), 4);
}

#[tokio::test(start_paused = true)]
async fn readiness_flips_both_ways_with_thresholds() {
    let (rt, pm, mut rx) = setup();
    rt.set("ready", 0);
    let c = Container {
        name: "web".into(),
        readiness_probe: Some(exec_probe("ready", 2, 2, 2)),
        ..Default::default()
    };
    pm.sync_pod(
        &pod(c),
        None,
        &[("web".into(), "c1".into(), SystemTime::now())],
    );
    assert!(
        !pm.is_ready("uid-1", "c1"),
        "not ready before the first success"
    );
    assert!(pm.is_started("uid-1", "c1"));
    started(&mut rx, "c1").await;
    let t0 = tokio::time::Instant::now();
    let u = next(&mut rx).await;
    assert!(u.success && u.kind == ProbeKind::Readiness);
    // successThreshold 2: ready after the second success, at 2 s.
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
    assert!(pm.is_ready("uid-1", "c1"));
    rt.set("ready", 1);
    let u = next(&mut rx).await;
    assert!(!u.success);
    assert_eq!(u.message, "ready says 1");
    assert!(!pm.is_ready("uid-1", "c1"));
    // Readiness keeps probing after failing, and comes back.
    rt.set("ready", 0);
    assert!(next(&mut rx).await.success);
    assert!(pm.is_ready("uid-1", "c1"));
    assert_eq!(pm.liveness_failure("uid-1", "c1"), None);
}

#[tokio::test(start_paused = true)]
async fn startup_gates_liveness_and_readiness_and_honours_initial_delay() {
    let (rt, pm, mut rx) = setup();
    rt.set("start", 1);
    rt.set("live", 1);
    rt.set("ready", 0);
    let c = Container {
        name: "web".into(),
        startup_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            ..exec_probe("start", 1, 30, 1)
        }),
        liveness_probe: Some(exec_probe("live", 1, 1, 1)),
        readiness_probe: Some(exec_probe("ready", 1, 1, 1)),
        ..Default::default()
    };
    pm.sync_pod(
        &pod(c),
        None,
        &[("web".into(), "c1".into(), SystemTime::now())],
    );
    tokio::time::sleep(Duration::from_millis(4900)).await;
    assert_eq!(rt.calls("start"), 0, "initialDelaySeconds");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(rt.calls("start") >= 2);
    assert!(!pm.is_started("uid-1", "c1"));
    assert_eq!(rt.calls("live") + rt.calls("ready"), 0, "gated by startup");
    // Startup passes: readiness and liveness begin.
    rt.set("start", 0);
    let u = next(&mut rx).await;
    assert_eq!((u.kind, u.success), (ProbeKind::Startup, true));
    assert!(pm.is_started("uid-1", "c1"));
    let starts = rt.calls("start");
    let mut kinds = [next(&mut rx).await, next(&mut rx).await];
    kinds.sort_by_key(|u| u.kind == ProbeKind::Liveness);
    assert_eq!(
        (kinds[0].kind, kinds[0].success),
        (ProbeKind::Readiness, true)
    );
    assert_eq!(
        (kinds[1].kind, kinds[1].success),
        (ProbeKind::Liveness, false)
    );
    assert!(pm.liveness_failure("uid-1", "c1").is_some());
    assert_eq!(
        rt.calls("start"),
        starts,
        "a passed startup probe is not run again"
    );
}

#[tokio::test(start_paused = true)]
async fn removed_pods_and_stopped_containers_lose_their_workers() {
    let (rt, pm, _rx) = setup();
    let c = Container {
        name: "web".into(),
        readiness_probe: Some(exec_probe("ready", 1, 1, 1)),
        ..Default::default()
    };
    let p = pod(c);
    pm.sync_pod(&p, None, &[("web".into(), "c1".into(), SystemTime::now())]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let n = rt.calls("ready");
    assert!(n >= 1);
    // The container stopped running: its worker stops.
    pm.sync_pod(&p, None, &[]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rt.calls("ready"), n);
    assert!(!pm.is_ready("uid-1", "c1"));
    pm.sync_pod(&p, None, &[("web".into(), "c2".into(), SystemTime::now())]);
    pm.remove_pod("uid-1");
    let n = rt.calls("ready");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rt.calls("ready"), n);
}

// ---------------------------------------------------------------------------------------
// HTTP against a real listener.

async fn serve() -> std::net::SocketAddr {
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/fail",
            get(|| async { (::http::StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        )
        .route(
            "/redirect",
            get(|| async {
                (
                    ::http::StatusCode::FOUND,
                    [(::http::header::LOCATION, "/ok")],
                )
            }),
        )
        .route(
            "/away",
            get(|| async {
                (
                    ::http::StatusCode::FOUND,
                    [(::http::header::LOCATION, "http://127.0.0.2:9/x")],
                    "moved",
                )
            }),
        )
        .route(
            "/headers",
            get(|h: HeaderMap| async move {
                let ua = h
                    .get("user-agent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let x = h.get("x-probe").and_then(|v| v.to_str().ok()).unwrap_or("");
                if ua == http::USER_AGENT && x == "yes" {
                    ::http::StatusCode::OK.into_response()
                } else {
                    ::http::StatusCode::BAD_REQUEST.into_response()
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

fn target(addr: std::net::SocketAddr, path: &str) -> http::HttpTarget {
    http::HttpTarget {
        scheme: http::Scheme::Http,
        host: addr.ip().to_string(),
        port: addr.port(),
        path: path.into(),
        headers: vec![],
    }
}

#[tokio::test]
async fn http_probe_outcomes() {
    let addr = serve().await;
    let t = Duration::from_secs(5);
    assert_eq!(
        http::probe(&target(addr, "/ok"), t).await,
        probe::Outcome::Success("fine".into())
    );
    assert_eq!(
        http::probe(&target(addr, "/fail"), t).await,
        probe::Outcome::Failure("HTTP probe failed with statuscode: 500".into())
    );
    assert_eq!(
        http::probe(&target(addr, "redirect"), t).await,
        probe::Outcome::Success("fine".into()),
        "same-host redirects are followed"
    );
    match http::probe(&target(addr, "/away"), t).await {
        probe::Outcome::Warning(m) => assert!(m.contains("moved"), "{m}"),
        other => panic!("a redirect elsewhere ends with a warning, got {other:?}"),
    }
    assert!(matches!(
        http::probe(&target(addr, "/headers"), t).await,
        probe::Outcome::Failure(_)
    ));
    let mut with = target(addr, "/headers");
    with.headers.push(("X-Probe".into(), "yes".into()));
    assert!(http::probe(&with, t).await.is_success());
    match http::probe(&target(addr, "/slow"), Duration::from_millis(300)).await {
        probe::Outcome::Failure(m) => assert!(m.contains("deadline exceeded"), "{m}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    match http::probe(&target(closed, "/"), t).await {
        probe::Outcome::Failure(m) => assert!(m.contains("connection refused"), "{m}"),
        other => panic!("expected refused, got {other:?}"),
    }
}

#[tokio::test]
async fn http_probe_worker_uses_named_ports_and_headers() {
    let addr = serve().await;
    let (_rt, pm, mut rx) = setup();
    let c = Container {
        name: "web".into(),
        ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(addr.port()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
                path: Some("/headers".into()),
                port: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                    "http".into(),
                ),
                http_headers: Some(vec![HTTPHeader {
                    name: "X-Probe".into(),
                    value: "yes".into(),
                }]),
                ..Default::default()
            }),
            period_seconds: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    pm.sync_pod(
        &pod(c),
        Some(addr.ip()),
        &[("web".into(), "c1".into(), SystemTime::now())],
    );
    started(&mut rx, "c1").await;
    let u = next(&mut rx).await;
    assert!(u.success, "{u:?}");
    assert!(pm.is_ready("uid-1", "c1"));
}
