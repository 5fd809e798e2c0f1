//! Lifecycle hooks: postStart and preStop handlers (exec, httpGet, tcpSocket, sleep).
//!
//! The kubelet runs hook handlers with the same machinery as probes; so do we
//! ([`crate::prober::probe`]). The difference is the verdict: a hook either completes or
//! returns why it did not, and the pod worker turns that into FailedPostStartHook /
//! FailedPreStopHook events (and, for postStart, kills the container).

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, LifecycleHandler};

use crate::prober::probe::{self, Action, Outcome};

/// Runs `handler` for the container, bounded by `timeout` (for preStop: the grace period).
/// A named port cannot be resolved without the container's spec: use
/// [`run_container_handler`] when the handler may name one.
pub async fn run_handler(
    runtime: &dyn runtime::ContainerRuntime,
    container_id: &str,
    pod_ip: Option<IpAddr>,
    handler: &LifecycleHandler,
    timeout: Duration,
) -> Result<(), String> {
    run(runtime, container_id, pod_ip, None, handler, timeout).await
}

/// [`run_handler`] with the container's spec, so httpGet/tcpSocket ports may be named.
pub async fn run_container_handler(
    runtime: &dyn runtime::ContainerRuntime,
    container_id: &str,
    pod_ip: Option<IpAddr>,
    container: &Container,
    handler: &LifecycleHandler,
    timeout: Duration,
) -> Result<(), String> {
    run(
        runtime,
        container_id,
        pod_ip,
        Some(container),
        handler,
        timeout,
    )
    .await
}

async fn run(
    runtime: &dyn runtime::ContainerRuntime,
    container_id: &str,
    pod_ip: Option<IpAddr>,
    container: Option<&Container>,
    handler: &LifecycleHandler,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(sleep) = &handler.sleep {
        // A sleep cut short by the grace period is not a failure: it did what it could.
        let want = Duration::from_secs(u64::try_from(sleep.seconds).unwrap_or(0));
        tokio::time::sleep(want.min(timeout)).await;
        return Ok(());
    }
    if let Some(exec) = &handler.exec {
        return run_exec(runtime, container_id, exec, timeout).await;
    }
    let (action, describe) = if let Some(h) = &handler.http_get {
        let path = h.path.clone().unwrap_or_default();
        (
            probe::http_action(h, container, pod_ip)?,
            format!("HTTP lifecycle hook ({path})"),
        )
    } else if let Some(t) = &handler.tcp_socket {
        (
            probe::tcp_action(t, container, pod_ip)?,
            "TCP lifecycle hook".to_string(),
        )
    } else {
        return Err("invalid handler: no action set".into());
    };
    let outcome =
        tokio::time::timeout(timeout, probe::run(&action, runtime, container_id, timeout))
            .await
            .map_err(|_| format!("{describe} timed out after {}s", timeout.as_secs_f64()))?;
    match outcome {
        Outcome::Success(_) | Outcome::Warning(_) => Ok(()),
        Outcome::Failure(m) | Outcome::Error(m) => Err(format!("{describe} failed: {m}")),
    }
}

/// Worded as the kubelet's exec hook errors: `command 'sh -c exit 1' exited with 1: out`.
async fn run_exec(
    runtime: &dyn runtime::ContainerRuntime,
    container_id: &str,
    exec: &ExecAction,
    timeout: Duration,
) -> Result<(), String> {
    let Action::Exec(cmd) = probe::exec_action(exec)? else {
        return Err("invalid exec handler".into());
    };
    let shown = cmd.join(" ");
    let r = runtime
        .exec_sync(container_id, &cmd, timeout)
        .await
        .map_err(|e| format!("command '{shown}' failed: {e}"))?;
    if r.timed_out {
        return Err(format!(
            "command '{shown}' timed out after {}s",
            timeout.as_secs_f64()
        ));
    }
    if r.exit_code != 0 {
        let mut out = r.stdout;
        out.extend_from_slice(&r.stderr);
        return Err(format!(
            "command '{shown}' exited with {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&out)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prober::tests::FakeRuntime;
    use k8s_openapi::api::core::v1::{HTTPGetAction, SleepAction, TCPSocketAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn exec(name: &str) -> LifecycleHandler {
        LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![name.into(), "arg".into()]),
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn exec_hooks_report_the_exit_code_and_output() {
        let rt = FakeRuntime::default();
        let t = Duration::from_secs(5);
        rt.set("good", 0);
        rt.set("bad", 2);
        assert_eq!(run_handler(&rt, "c1", None, &exec("good"), t).await, Ok(()));
        assert_eq!(
            run_handler(&rt, "c1", None, &exec("bad"), t).await,
            Err("command 'bad arg' exited with 2: bad says 2".into())
        );
        assert_eq!(rt.calls("bad"), 1);
    }

    #[tokio::test]
    async fn http_and_tcp_hooks_reach_a_local_listener() {
        let rt = FakeRuntime::default();
        let t = Duration::from_secs(5);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", axum::routing::get(|| async { "ok" }))
            .route(
                "/broken",
                axum::routing::get(|| async { (http::StatusCode::SERVICE_UNAVAILABLE, "x") }),
            );
        tokio::spawn(async move { axum::serve(l, app).await });
        let http = |path: &str| LifecycleHandler {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::String("web".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let container = Container {
            name: "c".into(),
            ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                name: Some("web".into()),
                container_port: i32::from(addr.port()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let ip = Some(addr.ip());
        assert_eq!(
            run_container_handler(&rt, "c1", ip, &container, &http("/hook"), t).await,
            Ok(())
        );
        let err = run_container_handler(&rt, "c1", ip, &container, &http("/broken"), t)
            .await
            .unwrap_err();
        assert!(err.contains("statuscode: 503"), "{err}");
        // Without the spec a named port cannot be found.
        assert!(run_handler(&rt, "c1", ip, &http("/hook"), t).await.is_err());
        let tcp = LifecycleHandler {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(addr.port())),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(run_handler(&rt, "c1", ip, &tcp, t).await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_hooks_stop_at_the_timeout() {
        let rt = FakeRuntime::default();
        let h = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 100 }),
            ..Default::default()
        };
        let t0 = tokio::time::Instant::now();
        assert_eq!(
            run_handler(&rt, "c1", None, &h, Duration::from_secs(3)).await,
            Ok(())
        );
        assert_eq!(t0.elapsed(), Duration::from_secs(3));
        let short = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 1 }),
            ..Default::default()
        };
        let t0 = tokio::time::Instant::now();
        assert_eq!(
            run_handler(&rt, "c1", None, &short, Duration::from_secs(30)).await,
            Ok(())
        );
        assert_eq!(t0.elapsed(), Duration::from_secs(1));
        assert!(run_handler(
            &rt,
            "c1",
            None,
            &LifecycleHandler::default(),
            Duration::from_secs(1)
        )
        .await
        .is_err());
    }
}
