//! Pod sandboxes: persistent network, IPC and UTS namespaces, CNI networking (bridge,
//! host-local, portmap, loopback) and the pod's /etc/hosts, hostname and resolv.conf.
//! Implements [`crate::cri::SandboxRuntime`].
