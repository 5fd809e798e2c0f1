//! The HTTP prober: one GET on a fresh connection (probes never reuse connections, as the
//! kubelet disables keep-alive for them), redirects followed only to the same host.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::probe::{dial_error, Outcome};

/// What the kubelet sends as User-Agent, so servers can tell probes from users.
pub const USER_AGENT: &str = "kube-probe/1.33";
/// The most of a response body kept for the probe's message.
const MAX_BODY: usize = 10 * 1024;
/// Go's http.Client stops after 10 redirects; the kubelet keeps that limit.
const MAX_REDIRECTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// The probe's `scheme` field: HTTP (the default) or HTTPS, case-insensitive as the
    /// kubelet lower-cases it.
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("http") => Ok(Scheme::Http),
            Some("https") => Ok(Scheme::Https),
            Some(other) => Err(format!("unsupported HTTP scheme {other:?}")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Path and query; a missing leading slash is added.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl HttpTarget {
    fn url(&self) -> String {
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        format!(
            "{}://{}{}",
            self.scheme.as_str(),
            host_port(&self.host, self.port),
            path
        )
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Runs one HTTP probe; the whole exchange, redirects included, is bounded by `timeout`.
pub async fn probe(target: &HttpTarget, timeout: Duration) -> Outcome {
    let url = target.url();
    match tokio::time::timeout(timeout, follow(target, url.clone())).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failure(format!(
            "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

async fn follow(target: &HttpTarget, first: String) -> Outcome {
    let mut url = first;
    let mut hops = 0;
    loop {
        let (status, body, location) = match get_once(target, &url).await {
            Ok(r) => r,
            Err(message) => return Outcome::Failure(message),
        };
        let redirect = status.is_redirection() && location.is_some();
        if let (true, Some(loc)) = (redirect, location) {
            let next = match resolve(&url, &loc) {
                Some(n) => n,
                None => return Outcome::Failure(format!("Get {url:?}: bad redirect {loc:?}")),
            };
            // A redirect elsewhere ends the chain: its 3xx is the answer, with a warning.
            if same_host(&url, &next) {
                hops += 1;
                if hops >= MAX_REDIRECTS {
                    return Outcome::Failure(format!(
                        "Get {next:?}: stopped after {MAX_REDIRECTS} redirects"
                    ));
                }
                url = next;
                continue;
            }
        }
        let code = status.as_u16();
        let text = String::from_utf8_lossy(&body).into_owned();
        return if (200..300).contains(&code) {
            Outcome::Success(text)
        } else if (300..400).contains(&code) {
            Outcome::Warning(format!("Probe terminated redirects, Response body: {text}"))
        } else {
            Outcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
        };
    }
}

fn same_host(a: &str, b: &str) -> bool {
    let host = |u: &str| {
        u.parse::<Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_string))
    };
    host(a) == host(b)
}

/// The absolute URL a `Location` header points to from `base`.
fn resolve(base: &str, location: &str) -> Option<String> {
    if location.contains("://") {
        return location.parse::<Uri>().ok().map(|u| u.to_string());
    }
    let base: Uri = base.parse().ok()?;
    let origin = format!("{}://{}", base.scheme_str()?, base.authority()?);
    if location.starts_with("//") {
        return Some(format!("{}:{location}", base.scheme_str()?));
    }
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let dir = base.path().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    Some(format!("{origin}{dir}/{location}"))
}

type Response = (StatusCode, Bytes, Option<String>);

async fn get_once(target: &HttpTarget, url: &str) -> Result<Response, String> {
    let uri: Uri = url.parse().map_err(|e| format!("parse {url:?}: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| format!("parse {url:?}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = host_port(&host, port);
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("Get {url:?}: {}", dial_error(&addr, &e)))?;
    let _ = tcp.set_nodelay(true);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut req = Request::get(path)
        .header(header::HOST, addr.clone())
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close");
    for (name, value) in &target.headers {
        let Some(h) = req.headers_mut() else { break };
        let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            header::HeaderValue::from_str(value),
        ) else {
            continue;
        };
        // A header the user sets replaces ours (Host and User-Agent included).
        h.insert(n, v);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("Get {url:?}: {e}"))?;
    if https {
        let tls = tls_connector()
            .connect(server_name(&host), tcp)
            .await
            .map_err(|e| format!("Get {url:?}: tls: {e}"))?;
        send(TokioIo::new(tls), req, url).await
    } else {
        send(TokioIo::new(tcp), req, url).await
    }
}

async fn send<T>(io: T, req: Request<Empty<Bytes>>, url: &str) -> Result<Response, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("Get {url:?}: {e}"))?;
    let driver = tokio::spawn(conn);
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Only the first 10 KiB count; a longer body is cut there, not refused.
        let mut body = Vec::new();
        let mut stream = resp.into_body();
        while let Some(frame) = stream.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                let room = MAX_BODY.saturating_sub(body.len());
                body.extend_from_slice(&data[..data.len().min(room)]);
                if body.len() >= MAX_BODY {
                    break;
                }
            }
        }
        Ok((status, Bytes::from(body), location))
    }
    .await;
    driver.abort();
    result
}

fn server_name(host: &str) -> rustls::pki_types::ServerName<'static> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
        Err(_) => rustls::pki_types::ServerName::try_from(host.to_string()).unwrap_or(
            rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        ),
    }
}

/// HTTPS probes do not verify the server's certificate, as the kubelet's
/// (`InsecureSkipVerify`): a pod's certificate is rarely for its IP.
fn tls_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyServerCert(provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        });
    match config {
        Ok(c) => tokio_rustls::TlsConnector::from(Arc::new(c)),
        // The ring provider always supports the default versions; keep a sane fallback.
        Err(_) => tokio_rustls::TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))))
                .with_no_client_auth(),
        )),
    }
}

/// Accepts any certificate chain but still checks the handshake signatures, so the
/// connection is at least to whoever holds the presented key.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_locations() {
        let base = "http://10.0.0.1:8080/a/b?x=1";
        assert_eq!(
            resolve(base, "/c").as_deref(),
            Some("http://10.0.0.1:8080/c")
        );
        assert_eq!(
            resolve(base, "c").as_deref(),
            Some("http://10.0.0.1:8080/a/c")
        );
        assert_eq!(
            resolve(base, "http://other:1/x").as_deref(),
            Some("http://other:1/x")
        );
        assert!(same_host(base, "http://10.0.0.1:9090/z"));
        assert!(!same_host(base, "http://10.0.0.2:8080/a"));
    }

    #[test]
    fn scheme_parses_case_insensitively() {
        assert_eq!(Scheme::parse(Some("HTTPS")), Ok(Scheme::Https));
        assert_eq!(Scheme::parse(None), Ok(Scheme::Http));
        assert!(Scheme::parse(Some("ftp")).is_err());
    }
}
