//! The node endpoint's TLS: a self-signed serving certificate made at start (the API
//! server does not verify it, as kube-apiserver by default does not verify kubelets), and
//! client certificates that must chain to the cluster CA and name the API server.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

use super::ServerError;

fn tls(e: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(e.to_string())
}

/// TLS for the node endpoint: HTTP/1.1 only (exec, attach and port-forward upgrade it),
/// a client certificate from `client_ca_pem` required.
pub fn server_config(
    node_name: &str,
    listen: IpAddr,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let mut names = vec![
        node_name.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    if !listen.is_unspecified() && !names.contains(&listen.to_string()) {
        names.push(listen.to_string());
    }
    names.retain(|n| !n.is_empty());
    let cert = rcgen::generate_simple_self_signed(names).map_err(tls)?;
    let chain = vec![cert.cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(ca.map_err(tls)?).map_err(tls)?;
    }
    if roots.is_empty() {
        return Err(ServerError::Tls(
            "the client CA bundle holds no certificate".into(),
        ));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(tls)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CommonName of a client certificate.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    cn
}
