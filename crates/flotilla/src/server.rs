//! `flotilla server`: the control plane — PKI, store, API server — in one process.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use apiserver::authn::Authenticator;
use apiserver::config::{self, ServerConfig};
use apiserver::pki::{self, ClusterPki};
use apiserver::server::{self as api, ApiServer};
use apiserver::ApiState;
use clap::Args;

use crate::kubeconfig;

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Directory for the PKI, the node token, the admin kubeconfig and the embedded store.
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// HTTPS port of the API server; 0 picks a free port.
    #[arg(long, default_value_t = config::DEFAULT_PORT)]
    pub port: u16,
    /// Address to listen on; 0.0.0.0 or :: listen on every interface.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Keep cluster state in etcd at these client URLs (comma-separated) instead of the
    /// embedded store.
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Static bearer tokens, one `token,user,uid,"group1,group2"` per line.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Further names or addresses for the serving certificate (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// Run without the node agent (control plane only).
    #[arg(long)]
    pub no_agent: bool,
    /// Largest request body accepted; larger ones get 413 RequestEntityTooLarge.
    #[arg(long, default_value_t = config::MAX_REQUEST_BODY_BYTES)]
    pub max_request_body_bytes: usize,
    /// Seconds in-flight requests may take to finish after SIGTERM or SIGINT.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace_seconds: u64,
}

impl ServerArgs {
    fn config(&self) -> ServerConfig {
        ServerConfig {
            data_dir: self.data_dir.clone(),
            bind_address: self.bind_address,
            port: self.port,
            etcd_endpoints: self.etcd_endpoints.clone(),
            token_auth_file: self.token_auth_file.clone(),
            tls_sans: self.tls_san.clone(),
            max_request_body_bytes: self.max_request_body_bytes,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            ..ServerConfig::default()
        }
    }
}

pub fn run(args: ServerArgs, started: Instant) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, started))
}

async fn serve(args: ServerArgs, started: Instant) -> anyhow::Result<()> {
    let config = args.config();
    if !args.no_agent {
        tracing::info!("this build has no node agent yet: serving the control plane only");
    }

    let mut names = pki::default_serving_names(config.bind_address, hostname().as_deref());
    for san in &config.tls_sans {
        if !names.contains(san) {
            names.push(san.clone());
        }
    }
    let data_dir = config.data_dir.clone();
    let pki = tokio::task::spawn_blocking(move || ClusterPki::load_or_create(&data_dir, &names))
        .await
        .context("the PKI task failed")?
        .with_context(|| format!("preparing the PKI in {}", config.pki_dir().display()))?;

    // Bad flags and files fail before the store is opened.
    let mut authn = Authenticator::new().with_node_token(&pki.node_token);
    if let Some(file) = &config.token_auth_file {
        authn = authn.with_token_file(file)?;
    }

    let store = crate::store::open(&config.store_backend()).await?;
    let state = ApiState::new(store).await.context("preparing the API")?;
    let app = api::app(state, Arc::new(authn), config.max_request_body_bytes);
    let server = ApiServer::bind(&config, api::tls_config(&pki)?, app).await?;
    let addr = server.local_addr()?;

    // Written after binding so that it names the port actually chosen.
    let kubeconfig_path = config.admin_kubeconfig_path();
    let url = config.local_url(addr);
    kubeconfig::write(
        &kubeconfig_path,
        &kubeconfig::ClientConfig {
            cluster: "default",
            user: "admin",
            server: &url,
            ca_pem: pki.ca.cert_pem(),
            client_cert_pem: &pki.admin.cert_pem,
            client_key_pem: &pki.admin.key_pem,
        },
    )?;
    tracing::info!(
        %addr,
        kubeconfig = %kubeconfig_path.display(),
        startup_ms = started.elapsed().as_millis() as u64,
        "flotilla server listening"
    );
    server.serve(api::shutdown_signal()).await?;
    tracing::info!("flotilla server stopped");
    Ok(())
}

/// The kernel's host name, for the serving certificate.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServerArgs,
    }

    #[test]
    fn defaults_are_k3s_like_and_every_one_is_a_flag() {
        let w = Wrapper::try_parse_from(["server"]).unwrap();
        let c = w.args.config();
        assert_eq!(c.port, 6443);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/flotilla"));
        assert!(c.bind_address.is_unspecified());
        assert!(c.etcd_endpoints.is_empty());

        let w = Wrapper::try_parse_from([
            "server",
            "--data-dir",
            "/tmp/x",
            "--port",
            "7443",
            "--bind-address",
            "127.0.0.1",
            "--etcd-endpoints",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--token-auth-file",
            "/tmp/t.csv",
            "--tls-san",
            "api.example.test,192.0.2.10",
            "--no-agent",
        ])
        .unwrap();
        let c = w.args.config();
        assert_eq!(c.port, 7443);
        assert_eq!(c.etcd_endpoints.len(), 2);
        assert_eq!(c.token_auth_file, Some(PathBuf::from("/tmp/t.csv")));
        assert_eq!(c.tls_sans, ["api.example.test", "192.0.2.10"]);
        assert!(w.args.no_agent);
    }

    #[test]
    fn a_bad_address_is_a_usage_error() {
        assert!(Wrapper::try_parse_from(["server", "--bind-address", "nope"]).is_err());
        assert!(Wrapper::try_parse_from(["server", "--port", "70000"]).is_err());
    }
}
