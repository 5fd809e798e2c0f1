//! One probe (or hook) action, resolved against its container and pod and then run: exec
//! in the container, HTTP GET, TCP connect, gRPC health check. Shared by the probe workers
//! and the lifecycle hooks, which the kubelet runs through the same handlers.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, GRPCAction, HTTPGetAction, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;

use super::{grpc, http};

/// The most of an exec's output kept for a message (the kubelet's limit).
const MAX_OUTPUT: usize = 10 * 1024;

/// What one run of a probe concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success(String),
    /// Counts as success, but the kubelet records a ProbeWarning event (a redirect to
    /// another host ended the chain).
    Warning(String),
    Failure(String),
    /// The probe could not be run at all (runtime error, bad spec): the last result stands.
    Error(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success(_) | Outcome::Warning(_))
    }
}

/// A probe's handler with names, hosts and ports resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Exec(Vec<String>),
    Http(http::HttpTarget),
    Tcp { host: String, port: u16 },
    Grpc(grpc::GrpcTarget),
}

/// Resolves the handler of a probe.
pub fn probe_action(
    probe: &Probe,
    container: Option<&Container>,
    pod_ip: Option<IpAddr>,
) -> Result<Action, String> {
    if let Some(exec) = &probe.exec {
        return exec_action(exec);
    }
    if let Some(h) = &probe.http_get {
        return http_action(h, container, pod_ip);
    }
    if let Some(t) = &probe.tcp_socket {
        return tcp_action(t, container, pod_ip);
    }
    if let Some(g) = &probe.grpc {
        return grpc_action(g, pod_ip);
    }
    Err("missing probe handler".into())
}

pub fn exec_action(exec: &ExecAction) -> Result<Action, String> {
    match exec.command.as_deref() {
        Some(cmd) if !cmd.is_empty() => Ok(Action::Exec(cmd.to_vec())),
        _ => Err("exec handler has no command".into()),
    }
}

pub fn http_action(
    h: &HTTPGetAction,
    container: Option<&Container>,
    pod_ip: Option<IpAddr>,
) -> Result<Action, String> {
    Ok(Action::Http(http::HttpTarget {
        scheme: http::Scheme::parse(h.scheme.as_deref())?,
        host: host(h.host.as_deref(), pod_ip)?,
        port: resolve_port(&h.port, container)?,
        path: h.path.clone().unwrap_or_default(),
        headers: h
            .http_headers
            .iter()
            .flatten()
            .map(|hd| (hd.name.clone(), hd.value.clone()))
            .collect(),
    }))
}

pub fn tcp_action(
    t: &TCPSocketAction,
    container: Option<&Container>,
    pod_ip: Option<IpAddr>,
) -> Result<Action, String> {
    Ok(Action::Tcp {
        host: host(t.host.as_deref(), pod_ip)?,
        port: resolve_port(&t.port, container)?,
    })
}

fn grpc_action(g: &GRPCAction, pod_ip: Option<IpAddr>) -> Result<Action, String> {
    let port = u16::try_from(g.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {}", g.port))?;
    Ok(Action::Grpc(grpc::GrpcTarget {
        host: host(None, pod_ip)?,
        port,
        service: g.service.clone().unwrap_or_default(),
    }))
}

/// The target host: the handler's own, else the pod's IP.
fn host(explicit: Option<&str>, pod_ip: Option<IpAddr>) -> Result<String, String> {
    match (explicit.filter(|h| !h.is_empty()), pod_ip) {
        (Some(h), _) => Ok(h.to_string()),
        (None, Some(ip)) => Ok(ip.to_string()),
        (None, None) => Err("the pod has no IP yet".into()),
    }
}

/// A port by number, or by the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: Option<&Container>) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(s) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => {
                let c = container.ok_or_else(|| format!("couldn't find port: {s}"))?;
                let found = c
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(s.as_str()))
                    .ok_or_else(|| format!("couldn't find port: {s} in {}", c.name))?;
                i64::from(found.container_port)
            }
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// Runs an action once, bounded by `timeout`.
pub async fn run(
    action: &Action,
    runtime: &dyn runtime::ContainerRuntime,
    container_id: &str,
    timeout: Duration,
) -> Outcome {
    match action {
        Action::Exec(cmd) => exec(runtime, container_id, cmd, timeout).await,
        Action::Http(target) => http::probe(target, timeout).await,
        Action::Tcp { host, port } => tcp(host, *port, timeout).await,
        Action::Grpc(target) => grpc::probe(target, timeout).await,
    }
}

async fn exec(
    runtime: &dyn runtime::ContainerRuntime,
    container_id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Outcome {
    match runtime.exec_sync(container_id, cmd, timeout).await {
        Err(e) => Outcome::Error(e.to_string()),
        Ok(r) if r.timed_out => Outcome::Failure(format!("command {:?} timed out", cmd.join(" "))),
        Ok(r) => {
            let mut out = r.stdout;
            out.extend_from_slice(&r.stderr);
            out.truncate(MAX_OUTPUT);
            let text = String::from_utf8_lossy(&out).into_owned();
            if r.exit_code == 0 {
                Outcome::Success(text)
            } else {
                Outcome::Failure(text)
            }
        }
    }
}

async fn tcp(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Outcome::Success(String::new()),
        Ok(Err(e)) => Outcome::Failure(dial_error(&addr, &e)),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// A connect error worded as Go's net package words it, which is what users grep for.
pub fn dial_error(addr: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let what = match e.kind() {
        ConnectionRefused => "connect: connection refused".to_string(),
        TimedOut => "i/o timeout".to_string(),
        HostUnreachable => "connect: no route to host".to_string(),
        NetworkUnreachable => "connect: network is unreachable".to_string(),
        _ => e.to_string(),
    };
    format!("dial tcp {addr}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    fn container_with_port(name: &str, port: i32) -> Container {
        Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some(name.into()),
                container_port: port,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn ports_resolve_by_number_and_name() {
        let c = container_with_port("http", 8080);
        assert_eq!(resolve_port(&IntOrString::Int(80), Some(&c)), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("8081".into()), None),
            Ok(8081)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), Some(&c)),
            Ok(8080)
        );
        assert!(resolve_port(&IntOrString::String("grpc".into()), Some(&c)).is_err());
        assert!(resolve_port(&IntOrString::Int(0), Some(&c)).is_err());
        assert!(resolve_port(&IntOrString::Int(70000), Some(&c)).is_err());
    }

    #[test]
    fn http_host_defaults_to_pod_ip() {
        let h = HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(8080),
            ..Default::default()
        };
        let ip: IpAddr = "10.244.1.5".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        match http_action(&h, None, Some(ip)) {
            Ok(Action::Http(t)) => {
                assert_eq!(t.host, "10.244.1.5");
                assert_eq!(t.port, 8080);
                assert_eq!(t.scheme, http::Scheme::Http);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(http_action(&h, None, None).is_err());
    }

    #[test]
    fn a_probe_without_a_handler_is_an_error() {
        assert!(probe_action(&Probe::default(), None, None).is_err());
        let empty = ExecAction {
            command: Some(vec![]),
        };
        assert!(exec_action(&empty).is_err());
    }

    #[tokio::test]
    async fn tcp_probe_succeeds_on_a_listener_and_fails_on_a_closed_port() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let ok = tcp("127.0.0.1", port, Duration::from_secs(2)).await;
        assert_eq!(ok, Outcome::Success(String::new()));
        drop(l);
        match tcp("127.0.0.1", port, Duration::from_secs(2)).await {
            Outcome::Failure(m) => assert!(m.contains("connection refused"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
