//! The node agent: what the kubelet does, for one node (or, in simulated mode, for many).
//!
//! - [`agent`] and [`config`]: the wiring of everything below, one field per flag.
//! - [`node`]: registers the Node, reports its status and renews its Lease.
//! - [`pod_workers`]: one task per pod, driving the runtime towards the pod's spec and
//!   reporting its status.
//! - [`volumemanager`] and [`envvars`]: what a container sees of its pod (volumes, env).
//! - [`prober`] and [`lifecycle`]: probes and hooks.
//! - [`stats`]: cgroup figures for the Summary API and metrics.k8s.io.
//! - [`server`]: the node's HTTPS endpoint (logs, exec, attach, port-forward, stats), which
//!   the API server proxies to.
//! - [`simulated`]: hollow nodes for scale tests.

pub mod agent;
pub mod config;
pub mod envvars;
pub mod events;
pub mod lifecycle;
pub mod node;
pub mod pod_workers;
pub mod prober;
pub mod server;
pub mod simulated;
pub mod stats;
pub mod volumemanager;
