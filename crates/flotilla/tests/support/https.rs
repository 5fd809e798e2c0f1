//! A small blocking HTTPS client for tests: trusts the cluster CA, presents a client
//! certificate or a bearer token (or nothing), speaks HTTP/2 or HTTP/1.1 as ALPN decides.
//! Each call runs on its own thread and runtime, so it works from plain and async tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[derive(Clone)]
pub enum Identity {
    Anonymous,
    Certificate { cert_pem: String, key_pem: String },
    Bearer(String),
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

#[derive(Clone)]
pub struct HttpsClient {
    addr: SocketAddr,
    ca_pem: String,
    identity: Identity,
    alpn: Vec<Vec<u8>>,
    timeout: Duration,
}

impl HttpsClient {
    pub fn new(addr: SocketAddr, ca_pem: &str, identity: Identity) -> Self {
        Self {
            addr,
            ca_pem: ca_pem.to_string(),
            identity,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            timeout: Duration::from_secs(30),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Offers only HTTP/1.1 in ALPN.
    pub fn http1_only(mut self) -> Self {
        self.alpn = vec![b"http/1.1".to_vec()];
        self
    }

    pub fn get(&self, path: &str) -> Result<Response, String> {
        self.request("GET", path, None, Vec::new())
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Response, String> {
        let fut = self.send(
            method.to_string(),
            path.to_string(),
            content_type.map(str::to_string),
            body,
        );
        let timeout = self.timeout;
        block_on(async move {
            tokio::time::timeout(timeout, fut)
                .await
                .map_err(|_| format!("no answer within {timeout:?}"))?
        })
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots
                .add(cert.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Identity::Certificate { cert_pem, key_pem } => {
                let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let key =
                    PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| e.to_string())?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
    }

    fn send(
        &self,
        method: String,
        path: String,
        content_type: Option<String>,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Response, String>> + Send + 'static {
        let tls = self.tls_config();
        let addr = self.addr;
        let bearer = match &self.identity {
            Identity::Bearer(t) => Some(t.clone()),
            _ => None,
        };
        async move {
            let tls = tls?;
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            let name = ServerName::IpAddress(addr.ip().into());
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let uri = if h2 {
                format!("https://{addr}{path}")
            } else {
                path.clone()
            };
            let mut req = http::Request::builder()
                .method(method.as_str())
                .uri(uri)
                .header(http::header::HOST, addr.to_string());
            if let Some(t) = &bearer {
                req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            if let Some(ct) = &content_type {
                req = req.header(http::header::CONTENT_TYPE, ct);
            }
            let req = req
                .body(Full::new(bytes::Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let io = TokioIo::new(stream);
            let resp = if h2 {
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
                tokio::spawn(conn);
                sender.send_request(req).await
            } else {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
                tokio::spawn(conn);
                sender.send_request(req).await
            }
            .map_err(|e| format!("request: {e}"))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("response body: {e}"))?
                .to_bytes()
                .to_vec();
            Ok(Response {
                status: parts.status.as_u16(),
                version: parts.version,
                headers: parts.headers,
                body,
            })
        }
    }
}

/// Runs `fut` to completion on a fresh runtime in a scoped thread, so that it works both
/// inside and outside an async context.
pub fn block_on<T: Send>(fut: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a test runtime")
                .block_on(fut)
        })
        .join()
        .expect("the client thread panicked")
    })
}
