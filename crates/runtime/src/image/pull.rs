//! Talking to registries: which endpoints serve a registry (its mirrors in order, then the
//! registry itself), over which scheme, and how their failures map onto the CRI's errors.

use std::time::Duration;

use std::path::{Path, PathBuf};

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference};

use super::reference::{auth_for, is_loopback};
use super::ImageStoreConfig;
use crate::cri::{RegistryAuth, RuntimeError};

const MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

/// One place to fetch a registry's content from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    pub plain_http: bool,
    pub mirror: bool,
    /// PEM CA certificates trusted for this host besides the public roots.
    pub ca_files: Vec<PathBuf>,
}

/// `ROOT/certs.d/<host[:port]>/*.crt`: CAs trusted for one registry host, as Docker's
/// `/etc/docker/certs.d` lays them out.
pub fn certs_dir(config: &ImageStoreConfig, host: &str) -> PathBuf {
    config.root.join("certs.d").join(host)
}

fn ca_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .collect();
    files.sort();
    files
}

/// The mirrors configured for `registry`, in order, then `registry` itself.
pub fn endpoints(config: &ImageStoreConfig, registry: &str) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = config
        .mirrors
        .get(registry)
        .into_iter()
        .flatten()
        .map(|m| parse_endpoint(config, m, true))
        .collect();
    let ca_files = ca_files(&certs_dir(config, registry));
    out.push(Endpoint {
        host: registry.to_string(),
        plain_http: plain_http(config, registry, &ca_files),
        mirror: false,
        ca_files,
    });
    out
}

/// Insecure hosts and loopback speak plain HTTP, unless CAs are configured for the host
/// (then it serves TLS, as Docker concludes from a certs.d entry).
fn plain_http(config: &ImageStoreConfig, host: &str, ca_files: &[PathBuf]) -> bool {
    config.insecure_registries.iter().any(|h| h == host)
        || (is_loopback(host) && ca_files.is_empty())
}

/// `http://host:port`, `https://host` or a bare `host:port` (scheme by the loopback /
/// insecure rule). A path after the host (`/v2`) is ignored: the API root is fixed.
fn parse_endpoint(config: &ImageStoreConfig, endpoint: &str, mirror: bool) -> Endpoint {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, endpoint),
    };
    let host = rest.split('/').next().unwrap_or(rest).to_string();
    let ca_files = ca_files(&certs_dir(config, &host));
    let plain = match scheme.as_deref() {
        Some("http") => true,
        Some(_) => false,
        None => plain_http(config, &host, &ca_files),
    };
    Endpoint {
        host,
        plain_http: plain,
        mirror,
        ca_files,
    }
}

/// The manifest an image was resolved to, and where it came from.
pub struct Resolved {
    pub client: Client,
    /// The reference to fetch blobs with (pointing at the mirror when one served it).
    pub reference: Reference,
    pub endpoint: Endpoint,
    /// Digest of what the tag points at (an index for multi-arch images): the repo digest.
    pub top_digest: String,
    pub top_bytes: Vec<u8>,
    /// The platform manifest (same as the top one for single-arch images).
    pub manifest_digest: String,
    pub manifest_bytes: Vec<u8>,
    pub manifest: OciImageManifest,
}

/// Resolves `r` to a linux/<host arch> image manifest, trying each endpoint in order. The
/// error is the last endpoint's (the registry's own), as containerd reports it.
pub async fn resolve(
    config: &ImageStoreConfig,
    r: &Reference,
    auth: &[RegistryAuth],
) -> Result<Resolved, RuntimeError> {
    let image = r.whole();
    let mut last = None;
    for endpoint in endpoints(config, r.registry()) {
        match resolve_at(&endpoint, r, auth).await {
            Ok(res) => return Ok(res),
            Err(e) => {
                tracing::debug!(image = %image, endpoint = %endpoint.host, error = %e, "endpoint failed");
                last = Some(map_error(&image, e));
            }
        }
    }
    Err(last.unwrap_or_else(|| RuntimeError::RegistryUnavailable {
        image,
        message: "no endpoint".into(),
    }))
}

fn client_for(endpoint: &Endpoint) -> Result<Client, OciDistributionError> {
    let mut extra_root_certificates = Vec::new();
    for f in &endpoint.ca_files {
        extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data: std::fs::read(f)?,
        });
    }
    // try_from, not new: new() falls back to a default client (no CAs) on a bad certificate.
    Client::try_from(ClientConfig {
        protocol: if endpoint.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        // A registry that is not there must fail fast: the agent retries with back-off.
        connect_timeout: Some(Duration::from_secs(5)),
        read_timeout: Some(Duration::from_secs(60)),
        platform_resolver: None,
        extra_root_certificates,
        ..Default::default()
    })
}

async fn resolve_at(
    endpoint: &Endpoint,
    r: &Reference,
    auth: &[RegistryAuth],
) -> Result<Resolved, OciDistributionError> {
    let client = client_for(endpoint)?;
    let mut reference = r.clone();
    if endpoint.mirror {
        reference.set_mirror_registry(endpoint.host.clone());
    }
    let creds = match auth_for(auth, &endpoint.host) {
        Some(a) => OciAuth::Basic(a.username.clone(), a.password.clone()),
        None => OciAuth::Anonymous,
    };
    let (top_bytes, top_digest) = client
        .pull_manifest_raw(&reference, &creds, MANIFEST_TYPES)
        .await?;
    let (manifest_bytes, manifest_digest) = if is_index(&top_bytes) {
        let index: OciImageIndex = serde_json::from_slice(&top_bytes)
            .map_err(|e| OciDistributionError::ManifestParsingError(e.to_string()))?;
        let digest = select_platform(&index.manifests).ok_or_else(|| {
            OciDistributionError::ImageManifestNotFoundError(format!(
                "no linux/{} image in the index",
                host_arch()
            ))
        })?;
        let by_digest = reference.clone_with_digest(digest);
        client
            .pull_manifest_raw(&by_digest, &creds, MANIFEST_TYPES)
            .await?
    } else {
        (top_bytes.clone(), top_digest.clone())
    };
    let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| OciDistributionError::ManifestParsingError(e.to_string()))?;
    Ok(Resolved {
        client,
        reference,
        endpoint: endpoint.clone(),
        top_digest,
        top_bytes,
        manifest_digest,
        manifest_bytes,
        manifest,
    })
}

fn is_index(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .map(|v| v.get("manifests").is_some())
        .unwrap_or(false)
}

/// The Go name of this machine's architecture, as image platforms write it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The first linux/<host arch> entry of an index.
pub fn select_platform(entries: &[ImageIndexEntry]) -> Option<String> {
    entries
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
        })
        .map(|e| e.digest.clone())
}

/// Downloads a blob into `out`; oci-client verifies it against the descriptor's digest.
pub async fn fetch_blob(
    resolved: &Resolved,
    descriptor: &OciDescriptor,
    out: &mut tokio::fs::File,
) -> Result<(), RuntimeError> {
    resolved
        .client
        .pull_blob(&resolved.reference, descriptor, out)
        .await
        .map_err(|e| map_error(&resolved.reference.whole(), e))
}

/// Classifies a registry failure the way the kubelet needs it: not found (the image is
/// wrong), unauthorized (the secret is), unavailable (the registry is down: retry).
pub fn map_error(image: &str, e: OciDistributionError) -> RuntimeError {
    let image = image.to_string();
    let message = e.to_string();
    match &e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::ManifestBlobUnknown
                )
            }) {
                RuntimeError::ImageNotFound { image, message }
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                RuntimeError::Unauthorized { image, message }
            } else {
                RuntimeError::RegistryUnavailable { image, message }
            }
        }
        OciDistributionError::ServerError { code, .. } => match code {
            404 => RuntimeError::ImageNotFound { image, message },
            401 | 403 => RuntimeError::Unauthorized { image, message },
            _ => RuntimeError::RegistryUnavailable { image, message },
        },
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => {
            RuntimeError::Unauthorized { image, message }
        }
        OciDistributionError::ImageManifestNotFoundError(_) => {
            RuntimeError::ImageNotFound { image, message }
        }
        OciDistributionError::RequestError(re) => match re.status().map(|s| s.as_u16()) {
            Some(404) => RuntimeError::ImageNotFound { image, message },
            Some(401) | Some(403) => RuntimeError::Unauthorized { image, message },
            _ => RuntimeError::RegistryUnavailable { image, message },
        },
        OciDistributionError::DigestError(_)
        | OciDistributionError::ManifestParsingError(_)
        | OciDistributionError::VersionedParsingError(_)
        | OciDistributionError::UnsupportedMediaTypeError(_)
        | OciDistributionError::UnsupportedSchemaVersionError(_) => RuntimeError::Invalid {
            what: format!("image {image}"),
            message,
        },
        _ => RuntimeError::RegistryUnavailable { image, message },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config() -> ImageStoreConfig {
        let mut mirrors = BTreeMap::new();
        mirrors.insert(
            "docker.io".to_string(),
            vec![
                "http://127.0.0.1:5000".to_string(),
                "mirror.example:443/v2".to_string(),
            ],
        );
        ImageStoreConfig {
            root: "/nonexistent".into(),
            mirrors,
            insecure_registries: vec!["registry.lan:5000".into()],
        }
    }

    #[test]
    fn mirrors_first_then_upstream_with_schemes() {
        let c = config();
        let eps = endpoints(&c, "docker.io");
        let got: Vec<(&str, bool, bool)> = eps
            .iter()
            .map(|e| (e.host.as_str(), e.plain_http, e.mirror))
            .collect();
        assert_eq!(
            got,
            vec![
                ("127.0.0.1:5000", true, true),
                ("mirror.example:443", false, true),
                ("docker.io", false, false),
            ]
        );
        assert!(endpoints(&c, "registry.lan:5000")[0].plain_http);
        assert!(endpoints(&c, "localhost:5000")[0].plain_http);
        assert!(!endpoints(&c, "quay.io")[0].plain_http);
    }

    #[test]
    fn a_certs_d_entry_makes_a_loopback_host_tls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = ImageStoreConfig {
            root: dir.path().to_path_buf(),
            ..Default::default()
        };
        assert!(endpoints(&c, "127.0.0.1:5443")[0].plain_http);
        let certs = certs_dir(&c, "127.0.0.1:5443");
        std::fs::create_dir_all(&certs).expect("mkdir");
        std::fs::write(certs.join("ca.crt"), b"pem").expect("write");
        std::fs::write(certs.join("README"), b"ignored").expect("write");
        let ep = &endpoints(&c, "127.0.0.1:5443")[0];
        assert!(!ep.plain_http);
        assert_eq!(ep.ca_files, vec![certs.join("ca.crt")]);
    }

    #[test]
    fn platform_selection_picks_host_arch() {
        let entry = |arch: &str, digest: &str| ImageIndexEntry {
            media_type: OCI_IMAGE_MEDIA_TYPE.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(oci_client::manifest::Platform {
                architecture: arch.into(),
                os: "linux".into(),
                os_version: None,
                os_features: None,
                variant: None,
                features: None,
            }),
            annotations: None,
        };
        let entries = vec![
            entry("s390x", "a"),
            entry(host_arch(), "b"),
            entry("riscv64", "c"),
        ];
        assert_eq!(select_platform(&entries), Some("b".into()));
        assert_eq!(select_platform(&entries[..1]), None);
    }

    #[test]
    fn registry_errors_classify() {
        let nf = OciDistributionError::ServerError {
            code: 404,
            url: "u".into(),
            message: "m".into(),
        };
        assert!(matches!(
            map_error("i", nf),
            RuntimeError::ImageNotFound { .. }
        ));
        let un = OciDistributionError::UnauthorizedError { url: "u".into() };
        assert!(matches!(
            map_error("i", un),
            RuntimeError::Unauthorized { .. }
        ));
        let down = OciDistributionError::ServerError {
            code: 503,
            url: "u".into(),
            message: "m".into(),
        };
        assert!(matches!(
            map_error("i", down),
            RuntimeError::RegistryUnavailable { .. }
        ));
    }
}
