//! Image references as Docker and containerd read them: `busybox` is
//! `docker.io/library/busybox:latest`, a digest pins the content, and which registry hosts
//! speak plain HTTP.

use std::net::IpAddr;

use oci_client::Reference;

use crate::cri::{RegistryAuth, RuntimeError};

/// Parses and normalises `reference` (`busybox` → `docker.io/library/busybox:latest`).
pub fn parse(reference: &str) -> Result<Reference, RuntimeError> {
    let invalid = |message: String| RuntimeError::InvalidImageReference {
        reference: reference.to_string(),
        message,
    };
    let r = reference
        .trim()
        .parse::<Reference>()
        .map_err(|e| invalid(e.to_string()))?;
    // The grammar lets a first component without a dot pass as a Docker Hub path; Docker
    // still insists repository names are lowercase.
    if r.repository().bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid("repository name must be lowercase".into()));
    }
    Ok(r)
}

/// The normalised text of `reference`, as records and `Image::reference` store it.
pub fn normalize(reference: &str) -> Result<String, RuntimeError> {
    parse(reference).map(|r| r.whole())
}

/// `registry/repository` without tag or digest: the repo of a `repo@sha256:…` digest.
pub fn repository_name(r: &Reference) -> String {
    format!("{}/{}", r.registry(), r.repository())
}

/// Loopback hosts (`127.0.0.0/8`, `localhost`, `[::1]`, with or without a port) are reached
/// over plain HTTP by default, as containerd does.
pub fn is_loopback(host: &str) -> bool {
    let name = strip_port(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Credentials for `host` among a pod's pull secrets. Servers are matched the way docker
/// config files write them: scheme and path dropped, `index.docker.io` meaning `docker.io`.
pub fn auth_for<'a>(auth: &'a [RegistryAuth], host: &str) -> Option<&'a RegistryAuth> {
    let want = canonical_host(host);
    auth.iter().find(|a| canonical_host(&a.server) == want)
}

fn canonical_host(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match s.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        assert_eq!(
            normalize("busybox").expect("ok"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("nginx:1.25").expect("ok"),
            "docker.io/library/nginx:1.25"
        );
        assert_eq!(
            normalize("bitnami/redis").expect("ok"),
            "docker.io/bitnami/redis:latest"
        );
        assert_eq!(
            normalize("index.docker.io/library/busybox:1").expect("ok"),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            normalize("127.0.0.1:5000/a/b:v2").expect("ok"),
            "127.0.0.1:5000/a/b:v2"
        );
        assert_eq!(normalize("localhost/x").expect("ok"), "localhost/x:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize(&format!("busybox@{d}")).expect("ok"),
            format!("docker.io/library/busybox@{d}")
        );
        let r = parse(&format!("registry.k8s.io/pause:3.9@{d}")).expect("ok");
        assert_eq!(r.tag(), Some("3.9"));
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(repository_name(&r), "registry.k8s.io/pause");
    }

    #[test]
    fn bad_references_are_typed_errors() {
        for bad in [
            "",
            "UPPER/case",
            "busybox@sha256:abc",
            "a b",
            "busybox:",
            ":tag",
            "busybox@md5:0123456789abcdef0123456789abcdef",
        ] {
            assert!(
                matches!(
                    normalize(bad),
                    Err(RuntimeError::InvalidImageReference { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost",
            "localhost:80",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "mirror.test",
            "localhost.example",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn credentials_match_by_host() {
        let auth = vec![
            RegistryAuth {
                server: "https://index.docker.io/v1/".into(),
                username: "u".into(),
                password: "p".into(),
            },
            RegistryAuth {
                server: "registry.local:5000".into(),
                username: "l".into(),
                password: "q".into(),
            },
        ];
        assert_eq!(
            auth_for(&auth, "docker.io").map(|a| a.username.as_str()),
            Some("u")
        );
        assert_eq!(
            auth_for(&auth, "registry.local:5000").map(|a| a.username.as_str()),
            Some("l")
        );
        assert!(auth_for(&auth, "registry.local").is_none());
    }
}
