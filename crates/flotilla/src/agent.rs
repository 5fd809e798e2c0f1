//! `flotilla agent`: a node agent joining a cluster (see docs/commands/agent.md), and the
//! agent flags `flotilla server` shares for its in-process agent.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use agent::agent::Agent;
use agent::config::{AgentConfig, EvictionThresholds, ImageGcPolicy};
use agent::node::bootstrap::{self, JoinToken};
use anyhow::Context;
use clap::Args;

/// Every AgentConfig field but the data dir (the server's agent shares the server's).
#[derive(Args, Debug, Clone)]
pub struct AgentOptions {
    /// The Node's name [default: the host name].
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's InternalIP [default: the first non-loopback IPv4 address].
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// The node's HTTPS endpoint for logs, exec, attach, port-forward and stats; 0 picks a
    /// free port.
    #[arg(long, default_value_t = 10250)]
    pub agent_port: u16,
    /// This node's pod subnet [default: the one node IPAM assigns to the Node out of the
    /// server's --cluster-cidr].
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// The cluster's pod network (routed nowhere off this machine).
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// The cluster's Service network (routed nowhere off this machine).
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// Nameservers of pods with dnsPolicy ClusterFirst (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10.43.0.10")]
    pub cluster_dns: Vec<String>,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Where the CNI plugins are.
    #[arg(long, default_value = "/usr/lib/cni")]
    pub cni_bin_dir: PathBuf,
    /// host-local IPAM's state [default: DATA_DIR/cni].
    #[arg(long)]
    pub cni_data_dir: Option<PathBuf>,
    /// The pod bridge's name (at most 15 characters).
    #[arg(long, default_value = "flotilla0")]
    pub bridge: String,
    /// Prefix of the pods' network namespaces under /run/netns.
    #[arg(long, default_value = "flotilla-")]
    pub netns_prefix: String,
    /// The OCI runtime (runc; crun is accepted).
    #[arg(long, default_value = "/usr/sbin/runc")]
    pub runtime_binary: PathBuf,
    /// The OCI runtime's state directory (`runc --root`).
    #[arg(long, default_value = "/run/flotilla/runc")]
    pub runtime_root: PathBuf,
    /// Parent cgroup of every pod.
    #[arg(long, default_value = "flotilla")]
    pub cgroup_root: String,
    /// A registry mirror, `HOST=URL[,URL...]`; repeatable. Mirrors are tried in order, then
    /// the registry itself.
    #[arg(long = "registry-mirror", value_name = "HOST=URLS")]
    pub registry_mirrors: Vec<String>,
    /// Registries reached over plain HTTP (comma-separated or repeated).
    #[arg(long = "insecure-registry", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Command that starts a container supervisor (comma-separated argv) [default: this
    /// binary's `supervise`].
    #[arg(long, value_delimiter = ',', hide = true)]
    pub supervisor: Vec<String>,
    /// A label for the Node, `KEY=VALUE`; repeatable.
    #[arg(long = "node-label", value_name = "KEY=VALUE")]
    pub node_labels: Vec<String>,
    /// Hard eviction thresholds, as the kubelet's: `SIGNAL<QUANTITY` or `SIGNAL<PERCENT%`,
    /// comma-separated, for memory.available, nodefs.available, imagefs.available (the
    /// same disk here) and pid.available. A pressure condition turns True below its
    /// threshold; allocatable keeps the thresholds back. Signals left out are not watched.
    #[arg(
        long,
        value_name = "THRESHOLDS",
        default_value = "memory.available<100Mi,nodefs.available<10%,pid.available<10%",
        value_parser = parse_eviction
    )]
    pub eviction_hard: EvictionThresholds,
    /// Disk usage percentage above which unused images are removed; 100 turns image
    /// garbage collection off.
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub image_gc_high_threshold: u64,
    /// Disk usage percentage image garbage collection frees down to.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub image_gc_low_threshold: u64,
    /// How long an image must have gone unused before garbage collection may remove it,
    /// in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub minimum_image_ttl_seconds: u64,
}

fn parse_eviction(s: &str) -> Result<EvictionThresholds, String> {
    EvictionThresholds::parse(s).map_err(|e| e.to_string())
}

impl AgentOptions {
    pub fn config(&self, data_dir: PathBuf) -> anyhow::Result<AgentConfig> {
        let defaults = AgentConfig::default();
        let image_gc = ImageGcPolicy {
            high_percent: self.image_gc_high_threshold,
            low_percent: self.image_gc_low_threshold,
            min_age: std::time::Duration::from_secs(self.minimum_image_ttl_seconds),
        };
        image_gc.validate().map_err(anyhow::Error::msg)?;
        Ok(AgentConfig {
            node_name: self.node_name.clone().unwrap_or(defaults.node_name),
            node_ip: self.node_ip.unwrap_or(defaults.node_ip),
            data_dir,
            port: self.agent_port,
            pod_cidr: self.pod_cidr.clone().unwrap_or_default(),
            cluster_cidr: self.cluster_cidr.clone(),
            service_cidr: self.service_cidr.clone(),
            cluster_dns: self.cluster_dns.clone(),
            cluster_domain: self.cluster_domain.clone(),
            cni_bin_dir: self.cni_bin_dir.clone(),
            cni_data_dir: self.cni_data_dir.clone(),
            bridge: self.bridge.clone(),
            netns_prefix: self.netns_prefix.clone(),
            runtime_binary: self.runtime_binary.clone(),
            runtime_root: self.runtime_root.clone(),
            cgroup_root: self.cgroup_root.clone(),
            registry_mirrors: parse_mirrors(&self.registry_mirrors)?,
            insecure_registries: self.insecure_registries.clone(),
            max_pods: self.max_pods,
            supervisor: self.supervisor.clone(),
            node_labels: parse_labels(&self.node_labels)?,
            control_plane: false,
            node_client_cn: defaults.node_client_cn,
            eviction_hard: self.eviction_hard,
            image_gc,
        })
    }
}

fn parse_mirrors(flags: &[String]) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in flags {
        let (host, urls) = f
            .split_once('=')
            .with_context(|| format!("--registry-mirror {f:?}: expected HOST=URL[,URL...]"))?;
        let urls: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        if host.trim().is_empty() || urls.is_empty() {
            anyhow::bail!("--registry-mirror {f:?}: expected HOST=URL[,URL...]");
        }
        out.entry(host.trim().to_string()).or_default().extend(urls);
    }
    Ok(out)
}

fn parse_labels(flags: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    flags
        .iter()
        .map(|f| {
            let (k, v) = f
                .split_once('=')
                .with_context(|| format!("--node-label {f:?}: expected KEY=VALUE"))?;
            anyhow::ensure!(!k.is_empty(), "--node-label {f:?}: empty key");
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The API server's URL, e.g. https://10.0.0.1:6443.
    #[arg(long, env = "FLOTILLA_URL")]
    pub server: String,
    /// The join token: `K10<CA hash>::node:<secret>` from the server's DATA_DIR/token
    /// (pins the cluster CA), or the bare secret of DATA_DIR/node-token.
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The cluster CA, for a bare token; without it a bare token trusts the server's CA on
    /// first use.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The node's state: images, containers, sandboxes, volumes, logs.
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = "/var/lib/flotilla")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub options: AgentOptions,
    #[command(flatten)]
    pub simulate: SimulateArgs,
}

/// Simulated ("hollow") nodes for scale tests: no containers, no root needed.
#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Run this many simulated nodes in this process instead of a real node.
    #[arg(long, value_name = "N")]
    pub simulate: Option<usize>,
    /// Simulated nodes are named PREFIX-0 … PREFIX-(N-1).
    #[arg(long, default_value = "sim")]
    pub sim_name_prefix: String,
    /// CPU capacity of each simulated node.
    #[arg(long, default_value = "4")]
    pub sim_cpu: String,
    /// Memory capacity of each simulated node.
    #[arg(long, default_value = "16Gi")]
    pub sim_memory: String,
    /// Pod capacity of each simulated node.
    #[arg(long, default_value_t = 110)]
    pub sim_pods: u32,
    /// Zones (topology.kubernetes.io/zone) the simulated nodes are spread over.
    #[arg(long, default_value_t = 3)]
    pub sim_zones: usize,
}

impl SimulateArgs {
    fn config(&self, count: usize) -> agent::simulated::SimulatedConfig {
        agent::simulated::SimulatedConfig {
            count,
            name_prefix: self.sim_name_prefix.clone(),
            cpu: self.sim_cpu.clone(),
            memory: self.sim_memory.clone(),
            pods: self.sim_pods,
            zones: self.sim_zones,
            ..Default::default()
        }
    }
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let token: JoinToken = args.token.parse()?;
    if let Some(count) = args.simulate.simulate {
        return run_simulated(&args, &token, args.simulate.config(count));
    }
    let config = args.options.config(args.data_dir.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let ca = bootstrap::fetch_cluster_ca(&args.server, &token, args.ca_file.as_deref())
            .await
            .with_context(|| format!("fetching the cluster CA from {}", args.server))?;
        let client = bootstrap::client(&args.server, &ca, &token)?;
        tracing::info!(server = %args.server, node = %config.node_name, "joining the cluster");
        Agent::run(config, client, ca, apiserver::server::shutdown_signal()).await?;
        Ok(())
    })
}

fn run_simulated(
    args: &AgentArgs,
    token: &JoinToken,
    config: agent::simulated::SimulatedConfig,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let ca = bootstrap::fetch_cluster_ca(&args.server, token, args.ca_file.as_deref())
            .await
            .with_context(|| format!("fetching the cluster CA from {}", args.server))?;
        let client = bootstrap::client(&args.server, &ca, token)?;
        tracing::info!(server = %args.server, count = config.count, "running simulated nodes");
        agent::simulated::run(client, config, apiserver::server::shutdown_signal()).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: AgentArgs,
    }

    #[test]
    fn every_config_field_is_a_flag() {
        let w = Wrapper::try_parse_from([
            "agent",
            "--server",
            "https://127.0.0.1:6443",
            "--token",
            "t",
            "--data-dir",
            "/tmp/d",
            "--node-name",
            "n1",
            "--node-ip",
            "127.0.0.1",
            "--agent-port",
            "0",
            "--pod-cidr",
            "10.244.7.0/24",
            "--cluster-dns",
            "10.43.0.10,10.43.0.11",
            "--bridge",
            "flt7",
            "--netns-prefix",
            "t7-",
            "--runtime-root",
            "/run/t7",
            "--cgroup-root",
            "t7",
            "--cni-data-dir",
            "/tmp/d/cni",
            "--registry-mirror",
            "docker.io=http://127.0.0.1:5000,http://127.0.0.1:5001",
            "--insecure-registry",
            "a:1,b:2",
            "--max-pods",
            "20",
            "--node-label",
            "zone=a",
        ])
        .unwrap();
        let c = w.args.options.config(w.args.data_dir.clone()).unwrap();
        assert_eq!(c.node_name, "n1");
        assert_eq!(c.port, 0);
        assert_eq!(c.pod_cidr, "10.244.7.0/24");
        assert_eq!(c.cluster_dns, ["10.43.0.10", "10.43.0.11"]);
        assert_eq!(c.bridge, "flt7");
        assert_eq!(c.cni_data_dir(), PathBuf::from("/tmp/d/cni"));
        assert_eq!(
            c.registry_mirrors["docker.io"],
            ["http://127.0.0.1:5000", "http://127.0.0.1:5001"]
        );
        assert_eq!(c.insecure_registries, ["a:1", "b:2"]);
        assert_eq!(c.max_pods, 20);
        assert_eq!(c.node_labels["zone"], "a");
    }

    #[test]
    fn defaults_are_k3s_like() {
        let w = Wrapper::try_parse_from(["agent", "--server", "https://x:6443", "--token", "t"])
            .unwrap();
        let c = w.args.options.config(w.args.data_dir.clone()).unwrap();
        assert_eq!(c.port, 10250);
        assert_eq!(c.pod_cidr, "", "node IPAM assigns it");
        assert_eq!(c.service_cidr, "10.43.0.0/16");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/flotilla"));
        assert_eq!(c.runtime_binary, PathBuf::from("/usr/sbin/runc"));
        assert_eq!(c.eviction_hard, EvictionThresholds::default());
        assert_eq!(c.image_gc, ImageGcPolicy::default());
    }

    #[test]
    fn eviction_and_image_gc_flags_are_the_kubelets() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["agent", "--server", "https://x:6443", "--token", "t"];
            argv.extend_from_slice(extra);
            Wrapper::try_parse_from(argv)
        };
        let w = parse(&[
            "--eviction-hard",
            "memory.available<1Gi,nodefs.available<5%",
            "--image-gc-high-threshold",
            "100",
            "--image-gc-low-threshold",
            "90",
            "--minimum-image-ttl-seconds",
            "0",
        ])
        .unwrap();
        let c = w.args.options.config(w.args.data_dir.clone()).unwrap();
        assert_eq!(
            c.eviction_hard,
            EvictionThresholds::parse("memory.available<1Gi,nodefs.available<5%").unwrap()
        );
        assert_eq!(c.image_gc.high_percent, 100);
        assert_eq!(c.image_gc.min_age, std::time::Duration::ZERO);
        for bad in [
            &["--eviction-hard", "disk<1%"][..],
            &["--eviction-hard", "nodefs.available<101%"],
            &["--image-gc-high-threshold", "101"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let w = parse(&[
            "--image-gc-high-threshold=70",
            "--image-gc-low-threshold=80",
        ])
        .unwrap();
        let e = w.args.options.config(w.args.data_dir.clone()).unwrap_err();
        assert!(e.to_string().contains("must be less than"), "{e}");
    }

    #[test]
    fn malformed_mirrors_and_labels_are_errors() {
        assert!(parse_mirrors(&["docker.io".into()]).is_err());
        assert!(parse_mirrors(&["=http://x".into()]).is_err());
        assert!(parse_mirrors(&["docker.io=".into()]).is_err());
        assert!(parse_labels(&["novalue".into()]).is_err());
        assert!(parse_labels(&["=v".into()]).is_err());
    }
}
