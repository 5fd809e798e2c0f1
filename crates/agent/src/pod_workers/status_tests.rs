use super::*;
use crate::pod_workers::actions::RuntimePod;
use k8s_openapi::api::core::v1::PodSpec;
use runtime::cri::{PodSandbox, SandboxState};
use std::path::PathBuf;
use std::time::Duration;

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

fn pod(inits: &[&str], apps: &[&str], policy: &str) -> Pod {
    let c = |n: &&str| Container {
        name: n.to_string(),
        image: Some("reg.test/busybox:1".into()),
        ..Default::default()
    };
    Pod {
        spec: Some(PodSpec {
            init_containers: (!inits.is_empty()).then(|| inits.iter().map(c).collect()),
            containers: apps.iter().map(c).collect(),
            restart_policy: Some(policy.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sandbox() -> PodSandbox {
    PodSandbox {
        id: "sb".into(),
        pod_uid: "u".into(),
        namespace: "ns".into(),
        name: "p".into(),
        state: SandboxState::Ready,
        created_at: t(0),
        netns_path: None,
        ipc_ns_path: None,
        uts_ns_path: None,
        ips: vec!["10.244.9.3".parse().unwrap()],
        hosts_path: PathBuf::new(),
        hostname_path: PathBuf::new(),
        resolv_conf_path: PathBuf::new(),
        cgroup_parent: String::new(),
        labels: Default::default(),
    }
}

fn ctr(name: &str, attempt: u32, state: ContainerState, exit: Option<i32>) -> ContainerStatus {
    ContainerStatus {
        id: format!("{name}{attempt}"),
        sandbox_id: "sb".into(),
        name: name.into(),
        attempt,
        state,
        created_at: t(attempt as u64 * 10),
        started_at: Some(t(attempt as u64 * 10 + 1)),
        finished_at: (state == ContainerState::Exited).then(|| t(attempt as u64 * 10 + 2)),
        exit_code: exit,
        reason: exit.map(|c| if c == 0 { "Completed" } else { "Error" }.to_string()),
        message: None,
        image_ref: "reg.test/busybox:1".into(),
        image_id: "sha256:abc".into(),
        log_path: PathBuf::new(),
        labels: Default::default(),
        annotations: Default::default(),
    }
}

fn gen(p: &Pod, rt: &RuntimePod, waiting: &BTreeMap<String, Waiting>, ready: bool) -> PodStatus {
    let r = move |_: &str| ready;
    let yes = |_: &str| true;
    let ids = HashMap::from([(
        "reg.test/busybox:1".to_string(),
        "reg.test/busybox@sha256:d1".to_string(),
    )]);
    generate(
        &StatusInputs {
            pod: p,
            runtime: rt,
            waiting,
            is_ready: &r,
            is_started: &yes,
            node_ip: "192.0.2.1".parse().unwrap(),
            image_ids: &ids,
            start_time: t(0),
            now: t(100),
        },
        false,
    )
}

fn cond<'a>(s: &'a PodStatus, ty: &str) -> &'a str {
    &s.conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == ty)
        .unwrap()
        .status
}

#[test]
fn running_pod() {
    let p = pod(&["init"], &["web"], "Always");
    let rt = RuntimePod {
        sandboxes: vec![sandbox()],
        containers: vec![
            ctr("init", 0, ContainerState::Exited, Some(0)),
            ctr("web", 0, ContainerState::Running, None),
        ],
    };
    let s = gen(&p, &rt, &BTreeMap::new(), true);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.244.9.3"));
    assert_eq!(s.host_ip.as_deref(), Some("192.0.2.1"));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    for c in [
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
        "PodReadyToStartContainers",
    ] {
        assert_eq!(cond(&s, c), "True", "{c}");
    }
    let web = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(web.container_id.as_deref(), Some("runc://web0"));
    assert_eq!(web.image_id, "reg.test/busybox@sha256:d1");
    assert!(web.ready && web.state.as_ref().unwrap().running.is_some());
    let init = &s.init_container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        init.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("Completed")
    );
    let unready = gen(&p, &rt, &BTreeMap::new(), false);
    assert_eq!(cond(&unready, "Ready"), "False");
}

#[test]
fn crash_loop_shows_waiting_with_last_state() {
    let p = pod(&[], &["c"], "Always");
    let rt = RuntimePod {
        sandboxes: vec![sandbox()],
        containers: vec![
            ctr("c", 0, ContainerState::Exited, Some(1)),
            ctr("c", 1, ContainerState::Exited, Some(3)),
        ],
    };
    let w = BTreeMap::from([(
        "c".to_string(),
        Waiting {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 10s".into(),
        },
    )]);
    let s = gen(&p, &rt, &w, true);
    let c = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(c.restart_count, 1);
    assert_eq!(
        c.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("CrashLoopBackOff")
    );
    let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
    assert_eq!(s.phase.as_deref(), Some("Running"));
}

#[test]
fn phases_for_finished_pods_and_pending() {
    let rt = |code| RuntimePod {
        sandboxes: vec![sandbox()],
        containers: vec![ctr("c", 0, ContainerState::Exited, Some(code))],
    };
    let never = pod(&[], &["c"], "Never");
    assert_eq!(
        gen(&never, &rt(0), &BTreeMap::new(), true).phase.as_deref(),
        Some("Succeeded")
    );
    let failed = gen(&never, &rt(1), &BTreeMap::new(), true);
    assert_eq!(failed.phase.as_deref(), Some("Failed"));
    assert_eq!(cond(&failed, "Ready"), "False");
    let pending = gen(
        &pod(&["i"], &["c"], "Always"),
        &RuntimePod::default(),
        &BTreeMap::new(),
        true,
    );
    assert_eq!(pending.phase.as_deref(), Some("Pending"));
    assert_eq!(cond(&pending, "Initialized"), "False");
    let w = pending.container_statuses.as_ref().unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(w.reason.as_deref(), Some("PodInitializing"));
    assert_eq!(pending.pod_ip, None);
    let patch = merge_patch(&pending);
    assert!(patch["status"]["podIP"].is_null() && patch["status"].get("podIP").is_some());
}

#[test]
fn host_network_reports_node_ip() {
    let mut p = pod(&[], &["c"], "Always");
    p.spec.as_mut().unwrap().host_network = Some(true);
    let mut sb = sandbox();
    sb.ips.clear();
    let rt = RuntimePod {
        sandboxes: vec![sb],
        containers: vec![],
    };
    let s = gen(&p, &rt, &BTreeMap::new(), true);
    assert_eq!(s.pod_ip.as_deref(), Some("192.0.2.1"));
}

#[test]
fn a_final_phase_and_the_pod_ip_outlive_the_sandbox() {
    let mut p = pod(&[], &["c"], "Never");
    p.status = Some(PodStatus {
        phase: Some("Succeeded".into()),
        pod_ips: Some(vec![PodIP {
            ip: "10.244.9.3".into(),
        }]),
        ..Default::default()
    });
    let s = gen(&p, &RuntimePod::default(), &BTreeMap::new(), true);
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.244.9.3"));
}
