//! Containers: OCI bundles generated from a [`crate::cri::ContainerConfig`], run by runc
//! under a per-container supervisor, with CRI-format logs, exec, attach and cgroup stats.
//! Implements [`crate::cri::ContainerRuntime`].
