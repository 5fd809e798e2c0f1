//! The node's HTTPS endpoint (the kubelet's port 10250): logs, exec, attach, port-forward
//! and stats, reached only by the API server's node-client certificate.
//!
//! - [`logs`]: `GET /containerLogs/{ns}/{pod}/{container}` from the CRI log files.
//! - [`remotecommand`]: `/exec/{ns}/{pod}/{container}` and `/attach/…` over WebSocket
//!   ([`channel`] protocols v4/v5) or SPDY/3.1 ([`spdy`]).
//! - [`portforward`]: `/portForward/{ns}/{pod}` over SPDY, or SPDY tunnelled in WebSocket.
//! - `extra_routes` (the Summary API at `/stats/summary`) are merged in as given.

pub mod channel;
pub mod logs;
mod lookup;
pub mod portforward;
pub mod remotecommand;
pub mod spdy;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use runtime::{ContainerRuntime, RuntimeError, SandboxRuntime};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Runtime(RuntimeError),
    #[error("{0}")]
    Other(String),
}

impl ServerError {
    fn code(&self) -> (u16, &'static str) {
        match self {
            ServerError::NotFound(_) | ServerError::Runtime(RuntimeError::NotFound(_)) => {
                (404, "NotFound")
            }
            ServerError::BadRequest(_) => (400, "BadRequest"),
            ServerError::Forbidden(_) => (403, "Forbidden"),
            _ => (500, "InternalError"),
        }
    }
}

/// A Status, so that kubectl prints "Error from server (Reason): message" through the
/// API server's proxy.
impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let (code, reason) = self.code();
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.to_string(), "reason": reason, "code": code,
        });
        let status =
            http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

pub struct NodeServerConfig {
    /// Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Only client certificates signed by this CA are accepted…
    pub client_ca_pem: String,
    /// …and only with this CommonName (the API server's node-client certificate).
    pub allowed_client_cn: String,
    pub node_name: String,
    pub pod_logs_dir: PathBuf,
}

#[derive(Clone)]
struct AppState {
    containers: Arc<dyn ContainerRuntime>,
    sandboxes: Arc<dyn SandboxRuntime>,
    pod_logs_dir: Arc<PathBuf>,
}

/// A bound node endpoint.
pub struct NodeServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    allowed_client_cn: String,
}

/// A TLS handshake slower than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl NodeServer {
    /// Binds (with a self-signed serving certificate made now) and returns the bound
    /// address before serving.
    pub async fn bind(
        config: NodeServerConfig,
        containers: Arc<dyn ContainerRuntime>,
        sandboxes: Arc<dyn SandboxRuntime>,
        extra_routes: Router,
    ) -> Result<Self, ServerError> {
        let tls = tls::server_config(&config.node_name, config.listen.ip(), &config.client_ca_pem)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let state = AppState {
            containers,
            sandboxes,
            pod_logs_dir: Arc::new(config.pod_logs_dir.clone()),
        };
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
            .route("/exec/{ns}/{pod}/{container}", any(exec))
            .route("/attach/{ns}/{pod}/{container}", any(attach))
            .route("/portForward/{ns}/{pod}", any(port_forward))
            .route("/portForward/{ns}/{pod}/{uid}", any(port_forward_uid))
            .with_state(state)
            .merge(extra_routes);
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(tls),
            app,
            allowed_client_cn: config.allowed_client_cn,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` completes. Sessions in progress (a followed log, an exec)
    /// are left to finish on their own.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        tokio::pin!(shutdown);
        let allowed = Arc::new(self.allowed_client_cn);
        loop {
            let (tcp, remote) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off rather than spin.
                        tracing::warn!(error = %e, "node server accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let app = self.app.clone();
            let allowed = allowed.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "node server TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let cn = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(tls::common_name);
                if cn.as_deref() != Some(allowed.as_str()) {
                    tracing::warn!(%remote, ?cn, "node server: client certificate refused");
                    return;
                }
                let service =
                    tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        tower::ServiceExt::oneshot(app.clone(), req.map(Body::new))
                    });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service))
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!(%remote, error = %e, "node connection ended");
                }
            });
        }
    }
}

fn respond(r: Result<Response, ServerError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn container_logs(
    State(s): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    respond(
        logs::serve(
            s.containers,
            &s.pod_logs_dir,
            &ns,
            &pod,
            &container,
            query.as_deref().unwrap_or_default(),
        )
        .await,
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Command {
    Exec,
    Attach,
}

async fn exec(
    State(s): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    respond(remote_command(s, Command::Exec, &ns, &pod, &container, req).await)
}

async fn attach(
    State(s): State<AppState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    respond(remote_command(s, Command::Attach, &ns, &pod, &container, req).await)
}

/// How the client asks to switch protocols.
enum Upgrade {
    WebSocket,
    Spdy,
}

fn upgrade_of(req: &Request) -> Result<Upgrade, ServerError> {
    let token = req
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if token.eq_ignore_ascii_case("websocket") {
        Ok(Upgrade::WebSocket)
    } else if token.eq_ignore_ascii_case(spdy::UPGRADE_TOKEN) {
        Ok(Upgrade::Spdy)
    } else {
        Err(ServerError::BadRequest("Upgrade request required".into()))
    }
}

/// Picks the first of `ours` that the client offered in `X-Stream-Protocol-Version`.
fn negotiate(req: &Request, ours: &[&'static str]) -> Result<&'static str, ServerError> {
    let offered: Vec<String> = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect();
    ours.iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .copied()
        .ok_or_else(|| {
            ServerError::Forbidden(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {ours:?}"
            ))
        })
}

/// Answers 101 for a SPDY upgrade and hands the switched connection to `session`.
fn switch_to_spdy<F, Fut>(
    mut req: Request,
    protocol: &str,
    session: F,
) -> Result<Response, ServerError>
where
    F: FnOnce(spdy::Connection) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => session(spdy::Connection::new(TokioIo::new(upgraded))).await,
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
        }
    });
    Response::builder()
        .status(http::StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, spdy::UPGRADE_TOKEN)
        .header("X-Stream-Protocol-Version", protocol)
        .body(Body::empty())
        .map_err(|e| ServerError::Other(e.to_string()))
}

async fn remote_command(
    s: AppState,
    kind: Command,
    ns: &str,
    pod: &str,
    container: &str,
    req: Request,
) -> Result<Response, ServerError> {
    let query = req.uri().query().unwrap_or_default().to_string();
    let opts = remotecommand::Options::from_query(&query, kind == Command::Exec)?;
    let upgrade = upgrade_of(&req)?;
    let target = lookup::running(&*s.containers, ns, pod, container).await?;
    let containers = s.containers.clone();
    let id = target.id;
    let command = opts.command.clone();
    let stream = opts.stream;
    let start = async move {
        match kind {
            Command::Exec => containers.exec(&id, &command, stream).await,
            Command::Attach => containers.attach(&id, stream).await,
        }
    };
    match upgrade {
        Upgrade::WebSocket => {
            let ws = WebSocketUpgrade::from_request(req, &())
                .await
                .map_err(|e| ServerError::BadRequest(e.body_text()))?;
            Ok(ws
                .protocols(channel::PROTOCOLS.iter().copied())
                .on_upgrade(move |socket| remotecommand::websocket::run(socket, opts, start)))
        }
        Upgrade::Spdy => {
            let protocol = negotiate(&req, remotecommand::spdy::PROTOCOLS)?;
            switch_to_spdy(req, protocol, move |conn| {
                remotecommand::spdy::run(conn, opts, start)
            })
        }
    }
}

async fn port_forward(
    State(s): State<AppState>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    respond(forward_ports(s, &ns, &pod, req).await)
}

async fn port_forward_uid(
    State(s): State<AppState>,
    Path((ns, pod, _uid)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    respond(forward_ports(s, &ns, &pod, req).await)
}

async fn forward_ports(
    s: AppState,
    ns: &str,
    pod: &str,
    req: Request,
) -> Result<Response, ServerError> {
    let upgrade = upgrade_of(&req)?;
    let sandbox = lookup::sandbox(&*s.sandboxes, ns, pod).await?;
    let target = portforward::Target {
        pod: pod.to_string(),
        netns: sandbox.netns_path,
    };
    match upgrade {
        Upgrade::WebSocket => {
            let ws = WebSocketUpgrade::from_request(req, &())
                .await
                .map_err(|e| ServerError::BadRequest(e.body_text()))?;
            Ok(ws
                .protocols([portforward::TUNNEL_PROTOCOL])
                .on_upgrade(move |socket| async move {
                    let conn = spdy::Connection::new(portforward::tunnel(socket));
                    portforward::run(conn, target).await;
                }))
        }
        Upgrade::Spdy => {
            let protocol = negotiate(&req, &[portforward::PROTOCOL])?;
            switch_to_spdy(req, protocol, move |conn| portforward::run(conn, target))
        }
    }
}
