//! The agent's configuration: one field per `flotilla agent` flag, with k3s-like defaults.
//!
//! Paths under `data_dir` follow one layout whether the agent runs alone or inside
//! `flotilla server` (which shares its data dir): `images/`, `containers/`, `sandboxes/`,
//! `pods/`, `pod-logs/`, `cni/` and `node/` (the node server's certificate).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

pub use crate::node::eviction::EvictionThresholds;
pub use crate::node::image_gc::ImageGcPolicy;

/// The CN of the client certificate the API server presents to nodes; the node server
/// accepts nothing else.
pub const DEFAULT_NODE_CLIENT_CN: &str = "flotilla-apiserver-node-client";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The Node's name; the host name by default.
    pub node_name: String,
    /// The node's InternalIP, where the API server reaches the node server.
    pub node_ip: IpAddr,
    pub data_dir: PathBuf,
    /// The node's HTTPS endpoint (the kubelet's 10250); 0 picks a free port.
    pub port: u16,
    /// This node's pod subnet; empty: the one node IPAM assigns to the Node
    /// (`spec.podCIDR`), waited for after registration.
    pub pod_cidr: String,
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub cni_bin_dir: PathBuf,
    /// host-local IPAM's dataDir; `data_dir/cni` when None. Nodes sharing one would free
    /// each other's addresses.
    pub cni_data_dir: Option<PathBuf>,
    pub bridge: String,
    pub netns_prefix: String,
    pub runtime_binary: PathBuf,
    /// runc's `--root`: container state; unique per node.
    pub runtime_root: PathBuf,
    /// Parent of every pod cgroup (`<cgroup_root>/<qos>/pod<uid>`).
    pub cgroup_root: String,
    /// Registry host → mirror endpoints tried in order before the registry itself.
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
    /// Registry hosts reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    pub max_pods: u32,
    /// argv prefix that starts a container supervisor; `[<this binary>, "supervise"]` when
    /// empty.
    pub supervisor: Vec<String>,
    /// Labels the Node carries besides the well-known ones.
    pub node_labels: BTreeMap<String, String>,
    /// Marks the Node `node-role.kubernetes.io/control-plane` (the server's own agent).
    pub control_plane: bool,
    /// The CN of the API server's client certificate the node server accepts.
    pub node_client_cn: String,
    /// `--eviction-hard`: when the pressure conditions turn True, and what allocatable
    /// keeps back.
    pub eviction_hard: EvictionThresholds,
    /// `--image-gc-high-threshold` / `--image-gc-low-threshold`: disk usage percentages
    /// that start image garbage collection and where it stops; 100 turns it off.
    pub image_gc: ImageGcPolicy,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            node_name: host_name().unwrap_or_else(|| "localhost".into()),
            node_ip: default_node_ip().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            data_dir: PathBuf::from("/var/lib/flotilla"),
            port: 10250,
            pod_cidr: String::new(),
            cluster_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
            cluster_dns: vec!["10.43.0.10".into()],
            cluster_domain: "cluster.local".into(),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            cni_data_dir: None,
            bridge: "flotilla0".into(),
            netns_prefix: "flotilla-".into(),
            runtime_binary: PathBuf::from("/usr/sbin/runc"),
            runtime_root: PathBuf::from("/run/flotilla/runc"),
            cgroup_root: "flotilla".into(),
            registry_mirrors: BTreeMap::new(),
            insecure_registries: Vec::new(),
            max_pods: 110,
            supervisor: Vec::new(),
            node_labels: BTreeMap::new(),
            control_plane: false,
            node_client_cn: DEFAULT_NODE_CLIENT_CN.into(),
            eviction_hard: EvictionThresholds::default(),
            image_gc: ImageGcPolicy::default(),
        }
    }
}

impl AgentConfig {
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }
    pub fn containers_dir(&self) -> PathBuf {
        self.data_dir.join("containers")
    }
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.data_dir.join("sandboxes")
    }
    /// Volumes: `pods/<uid>/volumes/...`, the kubelet's layout.
    pub fn pods_dir(&self) -> PathBuf {
        self.data_dir.join("pods")
    }
    pub fn pod_logs_dir(&self) -> PathBuf {
        self.data_dir.join("pod-logs")
    }
    pub fn cni_data_dir(&self) -> PathBuf {
        self.cni_data_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cni"))
    }
}

/// The kernel's host name, lower-cased as a Node name must be.
pub fn host_name() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?;
    let name = name.to_string_lossy().trim().to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

/// The first IPv4 address of an interface that is up and not loopback, as k3s picks the
/// node IP when none is given.
pub fn default_node_ip() -> Option<IpAddr> {
    use nix::net::if_::InterfaceFlags;
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    let mut found = addrs
        .filter(|a| {
            a.flags.contains(InterfaceFlags::IFF_UP)
                && !a.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        })
        .filter_map(|a| {
            a.address
                .as_ref()
                .and_then(|s| s.as_sockaddr_in().map(|sin| sin.ip()))
        })
        .filter(|ip| !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified());
    found.next().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_k3s_like() {
        let c = AgentConfig::default();
        assert_eq!(c.port, 10250);
        assert_eq!(c.cluster_cidr, "10.42.0.0/16");
        assert_eq!(c.service_cidr, "10.43.0.0/16");
        assert_eq!(c.cluster_dns, ["10.43.0.10"]);
        assert_eq!(c.max_pods, 110);
        assert!(c.pod_cidr.is_empty(), "node IPAM assigns it");
        assert!(!c.node_name.is_empty());
        assert_eq!(c.cni_data_dir(), PathBuf::from("/var/lib/flotilla/cni"));
    }

    #[test]
    fn the_default_node_ip_is_not_loopback_when_the_host_has_another() {
        if let Some(ip) = default_node_ip() {
            assert!(!ip.is_loopback());
            assert!(ip.is_ipv4());
        }
    }
}
