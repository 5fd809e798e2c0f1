//! The runtime's contract with the agent, modelled on the kubelet's CRI (RuntimeService and
//! ImageService) so a Kubernetes engineer finds the calls where they expect them.
//!
//! Every call is idempotent where the CRI's is: running a sandbox that already runs returns
//! it, stopping a stopped container succeeds, removing a missing one succeeds. The agent
//! relies on that to converge after a crash by simply replaying its decisions.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// Labels every sandbox and container carries, so a restarted agent can tell whose is whose.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0} not found")]
    NotFound(String),
    /// The image reference does not exist in its registry (kubelet: ErrImagePull).
    #[error("image {image}: {message}")]
    ImageNotFound { image: String, message: String },
    /// The registry could not be reached or answered with a server error.
    #[error("registry for {image}: {message}")]
    RegistryUnavailable { image: String, message: String },
    #[error("image {image}: unauthorized: {message}")]
    Unauthorized { image: String, message: String },
    /// imagePullPolicy Never and the image is not present (kubelet: ErrImageNeverPull).
    #[error("container image {0:?} is not present with pull policy of Never")]
    ImageNeverPull(String),
    #[error("invalid image reference {reference:?}: {message}")]
    InvalidImageReference { reference: String, message: String },
    /// runc (or crun) refused; `message` carries its stderr. The agent reports it as
    /// RunContainerError / CreateContainerError.
    #[error("OCI runtime: {0}")]
    Oci(String),
    #[error("CNI {plugin}: {message}")]
    Cni { plugin: String, message: String },
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------
// Images

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Credentials for one registry host, from a pod's imagePullSecrets
/// (`.dockerconfigjson` / `.dockercfg`), already decoded by the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// A registry host, optionally with a port and path prefix (`registry.local:5000`).
    pub server: String,
    pub username: String,
    pub password: String,
}

/// What an image's config says about running it (OCI image config `config` object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` strings, in image order.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid` as the image wrote it.
    pub user: Option<String>,
}

/// An image present on the node, ready to be a container's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The reference as the pod spec wrote it, normalised (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The image ID: the digest of its config blob (`sha256:…`), as `imageID` reports it.
    pub id: String,
    /// `repo@sha256:…` of the manifest it was pulled by, when pulled from a registry.
    pub repo_digest: Option<String>,
    /// Unpacked layer directories, lowest first: overlayfs lower dirs.
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
    /// Bytes on disk of the unpacked layers.
    pub size: u64,
}

#[async_trait]
pub trait ImageService: Send + Sync {
    /// Makes the image present per `policy` and returns it. Pulls honour registry mirrors
    /// and plain-HTTP registries from the node's configuration.
    async fn ensure_image(
        &self,
        reference: &str,
        policy: PullPolicy,
        auth: &[RegistryAuth],
    ) -> Result<Image>;
    /// The image if present, without pulling.
    async fn image_status(&self, reference: &str) -> Result<Option<Image>>;
    async fn list_images(&self) -> Result<Vec<Image>>;
    /// Removes an image by reference or ID; its layers go when no image uses them.
    async fn remove_image(&self, reference: &str) -> Result<()>;
    /// Removes images not in `in_use` (references or IDs) and not used for `min_age`, least
    /// recently used first, until at least `bytes_to_free` bytes are freed. Returns the
    /// bytes freed. The age spares an image pulled for a container not yet created.
    async fn garbage_collect(
        &self,
        in_use: &[String],
        bytes_to_free: u64,
        min_age: std::time::Duration,
    ) -> Result<u64>;
}

// ---------------------------------------------------------------------------------------
// Sandboxes

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// A hostPort: traffic to `host_ip:host_port` reaches the pod's `container_port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub container_port: u16,
    pub host_port: u16,
    pub host_ip: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandboxConfig {
    pub pod_uid: String,
    pub namespace: String,
    pub name: String,
    pub hostname: String,
    /// The subdomain part of the FQDN written into /etc/hosts, when the pod has one.
    pub subdomain: Option<String>,
    pub host_network: bool,
    pub port_mappings: Vec<PortMapping>,
    pub dns: DnsConfig,
    /// Extra /etc/hosts lines: (ip, hostnames).
    pub host_aliases: Vec<(String, Vec<String>)>,
    /// The pod-level cgroup, relative to the cgroup root (e.g. `flotilla/burstable/pod<uid>`);
    /// containers are placed beneath it.
    pub cgroup_parent: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandbox {
    pub id: String,
    pub pod_uid: String,
    pub namespace: String,
    pub name: String,
    pub state: SandboxState,
    pub created_at: SystemTime,
    /// The bind-mounted namespaces the pod's containers join; None for hostNetwork's net.
    pub netns_path: Option<PathBuf>,
    pub ipc_ns_path: Option<PathBuf>,
    pub uts_ns_path: Option<PathBuf>,
    /// Primary pod IP first; empty for hostNetwork (the agent reports the node IP).
    pub ips: Vec<IpAddr>,
    /// Files each container mounts: /etc/hosts, /etc/hostname, /etc/resolv.conf.
    pub hosts_path: PathBuf,
    pub hostname_path: PathBuf,
    pub resolv_conf_path: PathBuf,
    pub cgroup_parent: String,
    pub labels: BTreeMap<String, String>,
}

#[async_trait]
pub trait SandboxRuntime: Send + Sync {
    /// Creates (or returns the existing) sandbox for `config.pod_uid`: namespaces, CNI ADD,
    /// /etc files, the pod cgroup.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<PodSandbox>;
    /// Releases the network (CNI DEL with the same runtime config as ADD) and leaves the
    /// record so status can still be read. Idempotent.
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    /// Removes everything the sandbox holds: namespaces, files, the pod cgroup. Stops it
    /// first if needed. Idempotent.
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandbox>;
    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandbox>>;
}

// ---------------------------------------------------------------------------------------
// Containers

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    pub host_path: PathBuf,
    pub readonly: bool,
    /// `subPath` already resolved by the agent into `host_path`.
    pub propagation: MountPropagation,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MountPropagation {
    #[default]
    Private,
    HostToContainer,
    Bidirectional,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    pub privileged: bool,
    /// Resolved uid/gid (runAsUser/runAsGroup, else the image's numeric user, else 0).
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub supplemental_groups: Vec<u32>,
    /// Capability names without the CAP_ prefix, as Kubernetes writes them (`NET_ADMIN`,
    /// `ALL`).
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub readonly_rootfs: bool,
    pub no_new_privileges: bool,
}

/// Cgroup limits from the container's resources (the kubelet's mapping).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// cpu.shares (v1) / cpu.weight (v2 derived), from the CPU request; 2 when none.
    pub cpu_shares: Option<u64>,
    /// CFS quota in µs per `cpu_period`, from the CPU limit.
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    pub name: String,
    /// Restart count of this container in the pod: each restart is a new container.
    pub attempt: u32,
    pub image: Image,
    /// The final argv (entrypoint/command and args already merged per Kubernetes' rules).
    pub args: Vec<String>,
    /// `NAME=value`, fully resolved, image env first then the pod's.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub mounts: Vec<Mount>,
    pub security: SecurityConfig,
    pub resources: Resources,
    /// CRI log file for this attempt; the supervisor writes it.
    pub log_path: PathBuf,
    /// Where terminationMessagePath of the container is backed on the host.
    pub termination_message_path: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub exit_code: Option<i32>,
    /// `OOMKilled`, `Error`, `Completed` for exited containers.
    pub reason: Option<String>,
    pub message: Option<String>,
    pub image_ref: String,
    pub image_id: String,
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

pub type BoxedReader = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxedWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// A live exec or attach: byte streams to and from the process and its exit.
/// With a TTY stdout carries the terminal and stderr is None.
pub struct StreamSession {
    pub stdin: Option<BoxedWriter>,
    pub stdout: Option<BoxedReader>,
    pub stderr: Option<BoxedReader>,
    pub resize: Option<tokio::sync::mpsc::Sender<TerminalSize>>,
    /// Resolves to the exit code of an exec; an attach resolves when the client detaches
    /// or the container exits.
    pub exit: futures::future::BoxFuture<'static, Result<i32>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// CPU and memory of one cgroup, as the Summary API and metrics.k8s.io report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupStats {
    pub timestamp: SystemTime,
    /// Cumulative CPU time.
    pub cpu_usage_nanos: u64,
    /// Usage minus inactive file pages: what the kubelet calls the working set.
    pub memory_working_set_bytes: u64,
    pub memory_usage_bytes: u64,
}

#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Writes the bundle and mounts the rootfs; the container is Created, not running.
    async fn create_container(
        &self,
        sandbox: &PodSandbox,
        config: &ContainerConfig,
    ) -> Result<String>;
    /// Starts the supervisor, which runs the container and records its exit.
    async fn start_container(&self, id: &str) -> Result<()>;
    /// SIGTERM, then SIGKILL once `grace` has passed. Returns when the container exited.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;
    /// Deletes the container, its rootfs mount and bundle. Keeps its log file. Idempotent.
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    async fn list_containers(&self) -> Result<Vec<ContainerStatus>>;
    /// Runs `cmd` in the container and collects its output (exec probes, hooks).
    async fn exec_sync(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult>;
    async fn exec(&self, id: &str, cmd: &[String], opts: StreamOptions) -> Result<StreamSession>;
    async fn attach(&self, id: &str, opts: StreamOptions) -> Result<StreamSession>;
    async fn container_stats(&self, id: &str) -> Result<CgroupStats>;
    /// Stats of a whole cgroup (a pod's, or the node's root) by its relative path.
    async fn cgroup_stats(&self, cgroup: &str) -> Result<CgroupStats>;
}
