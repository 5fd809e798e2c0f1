//! The OCI runtime spec (a bundle's config.json) for one container of a pod, following the
//! kubelet + containerd mapping: the pod's namespaces joined by path, the image rootfs,
//! Kubernetes' default capabilities, the pod's /etc files and volumes as bind mounts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{
    get_default_mounts, Capabilities, Capability, LinuxCapabilities, LinuxCpu, LinuxDevice,
    LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids,
    LinuxResources, Mount, Spec,
};

use crate::cri::{ContainerConfig, MountPropagation, PodSandbox, RuntimeError};

/// What containerd grants a container that asks for nothing else.
const DEFAULT_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability, in the kernel's bit order (CAP_CHOWN is bit 0).
const ALL_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn parse_cap(name: &str) -> Result<Capability, RuntimeError> {
    let bare = name.trim().to_ascii_uppercase();
    let bare = bare.strip_prefix("CAP_").unwrap_or(&bare);
    Capability::from_str(bare).map_err(|_| RuntimeError::Invalid {
        what: "capability".into(),
        message: format!("unknown capability {name:?}"),
    })
}

fn cap_set(names: &[&str]) -> Capabilities {
    names.iter().filter_map(|n| parse_cap(n).ok()).collect()
}

/// "All capabilities" means all that this process may grant: its bounding set (a runtime
/// inside a container often lacks some, and runc fails on any it cannot give).
pub(crate) fn grantable_caps() -> Capabilities {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    let names: Vec<&str> = ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| *name)
        .collect();
    cap_set(&names)
}

/// Kubernetes' rule: start from the default set (all when privileged), drop (ALL empties it),
/// then add (ALL grants everything). `all` is what "everything" means here.
pub(crate) fn capabilities(
    privileged: bool,
    add: &[String],
    drop: &[String],
    all: &Capabilities,
) -> Result<Capabilities, RuntimeError> {
    if privileged {
        return Ok(all.clone());
    }
    let is_all = |s: &String| s.eq_ignore_ascii_case("ALL");
    let mut caps: HashSet<Capability> = if drop.iter().any(is_all) {
        HashSet::new()
    } else {
        let mut caps = cap_set(DEFAULT_CAPS);
        for name in drop {
            caps.remove(&parse_cap(name)?);
        }
        caps
    };
    if add.iter().any(is_all) {
        caps = all.clone();
    } else {
        for name in add {
            caps.insert(parse_cap(name)?);
        }
    }
    Ok(caps)
}

fn bind_mount(destination: &str, source: &Path, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination))
        .set_typ(Some("bind".into()))
        .set_source(Some(source.to_path_buf()))
        .set_options(Some(options));
    m
}

fn invalid(message: impl Into<String>) -> RuntimeError {
    RuntimeError::Invalid {
        what: "container config".into(),
        message: message.into(),
    }
}

/// Builds the spec. `rootfs` is the mounted overlay, `cgroups_path` the container's cgroup
/// relative to the root ("/<pod cgroup>/<id>"), `v2` whether the host is cgroup v2 only.
pub(crate) fn build(
    sandbox: &PodSandbox,
    config: &ContainerConfig,
    rootfs: &Path,
    cgroups_path: &str,
    v2: bool,
) -> Result<Spec, RuntimeError> {
    if config.args.is_empty() {
        return Err(invalid(
            "no command: neither the pod nor the image gives one",
        ));
    }
    let sec = &config.security;
    let mut spec = Spec::default();
    // The UTS namespace is the pod's, with the hostname already set by the sandbox.
    spec.set_hostname(None);

    let mut root = oci_spec::runtime::Root::default();
    root.set_path(rootfs.to_path_buf())
        .set_readonly(Some(sec.readonly_rootfs));
    spec.set_root(Some(root));

    let mut process = oci_spec::runtime::Process::default();
    let mut env = config.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    if config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    // Like containerd's CRI: HOSTNAME is the pod's, unless the pod sets it itself.
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        if let Ok(name) = std::fs::read_to_string(&sandbox.hostname_path) {
            if !name.trim().is_empty() {
                env.insert(1, format!("HOSTNAME={}", name.trim()));
            }
        }
    }
    let mut user = oci_spec::runtime::User::default();
    user.set_uid(sec.run_as_user.unwrap_or(0))
        .set_gid(sec.run_as_group.unwrap_or(0));
    if !sec.supplemental_groups.is_empty() {
        user.set_additional_gids(Some(sec.supplemental_groups.clone()));
    }
    let caps = capabilities(
        sec.privileged,
        &sec.capabilities_add,
        &sec.capabilities_drop,
        &grantable_caps(),
    )?;
    let mut linux_caps = LinuxCapabilities::default();
    linux_caps
        .set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(None)
        .set_ambient(None);
    let cwd = config.working_dir.clone().unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(invalid(format!("workingDir {cwd:?} is not absolute")));
    }
    process
        .set_terminal(Some(config.tty))
        .set_args(Some(config.args.clone()))
        .set_env(Some(env))
        .set_cwd(PathBuf::from(cwd))
        .set_user(user)
        .set_capabilities(Some(linux_caps))
        .set_no_new_privileges(Some(sec.no_new_privileges && !sec.privileged))
        // No rlimits of our own: containers inherit the node's, as under containerd.
        .set_rlimits(None);
    spec.set_process(Some(process));

    spec.set_mounts(Some(mounts(sandbox, config, sec.privileged)?));

    let mut linux = oci_spec::runtime::Linux::default();
    linux.set_namespaces(Some(namespaces(sandbox, v2)));
    linux.set_cgroups_path(Some(PathBuf::from(cgroups_path)));
    linux.set_resources(Some(resources(config, sec.privileged)));
    if sec.privileged {
        linux
            .set_masked_paths(None)
            .set_readonly_paths(None)
            .set_devices(Some(host_devices(Path::new("/dev"))));
    }
    spec.set_linux(Some(linux));

    let annotations = config
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    spec.set_annotations(Some(annotations));
    Ok(spec)
}

/// Every device node of the host, for privileged containers (containerd does the same):
/// /dev and its subdirectories, except the per-container pts, shm and mqueue mounts.
pub(crate) fn host_devices(dev: &Path) -> Vec<LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut dirs = vec![dev.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                let skip = ["pts", "shm", "mqueue", ".lxc", ".udev"];
                if !entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| skip.contains(&n))
                {
                    dirs.push(path);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            if path == dev.join("console") || path == dev.join("ptmx") {
                continue;
            }
            let mut d = LinuxDevice::default();
            d.set_path(path)
                .set_typ(typ)
                .set_major(nix::sys::stat::major(meta.rdev()) as i64)
                .set_minor(nix::sys::stat::minor(meta.rdev()) as i64)
                .set_file_mode(Some(meta.mode() & 0o7777))
                .set_uid(Some(meta.uid()))
                .set_gid(Some(meta.gid()));
            out.push(d);
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

fn mounts(
    sandbox: &PodSandbox,
    config: &ContainerConfig,
    privileged: bool,
) -> Result<Vec<Mount>, RuntimeError> {
    let mut mounts = get_default_mounts();
    if privileged {
        // Privileged containers may write /sys and the cgroup tree (kubelet + containerd).
        for m in &mut mounts {
            if let Some(opts) = m.options().clone() {
                let opts: Vec<String> = opts.into_iter().filter(|o| o != "ro").collect();
                m.set_options(Some(opts));
            }
        }
    }
    let etc_files = [
        ("/etc/hosts", &sandbox.hosts_path),
        ("/etc/hostname", &sandbox.hostname_path),
        ("/etc/resolv.conf", &sandbox.resolv_conf_path),
    ];
    for (destination, source) in etc_files {
        if source.as_os_str().is_empty() {
            continue;
        }
        mounts.push(bind_mount(
            destination,
            source,
            vec!["rbind".into(), "rprivate".into(), "rw".into()],
        ));
    }
    for m in &config.mounts {
        if !m.container_path.starts_with('/') {
            return Err(invalid(format!(
                "mount path {:?} is not absolute",
                m.container_path
            )));
        }
        let propagation = match m.propagation {
            MountPropagation::Private => "rprivate",
            MountPropagation::HostToContainer => "rslave",
            MountPropagation::Bidirectional => "rshared",
        };
        let mut options = vec!["rbind".to_string(), propagation.to_string()];
        options.push(if m.readonly { "ro" } else { "rw" }.into());
        mounts.push(bind_mount(&m.container_path, &m.host_path, options));
    }
    Ok(mounts)
}

fn namespace(typ: LinuxNamespaceType, path: Option<&PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ).set_path(path.cloned());
    ns
}

fn namespaces(sandbox: &PodSandbox, v2: bool) -> Vec<LinuxNamespace> {
    let mut out = vec![
        namespace(LinuxNamespaceType::Pid, None),
        namespace(LinuxNamespaceType::Mount, None),
        namespace(LinuxNamespaceType::Ipc, sandbox.ipc_ns_path.as_ref()),
        namespace(LinuxNamespaceType::Uts, sandbox.uts_ns_path.as_ref()),
    ];
    // No network namespace entry at all means the host's: hostNetwork pods.
    if let Some(netns) = &sandbox.netns_path {
        out.push(namespace(LinuxNamespaceType::Network, Some(netns)));
    }
    // Like containerd: a private cgroup namespace only where the hierarchy is unified.
    if v2 {
        out.push(namespace(LinuxNamespaceType::Cgroup, None));
    }
    out
}

fn resources(config: &ContainerConfig, privileged: bool) -> LinuxResources {
    let r = &config.resources;
    let mut res = LinuxResources::default();
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all
        .set_allow(privileged)
        .set_access(Some("rwm".into()));
    res.set_devices(Some(vec![deny_all]));
    if let Some(limit) = r.memory_limit {
        let mut memory = LinuxMemory::default();
        // swap = limit: no swap beyond the limit, as the kubelet configures it.
        memory.set_limit(Some(limit)).set_swap(Some(limit));
        res.set_memory(Some(memory));
    }
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() || r.cpu_period.is_some() {
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(r.cpu_shares)
            .set_quota(r.cpu_quota)
            .set_period(r.cpu_period);
        res.set_cpu(Some(cpu));
    }
    if let Some(limit) = r.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        res.set_pids(Some(pids));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::{Image, Resources, SandboxState, SecurityConfig};
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    fn sandbox() -> PodSandbox {
        PodSandbox {
            id: "sb".into(),
            pod_uid: "uid".into(),
            namespace: "default".into(),
            name: "p".into(),
            state: SandboxState::Ready,
            created_at: SystemTime::now(),
            netns_path: Some("/run/netns/x".into()),
            ipc_ns_path: Some("/run/ipc".into()),
            uts_ns_path: None,
            ips: vec![],
            hosts_path: "/s/hosts".into(),
            hostname_path: "/s/hostname".into(),
            resolv_conf_path: "/s/resolv.conf".into(),
            cgroup_parent: "flotilla/pod1".into(),
            labels: BTreeMap::new(),
        }
    }

    fn config() -> ContainerConfig {
        ContainerConfig {
            name: "c".into(),
            attempt: 0,
            image: Image {
                reference: "busybox".into(),
                id: "sha256:x".into(),
                repo_digest: None,
                layers: vec!["/l".into()],
                config: Default::default(),
                size: 0,
            },
            args: vec!["sh".into()],
            env: vec!["A=1".into()],
            working_dir: None,
            tty: false,
            stdin: false,
            stdin_once: false,
            mounts: vec![],
            security: SecurityConfig::default(),
            resources: Resources {
                memory_limit: Some(16 << 20),
                cpu_shares: Some(2),
                ..Default::default()
            },
            log_path: "/log".into(),
            termination_message_path: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn capability_rules() {
        let none: Vec<String> = vec![];
        let all = cap_set(ALL_CAPS);
        let default = capabilities(false, &none, &none, &all).unwrap();
        assert_eq!(default.len(), DEFAULT_CAPS.len());
        assert!(!default.contains(&Capability::NetAdmin));
        let c = capabilities(false, &["NET_ADMIN".into()], &["ALL".into()], &all).unwrap();
        assert_eq!(
            c.into_iter().collect::<Vec<_>>(),
            vec![Capability::NetAdmin]
        );
        let c = capabilities(false, &[], &["CHOWN".into()], &all).unwrap();
        assert!(!c.contains(&Capability::Chown));
        assert!(capabilities(false, &["ALL".into()], &[], &all)
            .unwrap()
            .contains(&Capability::SysAdmin));
        assert!(capabilities(true, &[], &["ALL".into()], &all)
            .unwrap()
            .contains(&Capability::SysAdmin));
        assert!(capabilities(false, &["BOGUS".into()], &[], &all).is_err());
    }

    #[test]
    fn grantable_is_within_all() {
        assert_eq!(ALL_CAPS.len(), 41);
        assert_eq!(parse_cap(ALL_CAPS[21]).unwrap(), Capability::SysAdmin);
        assert_eq!(
            parse_cap(ALL_CAPS[40]).unwrap(),
            Capability::CheckpointRestore
        );
        let g = grantable_caps();
        assert!(!g.is_empty() && g.len() <= ALL_CAPS.len());
    }

    #[test]
    fn spec_shape() {
        let spec = build(
            &sandbox(),
            &config(),
            Path::new("/r"),
            "/flotilla/pod1/id",
            false,
        )
        .unwrap();
        assert!(spec.hostname().is_none());
        let linux = spec.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_ref().unwrap();
        let net = ns
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert_eq!(net.path().as_deref(), Some(Path::new("/run/netns/x")));
        let uts = ns
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Uts)
            .unwrap();
        assert!(uts.path().is_none());
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
        let mem = linux.resources().as_ref().unwrap().memory().unwrap();
        assert_eq!((mem.limit(), mem.swap()), (Some(16 << 20), Some(16 << 20)));
        let mounts = spec.mounts().as_ref().unwrap();
        assert!(mounts
            .iter()
            .any(|m| m.destination() == Path::new("/etc/hosts")));
        let env = spec.process().as_ref().unwrap().env().as_ref().unwrap();
        assert!(env[0].starts_with("PATH="));

        let mut host = sandbox();
        host.netns_path = None;
        let spec = build(&host, &config(), Path::new("/r"), "/x", true).unwrap();
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));

        let mut privileged = config();
        privileged.security.privileged = true;
        let spec = build(&sandbox(), &privileged, Path::new("/r"), "/x", false).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.masked_paths().is_none());
        let devices = linux.devices().as_ref().unwrap();
        let null = devices
            .iter()
            .find(|d| d.path() == Path::new("/dev/null"))
            .unwrap();
        assert_eq!(
            (null.typ(), null.major(), null.minor()),
            (LinuxDeviceType::C, 1, 3)
        );
        assert!(!devices.iter().any(|d| d.path().starts_with("/dev/pts")));
        let allow = &linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap()[0];
        assert!(allow.allow());

        let mut bad = config();
        bad.args.clear();
        assert!(build(&sandbox(), &bad, Path::new("/r"), "/x", false).is_err());
        let mut bad = config();
        bad.working_dir = Some("rel".into());
        assert!(build(&sandbox(), &bad, Path::new("/r"), "/x", false).is_err());
    }
}
