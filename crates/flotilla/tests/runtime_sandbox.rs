//! The sandbox and container halves of the runtime together (root, real runc and CNI):
//! runc joins the namespaces `Sandboxes` bind-mounted, every container of the pod sees
//! the same network, IPC and UTS namespace and the pod's /etc files, the host reaches the
//! pod on its IP, and removal leaves no namespace, veth, IP or cgroup behind.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use runtime::containers::{Containers, ContainersConfig};
use runtime::cri::{
    ContainerConfig, ContainerRuntime, DnsConfig, Image, PodSandboxConfig, Resources,
    SandboxRuntime, SecurityConfig, LABEL_POD_UID,
};
use runtime::network::{NetworkConfig, Sandboxes};
use testkit::{unique_name, unique_subnet, wait_for, SubnetLease};

const RUNC: &str = "/usr/sbin/runc";

/// A layer directory holding busybox and its applets: an image's only layer.
fn busybox_layer(dir: &Path) -> PathBuf {
    let layer = dir.join("layer");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root", "www"] {
        std::fs::create_dir_all(layer.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", layer.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "httpd", "wget", "hostname", "cat", "readlink", "sleep", "echo",
    ] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
    }
    std::fs::write(layer.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    layer
}

struct Pod {
    dir: tempfile::TempDir,
    network: NetworkConfig,
    runtime_root: PathBuf,
    _subnet: SubnetLease,
}

impl Pod {
    fn new() -> Pod {
        let dir = tempfile::tempdir().unwrap();
        let subnet = unique_subnet();
        let network = NetworkConfig {
            root: dir.path().join("sandboxes"),
            cni_bin_dir: "/usr/lib/cni".into(),
            cni_data_dir: dir.path().join("cni"),
            pod_cidr: subnet.cidr(),
            bridge: unique_name("flrs"),
            netns_prefix: format!("{}-", unique_name("flrs")),
            mtu: None,
            cluster_cidr: None,
            service_cidr: None,
            cluster_domain: "cluster.local".into(),
        };
        Pod {
            runtime_root: dir.path().join("runc"),
            dir,
            network,
            _subnet: subnet,
        }
    }

    fn containers(&self) -> Containers {
        Containers::new(ContainersConfig {
            root: self.dir.path().join("containers"),
            runtime_binary: RUNC.into(),
            runtime_root: self.runtime_root.clone(),
            supervisor: vec![env!("CARGO_BIN_EXE_flotilla").into(), "supervise".into()],
        })
        .unwrap()
    }

    fn container(&self, pod_uid: &str, name: &str, layer: &Path, script: &str) -> ContainerConfig {
        ContainerConfig {
            name: name.into(),
            attempt: 0,
            image: Image {
                reference: "local/busybox:test".into(),
                id: "sha256:busybox".into(),
                repo_digest: None,
                layers: vec![layer.to_path_buf()],
                config: Default::default(),
                size: 0,
            },
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![],
            working_dir: None,
            tty: false,
            stdin: false,
            stdin_once: false,
            mounts: vec![],
            security: SecurityConfig::default(),
            resources: Resources::default(),
            log_path: self.dir.path().join("logs").join(format!("{name}/0.log")),
            termination_message_path: None,
            labels: BTreeMap::from([(LABEL_POD_UID.to_string(), pod_uid.to_string())]),
            annotations: BTreeMap::new(),
        }
    }
}

impl Drop for Pod {
    /// Whatever a failing test left: containers (supervisors, runc state, rootfs mounts),
    /// then the sandboxes (CNI DEL, namespaces, pod cgroup), then the bridge.
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
        let network = self.network.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(s) = Sandboxes::new(network) {
                    for sb in s.list_pod_sandboxes().await.unwrap_or_default() {
                        let _ = s.remove_pod_sandbox(&sb.id).await;
                    }
                }
            });
        })
        .join();
        let _ = Command::new("ip")
            .args(["link", "del", &self.network.bridge])
            .output();
    }
}

fn ns_id(path: &Path) -> String {
    // What `readlink /proc/self/ns/<kind>` prints inside: `<kind>:[<inode>]`.
    std::fs::metadata(path).unwrap().ino().to_string()
}

#[tokio::test]
async fn containers_share_the_sandbox_namespaces_and_files() {
    let pod = Pod::new();
    let layer = busybox_layer(pod.dir.path());
    let sandboxes = Sandboxes::new(pod.network.clone()).unwrap();
    let containers = pod.containers();
    let uid = unique_name("uid");
    let sandbox = sandboxes
        .run_pod_sandbox(&PodSandboxConfig {
            pod_uid: uid.clone(),
            namespace: "default".into(),
            name: "pair".into(),
            hostname: "pair".into(),
            subdomain: None,
            host_network: false,
            port_mappings: vec![],
            dns: DnsConfig {
                servers: vec!["10.43.0.10".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec![],
            },
            host_aliases: vec![],
            cgroup_parent: format!("flotilla-test-{}", unique_name("pod")),
            labels: BTreeMap::new(),
        })
        .await
        .unwrap();
    let ip = sandbox.ips[0];

    let server = pod.container(
        &uid,
        "server",
        &layer,
        "echo served-by-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www",
    );
    let sidecar = pod.container(&uid, "sidecar", &layer, "exec sleep 600");
    let mut ids = Vec::new();
    for config in [&server, &sidecar] {
        let id = containers.create_container(&sandbox, config).await.unwrap();
        containers.start_container(&id).await.unwrap();
        ids.push(id);
    }

    // The host reaches the pod on its IP, and the page names the pod's hostname.
    let addr = SocketAddr::new(ip, 8080);
    let page = wait_for(Duration::from_secs(20), || {
        let out = Command::new("timeout")
            .args(["3", "/bin/busybox", "wget", "-qO-"])
            .arg(format!("http://{addr}/"))
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned()).filter(|s| !s.is_empty())
    })
    .expect("the pod never served on its IP");
    assert_eq!(page.trim(), "served-by-pair");

    // The sidecar shares the server's loopback, hostname, IPC namespace and /etc files.
    let probe = [
        "sh",
        "-c",
        "wget -qO- http://127.0.0.1:8080/; hostname; for k in net ipc uts; do readlink /proc/self/ns/$k; done; cat /etc/hostname /etc/resolv.conf /etc/hosts",
    ]
    .map(String::from);
    let out = containers
        .exec_sync(&ids[1], &probe, Duration::from_secs(30))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.exit_code,
        0,
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "served-by-pair");
    assert_eq!(lines[1], "pair");
    assert_eq!(
        lines[2],
        format!("net:[{}]", ns_id(sandbox.netns_path.as_deref().unwrap()))
    );
    assert_eq!(
        lines[3],
        format!("ipc:[{}]", ns_id(sandbox.ipc_ns_path.as_deref().unwrap()))
    );
    assert_eq!(
        lines[4],
        format!("uts:[{}]", ns_id(sandbox.uts_ns_path.as_deref().unwrap()))
    );
    assert_eq!(lines[5], "pair");
    assert!(text.contains("nameserver 10.43.0.10\nsearch default.svc.cluster.local\n"));
    assert!(text.contains(&format!("{ip}\tpair\n")), "{text}");

    // Tear down as the kubelet does: containers, then the sandbox. Both run as PID 1 and
    // ignore SIGTERM, so a short grace ends in SIGKILL.
    for id in &ids {
        containers
            .stop_container(id, Duration::from_secs(1))
            .await
            .unwrap();
        containers.remove_container(id).await.unwrap();
    }
    sandboxes.stop_pod_sandbox(&sandbox.id).await.unwrap();
    sandboxes.remove_pod_sandbox(&sandbox.id).await.unwrap();
    assert!(!sandbox.netns_path.as_deref().unwrap().exists());
    let veths = Command::new("ip")
        .args(["-o", "link", "show", "master", &pod.network.bridge])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&veths.stdout).trim(), "");
    assert!(!pod
        .network
        .cni_data_dir
        .join("flotilla")
        .join(ip.to_string())
        .exists());
    for h in ["memory", "cpu", "pids", "systemd", "unified"] {
        let cg = Path::new("/sys/fs/cgroup")
            .join(h)
            .join(&sandbox.cgroup_parent);
        assert!(!cg.exists(), "{} left", cg.display());
    }
}
