//! `flotilla server`: the control plane — PKI, store, API server — in one process.

use std::net::{IpAddr, SocketAddr};
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
use controllers::endpoint_reconciler;
use controllers::leader_election::{self, LeaderElectionConfig, LeaderElector, StopSignal};

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
    /// The address the `kubernetes` Service's endpoints give for this server [default: the
    /// bind address when it is one interface, else the node's IP]. A loopback address is
    /// not published, as upstream refuses it in Endpoints.
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
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
    /// Run the scheduler and the controllers only while this server holds their Leases
    /// (kube-system/kube-scheduler, kube-system/kube-controller-manager), so that several
    /// servers on one store take turns; `--leader-elect=false` runs them unconditionally.
    #[arg(
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub leader_elect: bool,
    /// How long after the leader's last renewal another server may take its Lease over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// The wait between attempts to acquire or renew a Lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// The prefix length of the pod subnet node IPAM gives each Node out of --cluster-cidr.
    #[arg(long, default_value_t = controllers::nodeipam::DEFAULT_NODE_MASK)]
    pub node_cidr_mask_size: u8,
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

    /// The address to publish in the kubernetes Service's endpoints, if there is one that is
    /// not loopback.
    fn advertise_ip(&self) -> Option<IpAddr> {
        let ip = self
            .advertise_address
            .or_else(|| (!self.bind_address.is_unspecified()).then_some(self.bind_address))
            .or(self.agent.node_ip)
            .or_else(agent::config::default_node_ip)?;
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    }

    /// Node IPAM hands out --node-cidr-mask-size subnets of the --cluster-cidr the nodes
    /// route.
    fn ipam(&self) -> controllers::nodeipam::Config {
        controllers::nodeipam::Config {
            cluster_cidr: self.agent.cluster_cidr.clone(),
            node_mask: self.node_cidr_mask_size,
        }
    }

    /// A candidate for `kube-system/<lease>` with this server's timings and `identity`
    /// (one per process, so `kubectl get lease` shows which server holds what), or None
    /// with --leader-elect=false.
    fn election(&self, lease: &str, identity: &str) -> Option<LeaderElectionConfig> {
        self.leader_elect.then(|| LeaderElectionConfig {
            identity: identity.to_string(),
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
            ..LeaderElectionConfig::new(LEASE_NAMESPACE, lease)
        })
    }
}

/// Where kube-scheduler and kube-controller-manager keep their Leases.
const LEASE_NAMESPACE: &str = "kube-system";
const SCHEDULER_LEASE: &str = "kube-scheduler";
const CONTROLLER_MANAGER_LEASE: &str = "kube-controller-manager";

/// A Go-style duration as the upstream flags take: `15s`, `500ms`, `1m`, or bare seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 15s"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (use ms, s or m)")),
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
    let ipam = args.ipam();
    ipam.cidr_set()
        .map_err(|e| anyhow::anyhow!("--cluster-cidr/--node-cidr-mask-size: {e}"))?;
    let identity = leader_election::default_identity();
    let elections =
        [SCHEDULER_LEASE, CONTROLLER_MANAGER_LEASE].map(|l| args.election(l, &identity));
    for election in elections.iter().flatten() {
        election
            .validate()
            .map_err(|e| anyhow::anyhow!("--leader-elect-*: {e}"))?;
    }
    let [scheduler_election, controllers_election] = elections;
    // Flag mistakes of the agent fail before anything is created.
    let agent_config = if args.no_agent {
        None
    } else {
        let mut c = args.agent.config(config.data_dir.clone())?;
        c.control_plane = true;
        if c.pod_cidr.is_empty() && args.no_controllers {
            tracing::warn!(
                "--no-controllers without --pod-cidr: the node waits for another server's \
                 node IPAM to assign its podCIDR"
            );
        }
        Some(c)
    };

    let mut names = pki::default_serving_names(config.bind_address, hostname().as_deref());
    if let Some(ip) = args.advertise_address {
        names.push(ip.to_string());
    }
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
    // Every server publishes itself in the kubernetes Service's endpoints, elected or not.
    let endpoints_task = args.advertise_ip().map(|ip| {
        let client = in_process_client(
            in_process.clone(),
            UserInfo::authenticated("system:apiserver", []),
        );
        let config = endpoint_reconciler::Config::new(SocketAddr::new(ip, addr.port()));
        tokio::spawn(endpoint_reconciler::run(
            client,
            config,
            stopped(stop_rx.clone()),
        ))
    });
    if endpoints_task.is_none() {
        tracing::info!(
            "no non-loopback address to advertise: the kubernetes Service gets no endpoints \
             (see --advertise-address)"
        );
    }
    // The scheduler and the controller manager, each under its Lease: awaited at the end
    // so that a leader releases its Lease before the process exits.
    let mut elected = tokio::task::JoinSet::new();
    if !args.no_controllers {
        let client = in_process_client(
            in_process.clone(),
            UserInfo::authenticated("system:kube-controller-manager", []),
        );
        elected.spawn(run_elected(
            client.clone(),
            controllers_election,
            stopped(stop_rx.clone()),
            move |stop| run_controllers(client.clone(), ipam.clone(), stop),
        ));
    }
    if !args.no_scheduler {
        let client = in_process_client(
            in_process.clone(),
            UserInfo::authenticated("system:kube-scheduler", []),
        );
        elected.spawn(run_elected(
            client.clone(),
            scheduler_election,
            stopped(stop_rx.clone()),
            move |stop| run_scheduler(client.clone(), stop),
        ));
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
    // This server leaves the kubernetes Service's endpoints; the components stop, then the
    // leaders release their Leases for a successor.
    if let Some(task) = endpoints_task {
        if tokio::time::timeout(ELECTED_STOP_GRACE, task)
            .await
            .is_err()
        {
            tracing::warn!("withdrawing from the kubernetes Service's endpoints timed out");
        }
    }
    if tokio::time::timeout(ELECTED_STOP_GRACE, async {
        while elected.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("the scheduler or the controllers did not stop in time");
    }
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

/// Runs `start` under the Lease `election` names (only while leading; campaigning again
/// after losing it), or unconditionally when leader election is off.
async fn run_elected<F, Fut>(
    client: kube::Client,
    election: Option<LeaderElectionConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    mut start: F,
) where
    F: FnMut(StopSignal) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(election) = election else {
        start(Box::pin(shutdown)).await;
        return;
    };
    match LeaderElector::new(client, election) {
        Ok(elector) => leader_election::run_while_leading(elector, shutdown, start).await,
        Err(e) => tracing::error!(error = %e, "leader election is misconfigured"),
    }
}

/// The scheduler, as `system:kube-scheduler`, until `stop`.
async fn run_scheduler(client: kube::Client, stop: StopSignal) {
    match scheduler::Scheduler::new(client, scheduler::SchedulerConfig::default())
        .run(stop)
        .await
    {
        Ok(stats) => tracing::info!(scheduled = stats.scheduled, "scheduler stopped"),
        Err(e) => tracing::error!(error = %e, "the scheduler failed"),
    }
}

/// The controller manager: each controller on its own task with the router-direct client,
/// as `system:kube-controller-manager`, until `stop`. A controller that fails is logged,
/// not fatal: the API keeps serving and the others keep reconciling. Dropping this future
/// (a leader that did not stop in time is aborted) aborts every controller.
async fn run_controllers(
    client: kube::Client,
    ipam: controllers::nodeipam::Config,
    stop: StopSignal,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let stop = &stop_rx;
    // One watch of pods and one of nodes for all of them, for this term of leadership
    // (dropped with it, which stops the watches).
    let informers = controllers::informers::Informers::new(client.clone());
    macro_rules! controller {
        ($name:literal, $run:path) => {{
            let client = client.clone();
            let stop = stopped(stop.clone());
            tasks.spawn(async move {
                if let Err(e) = $run(client, stop).await {
                    tracing::error!(controller = $name, error = %e, "controller failed");
                }
            });
        }};
        ($name:literal, shared $run:path) => {{
            let informers = informers.clone();
            let stop = stopped(stop.clone());
            tasks.spawn(async move {
                if let Err(e) = $run(informers, stop).await {
                    tracing::error!(controller = $name, error = %e, "controller failed");
                }
            });
        }};
    }
    controller!("replicaset", shared controllers::replicaset::run);
    controller!("deployment", controllers::deployment::run);
    controller!("garbage-collector", controllers::garbage_collector::run);
    controller!("node-lifecycle", shared controllers::node_lifecycle::run);
    controller!("job", shared controllers::job::run);
    controller!("cronjob", controllers::cronjob::run);
    controller!("daemonset", shared controllers::daemonset::run);
    controller!("statefulset", shared controllers::statefulset::run);
    controller!("endpoints", shared controllers::endpoints::run);
    controller!("endpointslice", shared controllers::endpointslice::run);
    controller!("serviceaccount", controllers::serviceaccount::run);
    controller!("pod-garbage-collector", shared controllers::podgc::run);
    controller!("disruption", shared controllers::disruption::run);
    {
        let informers = informers.clone();
        let stop = stopped(stop.clone());
        tasks.spawn(async move {
            if let Err(e) = controllers::nodeipam::run_with(informers, ipam, stop).await {
                tracing::error!(controller = "nodeipam", error = %e, "controller failed");
            }
        });
    }
    controller!("persistentvolume", controllers::volume::run);
    tracing::info!("controllers started");
    while tasks.join_next().await.is_some() {}
}

/// How long the scheduler and the controllers get to stop (and release their Leases)
/// after the API server has: a component's own grace plus a release.
const ELECTED_STOP_GRACE: Duration = Duration::from_secs(10);

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
    fn leader_election_is_on_by_default_and_configurable() {
        let w = Wrapper::try_parse_from(["server"]).unwrap();
        assert!(w.args.leader_elect);
        let e = w.args.election(CONTROLLER_MANAGER_LEASE, "h_1").unwrap();
        assert_eq!(e.lease_namespace, "kube-system");
        assert_eq!(e.lease_name, "kube-controller-manager");
        assert_eq!(e.identity, "h_1");
        assert_eq!(e.lease_duration, Duration::from_secs(15));
        assert_eq!(e.renew_deadline, Duration::from_secs(10));
        assert_eq!(e.retry_period, Duration::from_secs(2));
        assert_eq!(w.args.ipam().cluster_cidr, "10.42.0.0/16");
        assert_eq!(w.args.ipam().node_mask, 24);

        let w = Wrapper::try_parse_from(["server", "--leader-elect=false"]).unwrap();
        assert!(w.args.election(SCHEDULER_LEASE, "h_1").is_none());
        let w = Wrapper::try_parse_from([
            "server",
            "--leader-elect",
            "--leader-elect-lease-duration=6s",
            "--leader-elect-renew-deadline=4s",
            "--leader-elect-retry-period=500ms",
            "--cluster-cidr=10.100.0.0/16",
            "--node-cidr-mask-size=26",
        ])
        .unwrap();
        let e = w.args.election(SCHEDULER_LEASE, "h_1").unwrap();
        assert_eq!(e.lease_duration, Duration::from_secs(6));
        assert_eq!(e.retry_period, Duration::from_millis(500));
        assert!(e.validate().is_ok());
        assert_eq!(w.args.ipam().cluster_cidr, "10.100.0.0/16");
        assert_eq!(w.args.ipam().node_mask, 26);
    }

    #[test]
    fn durations_read_as_the_upstream_flags_write_them() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(Wrapper::try_parse_from(["server", "--leader-elect=maybe"]).is_err());
    }

    #[test]
    fn a_bad_address_is_a_usage_error() {
        assert!(Wrapper::try_parse_from(["server", "--bind-address", "nope"]).is_err());
        assert!(Wrapper::try_parse_from(["server", "--port", "70000"]).is_err());
        assert!(Wrapper::try_parse_from(["server", "--advertise-address", "x"]).is_err());
    }

    #[test]
    fn the_advertised_address_is_never_loopback() {
        let ip = |argv: &[&str]| {
            let mut all = vec!["server"];
            all.extend_from_slice(argv);
            Wrapper::try_parse_from(all).unwrap().args.advertise_ip()
        };
        let v = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(ip(&["--advertise-address", "192.0.2.1"]), v("192.0.2.1"));
        assert_eq!(
            ip(&["--bind-address", "192.0.2.2", "--node-ip", "192.0.2.3"]),
            v("192.0.2.2")
        );
        assert_eq!(ip(&["--node-ip", "192.0.2.3"]), v("192.0.2.3"));
        assert_eq!(ip(&["--bind-address", "127.0.0.1"]), None);
        assert_eq!(ip(&["--advertise-address", "::1"]), None);
    }
}
