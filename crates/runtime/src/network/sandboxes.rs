//! [`Sandboxes`]: the pod sandbox runtime. Every operation on one sandbox holds that
//! sandbox's lock, so a pod worker and housekeeping never interleave on the same pod;
//! different pods proceed in parallel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use ipnet::IpNet;

use super::cni::{self, Attachment, CniResult, Command};
use super::conflist::{self, PodNetwork};
use super::namespaces::{self, NamespaceSet, NETNS_RUN_DIR};
use super::state::{self, CniAttachment, RecordState, SandboxRecord};
use super::{etc_files, routes, NetworkConfig};
use crate::cri::{self, PodSandbox, PodSandboxConfig, Result, RuntimeError};

const NODE_HOSTS: &str = "/etc/hosts";
const NODE_RESOLV_CONF: &str = "/etc/resolv.conf";
/// On systemd-resolved machines /etc/resolv.conf names only its loopback stub; this file
/// lists the real upstream servers (the kubelet is pointed at it the same way).
const RESOLVED_UPSTREAM_CONF: &str = "/run/systemd/resolve/resolv.conf";

pub struct Sandboxes {
    config: NetworkConfig,
    cni: cni::Client,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn invalid(what: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Invalid {
        what: what.to_string(),
        message: message.into(),
    }
}

fn parse_cidr(what: &str, s: &str) -> Result<IpNet> {
    s.parse::<IpNet>()
        .map_err(|e| invalid(what, format!("{s:?}: {e}")))
}

/// Runs filesystem and namespace work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RuntimeError::Other(format!("blocking task failed: {e}")))?
}

impl Sandboxes {
    /// Checks the configuration and the plugins, creates the state dirs and installs the
    /// unreachable routes for the cluster and service CIDRs.
    pub fn new(config: NetworkConfig) -> Result<Self> {
        parse_cidr("pod CIDR", &config.pod_cidr)?;
        let name_ok = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        };
        if config.bridge.is_empty() || config.bridge.len() > 15 || !name_ok(&config.bridge) {
            return Err(invalid(
                "bridge name",
                format!("{:?}: 1-15 of [A-Za-z0-9._-]", config.bridge),
            ));
        }
        if !name_ok(&config.netns_prefix) || config.netns_prefix.len() > 100 {
            return Err(invalid(
                "netns prefix",
                format!("{:?}: up to 100 of [A-Za-z0-9._-]", config.netns_prefix),
            ));
        }
        if config.cni_data_dir.to_str().is_none() || config.root.to_str().is_none() {
            return Err(invalid(
                "path",
                "the sandbox root and CNI dataDir must be UTF-8",
            ));
        }
        let extra: Vec<IpNet> = [
            ("cluster CIDR", &config.cluster_cidr),
            ("service CIDR", &config.service_cidr),
        ]
        .into_iter()
        .filter_map(|(what, c)| c.as_deref().map(|c| parse_cidr(what, c)))
        .collect::<Result<_>>()?;
        cni::check_plugins(&config.cni_bin_dir, &conflist::REQUIRED_PLUGINS)?;
        for dir in [&config.root, &config.cni_data_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| RuntimeError::io(format!("create {}", dir.display()), e))?;
        }
        for cidr in &extra {
            routes::ensure_unreachable(cidr)?;
        }
        Ok(Sandboxes {
            cni: cni::Client::new(config.cni_bin_dir.clone()),
            config,
            locks: Mutex::new(HashMap::new()),
        })
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.config.root.join(id)
    }

    fn netns_path(&self, id: &str) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(format!("{}{id}", self.config.netns_prefix))
    }

    async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(id.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Forgets a removed sandbox's lock unless someone is waiting on it.
    fn forget_lock(&self, id: &str) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.get(id).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(id);
        }
    }

    async fn load(&self, id: &str) -> Result<Option<SandboxRecord>> {
        let dir = self.dir(id);
        blocking(move || SandboxRecord::load(&dir)).await
    }

    async fn save(&self, rec: &SandboxRecord) -> Result<()> {
        let dir = self.dir(&rec.id);
        let rec = rec.clone();
        blocking(move || rec.save(&dir)).await
    }

    fn attachment(&self, rec: &SandboxRecord, args: &[(String, String)]) -> Attachment {
        let netns = rec.netns_path.clone().unwrap_or_default();
        Attachment {
            container_id: rec.id.clone(),
            // An unmounted namespace is gone; plugins treat an empty path on DEL as
            // "release host-side state only".
            netns: if namespaces::is_mounted_ns(&netns) {
                netns
            } else {
                PathBuf::new()
            },
            ifname: conflist::POD_IFNAME.to_string(),
            args: args.to_vec(),
        }
    }

    fn new_record(&self, config: &PodSandboxConfig, id: &str) -> Result<SandboxRecord> {
        let dir = self.dir(id);
        let hostname = if config.host_network {
            nix::unistd::gethostname()
                .map_err(|e| RuntimeError::io("read the node's hostname", e.into()))?
                .to_string_lossy()
                .into_owned()
        } else {
            config.hostname.clone()
        };
        let cni = (!config.host_network).then(|| {
            let data_dir = self.config.cni_data_dir.to_string_lossy();
            let net = PodNetwork {
                bridge: &self.config.bridge,
                pod_cidr: &self.config.pod_cidr,
                data_dir: &data_dir,
                mtu: self.config.mtu,
            };
            CniAttachment {
                conflist: net.conflist(!config.port_mappings.is_empty()),
                runtime_config: conflist::runtime_config(&config.port_mappings),
                args: vec![
                    ("K8S_POD_NAMESPACE".into(), config.namespace.clone()),
                    ("K8S_POD_NAME".into(), config.name.clone()),
                    ("K8S_POD_INFRA_CONTAINER_ID".into(), id.to_string()),
                    ("K8S_POD_UID".into(), config.pod_uid.clone()),
                ],
                result: None,
                // Saved as attached before ADD starts: DEL of what was never added is a
                // no-op, while a crash during ADD must leave a record that DEL runs for.
                attached: true,
            }
        });
        Ok(SandboxRecord {
            id: id.to_string(),
            pod_uid: config.pod_uid.clone(),
            namespace: config.namespace.clone(),
            name: config.name.clone(),
            hostname,
            host_network: config.host_network,
            state: RecordState::NotReady,
            created_at: SystemTime::now(),
            netns_path: (!config.host_network).then(|| self.netns_path(id)),
            ipc_ns_path: dir.join("ns").join("ipc"),
            uts_ns_path: dir.join("ns").join("uts"),
            ips: Vec::new(),
            cgroup_parent: config.cgroup_parent.clone(),
            labels: config.labels.clone(),
            cni,
        })
    }

    /// Namespaces, network and files of a recorded (NotReady) sandbox; Ready at the end.
    async fn set_up(&self, rec: &mut SandboxRecord, config: &PodSandboxConfig) -> Result<()> {
        let set = NamespaceSet {
            net: rec.netns_path.clone(),
            ipc: rec.ipc_ns_path.clone(),
            uts: rec.uts_ns_path.clone(),
            hostname: rec.hostname.clone(),
        };
        blocking(move || {
            namespaces::create(&set).map_err(|e| RuntimeError::io("create pod namespaces", e))
        })
        .await?;

        if let Some(mut att) = rec.cni.clone() {
            let mut lo = self.attachment(rec, &att.args);
            lo.ifname = "lo".to_string();
            let eth0 = self.attachment(rec, &att.args);
            // lo and eth0 are independent: bring them up side by side.
            let loopback = conflist::loopback_config();
            let (lo_done, result) = tokio::join!(
                self.cni.exec(Command::Add, &loopback, &lo),
                self.cni.add_list(&att.conflist, &eth0, &att.runtime_config)
            );
            lo_done?;
            let result = result?;
            let parsed: CniResult =
                serde_json::from_value(result.clone()).map_err(|e| RuntimeError::Cni {
                    plugin: "bridge".to_string(),
                    message: format!("unreadable result: {e}"),
                })?;
            rec.ips = parsed.sandbox_ips().map_err(|message| RuntimeError::Cni {
                plugin: "bridge".to_string(),
                message,
            })?;
            if rec.ips.is_empty() {
                return Err(RuntimeError::Cni {
                    plugin: "bridge".to_string(),
                    message: "the result has no address for the pod".to_string(),
                });
            }
            att.result = Some(result);
            rec.cni = Some(att);
        }

        let hosts = if rec.host_network {
            let node = read_node_file(NODE_HOSTS)?;
            etc_files::hosts_host_network(&node, &config.host_aliases)
        } else {
            etc_files::hosts(config, &rec.ips, &self.config.cluster_domain)
        };
        let mut node_resolv = read_node_file(NODE_RESOLV_CONF)?;
        if !rec.host_network && !etc_files::has_usable_nameserver(&node_resolv) {
            let upstream = read_node_file(RESOLVED_UPSTREAM_CONF)?;
            if etc_files::has_usable_nameserver(&upstream) {
                node_resolv = upstream;
            }
        }
        let resolv = etc_files::resolv_conf(&config.dns, &node_resolv, rec.host_network);
        let hostname = etc_files::hostname(&rec.hostname);
        let dir = self.dir(&rec.id);
        blocking(move || {
            state::replace_file(&dir.join("hosts"), hosts.as_bytes())?;
            state::replace_file(&dir.join("hostname"), hostname.as_bytes())?;
            state::replace_file(&dir.join("resolv.conf"), resolv.as_bytes())
        })
        .await?;

        rec.state = RecordState::Ready;
        self.save(rec).await
    }

    /// CNI DEL with what ADD was given, if the network may still be attached.
    async fn release_network(&self, rec: &mut SandboxRecord) -> Result<()> {
        let Some(mut att) = rec.cni.clone() else {
            return Ok(());
        };
        if !att.attached {
            return Ok(());
        }
        let attachment = self.attachment(rec, &att.args);
        self.cni
            .del_list(
                &att.conflist,
                &attachment,
                &att.runtime_config,
                att.result.as_ref(),
            )
            .await?;
        att.attached = false;
        rec.cni = Some(att);
        Ok(())
    }

    /// Everything `remove` does, with the sandbox's lock already held.
    async fn tear_down(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        let rec = match self.load(id).await {
            Ok(rec) => rec,
            Err(e) => {
                // An unreadable record must not pin the sandbox forever: clean what the
                // paths alone allow (the network release needs the record).
                tracing::warn!(sandbox = id, error = %e, "removing a sandbox with an unreadable record");
                None
            }
        };
        if let Some(mut rec) = rec.clone() {
            self.release_network(&mut rec).await?;
            if rec.cni.is_some() {
                rec.state = RecordState::NotReady;
                rec.ips.clear();
                self.save(&rec).await?;
            }
        }
        let ns_paths = [
            self.netns_path(id),
            dir.join("ns").join("ipc"),
            dir.join("ns").join("uts"),
        ];
        let cgroup = rec.map(|r| r.cgroup_parent).unwrap_or_default();
        blocking(move || {
            for p in &ns_paths {
                namespaces::remove(p).map_err(|e| {
                    RuntimeError::io(format!("remove namespace {}", p.display()), e)
                })?;
            }
            if !cgroup.is_empty() {
                crate::cgroups::remove(&cgroup)?;
            }
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(RuntimeError::io(format!("remove {}", dir.display()), e))
                }
                _ => Ok(()),
            }
        })
        .await
    }
}

fn intact(rec: &SandboxRecord) -> bool {
    rec.netns_path
        .as_deref()
        .is_none_or(namespaces::is_mounted_ns)
        && namespaces::is_mounted_ns(&rec.ipc_ns_path)
        && namespaces::is_mounted_ns(&rec.uts_ns_path)
}

/// The sandbox as it is now: a Ready record whose namespaces are gone (the machine
/// rebooted, someone ran `ip netns del`) is NotReady, so the pod worker builds a new one.
fn observed(rec: &SandboxRecord, dir: &Path) -> PodSandbox {
    let mut sb = rec.to_pod_sandbox(dir);
    if sb.state == cri::SandboxState::Ready && !intact(rec) {
        sb.state = cri::SandboxState::NotReady;
    }
    sb
}

fn read_node_file(path: &str) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(RuntimeError::io(format!("read {path}"), e)),
    }
}

fn validate(config: &PodSandboxConfig) -> Result<()> {
    if config.pod_uid.is_empty() {
        return Err(invalid("pod UID", "empty"));
    }
    etc_files::validate(config)?;
    for text in [&config.namespace, &config.name, &config.pod_uid] {
        // They travel in CNI_ARGS, which is `;`-separated `K=V`.
        if text.contains([';', '=']) || text.chars().any(char::is_control) {
            return Err(invalid("pod identity", format!("{text:?}")));
        }
    }
    for p in &config.port_mappings {
        if p.host_port == 0 || p.container_port == 0 {
            return Err(invalid(
                "port mapping",
                format!(
                    "hostPort {} → containerPort {}: ports must be 1-65535",
                    p.host_port, p.container_port
                ),
            ));
        }
    }
    if config.host_network && !config.port_mappings.is_empty() {
        // hostNetwork pods listen on the node directly; portmap has no namespace to map to.
        tracing::debug!(pod = %config.name, "port mappings ignored for a hostNetwork pod");
    }
    Ok(())
}

#[async_trait]
impl cri::SandboxRuntime for Sandboxes {
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<PodSandbox> {
        validate(config)?;
        let mut config = config.clone();
        if config.host_network {
            config.port_mappings.clear();
        }
        let id = state::sandbox_id(&config.pod_uid);
        let _guard = self.lock(&id).await;
        let dir = self.dir(&id);
        if let Some(rec) = self.load(&id).await? {
            if rec.state == RecordState::Ready && intact(&rec) {
                return Ok(rec.to_pod_sandbox(&dir));
            }
            // Stopped, half-built or its namespaces are gone: start afresh.
            self.tear_down(&id).await?;
        }
        let mut rec = self.new_record(&config, &id)?;
        let mkdir = dir.clone();
        blocking(move || {
            std::fs::create_dir_all(mkdir.join("ns"))
                .map_err(|e| RuntimeError::io(format!("create {}", mkdir.display()), e))
        })
        .await?;
        // Recorded before anything exists, so a crash at any later point is cleaned up by
        // the next remove (or run) of this sandbox.
        self.save(&rec).await?;
        match self.set_up(&mut rec, &config).await {
            Ok(()) => {
                tracing::info!(sandbox = %id, pod = %format!("{}/{}", config.namespace, config.name),
                    ips = ?rec.ips, "sandbox ready");
                Ok(rec.to_pod_sandbox(&dir))
            }
            Err(e) => {
                if let Err(cleanup) = self.tear_down(&id).await {
                    tracing::warn!(sandbox = %id, error = %cleanup, "cleaning up a failed sandbox");
                }
                Err(e)
            }
        }
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        if !state::valid_id(id) {
            return Ok(());
        }
        let _guard = self.lock(id).await;
        let Some(mut rec) = self.load(id).await? else {
            return Ok(());
        };
        self.release_network(&mut rec).await?;
        rec.state = RecordState::NotReady;
        rec.ips.clear();
        self.save(&rec).await
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        if !state::valid_id(id) {
            return Ok(());
        }
        let guard = self.lock(id).await;
        let result = self.tear_down(id).await;
        drop(guard);
        if result.is_ok() {
            self.forget_lock(id);
        }
        result
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandbox> {
        if !state::valid_id(id) {
            return Err(RuntimeError::NotFound(format!("sandbox {id:?}")));
        }
        match self.load(id).await? {
            Some(rec) => Ok(observed(&rec, &self.dir(id))),
            None => Err(RuntimeError::NotFound(format!("sandbox {id}"))),
        }
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandbox>> {
        let root = self.config.root.clone();
        blocking(move || {
            let entries = std::fs::read_dir(&root)
                .map_err(|e| RuntimeError::io(format!("list {}", root.display()), e))?;
            let mut out = Vec::new();
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !state::valid_id(&name) {
                    continue;
                }
                let dir = entry.path();
                match SandboxRecord::load(&dir) {
                    Ok(Some(rec)) => out.push(observed(&rec, &dir)),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(sandbox = %name, error = %e, "unreadable sandbox record")
                    }
                }
            }
            out.sort_by_key(|s| s.created_at);
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::{DnsConfig, PortMapping, Protocol};

    fn config() -> PodSandboxConfig {
        PodSandboxConfig {
            pod_uid: "0b8e-uid".into(),
            namespace: "default".into(),
            name: "web".into(),
            hostname: "web".into(),
            subdomain: None,
            host_network: false,
            port_mappings: vec![],
            dns: DnsConfig::default(),
            host_aliases: vec![],
            cgroup_parent: "flotilla/podx".into(),
            labels: Default::default(),
        }
    }

    #[test]
    fn pod_identity_cannot_break_cni_args() {
        assert!(validate(&config()).is_ok());
        for bad in ["a;b", "a=b", "a\nb"] {
            let mut c = config();
            c.name = bad.into();
            assert!(
                matches!(validate(&c), Err(RuntimeError::Invalid { .. })),
                "{bad:?}"
            );
        }
        let mut c = config();
        c.pod_uid = String::new();
        assert!(validate(&c).is_err());
        let mut c = config();
        c.port_mappings = vec![PortMapping {
            protocol: Protocol::Udp,
            container_port: 0,
            host_port: 53,
            host_ip: None,
        }];
        assert!(validate(&c).is_err());
    }

    #[test]
    fn new_rejects_a_bad_node_config_before_touching_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let good = NetworkConfig {
            root: dir.path().join("sb"),
            cni_bin_dir: dir.path().join("no-plugins"),
            cni_data_dir: dir.path().join("cni"),
            pod_cidr: "10.244.9.0/24".into(),
            bridge: "flo0".into(),
            netns_prefix: "t-".into(),
            mtu: None,
            cluster_cidr: None,
            service_cidr: None,
            cluster_domain: "cluster.local".into(),
        };
        // Missing plugins are reported as such (a CNI error naming the plugin).
        assert!(matches!(
            Sandboxes::new(good.clone()),
            Err(RuntimeError::Cni { .. })
        ));
        let mut c = good.clone();
        c.service_cidr = Some("10.43.0.0/99".into());
        assert!(matches!(
            Sandboxes::new(c),
            Err(RuntimeError::Invalid { .. })
        ));
        let mut c = good;
        c.bridge = "x".repeat(16);
        assert!(matches!(
            Sandboxes::new(c),
            Err(RuntimeError::Invalid { .. })
        ));
        assert!(
            !dir.path().join("sb").exists(),
            "nothing created on failure"
        );
    }
}
