//! A throwaway OCI registry: Debian's `docker-registry` (Distribution 2.8) on a free loopback
//! port, storage in a temp dir, killed and removed on drop.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// Where Debian's docker-registry package installs the binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// How to run the registry. `Default` is plain HTTP without authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Serve HTTPS with a certificate for 127.0.0.1 signed by a fresh test CA
    /// ([`Registry::ca_pem`]).
    pub tls: bool,
    /// Require HTTP basic auth (htpasswd, bcrypt) with this user and password.
    pub basic_auth: Option<(String, String)>,
}

/// A running registry. Drop kills it and deletes its storage.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    port: u16,
    dir: TempDir,
    ca_pem: Option<String>,
    basic_auth: Option<(String, String)>,
}

impl Registry {
    /// Starts a registry and waits (30 s deadline) until `GET /v2/` answers 200. Retries on a
    /// fresh port if another process took the chosen one first. Panics if it cannot start:
    /// this is test setup.
    pub fn start() -> Registry {
        Self::start_with(&RegistryOptions::default())
    }

    /// [`Registry::start`] with TLS and/or basic auth.
    pub fn start_with(opts: &RegistryOptions) -> Registry {
        let mut last_err = String::new();
        for _ in 0..5 {
            match Self::try_start(opts) {
                Ok(r) => return r,
                Err(e) => last_err = e,
            }
        }
        panic!("docker-registry did not start: {last_err}")
    }

    fn try_start(opts: &RegistryOptions) -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-registry-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let port = crate::free_port();
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).map_err(|e| format!("storage dir: {e}"))?;
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        let mut ca_pem = None;
        if opts.tls {
            let (ca, cert, key) = tls_files()?;
            fs::write(dir.path().join("tls.crt"), cert).map_err(|e| format!("cert: {e}"))?;
            fs::write(dir.path().join("tls.key"), key).map_err(|e| format!("key: {e}"))?;
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("tls.crt").display(),
                dir.path().join("tls.key").display()
            ));
            ca_pem = Some(ca);
        }
        if let Some((user, password)) = &opts.basic_auth {
            let hash = bcrypt::hash(password, 4).map_err(|e| format!("bcrypt: {e}"))?;
            let path = dir.path().join("htpasswd");
            fs::write(&path, format!("{user}:{hash}\n")).map_err(|e| format!("htpasswd: {e}"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: flotilla-test\n    path: {}\n",
                path.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).map_err(|e| format!("write config: {e}"))?;
        let log = fs::File::create(dir.path().join("registry.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("spawn {REGISTRY_BIN}: {e}"))?;
        let mut reg = Registry {
            child,
            port,
            dir,
            ca_pem,
            basic_auth: opts.basic_auth.clone(),
        };
        let mut exited = None;
        let ready = crate::wait_for(Duration::from_secs(30), || {
            if let Ok(Some(status)) = reg.child.try_wait() {
                exited = Some(status);
                return Some(false);
            }
            ping(port, opts.tls).then_some(true)
        });
        match ready {
            Some(true) => Ok(reg),
            _ => {
                let log =
                    fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default();
                Err(format!("not ready on port {port} (exit {exited:?}): {log}"))
            }
        }
    }

    /// `127.0.0.1:PORT`: the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS): an endpoint as mirror configuration
    /// writes it.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The user and password a basic-auth registry requires.
    pub fn basic_auth(&self) -> Option<&(String, String)> {
        self.basic_auth.as_ref()
    }

    /// The PEM of the CA that signed a TLS registry's certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's log: warnings, errors and one access-log line per request (tests
    /// count requests with it, e.g. blob downloads).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh CA and a certificate for 127.0.0.1 it signed: (CA PEM, cert PEM, key PEM).
fn tls_files() -> Result<(String, String, String), String> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let err = |e: rcgen::Error| format!("rcgen: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.subject_alt_names = vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}

/// Whether something accepts connections on the port: a TLS registry is taken as up once it
/// listens (speaking TLS here is not worth a client); a plain one must answer `/v2/`.
fn ping(port: u16, tls: bool) -> bool {
    if tls {
        return TcpStream::connect(("127.0.0.1", port)).is_ok();
    }
    ping_http(port)
}

/// One plain HTTP/1.0 request, enough to tell the registry answers `/v2/` (200, or 401 when
/// it requires auth).
fn ping_http(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 32];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let head = &buf[..got];
    [
        b"HTTP/1.1 200",
        b"HTTP/1.0 200",
        b"HTTP/1.1 401",
        b"HTTP/1.0 401",
    ]
    .iter()
    .any(|p| head.starts_with(*p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_stops() {
        let reg = Registry::start();
        let port = reg.port();
        assert!(ping_http(port));
        assert_eq!(reg.host(), format!("127.0.0.1:{port}"));
        drop(reg);
        assert!(!ping_http(port), "registry still answers after drop");
    }
}
