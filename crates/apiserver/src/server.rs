//! HTTPS serving: TLS (HTTP/1.1 and HTTP/2 by ALPN) with optional client certificates
//! verified against the cluster CA, the health and version endpoints, authentication, the
//! request body limit and graceful shutdown, around the API routes of [`crate::handlers`]
//! and [`crate::openapi`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::apimachinery::pkg::version::Info;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tower_http::trace::TraceLayer;

use crate::authn::{self, Authenticator, ConnectionInfo};
use crate::config::ServerConfig;
use crate::pki::ClusterPki;
use crate::state::ApiState;
use crate::status::ApiError;
use crate::{handlers, openapi};

/// The Kubernetes release whose API Flotilla serves. kubectl's dispatcher picks its
/// matching binary from `minor`.
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "33";
pub const GIT_VERSION: &str = "v1.33.0-flotilla";

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
    Io(#[from] std::io::Error),
}

/// The rustls configuration: our serving certificate, HTTP/2 and HTTP/1.1 by ALPN, and
/// client certificates that are optional but, when sent, must chain to the cluster CA.
pub fn tls_config(pki: &ClusterPki) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let tls = |e: &dyn std::fmt::Display| ServerError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pki.ca.cert_pem().as_bytes()) {
        roots.add(ca.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(&e))?;
    let chain = CertificateDer::pem_slice_iter(pki.serving.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving.key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The whole HTTP application: health, version, the API routes and OpenAPI, behind
/// request tracing, authentication and the body limit.
pub fn app(state: Arc<ApiState>, authn: Arc<Authenticator>, max_body_bytes: usize) -> Router {
    let probes = Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .with_state(state.clone());
    probes
        .merge(handlers::router(state.clone()))
        .merge(openapi::router(state))
        // Extractors in the handlers must allow what the limit below allows.
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(max_body_bytes, limit_body))
        .layer(middleware::from_fn_with_state(authn, authn::middleware))
        .layer(TraceLayer::new_for_http())
}

/// `GET /cacerts`: the cluster CA in PEM, unauthenticated, as k3s serves it. A joining agent
/// cannot verify the server yet; it checks this PEM against the hash in its join token.
/// Merged outside [`app`]'s layers, so no credentials are asked for.
pub fn cacerts_router(ca_pem: &str) -> Router {
    let pem = ca_pem.to_string();
    Router::new().route(
        "/cacerts",
        get(move || {
            let pem = pem.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, "application/x-pem-file")],
                    pem,
                )
            }
        }),
    )
}

/// How far past the limit an oversized body is still read, and dropped, before the 413 goes
/// out. A client that writes its whole body before it reads (HTTP/1.1 clients such as
/// Python's urllib3 or hyper) would otherwise have its connection reset mid-write and never
/// see the Status; kube-apiserver gets there through Go's draining and lingering close.
/// Larger bodies are refused at once, at the price of a cut connection.
const OVERSIZE_DRAIN_BYTES: u64 = 16 << 20;
/// A slow sender of an oversized body does not hold its request open longer than this.
const OVERSIZE_DRAIN_TIME: Duration = Duration::from_secs(10);

/// Rejects a body over `max` with 413 RequestEntityTooLarge. The body is read here (it is
/// bounded anyway) so that every route, however it consumes its body, sees the same limit and
/// the client always gets a Status rather than a cut connection.
async fn limit_body(State(max): State<usize>, req: Request, next: Next) -> Response {
    let too_large = || {
        ApiError::request_entity_too_large(format!(
            "the request body is larger than the limit of {max} bytes"
        ))
        .into_response()
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max as u64 => {
            if n <= max as u64 + OVERSIZE_DRAIN_BYTES {
                discard(req.into_body(), 0).await;
            }
            return too_large();
        }
        Some(0) => return next.run(req).await,
        // Upgrades (exec, attach, port-forward) carry no request body; leave them streaming.
        None if req.headers().contains_key(http::header::UPGRADE) => return next.run(req).await,
        _ => {}
    }
    let capacity = declared.map_or(0, |n| n as usize);
    let (parts, mut body) = req.into_parts();
    let mut buf = bytes::BytesMut::with_capacity(capacity);
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                return ApiError::bad_request(format!("reading the request body: {e}"))
                    .into_response()
            }
        };
        // Trailers carry nothing the API reads.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > max {
            discard(body, (buf.len() + data.len()) as u64).await;
            return too_large();
        }
        buf.extend_from_slice(&data);
    }
    next.run(Request::from_parts(parts, Body::from(buf.freeze())))
        .await
}

/// Reads and drops the rest of an oversized body (`seen` bytes of it already read), within
/// the drain bounds, so that its sender gets to read the answer.
async fn discard(mut body: Body, mut seen: u64) {
    let budget = OVERSIZE_DRAIN_BYTES.saturating_add(seen);
    let drain = async {
        while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > budget {
                break;
            }
        }
    };
    if tokio::time::timeout(OVERSIZE_DRAIN_TIME, drain)
        .await
        .is_err()
    {
        tracing::debug!(seen, "gave up draining an oversized request body");
    }
}

async fn healthz() -> &'static str {
    "ok"
}

#[derive(serde::Deserialize)]
struct ProbeQuery {
    verbose: Option<String>,
}

/// Ready when the store answers. `?verbose` lists the checks as kube-apiserver does.
async fn readyz(State(state): State<Arc<ApiState>>, Query(q): Query<ProbeQuery>) -> Response {
    let store = state.store.current_revision().await;
    let ok = store.is_ok();
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: store unavailable");
    }
    let body = if q.verbose.is_some() {
        let mark = if ok { "[+]store ok" } else { "[-]store failed" };
        let tail = if ok {
            "readyz check passed"
        } else {
            "readyz check failed"
        };
        format!("[+]ping ok\n{mark}\n{tail}\n")
    } else if ok {
        "ok".to_string()
    } else {
        "[-]store failed\nreadyz check failed\n".to_string()
    };
    let code = if ok {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body).into_response()
}

/// Kubernetes' version.Info for the release Flotilla serves.
pub fn version_info() -> Info {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    Info {
        major: KUBERNETES_MAJOR.into(),
        minor: KUBERNETES_MINOR.into(),
        git_version: GIT_VERSION.into(),
        git_commit: option_env!("FLOTILLA_GIT_COMMIT")
            .unwrap_or("unknown")
            .into(),
        git_tree_state: "clean".into(),
        build_date: "1970-01-01T00:00:00Z".into(),
        go_version: "n/a".into(),
        compiler: "rustc".into(),
        platform: format!("{}/{arch}", std::env::consts::OS),
        emulation_major: Some(KUBERNETES_MAJOR.into()),
        emulation_minor: Some(KUBERNETES_MINOR.into()),
        min_compatibility_major: Some(KUBERNETES_MAJOR.into()),
        min_compatibility_minor: Some("32".into()),
    }
}

async fn version() -> Json<Info> {
    Json(version_info())
}

/// A bound API server, ready to accept connections.
pub struct ApiServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    shutdown_grace: Duration,
    handshake_timeout: Duration,
}

impl ApiServer {
    /// Binds the listening socket. Serving starts with [`ApiServer::serve`].
    pub async fn bind(
        config: &ServerConfig,
        tls: Arc<rustls::ServerConfig>,
        app: Router,
    ) -> Result<Self, ServerError> {
        let addr = config.listen_address();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(tls),
            app,
            shutdown_grace: config.shutdown_grace,
            handshake_timeout: config.tls_handshake_timeout,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish for up to the
    /// configured grace period.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, remote) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let conn = Connection {
                acceptor: self.acceptor.clone(),
                app: self.app.clone(),
                handshake_timeout: self.handshake_timeout,
            };
            let watcher = graceful.watcher();
            tokio::spawn(async move { conn.run(tcp, remote, watcher).await });
        }
        drop(self.listener);
        tracing::info!("shutting down: finishing in-flight requests");
        if tokio::time::timeout(self.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?self.shutdown_grace, "connections still open after the grace period");
        }
        Ok(())
    }
}

struct Connection {
    acceptor: TlsAcceptor,
    app: Router,
    handshake_timeout: Duration,
}

impl Connection {
    async fn run(
        self,
        tcp: tokio::net::TcpStream,
        remote: SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let tls =
            match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
        let client_certificate_user = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| match authn::user_from_certificate(leaf) {
                Ok(user) => Some(user),
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "unusable client certificate");
                    None
                }
            });
        let info = ConnectionInfo {
            remote: Some(remote),
            client_certificate_user,
        };
        let app = self.app;
        let service = tower::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(info.clone());
            app.clone().oneshot(req.map(Body::new))
        });
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(service));
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            tracing::debug!(%remote, error = %e, "connection ended with an error");
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;

    fn echo_len(max: usize) -> Router {
        Router::new()
            .route(
                "/echo",
                post(|body: axum::body::Bytes| async move { body.len().to_string() }),
            )
            .layer(DefaultBodyLimit::max(max))
            .layer(middleware::from_fn_with_state(max, limit_body))
    }

    async fn send(
        app: Router,
        body: Body,
        length: Option<usize>,
    ) -> (u16, serde_json::Value, String) {
        let mut req = http::Request::post("/echo");
        if let Some(n) = length {
            req = req.header(http::header::CONTENT_LENGTH, n);
        }
        let resp = app.oneshot(req.body(body).unwrap()).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            code,
            serde_json::from_slice(&bytes).unwrap_or_default(),
            text,
        )
    }

    fn chunks(n: usize, size: usize) -> Body {
        let chunks = (0..n).map(move |_| Ok::<_, std::io::Error>(vec![b'x'; size]));
        Body::from_stream(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_413() {
        let (code, status, _) = send(echo_len(10), Body::from(vec![0u8; 11]), Some(11)).await;
        assert_eq!(code, 413);
        assert_eq!(status["reason"], "RequestEntityTooLarge");
    }

    /// Counts the chunks of a body that were read.
    fn counted_chunks(n: usize, size: usize) -> (Body, Arc<std::sync::atomic::AtomicUsize>) {
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = read.clone();
        let chunks = (0..n).map(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(vec![b'x'; size])
        });
        (Body::from_stream(futures::stream::iter(chunks)), read)
    }

    #[tokio::test]
    async fn an_oversized_body_is_read_to_its_end_before_the_413() {
        // Declared and chunked alike: the sender finishes writing, then reads the Status.
        for length in [Some(40), None] {
            let (body, read) = counted_chunks(10, 4);
            let (code, status, _) = send(echo_len(10), body, length).await;
            assert_eq!(code, 413);
            assert_eq!(status["reason"], "RequestEntityTooLarge");
            assert_eq!(
                read.load(std::sync::atomic::Ordering::SeqCst),
                10,
                "{length:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_declared_far_beyond_the_limit_is_refused_unread() {
        let (body, read) = counted_chunks(10, 4);
        let huge = 10 + OVERSIZE_DRAIN_BYTES as usize + 1;
        let (code, _, _) = send(echo_len(10), body, Some(huge)).await;
        assert_eq!(code, 413);
        assert_eq!(read.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_is_413() {
        let (code, status, _) = send(echo_len(10), chunks(3, 4), None).await;
        assert_eq!(code, 413);
        assert_eq!(status["kind"], "Status");
    }

    #[tokio::test]
    async fn a_body_at_the_limit_reaches_the_handler_whole() {
        let (code, _, text) = send(echo_len(12), chunks(3, 4), None).await;
        assert_eq!((code, text.as_str()), (200, "12"));
        let (code, _, text) = send(echo_len(12), Body::from(vec![0u8; 12]), Some(12)).await;
        assert_eq!((code, text.as_str()), (200, "12"));
    }

    #[tokio::test]
    async fn cacerts_serves_the_pem_without_credentials() {
        let pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
        let req = http::Request::get("/cacerts").body(Body::empty()).unwrap();
        let resp = cacerts_router(pem).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body, pem.as_bytes());
    }

    #[test]
    fn version_is_kubernetes_1_33_with_go_platform_names() {
        let v = serde_json::to_value(version_info()).unwrap();
        assert_eq!(v["major"], "1");
        assert_eq!(v["minor"], "33");
        assert_eq!(v["gitVersion"], "v1.33.0-flotilla");
        let platform = v["platform"].as_str().unwrap();
        assert!(platform.starts_with("linux/"), "{platform}");
        assert!(!platform.contains("x86_64") && !platform.contains("aarch64"));
    }
}
