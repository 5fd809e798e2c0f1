//! Pod sandboxes: persistent network, IPC and UTS namespaces, CNI networking (bridge,
//! host-local, portmap, loopback) and the pod's /etc/hosts, hostname and resolv.conf.
//! Implements [`crate::cri::SandboxRuntime`].
//!
//! ```text
//! run_pod_sandbox ─► record (NotReady) ─► namespaces ─► CNI ADD lo, eth0 ─► /etc files ─► record (Ready)
//! stop            ─► CNI DEL with the recorded config and runtimeConfig ─► record (NotReady)
//! remove          ─► stop ─► unmount namespaces ─► pod cgroup ─► rm root/<id>
//! ```
//!
//! - [`sandboxes`]: the [`Sandboxes`] runtime, one lock per sandbox.
//! - [`namespaces`]: bind-mounted namespaces and [`connect_in_netns`].
//! - [`cni`]: a typed client for CNI plugins; [`conflist`]: the node's network config.
//! - [`etc_files`]: hosts, hostname, resolv.conf; [`state`]: the per-sandbox record.
//! - [`routes`]: unreachable routes for the cluster and service CIDRs.

pub mod cni;
pub mod conflist;
pub mod etc_files;
pub mod namespaces;
pub mod routes;
pub mod sandboxes;
pub mod state;

use std::path::PathBuf;

pub use namespaces::connect_in_netns;
pub use sandboxes::Sandboxes;

/// A node's pod network. Several nodes share a machine in tests, so every name that is
/// global on the machine (bridge, netns names, IPAM dataDir) is part of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// DATA_DIR/sandboxes: per-sandbox state and /etc files.
    pub root: PathBuf,
    /// Where the CNI plugins are (/usr/lib/cni on Debian).
    pub cni_bin_dir: PathBuf,
    /// host-local IPAM dataDir; unique per node, or one node frees another's IPs.
    pub cni_data_dir: PathBuf,
    /// This node's pod subnet, e.g. "10.42.0.0/24".
    pub pod_cidr: String,
    /// Bridge name (≤15 bytes).
    pub bridge: String,
    /// Prefix of the names under /run/netns.
    pub netns_prefix: String,
    pub mtu: Option<u32>,
    /// Gets an unreachable host route, so cluster traffic never leaves by the default route.
    pub cluster_cidr: Option<String>,
    /// Same as `cluster_cidr`.
    pub service_cidr: Option<String>,
    /// "cluster.local": the FQDN suffix in /etc/hosts.
    pub cluster_domain: String,
}
