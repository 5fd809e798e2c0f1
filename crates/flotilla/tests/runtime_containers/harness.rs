//! The runtime_containers harness: a busybox layer, one node's `Containers` in a temp dir
//! with a hand-made sandbox, and Drop cleanup of anything a failing test leaves.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use runtime::containers::{Containers, ContainersConfig};
use runtime::cri::{
    ContainerConfig, ContainerRuntime, ContainerState, ContainerStatus, Image, PodSandbox,
    Resources, SandboxState, SecurityConfig, LABEL_POD_UID,
};
use tokio::io::AsyncReadExt;

pub const RUNC: &str = "/usr/sbin/runc";

pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A layer directory holding busybox and its applets: an image's only layer.
fn busybox_layer(dir: &Path) -> PathBuf {
    let layer = dir.join("layer");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(layer.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", layer.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(layer.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    layer
}

/// One node's runtime in a temp dir, with a hand-made sandbox; Drop removes whatever a
/// failing test left: containers (runc state, mounts, supervisors), the pod cgroup, netns.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub runtime_root: PathBuf,
    pub containers: Containers,
    pub sandbox: PodSandbox,
    pub layer: PathBuf,
    pub netns: Option<String>,
}

impl Node {
    pub fn new(with_netns: bool) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let layer = busybox_layer(dir.path());
        let etc = dir.path().join("sandbox");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("hosts"),
            "127.0.0.1 localhost\n10.244.9.9 testpod\n",
        )
        .unwrap();
        std::fs::write(etc.join("hostname"), "testpod\n").unwrap();
        std::fs::write(etc.join("resolv.conf"), "nameserver 10.244.9.1\n").unwrap();
        let netns = with_netns.then(|| {
            let name = unique("flt-ct-");
            let ok = Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap();
            assert!(ok.success());
            name
        });
        let runtime_root = dir.path().join("runc");
        let containers = Containers::new(config(dir.path(), &runtime_root)).unwrap();
        let sandbox = PodSandbox {
            id: unique("sb"),
            pod_uid: unique("uid"),
            namespace: "default".into(),
            name: "testpod".into(),
            state: SandboxState::Ready,
            created_at: SystemTime::now(),
            netns_path: netns.as_ref().map(|n| PathBuf::from("/run/netns").join(n)),
            ipc_ns_path: None,
            uts_ns_path: None,
            ips: vec![],
            hosts_path: etc.join("hosts"),
            hostname_path: etc.join("hostname"),
            resolv_conf_path: etc.join("resolv.conf"),
            cgroup_parent: unique("flotilla-test-pod"),
            labels: BTreeMap::new(),
        };
        Node {
            dir,
            runtime_root,
            containers,
            sandbox,
            layer,
            netns,
        }
    }

    pub fn container(&self, name: &str, script: &str) -> ContainerConfig {
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_POD_UID.to_string(), self.sandbox.pod_uid.clone());
        ContainerConfig {
            name: name.into(),
            attempt: 0,
            image: Image {
                reference: "local/busybox:test".into(),
                id: "sha256:busybox".into(),
                repo_digest: None,
                layers: vec![self.layer.clone()],
                config: Default::default(),
                size: 0,
            },
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["GREETING=hello".into()],
            working_dir: None,
            tty: false,
            stdin: false,
            stdin_once: false,
            mounts: vec![],
            security: SecurityConfig::default(),
            resources: Resources::default(),
            log_path: self.dir.path().join("logs").join(format!("{name}/0.log")),
            termination_message_path: None,
            labels,
            annotations: BTreeMap::new(),
        }
    }

    pub async fn run(&self, config: &ContainerConfig) -> String {
        let id = self
            .containers
            .create_container(&self.sandbox, config)
            .await
            .unwrap();
        self.containers.start_container(&id).await.unwrap();
        id
    }

    pub async fn wait_exited(&self, id: &str, timeout: Duration) -> ContainerStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.containers.container_status(id).await.unwrap();
            if s.state == ContainerState::Exited {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} still {:?}",
                s.state
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        ["memory", "cpu", "pids", "systemd", "unified"]
            .iter()
            .map(|h| {
                Path::new("/sys/fs/cgroup")
                    .join(h)
                    .join(&self.sandbox.cgroup_parent)
            })
            .filter(|p| p.exists())
            .collect()
    }

    /// Removes every container and checks that nothing of them remains anywhere.
    pub async fn remove_all_and_check(&self) {
        for c in self.containers.list_containers().await.unwrap() {
            self.containers.remove_container(&c.id).await.unwrap();
            // Idempotent.
            self.containers.remove_container(&c.id).await.unwrap();
        }
        runtime::cgroups::remove(&self.sandbox.cgroup_parent).unwrap();
        let root = self.dir.path().to_str().unwrap().to_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(&root), "mounts left under {root}");
        let list = Command::new(RUNC)
            .arg("--root")
            .arg(&self.runtime_root)
            .args(["list", "-q"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "");
        assert_eq!(self.cgroup_dirs(), Vec::<PathBuf>::new());
        assert!(self.containers.list_containers().await.unwrap().is_empty());
    }
}

pub fn config(root: &Path, runtime_root: &Path) -> ContainersConfig {
    ContainersConfig {
        root: root.join("containers"),
        runtime_binary: RUNC.into(),
        runtime_root: runtime_root.to_path_buf(),
        supervisor: vec![env!("CARGO_BIN_EXE_flotilla").into(), "supervise".into()],
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let root = self.dir.path().join("containers");
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let dir = entry.path();
            if let Ok(text) = std::fs::read_to_string(dir.join("started.json")) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(pid) = v["supervisor_pid"].as_i64() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            let _ = Command::new(RUNC)
                .arg("--root")
                .arg(&self.runtime_root)
                .args(["delete", "--force"])
                .arg(entry.file_name())
                .output();
            let _ = Command::new("umount")
                .arg("-l")
                .arg(dir.join("rootfs"))
                .output();
        }
        let _ = runtime::cgroups::remove(&self.sandbox.cgroup_parent);
        if let Some(ns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// (stream, tag, text) of every CRI log record, checking the timestamp format.
pub fn log_records(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let ts = parts.next().unwrap();
            assert_eq!(ts.len(), "2024-01-02T03:04:05.123456789Z".len(), "{line}");
            assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{line}");
            let stream = parts.next().unwrap().to_owned();
            let tag = parts.next().unwrap().to_owned();
            (stream, tag, parts.next().unwrap_or("").to_owned())
        })
        .collect()
}

pub async fn wait_log(path: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(path).is_ok_and(|t| t.contains(text)) {
        assert!(
            Instant::now() < deadline,
            "{text:?} never logged in {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn read_until(
    r: &mut (impl AsyncReadExt + Unpin),
    needle: &str,
    timeout: Duration,
) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(timeout, async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = r.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "EOF before {needle:?}: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&seen)));
    String::from_utf8_lossy(&seen).into_owned()
}

/// The last stdout line of a finished container.
pub async fn output_of(node: &Node, config: &ContainerConfig) -> Vec<String> {
    let id = node.run(config).await;
    let s = node.wait_exited(&id, Duration::from_secs(20)).await;
    assert_eq!(s.exit_code, Some(0), "{:?}", log_records(&config.log_path));
    log_records(&config.log_path)
        .into_iter()
        .filter(|r| r.0 == "stdout")
        .map(|r| r.2)
        .collect()
}
