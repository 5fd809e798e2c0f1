//! The cluster's public-key infrastructure: one CA that signs the API server's serving
//! certificate and the client certificates users and components authenticate with, plus the
//! node bootstrap token.
//!
//! Everything lives under `DATA_DIR/pki/` (the token at `DATA_DIR/node-token`, where k3s keeps
//! its own) and is created on first start. Later starts reuse the CA and the token, so issued
//! kubeconfigs stay valid; leaf certificates are re-issued only when they no longer fit
//! (a new address to serve on, or close to expiry).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

const CA_VALIDITY: Duration = Duration::days(3650);
const LEAF_VALIDITY: Duration = Duration::days(365);
/// A leaf certificate this close to expiry is re-issued at start, as k3s does.
const RENEW_BEFORE: Duration = Duration::days(90);
/// Tolerates clocks of other machines that are slightly behind ours.
const BACKDATE: Duration = Duration::hours(1);

/// The names Kubernetes clients inside the cluster use for the API server; the serving
/// certificate carries them from the start so that in-cluster clients verify it later.
pub const IN_CLUSTER_NAMES: &[&str] = &[
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.43.0.1",
];

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: not a valid PEM certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: empty token")]
    EmptyToken { path: PathBuf },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PkiError + 'a {
    move |source| PkiError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A certificate with its private key, both PEM.
#[derive(Clone)]
pub struct CertKeyPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKeyPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone)]
pub enum LeafProfile {
    /// TLS server authentication for these DNS names and IP addresses.
    Serving { names: Vec<String> },
    /// TLS client authentication. Kubernetes reads the user from the CommonName and the
    /// groups from the Organization; rcgen writes one Organization, so one group at most.
    Client { user: String, group: Option<String> },
}

/// A certificate authority that can sign leaf certificates.
pub struct CertificateAuthority {
    pair: CertKeyPair,
    issuer: Issuer<'static, KeyPair>,
}

impl CertificateAuthority {
    /// Creates a new self-signed CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);
        let cert = params.self_signed(&key)?;
        let pair = CertKeyPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            pair,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            pair: CertKeyPair {
                cert_pem: cert_pem.to_string(),
                key_pem: key_pem.to_string(),
            },
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.pair.cert_pem
    }

    /// Signs a new leaf certificate with a fresh key.
    pub fn issue(&self, profile: &LeafProfile) -> Result<CertKeyPair, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        match profile {
            LeafProfile::Serving { names } => {
                let first = names.first().map_or("flotilla", String::as_str);
                params.distinguished_name = name(first, None);
                params.subject_alt_names = names
                    .iter()
                    .map(|n| san(n))
                    .collect::<Result<Vec<_>, _>>()?;
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            LeafProfile::Client { user, group } => {
                params.distinguished_name = name(user, group.as_deref());
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }
        set_validity(&mut params, LEAF_VALIDITY);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertKeyPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn san(name: &str) -> Result<SanType, rcgen::Error> {
    Ok(match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.to_string().try_into()?),
    })
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    // A positive, random 127-bit serial: unique without bookkeeping.
    let mut serial = [0u8; 16];
    rand::rng().fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

/// Where the PKI files live under a data directory.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
    pub node_token: PathBuf,
}

impl PkiPaths {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("pki"),
            node_token: data_dir.join("node-token"),
        }
    }

    fn cert(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.crt"))
    }

    fn key(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.key"))
    }
}

/// The CommonName of the client certificate the API server presents to node agents (the
/// kubelet-client certificate of kube-apiserver); agents accept only this name.
pub const NODE_CLIENT_CN: &str = "flotilla-apiserver-node-client";

/// The cluster's CA, the API server's serving certificate, the admin client certificate,
/// the API server's node-client certificate and the node token, loaded from or created
/// under a data directory.
pub struct ClusterPki {
    pub ca: CertificateAuthority,
    pub serving: CertKeyPair,
    pub admin: CertKeyPair,
    /// What the API server authenticates with when it proxies logs, exec, attach,
    /// port-forward and stats to a node's agent.
    pub node_client: CertKeyPair,
    pub node_token: String,
}

impl ClusterPki {
    /// Loads the PKI under `data_dir`, creating whatever is missing. The serving certificate
    /// is re-issued when it lacks one of `serving_names` or nears expiry.
    pub fn load_or_create(data_dir: &Path, serving_names: &[String]) -> Result<Self, PkiError> {
        let paths = PkiPaths::new(data_dir);
        create_private_dir(data_dir)?;
        create_private_dir(&paths.dir)?;

        let ca = match read_pair(&paths, "ca")? {
            Some(pair) => CertificateAuthority::from_pem(&pair.cert_pem, &pair.key_pem)?,
            None => {
                tracing::info!(dir = %paths.dir.display(), "creating the cluster CA");
                let ca = CertificateAuthority::generate("flotilla-ca")?;
                write_pair(&paths, "ca", &ca.pair)?;
                ca
            }
        };

        let serving = ensure_leaf(
            &ca,
            &paths,
            "serving",
            &LeafProfile::Serving {
                names: serving_names.to_vec(),
            },
            serving_names,
        )?;
        let admin = ensure_leaf(
            &ca,
            &paths,
            "admin",
            &LeafProfile::Client {
                user: "admin".into(),
                group: Some("system:masters".into()),
            },
            &[],
        )?;
        let node_client = ensure_leaf(
            &ca,
            &paths,
            "node-client",
            &LeafProfile::Client {
                user: NODE_CLIENT_CN.into(),
                group: None,
            },
            &[],
        )?;
        let node_token = load_or_create_token(&paths.node_token)?;
        Ok(Self {
            ca,
            serving,
            admin,
            node_client,
            node_token,
        })
    }
}

/// The serving names for an API server bound to `bind`: the address itself, loopback, the
/// host name and the in-cluster names.
pub fn default_serving_names(bind: IpAddr, hostname: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |n: String| {
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    };
    add("localhost".into());
    add("127.0.0.1".into());
    add("::1".into());
    if !bind.is_unspecified() {
        add(bind.to_string());
    }
    if let Some(h) = hostname {
        add(h.to_string());
    }
    for n in IN_CLUSTER_NAMES {
        add((*n).to_string());
    }
    names
}

fn ensure_leaf(
    ca: &CertificateAuthority,
    paths: &PkiPaths,
    stem: &str,
    profile: &LeafProfile,
    required_names: &[String],
) -> Result<CertKeyPair, PkiError> {
    if let Some(pair) = read_pair(paths, stem)? {
        match leaf_still_fits(&pair.cert_pem, ca.cert_pem(), required_names) {
            Ok(true) => return Ok(pair),
            Ok(false) => tracing::info!(cert = stem, "re-issuing certificate"),
            Err(reason) => {
                tracing::warn!(cert = stem, %reason, "unreadable certificate, re-issuing")
            }
        }
    } else {
        tracing::info!(cert = stem, "issuing certificate");
    }
    let pair = ca.issue(profile)?;
    write_pair(paths, stem, &pair)?;
    Ok(pair)
}

/// True when `cert_pem` was issued by `ca_pem`, is not close to expiry and names every one
/// of `required_names`.
fn leaf_still_fits(
    cert_pem: &str,
    ca_pem: &str,
    required_names: &[String],
) -> Result<bool, String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::pem::parse_x509_pem;

    let (_, pem) = parse_x509_pem(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = pem.parse_x509().map_err(|e| e.to_string())?;
    let (_, ca_pem) = parse_x509_pem(ca_pem.as_bytes()).map_err(|e| e.to_string())?;
    let ca = ca_pem.parse_x509().map_err(|e| e.to_string())?;
    if cert.issuer() != ca.subject() || cert.verify_signature(Some(ca.public_key())).is_err() {
        return Ok(false);
    }
    let expires = cert.validity().not_after.timestamp();
    if expires < (OffsetDateTime::now_utc() + RENEW_BEFORE).unix_timestamp() {
        return Ok(false);
    }
    let mut present: Vec<String> = Vec::new();
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        for n in &sans.value.general_names {
            match n {
                GeneralName::DNSName(d) => present.push((*d).to_string()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        present.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(required_names.iter().all(|want| {
        let want = want
            .parse::<IpAddr>()
            .map_or_else(|_| want.clone(), |ip| ip.to_string());
        present.contains(&want)
    }))
}

fn read_pair(paths: &PkiPaths, stem: &str) -> Result<Option<CertKeyPair>, PkiError> {
    let (cert, key) = (paths.cert(stem), paths.key(stem));
    match (read_optional(&cert)?, read_optional(&key)?) {
        (Some(cert_pem), Some(key_pem)) => Ok(Some(CertKeyPair { cert_pem, key_pem })),
        _ => Ok(None),
    }
}

fn write_pair(paths: &PkiPaths, stem: &str, pair: &CertKeyPair) -> Result<(), PkiError> {
    // The key goes first: a crash between the two writes leaves no certificate without a
    // key, which the next start would otherwise load and fail on.
    write_atomic(&paths.key(stem), pair.key_pem.as_bytes(), 0o600)?;
    write_atomic(&paths.cert(stem), pair.cert_pem.as_bytes(), 0o644)
}

fn load_or_create_token(path: &Path) -> Result<String, PkiError> {
    if let Some(text) = read_optional(path)? {
        let token = text.trim().to_string();
        if token.is_empty() {
            return Err(PkiError::EmptyToken {
                path: path.to_path_buf(),
            });
        }
        return Ok(token);
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_atomic(path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
}

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Creates `dir` (and parents) with mode 0700 when missing.
pub fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("create directory", dir))
}

/// Writes `data` to `path` with `mode` through a temporary file and a rename, so a reader
/// never sees half a file and a secret is never readable by others, even briefly.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        // The mode given to open() is filtered by the umask; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", &tmp))?;
        f.write_all(data).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        default_serving_names("127.0.0.1".parse().unwrap(), Some("node-a"))
    }

    #[test]
    fn first_start_creates_everything_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path(), &names()).unwrap();
        assert_eq!(pki.node_token.len(), 64);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("pki/ca.key")), 0o600);
        assert_eq!(mode(&dir.path().join("pki/admin.key")), 0o600);
        assert_eq!(mode(&dir.path().join("pki/serving.key")), 0o600);
        assert_eq!(mode(&dir.path().join("node-token")), 0o600);
        assert_eq!(mode(&dir.path().join("pki")), 0o700);
    }

    #[test]
    fn restart_reuses_ca_token_and_fitting_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let first = ClusterPki::load_or_create(dir.path(), &names()).unwrap();
        let second = ClusterPki::load_or_create(dir.path(), &names()).unwrap();
        assert_eq!(first.ca.cert_pem(), second.ca.cert_pem());
        assert_eq!(first.node_token, second.node_token);
        assert_eq!(first.serving.cert_pem, second.serving.cert_pem);
        assert_eq!(first.admin.cert_pem, second.admin.cert_pem);
        assert_eq!(first.node_client.cert_pem, second.node_client.cert_pem);
    }

    #[test]
    fn the_node_client_certificate_names_the_api_server_for_agents() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path(), &names()).unwrap();
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(pki.node_client.cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(cn, [NODE_CLIENT_CN]);
        assert_eq!(
            leaf_still_fits(&pki.node_client.cert_pem, pki.ca.cert_pem(), &[]),
            Ok(true)
        );
        let mode = fs::metadata(dir.path().join("pki/node-client.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_new_serving_name_reissues_only_the_serving_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = ClusterPki::load_or_create(dir.path(), &names()).unwrap();
        let mut more = names();
        more.push("192.0.2.7".into());
        let second = ClusterPki::load_or_create(dir.path(), &more).unwrap();
        assert_eq!(first.ca.cert_pem(), second.ca.cert_pem());
        assert_ne!(first.serving.cert_pem, second.serving.cert_pem);
        assert_eq!(first.admin.cert_pem, second.admin.cert_pem);
        assert_eq!(
            leaf_still_fits(&second.serving.cert_pem, second.ca.cert_pem(), &more),
            Ok(true)
        );
    }

    #[test]
    fn a_certificate_from_another_ca_does_not_fit() {
        let ours = CertificateAuthority::generate("ours").unwrap();
        let theirs = CertificateAuthority::generate("theirs").unwrap();
        let leaf = theirs
            .issue(&LeafProfile::Serving {
                names: vec!["localhost".into()],
            })
            .unwrap();
        assert_eq!(
            leaf_still_fits(&leaf.cert_pem, ours.cert_pem(), &[]),
            Ok(false)
        );
        assert_eq!(
            leaf_still_fits(&leaf.cert_pem, theirs.cert_pem(), &[]),
            Ok(true)
        );
    }

    #[test]
    fn garbage_on_disk_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        create_private_dir(&dir.path().join("pki")).unwrap();
        fs::write(dir.path().join("pki/ca.crt"), "not pem").unwrap();
        fs::write(dir.path().join("pki/ca.key"), "not pem").unwrap();
        assert!(ClusterPki::load_or_create(dir.path(), &names()).is_err());
    }

    #[test]
    fn serving_names_cover_loopback_host_and_cluster() {
        let n = default_serving_names("0.0.0.0".parse().unwrap(), Some("node-a"));
        for want in [
            "localhost",
            "127.0.0.1",
            "::1",
            "node-a",
            "kubernetes.default.svc",
            "10.43.0.1",
        ] {
            assert!(n.contains(&want.to_string()), "{want} missing from {n:?}");
        }
        assert!(!n.contains(&"0.0.0.0".to_string()));
    }
}
