//! How an API server is configured: where it keeps its state, where it listens and which
//! store it talks to. Defaults follow k3s; the binary maps every field to a flag.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Kubernetes' limit on a request body (`MaxRequestBodyBytes`): 3 MiB.
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/flotilla";
pub const DEFAULT_PORT: u16 = 6443;

/// Where cluster state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// The embedded engine, in this directory.
    Embedded { dir: PathBuf },
    /// An etcd cluster at these client URLs.
    Etcd { endpoints: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Holds the PKI, the node token, the admin kubeconfig and the embedded store.
    pub data_dir: PathBuf,
    /// The address to listen on; the unspecified address listens on every interface.
    pub bind_address: IpAddr,
    /// The HTTPS port; 0 picks a free one (the kubeconfig then names the port chosen).
    pub port: u16,
    /// Use etcd at these URLs instead of the embedded store.
    pub etcd_endpoints: Vec<String>,
    /// Static bearer tokens, in Kubernetes' CSV format `token,user,uid,"group1,group2"`.
    pub token_auth_file: Option<PathBuf>,
    /// Further names and addresses for the serving certificate (clients that reach the
    /// server through a load balancer or another address of the host).
    pub tls_sans: Vec<String>,
    pub max_request_body_bytes: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// A TLS handshake slower than this is dropped, so idle sockets cannot pile up.
    pub tls_handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: DEFAULT_PORT,
            etcd_endpoints: Vec::new(),
            token_auth_file: None,
            tls_sans: Vec::new(),
            max_request_body_bytes: MAX_REQUEST_BODY_BYTES,
            shutdown_grace: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    pub fn listen_address(&self) -> SocketAddr {
        SocketAddr::new(self.bind_address, self.port)
    }

    pub fn store_backend(&self) -> StoreBackend {
        if self.etcd_endpoints.is_empty() {
            StoreBackend::Embedded { dir: self.db_dir() }
        } else {
            StoreBackend::Etcd {
                endpoints: self.etcd_endpoints.clone(),
            }
        }
    }

    pub fn db_dir(&self) -> PathBuf {
        self.data_dir.join("db")
    }

    pub fn admin_kubeconfig_path(&self) -> PathBuf {
        self.data_dir.join("admin.kubeconfig")
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir.join("pki")
    }

    /// The URL local clients reach the server at: loopback when listening everywhere (or
    /// on loopback), otherwise the bind address itself.
    pub fn local_url(&self, bound: SocketAddr) -> String {
        let host = if bound.ip().is_unspecified() {
            match bound.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            }
        } else {
            bound.ip()
        };
        format!("https://{}", SocketAddr::new(host, bound.port()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_k3s() {
        let c = ServerConfig::default();
        assert_eq!(c.port, 6443);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/flotilla"));
        assert_eq!(
            c.store_backend(),
            StoreBackend::Embedded {
                dir: PathBuf::from("/var/lib/flotilla/db")
            }
        );
        assert_eq!(c.max_request_body_bytes, 3_145_728);
    }

    #[test]
    fn etcd_endpoints_select_etcd() {
        let c = ServerConfig {
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            ..ServerConfig::default()
        };
        assert!(matches!(c.store_backend(), StoreBackend::Etcd { .. }));
    }

    #[test]
    fn local_url_uses_loopback_for_every_interface() {
        let c = ServerConfig::default();
        assert_eq!(
            c.local_url("0.0.0.0:6443".parse().unwrap()),
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            c.local_url("[::]:6443".parse().unwrap()),
            "https://[::1]:6443"
        );
        assert_eq!(
            c.local_url("192.0.2.1:7443".parse().unwrap()),
            "https://192.0.2.1:7443"
        );
    }
}
