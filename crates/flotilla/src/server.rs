//! `flotilla server`: the control plane — PKI, store, API server — in one process.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::agent::Agent;
use agent::node::bootstrap;
use anyhow::Context;
use apiserver::authn::{Authenticator, ConnectionInfo, UserInfo};
use apiserver::config::{self, ServerConfig};
use apiserver::pki::{self, ClusterPki};
use apiserver::server::{self as api, ApiServer};
use apiserver::state::ApiConfig;
use apiserver::ApiState;
use clap::Args;

use crate::agent::AgentOptions;
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
    /// Run without the scheduler (pods stay Pending unless something else binds them).
    #[arg(long)]
    pub no_scheduler: bool,
    /// Run without the controllers (ReplicaSet, Deployment, garbage collector, node
    /// lifecycle): workload objects are stored but nothing acts on them.
    #[arg(long)]
    pub no_controllers: bool,
    /// The in-process agent's settings (ignored with --no-agent).
    #[command(flatten)]
    pub agent: AgentOptions,
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
    // Flag mistakes of the agent fail before anything is created.
    let agent_config = if args.no_agent {
        None
    } else {
        let mut c = args.agent.config(config.data_dir.clone())?;
        c.control_plane = true;
        Some(c)
    };

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

    let full_token = write_join_token(&config.data_dir, pki.ca.cert_pem(), &pki.node_token)?;

    let store = crate::store::open(&config.store_backend()).await?;
    let mut api_config = ApiConfig {
        // What the API server presents to agents when it proxies logs, exec and stats.
        node_client: Some(pki.node_client.clone()),
        ..ApiConfig::default()
    };
    // One --service-cidr for both halves: ClusterIPs come from the range the nodes route.
    api_config.registry.service_cidr = args
        .agent
        .service_cidr
        .parse()
        .map_err(|e| anyhow::anyhow!("--service-cidr {}: {e}", args.agent.service_cidr))?;
    let state = ApiState::with_config(store, api_config)
        .await
        .context("preparing the API")?;
    let app = api::app(state, Arc::new(authn), config.max_request_body_bytes);
    let in_process = app.clone();
    let app = app.merge(api::cacerts_router(pki.ca.cert_pem()));
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
    tracing::info!(
        token = %full_token,
        file = %config.data_dir.join(TOKEN_FILE).display(),
        "nodes join with: flotilla agent --server https://<this host>:{} --token <token>",
        addr.port()
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if !args.no_controllers {
        spawn_controllers(&in_process, &stop_rx);
    }
    if !args.no_scheduler {
        let client = in_process_client(
            in_process.clone(),
            UserInfo::authenticated("system:kube-scheduler", []),
        );
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            match scheduler::Scheduler::new(client, scheduler::SchedulerConfig::default())
                .run(stop)
                .await
            {
                Ok(stats) => tracing::info!(scheduled = stats.scheduled, "scheduler stopped"),
                Err(e) => tracing::error!(error = %e, "the scheduler failed"),
            }
        });
    }
    let mut agent_task = agent_config.map(|agent_config| {
        let client = in_process_client(
            in_process,
            UserInfo::authenticated(
                format!("system:node:{}", agent_config.node_name),
                [apiserver::authn::NODES_GROUP.to_string()],
            ),
        );
        let ca = pki.ca.cert_pem().to_string();
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { Agent::run(agent_config, client, ca, stop).await })
    });
    let mut agent_failed = None;
    let serving = server.serve(async {
        // An agent that fails takes the server down with it: a half cluster that looks
        // healthy is worse than a clear error.
        let done = match agent_task.as_mut() {
            Some(task) => tokio::select! {
                () = api::shutdown_signal() => None,
                done = task => Some(done),
            },
            None => {
                api::shutdown_signal().await;
                None
            }
        };
        if let Some(done) = done {
            agent_task = None;
            agent_failed = Some(match done {
                Ok(Ok(())) => anyhow::anyhow!("the node agent stopped unexpectedly"),
                Ok(Err(e)) => anyhow::Error::new(e).context("the node agent failed"),
                Err(e) => anyhow::anyhow!("the node agent task failed: {e}"),
            });
        }
        let _ = stop_tx.send(true);
    });
    serving.await?;
    if let Some(task) = agent_task {
        // The agent stops its own tasks only; pods run on under their supervisors.
        match tokio::time::timeout(AGENT_STOP_GRACE, task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the node agent failed while stopping"),
            Err(_) => tracing::warn!("the node agent did not stop in time"),
            _ => {}
        }
    }
    tracing::info!("flotilla server stopped");
    match agent_failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The controller manager: each controller on its own task with the router-direct client,
/// as `system:kube-controller-manager`. A controller that fails is logged, not fatal: the
/// API keeps serving and the others keep reconciling.
fn spawn_controllers(app: &axum::Router, stop: &tokio::sync::watch::Receiver<bool>) {
    let client = in_process_client(
        app.clone(),
        UserInfo::authenticated("system:kube-controller-manager", []),
    );
    macro_rules! controller {
        ($name:literal, $run:path) => {{
            let client = client.clone();
            let stop = stopped(stop.clone());
            tokio::spawn(async move {
                if let Err(e) = $run(client, stop).await {
                    tracing::error!(controller = $name, error = %e, "controller failed");
                }
            });
        }};
    }
    controller!("replicaset", controllers::replicaset::run);
    controller!("deployment", controllers::deployment::run);
    controller!("garbage-collector", controllers::garbage_collector::run);
    controller!("node-lifecycle", controllers::node_lifecycle::run);
    controller!("job", controllers::job::run);
    controller!("cronjob", controllers::cronjob::run);
    controller!("daemonset", controllers::daemonset::run);
    controller!("statefulset", controllers::statefulset::run);
    controller!("endpoints", controllers::endpoints::run);
    controller!("endpointslice", controllers::endpointslice::run);
    controller!("serviceaccount", controllers::serviceaccount::run);
    controller!("nodeipam", controllers::nodeipam::run);
    controller!("persistentvolume", controllers::volume::run);
}

/// How long the in-process agent gets to stop after the server has.
const AGENT_STOP_GRACE: Duration = Duration::from_secs(10);

/// The full join token (`K10<CA hash>::node:<secret>`), kept where k3s keeps its own.
const TOKEN_FILE: &str = "token";

fn write_join_token(data_dir: &Path, ca_pem: &str, secret: &str) -> anyhow::Result<String> {
    let token = bootstrap::full_token(ca_pem, secret);
    let path = data_dir.join(TOKEN_FILE);
    pki::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A client for an in-process component (the agent, the scheduler) that calls the API
/// router directly: the same authentication, admission and registry path as a remote
/// client, without TLS or a socket. It authenticates as `user`, as a client certificate
/// would.
fn in_process_client(app: axum::Router, user: UserInfo) -> kube::Client {
    use tower::ServiceExt;
    let info = ConnectionInfo {
        remote: None,
        client_certificate_user: Some(user),
    };
    let service = tower::service_fn(move |mut req: http::Request<kube::client::Body>| {
        req.extensions_mut().insert(info.clone());
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    kube::Client::new(service, "default")
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
    fn the_agent_flags_configure_the_in_process_agent() {
        let w = Wrapper::try_parse_from([
            "server",
            "--data-dir",
            "/tmp/x",
            "--node-name",
            "cp-1",
            "--pod-cidr",
            "10.244.3.0/24",
            "--bridge",
            "flt3",
            "--agent-port",
            "0",
        ])
        .unwrap();
        let c = w.args.agent.config(w.args.data_dir.clone()).unwrap();
        assert_eq!(c.node_name, "cp-1");
        assert_eq!(c.pod_cidr, "10.244.3.0/24");
        assert_eq!(c.bridge, "flt3");
        assert_eq!(c.port, 0);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn a_bad_address_is_a_usage_error() {
        assert!(Wrapper::try_parse_from(["server", "--bind-address", "nope"]).is_err());
        assert!(Wrapper::try_parse_from(["server", "--port", "70000"]).is_err());
    }
}
