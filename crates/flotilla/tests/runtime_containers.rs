//! The container runtime end to end (root, real runc): bundles from a busybox layer, the
//! detached supervisor, CRI logs, exit codes, OOM kills, stop grace, survival of the
//! supervisor across a new `Containers` value (an agent restart), exec, attach, stats — and
//! nothing left behind (mounts, runc state, cgroups, supervisor processes).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use runtime::containers::{Containers, ContainersConfig};
use runtime::cri::{
    ContainerConfig, ContainerRuntime, ContainerState, ContainerStatus, Image, PodSandbox,
    Resources, SandboxState, SecurityConfig, StreamOptions, TerminalSize, LABEL_POD_UID,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RUNC: &str = "/usr/sbin/runc";

fn unique(prefix: &str) -> String {
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
struct Node {
    dir: tempfile::TempDir,
    runtime_root: PathBuf,
    containers: Containers,
    sandbox: PodSandbox,
    layer: PathBuf,
    netns: Option<String>,
}

impl Node {
    fn new(with_netns: bool) -> Node {
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

    fn container(&self, name: &str, script: &str) -> ContainerConfig {
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

    async fn run(&self, config: &ContainerConfig) -> String {
        let id = self
            .containers
            .create_container(&self.sandbox, config)
            .await
            .unwrap();
        self.containers.start_container(&id).await.unwrap();
        id
    }

    async fn wait_exited(&self, id: &str, timeout: Duration) -> ContainerStatus {
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
    async fn remove_all_and_check(&self) {
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

fn config(root: &Path, runtime_root: &Path) -> ContainersConfig {
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
fn log_records(path: &Path) -> Vec<(String, String, String)> {
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

async fn wait_log(path: &Path, text: &str) {
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

#[tokio::test]
async fn run_logs_and_exit_codes() {
    let node = Node::new(false);
    let mut ok = node.container(
        "ok",
        "echo $GREETING; echo oops >&2; cat /etc/hostname; echo $HOSTNAME-env; printf partial",
    );
    ok.labels.insert("extra".into(), "label".into());
    let id = node.run(&ok).await;
    let s = node.wait_exited(&id, Duration::from_secs(20)).await;
    assert_eq!(
        (s.exit_code, s.reason.as_deref()),
        (Some(0), Some("Completed"))
    );
    assert!(s.started_at.is_some() && s.finished_at >= s.started_at);
    assert_eq!(s.labels.get("extra").map(String::as_str), Some("label"));
    let records = log_records(&ok.log_path);
    let mut stdout: Vec<(String, String)> = records
        .iter()
        .filter(|r| r.0 == "stdout")
        .map(|r| (r.1.clone(), r.2.clone()))
        .collect();
    stdout.sort();
    assert_eq!(
        stdout,
        vec![
            ("F".into(), "hello".into()),
            ("F".into(), "partial".into()),
            ("F".into(), "testpod".into()),
            ("F".into(), "testpod-env".into())
        ]
    );
    assert!(records.contains(&("stderr".into(), "F".into(), "oops".into())));

    let failing = node.container("fail", "exit 3");
    let id = node.run(&failing).await;
    let s = node.wait_exited(&id, Duration::from_secs(20)).await;
    assert_eq!((s.exit_code, s.reason.as_deref()), (Some(3), Some("Error")));
    // Starting an exited container again is refused.
    assert!(node.containers.start_container(&id).await.is_err());

    let mut bad = node.container("bad", "true");
    bad.args = vec!["/no/such/binary".into()];
    let id = node
        .containers
        .create_container(&node.sandbox, &bad)
        .await
        .unwrap();
    let err = node.containers.start_container(&id).await.unwrap_err();
    assert!(err.to_string().contains("no such file"), "{err}");
    let s = node.containers.container_status(&id).await.unwrap();
    assert_eq!(s.state, ContainerState::Exited);
    assert_eq!(s.reason.as_deref(), Some("StartError"));

    let listed = node.containers.list_containers().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .all(|c| c.labels.get(LABEL_POD_UID) == Some(&node.sandbox.pod_uid)));
    node.remove_all_and_check().await;
    // The log outlives the container.
    assert!(ok.log_path.exists());
}

#[tokio::test]
async fn memory_hog_is_oom_killed() {
    let node = Node::new(false);
    let mut hog = node.container(
        "hog",
        "dd if=/dev/zero of=/dev/null bs=64M count=1; echo survived",
    );
    hog.resources.memory_limit = Some(16 << 20);
    let id = node.run(&hog).await;
    let s = node.wait_exited(&id, Duration::from_secs(30)).await;
    assert_eq!(s.reason.as_deref(), Some("OOMKilled"), "{s:?}");
    node.remove_all_and_check().await;
}

#[tokio::test]
async fn stop_honours_grace() {
    let node = Node::new(false);
    let polite = node.container(
        "polite",
        "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.05; done",
    );
    let stubborn = node.container(
        "stubborn",
        "trap '' TERM; echo ready; while true; do sleep 0.05; done",
    );
    let polite_id = node.run(&polite).await;
    let stubborn_id = node.run(&stubborn).await;
    // The shells must have installed their traps before the signal.
    wait_log(&polite.log_path, "ready").await;
    wait_log(&stubborn.log_path, "ready").await;

    let started = Instant::now();
    node.containers
        .stop_container(&polite_id, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let s = node.containers.container_status(&polite_id).await.unwrap();
    assert_eq!((s.state, s.exit_code), (ContainerState::Exited, Some(0)));
    assert!(log_records(&polite.log_path)
        .iter()
        .any(|r| r.2 == "got-term"));

    let started = Instant::now();
    node.containers
        .stop_container(&stubborn_id, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let s = node
        .containers
        .container_status(&stubborn_id)
        .await
        .unwrap();
    assert_eq!((s.state, s.exit_code), (ContainerState::Exited, Some(137)));
    // Stopping an exited container is a no-op.
    node.containers
        .stop_container(&stubborn_id, Duration::from_secs(1))
        .await
        .unwrap();
    node.remove_all_and_check().await;
}

#[tokio::test]
async fn supervisor_survives_agent_restart() {
    let mut node = Node::new(false);
    let c = node.container(
        "survivor",
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; echo done; exit 7",
    );
    let id = node.run(&c).await;
    // The supervisor is not our child: the agent can die without taking it along.
    let started: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            node.dir
                .path()
                .join("containers")
                .join(&id)
                .join("started.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let sup = started["supervisor_pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{sup}/status")).unwrap();
    let ppid = status.lines().find(|l| l.starts_with("PPid:")).unwrap();
    assert_ne!(
        ppid.split_whitespace().nth(1).unwrap(),
        std::process::id().to_string()
    );
    let stat = std::fs::read_to_string(format!("/proc/{sup}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // Own session (field 6 of stat, 4th after the comm): setsid happened.
    assert_ne!(fields[3], nix::unistd::getsid(None).unwrap().to_string());

    // "Agent restart": a fresh value over the same directories.
    node.containers = Containers::new(config(node.dir.path(), &node.runtime_root)).unwrap();
    let s = node.containers.container_status(&id).await.unwrap();
    assert_eq!(s.state, ContainerState::Running);
    let listed = node.containers.list_containers().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "survivor");

    let r = node
        .containers
        .exec_sync(
            &id,
            &["touch".into(), "/tmp/go".into()],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0);
    let s = node.wait_exited(&id, Duration::from_secs(20)).await;
    assert_eq!((s.exit_code, s.reason.as_deref()), (Some(7), Some("Error")));
    node.containers = Containers::new(config(node.dir.path(), &node.runtime_root)).unwrap();
    let s = node.containers.container_status(&id).await.unwrap();
    assert_eq!(s.exit_code, Some(7));
    node.remove_all_and_check().await;
    // Its supervisor ended with the container.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{sup}/stat")).is_ok_and(|s| !s.contains(") Z")) {
        assert!(Instant::now() < deadline, "supervisor {sup} still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn exec_sync_and_timeout_in_pod_network() {
    let node = Node::new(true);
    let c = node.container("sleeper", "while true; do sleep 1; done");
    let id = node.run(&c).await;
    let r = node
        .containers
        .exec_sync(
            &id,
            &[
                "sh".into(),
                "-c".into(),
                "echo out-$GREETING; echo err >&2; exit 5".into(),
            ],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            r.exit_code,
            r.stdout.as_slice(),
            r.stderr.as_slice(),
            r.timed_out
        ),
        (5, &b"out-hello\n"[..], &b"err\n"[..], false)
    );
    // The pod's network namespace: only its loopback, no host interfaces.
    let r = node
        .containers
        .exec_sync(
            &id,
            &["cat".into(), "/proc/net/dev".into()],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let text = String::from_utf8(r.stdout).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("lo:"));

    let started = Instant::now();
    let r = node
        .containers
        .exec_sync(
            &id,
            &["sleep".into(), "30".into()],
            Duration::from_millis(500),
        )
        .await
        .unwrap();
    assert!(r.timed_out);
    assert!(started.elapsed() < Duration::from_secs(10));
    let ps = node
        .containers
        .exec_sync(&id, &["ps".into()], Duration::from_secs(10))
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep 30"));

    let stats = node.containers.container_stats(&id).await.unwrap();
    assert!(
        stats.cpu_usage_nanos > 0 && stats.memory_usage_bytes > 0,
        "{stats:?}"
    );
    let pod = node
        .containers
        .cgroup_stats(&node.sandbox.cgroup_parent)
        .await
        .unwrap();
    assert!(pod.memory_usage_bytes >= stats.memory_working_set_bytes);
    node.containers
        .stop_container(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(node
        .containers
        .exec_sync(&id, &["true".into()], Duration::from_secs(5))
        .await
        .is_err());
    node.remove_all_and_check().await;
}

async fn read_until(
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

#[tokio::test]
async fn streaming_exec_with_tty_and_attach() {
    let node = Node::new(false);
    let mut c = node.container("interactive", "read line; echo got:$line; exit 2");
    c.stdin = true;
    c.stdin_once = true;
    let id = node.run(&c).await;

    let opts = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let mut session = node
        .containers
        .exec(&id, &["sh".into()], opts)
        .await
        .unwrap();
    let resize = session.resize.take().unwrap();
    let mut stdin = session.stdin.take().unwrap();
    let mut stdout = session.stdout.take().unwrap();
    // The resize reaches the container's terminal asynchronously: ask until it shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let size = TerminalSize {
            width: 123,
            height: 45,
        };
        resize.send(size).await.unwrap();
        stdin.write_all(b"stty size\n").await.unwrap();
        let out = read_until(&mut stdout, "\n", Duration::from_secs(10)).await;
        if out.contains("45 123") {
            break;
        }
        assert!(Instant::now() < deadline, "terminal never resized: {out}");
    }
    stdin.write_all(b"exit 4\n").await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(10), session.exit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 4);

    let mut attached = node
        .containers
        .attach(
            &id,
            StreamOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false,
            },
        )
        .await
        .unwrap();
    let mut stdin = attached.stdin.take().unwrap();
    let mut stdout = attached.stdout.take().unwrap();
    stdin.write_all(b"hi\n").await.unwrap();
    read_until(&mut stdout, "got:hi", Duration::from_secs(10)).await;
    let code = tokio::time::timeout(Duration::from_secs(10), attached.exit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 2);
    let s = node.wait_exited(&id, Duration::from_secs(10)).await;
    assert_eq!(s.exit_code, Some(2));
    assert!(log_records(&c.log_path).iter().any(|r| r.2 == "got:hi"));
    node.remove_all_and_check().await;
}

#[tokio::test]
async fn container_with_a_terminal_logs_its_output() {
    let node = Node::new(false);
    let mut c = node.container("tty", "stty size; tty; exit 0");
    c.tty = true;
    let id = node.run(&c).await;
    let s = node.wait_exited(&id, Duration::from_secs(20)).await;
    assert_eq!(s.exit_code, Some(0));
    let text: Vec<String> = log_records(&c.log_path).into_iter().map(|r| r.2).collect();
    assert!(text.iter().any(|t| t.contains("/dev/pts/")), "{text:?}");
    node.remove_all_and_check().await;
}

/// The last stdout line of a finished container.
async fn output_of(node: &Node, config: &ContainerConfig) -> Vec<String> {
    let id = node.run(config).await;
    let s = node.wait_exited(&id, Duration::from_secs(20)).await;
    assert_eq!(s.exit_code, Some(0), "{:?}", log_records(&config.log_path));
    log_records(&config.log_path)
        .into_iter()
        .filter(|r| r.0 == "stdout")
        .map(|r| r.2)
        .collect()
}

#[tokio::test]
async fn security_context_resources_and_mounts() {
    let node = Node::new(false);
    let caps = "grep CapEff /proc/self/status | tr -d '\\t'";

    let default = node.container("default", caps);
    // Kubernetes' default set: CHOWN … AUDIT_WRITE = 0xa80425fb.
    assert_eq!(
        output_of(&node, &default).await,
        vec!["CapEff:00000000a80425fb"]
    );

    let mut narrowed = node.container("narrowed", caps);
    narrowed.security.capabilities_drop = vec!["ALL".into()];
    narrowed.security.capabilities_add = vec!["NET_ADMIN".into()];
    assert_eq!(
        output_of(&node, &narrowed).await,
        vec!["CapEff:0000000000001000"]
    );

    let mut privileged = node.container(
        "privileged",
        &format!("{caps}; test -c /dev/kmsg && echo devices"),
    );
    privileged.security.privileged = true;
    let out = output_of(&node, &privileged).await;
    assert_eq!(out[1], "devices");
    assert_ne!(out[0], "CapEff:00000000a80425fb");

    let volume = node.dir.path().join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("data"), "from-the-host\n").unwrap();
    let mut user = node.container(
        "user",
        "id -u; id -g; id -G; cat /data/data; touch /data/x || echo ro-volume; \
         touch /rootfs-write || echo ro-rootfs; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
         cat /sys/fs/cgroup/pids/pids.max",
    );
    user.security.run_as_user = Some(1000);
    user.security.run_as_group = Some(2000);
    user.security.supplemental_groups = vec![3000];
    user.security.readonly_rootfs = true;
    user.resources.memory_limit = Some(64 << 20);
    user.resources.pids_limit = Some(50);
    user.mounts = vec![runtime::cri::Mount {
        container_path: "/data".into(),
        host_path: volume.clone(),
        readonly: true,
        propagation: Default::default(),
    }];
    let out = output_of(&node, &user).await;
    assert_eq!(
        out,
        vec![
            "1000",
            "2000",
            "2000 3000",
            "from-the-host",
            "ro-volume",
            "ro-rootfs",
            "67108864",
            "50"
        ]
    );
    node.remove_all_and_check().await;
}

#[tokio::test]
async fn container_outlives_a_killed_supervisor() {
    let node = Node::new(false);
    let c = node.container("orphan", "while true; do sleep 0.05; done");
    let id = node.run(&c).await;
    let dir = node.dir.path().join("containers").join(&id);
    let started: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("started.json")).unwrap()).unwrap();
    let sup = started["supervisor_pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{sup}/stat")).is_ok_and(|s| !s.contains(") Z")) {
        assert!(
            Instant::now() < deadline,
            "supervisor {sup} survived SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The container itself still runs, and can still be stopped.
    let s = node.containers.container_status(&id).await.unwrap();
    assert_eq!(s.state, ContainerState::Running);
    node.containers
        .stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    let s = node.containers.container_status(&id).await.unwrap();
    assert_eq!((s.state, s.exit_code), (ContainerState::Exited, Some(255)));
    assert!(s.message.unwrap().contains("supervisor"));
    node.remove_all_and_check().await;
}

#[tokio::test]
async fn attach_to_a_terminal_container() {
    let node = Node::new(false);
    let mut c = node.container("it", "sh");
    c.args = vec!["sh".into()];
    c.tty = true;
    c.stdin = true;
    let id = node.run(&c).await;
    let mut session = node
        .containers
        .attach(
            &id,
            StreamOptions {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true,
            },
        )
        .await
        .unwrap();
    assert!(session.stderr.is_none());
    let resize = session.resize.take().unwrap();
    let mut stdin = session.stdin.take().unwrap();
    let mut stdout = session.stdout.take().unwrap();
    // The resize and the input are separate frames: ask until the new size shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let size = TerminalSize {
            width: 99,
            height: 33,
        };
        resize.send(size).await.unwrap();
        stdin.write_all(b"stty size\n").await.unwrap();
        let out = read_until(&mut stdout, "\n", Duration::from_secs(10)).await;
        if out.contains("33 99") {
            break;
        }
        assert!(Instant::now() < deadline, "terminal never resized: {out}");
    }
    stdin.write_all(b"exit 6\n").await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(10), session.exit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 6);
    let s = node.wait_exited(&id, Duration::from_secs(10)).await;
    assert_eq!(s.exit_code, Some(6));
    node.remove_all_and_check().await;
}
