//! Authentication end to end: client certificates of the cluster CA, bearer tokens (node
//! token and token file), anonymous requests, and certificates from another CA.

mod support;

use apiserver::pki::{CertificateAuthority, LeafProfile};
use support::{Identity, Server, ServerOptions};

fn assert_unauthorized(r: &support::https::Response, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    let s = r.json();
    assert_eq!(s["kind"], "Status", "{what}");
    assert_eq!(s["reason"], "Unauthorized", "{what}");
    assert_eq!(s["code"], 401, "{what}");
}

#[test]
fn anonymous_requests_get_401_except_health_and_version() {
    let server = Server::start();
    let anon = server.client(Identity::Anonymous);
    for path in [
        "/api",
        "/apis",
        "/api/v1/namespaces",
        "/openapi/v3",
        "/no/such/path",
    ] {
        assert_unauthorized(&anon.get(path).unwrap(), path);
    }
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(anon.get(path).unwrap().status, 200, "{path}");
    }
    // A write without credentials is refused before its body is looked at.
    let r = anon
        .request(
            "POST",
            "/api/v1/namespaces",
            Some("application/json"),
            b"{}".to_vec(),
        )
        .unwrap();
    assert_unauthorized(&r, "anonymous POST");
}

#[test]
fn the_admin_certificate_authenticates() {
    let server = Server::start();
    let r = server.admin_client().get("/api/v1/namespaces").unwrap();
    assert_ne!(r.status, 401, "{}", r.text());
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let server = Server::start();
    let other = CertificateAuthority::generate("intruder-ca").unwrap();
    let pair = other
        .issue(&LeafProfile::Client {
            user: "admin".into(),
            group: Some("system:masters".into()),
        })
        .unwrap();
    let client = server.client(Identity::Certificate {
        cert_pem: pair.cert_pem,
        key_pem: pair.key_pem,
    });
    // Refused in the TLS handshake: no HTTP answer at all.
    let result = client.get("/api/v1/namespaces");
    assert!(
        result.is_err(),
        "got an answer: {:?}",
        result.map(|r| r.status)
    );
    // Health stays reachable without a certificate, so the refusal is about the certificate.
    assert_eq!(
        server
            .client(Identity::Anonymous)
            .get("/healthz")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn bearer_tokens_from_the_token_file_and_the_node_token_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "s3cret-alice,alice,1001,\"developers,ops\"\ns3cret-bob,bob,1002\n",
    )
    .unwrap();
    let server = Server::start_with(ServerOptions {
        token_auth_file: Some(tokens),
        ..ServerOptions::default()
    });
    for token in [
        "s3cret-alice".to_string(),
        "s3cret-bob".into(),
        server.node_token(),
    ] {
        let r = server
            .client(Identity::Bearer(token.clone()))
            .get("/api/v1/namespaces")
            .unwrap();
        assert_ne!(r.status, 401, "token {token}: {}", r.text());
    }
    // A wrong token fails, even on paths anonymous clients may read.
    let wrong = server.client(Identity::Bearer("not-a-token".into()));
    assert_unauthorized(&wrong.get("/api/v1/namespaces").unwrap(), "wrong token");
    assert_unauthorized(&wrong.get("/healthz").unwrap(), "wrong token on /healthz");
}

#[test]
fn a_malformed_token_file_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "only-a-token\n").unwrap();
    let out = std::process::Command::new(support::flotilla_bin())
        .arg("server")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--bind-address", "127.0.0.1", "--port", "0", "--no-agent"])
        .arg("--token-auth-file")
        .arg(&tokens)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 3 columns"), "{stderr}");
}
