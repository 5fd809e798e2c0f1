//! The API server's connection to a node's agent (kube-apiserver's kubelet client): finds
//! the Node's InternalIP and kubelet port, dials it over TLS with the API server's
//! node-client certificate, and speaks HTTP/1.1 with upgrades so that exec, attach and
//! port-forward can be spliced through.
//!
//! The node's serving certificate is not verified, as kube-apiserver does by default
//! (`--kubelet-certificate-authority` unset): agents generate their own.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::registry::{meta, ObjectRef};
use crate::state::ApiState;
use crate::status::ApiError;

/// The kubelet's default port, used when a Node does not report its endpoint.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
/// Dialing plus the TLS handshake; an unreachable node fails within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A plain GET (stats, a finished log) answers within this.
const GET_TIMEOUT: Duration = Duration::from_secs(30);

/// Reaches node agents on behalf of the API server.
pub struct NodeClient {
    state: Arc<ApiState>,
    /// None when the API server was configured without a node-client certificate.
    tls: Option<TlsConnector>,
}

impl NodeClient {
    /// Builds the TLS client from `state.config.node_client`. A server without that
    /// certificate still builds one; its requests answer 503.
    pub fn new(state: Arc<ApiState>) -> Result<Self, ApiError> {
        let tls = match &state.config.node_client {
            Some(pair) => Some(connector(&pair.cert_pem, &pair.key_pem)?),
            None => None,
        };
        Ok(Self { state, tls })
    }

    /// The address of a node's agent: its first InternalIP (else any address that is an IP)
    /// and `status.daemonEndpoints.kubeletEndpoint.Port`.
    pub async fn node_address(&self, node: &str) -> Result<SocketAddr, ApiError> {
        let info = self
            .state
            .catalogue
            .lookup("", "v1", "nodes")
            .ok_or_else(|| ApiError::internal("the catalogue has no nodes"))?;
        let r = ObjectRef::new(info, None, node);
        let (kv, _) = self
            .state
            .registry
            .store
            .get(&r.key(), None)
            .await
            .map_err(|e| ApiError::from_store(e, r.target()))?;
        let obj = meta::decode_kv(&kv.ok_or_else(|| ApiError::not_found(r.target()))?)?;
        address_of(&obj).ok_or_else(|| {
            ApiError::service_unavailable(format!("node {node:?} reports no usable address"))
        })
    }

    /// Opens a TLS connection to the node's agent and an HTTP/1.1 client over it.
    async fn connect(
        &self,
        node: &str,
    ) -> Result<(hyper::client::conn::http1::SendRequest<Body>, SocketAddr), ApiError> {
        let tls = self.tls.as_ref().ok_or_else(|| {
            ApiError::service_unavailable("the API server has no node client certificate")
        })?;
        let addr = self.node_address(node).await?;
        let unreachable = |why: String| {
            ApiError::new(
                502,
                "ServiceUnavailable",
                format!("error dialing backend: node {node:?} at {addr}: {why}"),
            )
        };
        let dial = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::IpAddress(addr.ip().into());
            tls.connect(name, tcp)
                .await
                .map_err(|e| unreachable(e.to_string()))
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, dial)
            .await
            .map_err(|_| unreachable("timed out".into()))??;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "node connection ended");
            }
        });
        Ok((send, addr))
    }

    /// Sends `req` (path and query relative to the agent's root) to the node. The answer's
    /// body streams; a 101 answer can be upgraded with `hyper::upgrade::on`.
    pub async fn send(
        &self,
        node: &str,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, ApiError> {
        let (mut send, addr) = self.connect(node).await?;
        if let Ok(host) = http::HeaderValue::from_str(&addr.to_string()) {
            req.headers_mut().insert(http::header::HOST, host);
        }
        send.send_request(req).await.map_err(|e| {
            ApiError::new(
                502,
                "ServiceUnavailable",
                format!("error talking to node {node:?}: {e}"),
            )
        })
    }

    /// GETs `path_and_query` from the node's agent and returns the body of a 2xx answer;
    /// other answers become an ApiError with the agent's code and text.
    pub async fn get(&self, node: &str, path_and_query: &str) -> Result<Bytes, ApiError> {
        let req = Request::get(path_and_query)
            .body(Body::empty())
            .map_err(|e| ApiError::bad_request(format!("invalid node path: {e}")))?;
        let work = async {
            let resp = self.send(node, req).await?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ApiError::new(502, "ServiceUnavailable", e.to_string()))?
                .to_bytes();
            if status.is_success() {
                Ok(body)
            } else {
                Err(ApiError::new(
                    status.as_u16(),
                    reason_for(status.as_u16()),
                    String::from_utf8_lossy(&body).trim().to_string(),
                ))
            }
        };
        tokio::time::timeout(GET_TIMEOUT, work)
            .await
            .map_err(|_| ApiError::new(504, "Timeout", format!("node {node:?} did not answer")))?
    }
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        503 | 502 => "ServiceUnavailable",
        _ => "InternalError",
    }
}

/// InternalIP first, then ExternalIP, then any address that parses as an IP.
fn address_of(node: &Value) -> Option<SocketAddr> {
    let addresses = node.pointer("/status/addresses")?.as_array()?;
    let pick = |kind: Option<&str>| {
        addresses.iter().find_map(|a| {
            let matches = kind.is_none_or(|k| a.get("type").and_then(Value::as_str) == Some(k));
            if !matches {
                return None;
            }
            a.get("address")?.as_str()?.parse::<IpAddr>().ok()
        })
    };
    let ip = pick(Some("InternalIP"))
        .or_else(|| pick(Some("ExternalIP")))
        .or_else(|| pick(None))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some(SocketAddr::new(ip, port))
}

fn connector(cert_pem: &str, key_pem: &str) -> Result<TlsConnector, ApiError> {
    let bad = |e: &dyn std::fmt::Display| ApiError::internal(format!("node client TLS: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad(&e))?;
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)))
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad(&e))?;
    // ALPN stays unset: the agent speaks HTTP/1.1, which upgrades need.
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Accepts whatever certificate the node serves, but still checks that the node holds its
/// key (the handshake signatures), so the session keys are the node's.
#[derive(Debug)]
struct AnyServerCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn internal_ip_and_kubelet_port_are_preferred() {
        let node = json!({"status": {
            "addresses": [
                {"type": "Hostname", "address": "node-a"},
                {"type": "ExternalIP", "address": "192.0.2.1"},
                {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 41000}}}});
        assert_eq!(address_of(&node), Some("10.0.0.5:41000".parse().unwrap()));
    }

    #[test]
    fn missing_port_is_the_kubelet_default_and_no_ip_is_none() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "127.0.0.1"}]}});
        assert_eq!(address_of(&node), Some("127.0.0.1:10250".parse().unwrap()));
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "node-a"}]}});
        assert_eq!(address_of(&node), None);
        assert_eq!(address_of(&json!({})), None);
    }
}
