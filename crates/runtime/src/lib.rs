//! The node's container runtime, shaped like the CRI the kubelet speaks to containerd:
//! [`cri::ImageService`] (image store, pull, unpack), [`cri::SandboxRuntime`] (a pod's
//! network, IPC and UTS namespaces and its /etc files) and [`cri::ContainerRuntime`]
//! (OCI bundles run by runc, each under a supervisor process that outlives the agent).
//!
//! The agent holds these as `Arc<dyn …>` so its pod workers are tested against fakes, and so
//! the three halves stay independent: each module owns one half.

pub mod cgroups;
pub mod containers;
pub mod cri;
pub mod image;
pub mod network;

pub use cri::{ContainerRuntime, ImageService, RuntimeError, SandboxRuntime};
