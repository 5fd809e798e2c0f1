//! Joining a cluster the k3s way: the join token pins the cluster CA.
//!
//! The server writes a "full" token, `K10<sha256 hex of the CA PEM>::node:<secret>`. The
//! agent fetches the CA from the API server's unauthenticated `GET /cacerts` (over TLS it
//! cannot verify yet) and accepts it only if its hash matches the token; from then on every
//! request is verified against that CA and authenticated with the secret. A bare secret is
//! accepted too: with `--ca-file` the CA comes from the file, otherwise the served CA is
//! trusted on first use, with a warning.

use std::path::Path;

use http::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use super::NodeError;

/// Version prefix of full tokens, as k3s writes it.
const TOKEN_PREFIX: &str = "K10";

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// sha256 of the CA PEM, lower-case hex, when the token pins it.
    pub ca_hash: Option<String>,
    /// The bearer secret the API server authenticates nodes with.
    pub secret: String,
}

impl std::str::FromStr for JoinToken {
    type Err = NodeError;

    fn from_str(s: &str) -> Result<Self, NodeError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(NodeError::Token("the token is empty".into()));
        }
        let Some(rest) = s.strip_prefix(TOKEN_PREFIX).filter(|_| s.contains("::")) else {
            return Ok(JoinToken {
                ca_hash: None,
                secret: s.to_string(),
            });
        };
        let (hash, creds) = rest
            .split_once("::")
            .ok_or_else(|| NodeError::Token("missing '::' after the CA hash".into()))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NodeError::Token(
                "the CA hash must be 64 hexadecimal digits".into(),
            ));
        }
        // `node:<secret>`; k3s also allows `<user>:<password>`, whose password is the secret.
        let secret = creds.split_once(':').map_or(creds, |(_, p)| p);
        if secret.is_empty() {
            return Err(NodeError::Token("the token has no secret".into()));
        }
        Ok(JoinToken {
            ca_hash: Some(hash.to_ascii_lowercase()),
            secret: secret.to_string(),
        })
    }
}

/// sha256 of `ca_pem`'s bytes, lower-case hex.
pub fn ca_hash(ca_pem: &str) -> String {
    hex::encode(Sha256::digest(ca_pem.as_bytes()))
}

/// The full token for a node secret and the cluster CA, as the server prints it.
pub fn full_token(ca_pem: &str, secret: &str) -> String {
    format!("{TOKEN_PREFIX}{}::node:{secret}", ca_hash(ca_pem))
}

/// The cluster CA as `/cacerts` serves it, verified against the token (or `ca_file`).
pub async fn fetch_cluster_ca(
    server: &str,
    token: &JoinToken,
    ca_file: Option<&Path>,
) -> Result<String, NodeError> {
    if let Some(file) = ca_file {
        let pem = std::fs::read_to_string(file)
            .map_err(|e| NodeError::io(format!("reading {}", file.display()), e))?;
        if let Some(want) = &token.ca_hash {
            if ca_hash(&pem) != *want {
                return Err(NodeError::ClusterCa(format!(
                    "{} does not match the CA hash in the token",
                    file.display()
                )));
            }
        }
        return Ok(pem);
    }
    let mut config = kube::Config::new(parse_url(server)?);
    // Only to read the CA, which is then checked against the token before any use.
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config)?;
    let request = http::Request::get("/cacerts")
        .body(Vec::new())
        .map_err(|e| NodeError::ClusterCa(e.to_string()))?;
    let pem = client.request_text(request).await?;
    match &token.ca_hash {
        Some(want) => {
            let got = ca_hash(&pem);
            if got != *want {
                return Err(NodeError::ClusterCa(format!(
                    "the server's CA hashes to {got}, the token expects {want}: not joining"
                )));
            }
        }
        None => tracing::warn!(
            ca_hash = %ca_hash(&pem),
            "the token pins no CA: trusting the server's CA on first use (use the K10… token or --ca-file)"
        ),
    }
    Ok(pem)
}

fn parse_url(server: &str) -> Result<http::Uri, NodeError> {
    server
        .parse()
        .map_err(|e| NodeError::ClusterCa(format!("bad server URL {server:?}: {e}")))
}

/// A client for `server` that verifies it against `ca_pem` and authenticates with the
/// token's secret.
pub fn client(server: &str, ca_pem: &str, token: &JoinToken) -> Result<kube::Client, NodeError> {
    let ders = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NodeError::ClusterCa(format!("the CA is not PEM: {e}")))?;
    if ders.is_empty() {
        return Err(NodeError::ClusterCa("the CA holds no certificate".into()));
    }
    let mut config = kube::Config::new(parse_url(server)?);
    config.root_cert = Some(ders);
    let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.secret))
        .map_err(|_| NodeError::Token("the secret is not a valid header value".into()))?;
    bearer.set_sensitive(true);
    config
        .headers
        .push((HeaderName::from_static("authorization"), bearer));
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_full_token_round_trips() {
        let t = full_token(PEM, "s3cret");
        assert!(t.starts_with("K10"));
        let parsed: JoinToken = t.parse().unwrap();
        assert_eq!(parsed.secret, "s3cret");
        assert_eq!(parsed.ca_hash.as_deref(), Some(ca_hash(PEM).as_str()));
        assert_eq!(ca_hash(PEM).len(), 64);
    }

    #[test]
    fn a_bare_secret_pins_nothing() {
        let parsed: JoinToken = "  abcdef0123 \n".parse().unwrap();
        assert_eq!(parsed.secret, "abcdef0123");
        assert_eq!(parsed.ca_hash, None);
    }

    #[test]
    fn malformed_tokens_are_typed_errors() {
        for bad in [
            "",
            "K10abc::node:x",
            "K10zz00000000000000000000000000000000000000000000000000000000000000::node:x",
            &format!("K10{}::node:", "a".repeat(64)),
        ] {
            assert!(
                matches!(bad.parse::<JoinToken>(), Err(NodeError::Token(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_ca_file_must_match_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.crt");
        std::fs::write(&file, PEM).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let good: JoinToken = full_token(PEM, "x").parse().unwrap();
        let got = rt
            .block_on(fetch_cluster_ca("https://127.0.0.1:1", &good, Some(&file)))
            .unwrap();
        assert_eq!(got, PEM);
        let other: JoinToken = full_token("other", "x").parse().unwrap();
        let err = rt
            .block_on(fetch_cluster_ca("https://127.0.0.1:1", &other, Some(&file)))
            .unwrap_err();
        assert!(matches!(err, NodeError::ClusterCa(_)), "{err}");
    }

    #[test]
    fn a_client_needs_a_real_ca() {
        let t: JoinToken = "x".parse().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        assert!(client("https://127.0.0.1:1", "no pem here", &t).is_err());
        assert!(client("not a url at all \u{0}", PEM, &t).is_err());
    }
}
