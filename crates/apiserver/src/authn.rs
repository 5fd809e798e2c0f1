//! Authentication: client certificates signed by the cluster CA and bearer tokens.
//!
//! The TLS layer has already verified any client certificate against the cluster CA (a
//! certificate from another CA fails the handshake), so here a certificate only needs
//! reading: CommonName is the user, each Organization a group, as in Kubernetes. Bearer
//! tokens are the node token and the static token file. A request with neither is
//! anonymous, which only the health and version endpoints accept; everything else answers
//! 401 Unauthorized.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::AUTHORIZATION;

use crate::status::ApiError;

/// Every authenticated user is in this group, as in Kubernetes.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The user the node token authenticates as.
pub const NODE_USER: &str = "flotilla:node";
pub const NODES_GROUP: &str = "system:nodes";

/// The authenticated user, placed in each request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user with `groups` plus `system:authenticated`.
    pub fn authenticated(
        name: impl Into<String>,
        groups: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut groups: Vec<String> = groups.into_iter().collect();
        if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.to_string());
        }
        Self {
            name: name.into(),
            groups,
        }
    }
}

/// What the TLS layer learnt about a connection; the server puts it into every request's
/// extensions before authentication runs.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    pub remote: Option<std::net::SocketAddr>,
    /// The user named by a verified client certificate, if the client sent one.
    pub client_certificate_user: Option<UserInfo>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("client certificate: {0}")]
    Certificate(String),
    #[error("token file {path}: {source}")]
    TokenFileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path}, line {line}: {reason}")]
    TokenFileFormat {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

/// Why a request's credentials were refused. Both answer 401 Unauthorized; the reason only
/// goes to the log, so that clients cannot probe which tokens exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the Authorization header is not a bearer token")]
    MalformedAuthorization,
    #[error("unknown bearer token")]
    UnknownToken,
}

/// Reads the user from a client certificate (DER): CN = user, O = groups.
pub fn user_from_certificate(der: &[u8]) -> Result<UserInfo, AuthnError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| AuthnError::Certificate(e.to_string()))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or_else(|| AuthnError::Certificate("no CommonName".into()))?;
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect::<Vec<_>>();
    Ok(UserInfo::authenticated(name, groups))
}

/// Parses Kubernetes' static token file: one `token,user,uid[,"group1,group2"]` per line.
/// Later lines win over earlier ones with the same token, as in kube-apiserver.
pub fn parse_token_file(path: &Path, text: &str) -> Result<Vec<(String, UserInfo)>, AuthnError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| AuthnError::TokenFileFormat {
            path: path.to_path_buf(),
            line: e.position().map_or(0, |p| p.line()),
            reason: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() < 3 {
            return Err(AuthnError::TokenFileFormat {
                path: path.to_path_buf(),
                line,
                reason: format!(
                    "must have at least 3 columns (token, user name, user uid), found {}",
                    record.len()
                ),
            });
        }
        let (token, user) = (&record[0], &record[1]);
        if token.is_empty() || user.is_empty() {
            return Err(AuthnError::TokenFileFormat {
                path: path.to_path_buf(),
                line,
                reason: "empty token or user name".into(),
            });
        }
        let groups = record
            .get(3)
            .into_iter()
            .flat_map(|g| g.split(','))
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string);
        out.push((token.to_string(), UserInfo::authenticated(user, groups)));
    }
    Ok(out)
}

/// Decides who a request comes from.
#[derive(Debug, Default)]
pub struct Authenticator {
    tokens: HashMap<String, UserInfo>,
}

impl Authenticator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts the node token as `flotilla:node` in `system:nodes`.
    pub fn with_node_token(mut self, token: &str) -> Self {
        self.tokens.insert(
            token.to_string(),
            UserInfo::authenticated(NODE_USER, [NODES_GROUP.to_string()]),
        );
        self
    }

    pub fn with_token(mut self, token: impl Into<String>, user: UserInfo) -> Self {
        self.tokens.insert(token.into(), user);
        self
    }

    /// Adds every token of a static token file.
    pub fn with_token_file(mut self, path: &Path) -> Result<Self, AuthnError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthnError::TokenFileRead {
            path: path.to_path_buf(),
            source,
        })?;
        let entries = parse_token_file(path, &text)?;
        tracing::info!(path = %path.display(), tokens = entries.len(), "loaded static tokens");
        self.tokens.extend(entries);
        Ok(self)
    }

    /// The user a request authenticates as; `Ok(None)` for an anonymous request.
    /// A bearer token that matches nothing is an error even when a certificate is present,
    /// as in Kubernetes, where any failing credential fails the request.
    pub fn authenticate(
        &self,
        headers: &http::HeaderMap,
        connection: Option<&ConnectionInfo>,
    ) -> Result<Option<UserInfo>, Refused> {
        if let Some(value) = headers.get(AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(bearer_token)
                .ok_or(Refused::MalformedAuthorization)?;
            return self
                .tokens
                .get(token)
                .cloned()
                .map(Some)
                .ok_or(Refused::UnknownToken);
        }
        Ok(connection.and_then(|c| c.client_certificate_user.clone()))
    }
}

fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Paths that anonymous clients may read, as Kubernetes' `system:public-info-viewer` allows.
pub fn is_public_path(path: &str) -> bool {
    ["/healthz", "/livez", "/readyz", "/version"]
        .iter()
        .any(|p| {
            path == *p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// Axum middleware: authenticates the request and puts its [`UserInfo`] into the request
/// extensions; anonymous requests get through only to public paths.
pub async fn middleware(
    State(authn): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let connection = req.extensions().get::<ConnectionInfo>();
    match authn.authenticate(req.headers(), connection) {
        Ok(Some(user)) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Ok(None) if is_public_path(req.uri().path()) => next.run(req).await,
        Ok(None) => {
            tracing::debug!(path = req.uri().path(), "anonymous request refused");
            ApiError::unauthorized().into_response()
        }
        Err(why) => {
            tracing::debug!(path = req.uri().path(), %why, "credentials refused");
            ApiError::unauthorized().into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertificateAuthority, LeafProfile};

    fn headers(auth: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn token_file_reads_kubernetes_csv() {
        let text = "t1,alice,u1,\"dev,ops\"\n\n t2 , bob , u2\nt3,carol,u3,\"\"\n";
        let entries = parse_token_file(Path::new("tokens.csv"), text).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].0, "t1");
        assert_eq!(entries[0].1.name, "alice");
        assert_eq!(entries[0].1.groups, ["dev", "ops", AUTHENTICATED_GROUP]);
        assert_eq!(entries[1].0, "t2");
        assert_eq!(entries[1].1.name, "bob");
        assert_eq!(entries[2].1.groups, [AUTHENTICATED_GROUP]);
    }

    #[test]
    fn token_file_with_too_few_columns_is_a_typed_error() {
        let err = parse_token_file(Path::new("t.csv"), "t1,alice,u1\nt2,bob\n").unwrap_err();
        match err {
            AuthnError::TokenFileFormat { line, .. } => assert_eq!(line, 2),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bearer_tokens_authenticate_and_unknown_ones_fail() {
        let authn = Authenticator::new().with_node_token("nodetok").with_token(
            "s3cret",
            UserInfo::authenticated("alice", ["dev".to_string()]),
        );
        let node = authn
            .authenticate(&headers("Bearer nodetok"), None)
            .unwrap()
            .unwrap();
        assert_eq!(node.name, NODE_USER);
        assert!(node.groups.contains(&NODES_GROUP.to_string()));
        let alice = authn
            .authenticate(&headers("bearer s3cret"), None)
            .unwrap()
            .unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(
            authn.authenticate(&headers("Bearer wrong"), None),
            Err(Refused::UnknownToken)
        );
        assert_eq!(
            authn.authenticate(&headers("Basic abc"), None),
            Err(Refused::MalformedAuthorization)
        );
        assert_eq!(
            authn.authenticate(&http::HeaderMap::new(), None).unwrap(),
            None
        );
    }

    #[test]
    fn certificate_user_comes_from_cn_and_o() {
        let ca = CertificateAuthority::generate("test-ca").unwrap();
        let pair = ca
            .issue(&LeafProfile::Client {
                user: "admin".into(),
                group: Some("system:masters".into()),
            })
            .unwrap();
        let der = x509_parser::pem::parse_x509_pem(pair.cert_pem.as_bytes())
            .unwrap()
            .1
            .contents;
        let user = user_from_certificate(&der).unwrap();
        assert_eq!(user.name, "admin");
        assert_eq!(user.groups, ["system:masters", AUTHENTICATED_GROUP]);

        let conn = ConnectionInfo {
            remote: None,
            client_certificate_user: Some(user.clone()),
        };
        let authn = Authenticator::new();
        assert_eq!(
            authn
                .authenticate(&http::HeaderMap::new(), Some(&conn))
                .unwrap(),
            Some(user)
        );
        assert!(user_from_certificate(b"garbage").is_err());
    }

    #[test]
    fn only_health_and_version_are_public() {
        for p in ["/healthz", "/livez", "/readyz", "/version", "/readyz/ping"] {
            assert!(is_public_path(p), "{p}");
        }
        for p in [
            "/api",
            "/apis",
            "/versionx",
            "/healthzz",
            "/api/v1/namespaces",
        ] {
            assert!(!is_public_path(p), "{p}");
        }
    }
}
