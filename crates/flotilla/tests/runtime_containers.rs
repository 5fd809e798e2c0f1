//! The container runtime end to end (root, real runc): bundles from a busybox layer, the
//! detached supervisor, CRI logs, exit codes, OOM kills, stop grace, survival of the
//! supervisor across a new `Containers` value (an agent restart), exec, attach, stats — and
//! nothing left behind (mounts, runc state, cgroups, supervisor processes).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use runtime::containers::Containers;
use runtime::cri::{ContainerRuntime, ContainerState, StreamOptions, TerminalSize, LABEL_POD_UID};
use tokio::io::AsyncWriteExt;

#[path = "runtime_containers/harness.rs"]
mod harness;
use harness::*;

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
            Duration::from_secs(30),
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
    let deadline = Instant::now() + Duration::from_secs(30);
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
            Duration::from_secs(30),
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
            Duration::from_secs(30),
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
        .exec_sync(&id, &["ps".into()], Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep 30"));

    let stats = node.containers.container_stats(&id).await.unwrap();
    assert!(
        stats.cpu_usage_nanos > 0 && stats.memory_usage_bytes > 0,
        "{stats:?}"
    );
    // The two are read at different moments while the container's shell forks: sample
    // both again until a pair taken close together holds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let container = node.containers.container_stats(&id).await.unwrap();
        let pod = node
            .containers
            .cgroup_stats(&node.sandbox.cgroup_parent)
            .await
            .unwrap();
        if pod.memory_usage_bytes >= container.memory_working_set_bytes {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod {pod:?} below its container {container:?}"
        );
    }
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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let size = TerminalSize {
            width: 123,
            height: 45,
        };
        resize.send(size).await.unwrap();
        stdin.write_all(b"stty size\n").await.unwrap();
        let out = read_until(&mut stdout, "\n", Duration::from_secs(30)).await;
        if out.contains("45 123") {
            break;
        }
        assert!(Instant::now() < deadline, "terminal never resized: {out}");
    }
    stdin.write_all(b"exit 4\n").await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(30), session.exit)
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
    read_until(&mut stdout, "got:hi", Duration::from_secs(30)).await;
    let code = tokio::time::timeout(Duration::from_secs(30), attached.exit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 2);
    let s = node.wait_exited(&id, Duration::from_secs(30)).await;
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
    let deadline = Instant::now() + Duration::from_secs(30);
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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let size = TerminalSize {
            width: 99,
            height: 33,
        };
        resize.send(size).await.unwrap();
        stdin.write_all(b"stty size\n").await.unwrap();
        let out = read_until(&mut stdout, "\n", Duration::from_secs(30)).await;
        if out.contains("33 99") {
            break;
        }
        assert!(Instant::now() < deadline, "terminal never resized: {out}");
    }
    stdin.write_all(b"exit 6\n").await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(30), session.exit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 6);
    let s = node.wait_exited(&id, Duration::from_secs(30)).await;
    assert_eq!(s.exit_code, Some(6));
    node.remove_all_and_check().await;
}
