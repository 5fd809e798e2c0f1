use super::*;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::path::PathBuf;

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

fn pod(inits: &[&str], apps: &[&str], policy: &str) -> Pod {
    let c = |n: &&str| Container {
        name: n.to_string(),
        image: Some("busybox".into()),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("ns".into()),
            uid: Some("u".into()),
            ..Default::default()
        },
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
        ips: vec!["10.244.1.2".parse().unwrap()],
        hosts_path: PathBuf::new(),
        hostname_path: PathBuf::new(),
        resolv_conf_path: PathBuf::new(),
        cgroup_parent: String::new(),
        labels: Default::default(),
    }
}

fn ctr(
    name: &str,
    attempt: u32,
    state: ContainerState,
    exit: Option<i32>,
    times: (u64, u64),
) -> ContainerStatus {
    ContainerStatus {
        id: format!("{name}-{attempt}"),
        sandbox_id: "sb".into(),
        name: name.into(),
        attempt,
        state,
        created_at: t(times.0),
        started_at: Some(t(times.0)),
        finished_at: (state == ContainerState::Exited).then(|| t(times.1)),
        exit_code: exit,
        reason: None,
        message: None,
        image_ref: String::new(),
        image_id: String::new(),
        log_path: PathBuf::new(),
        labels: [(cri::LABEL_POD_UID.to_string(), "u".to_string())].into(),
        annotations: Default::default(),
    }
}

fn run(pod: &Pod, rt: &RuntimePod, b: &Backoff, now: u64) -> PodActions {
    let none = |_: &str| None;
    compute(&Inputs {
        pod,
        runtime: rt,
        backoff: b,
        liveness_failure: &none,
        now: t(now),
    })
}

#[test]
fn fresh_pod_creates_sandbox_then_first_init() {
    let p = pod(&["i1", "i2"], &["app"], "Always");
    let a = run(&p, &RuntimePod::default(), &Backoff::default(), 0);
    assert!(a.create_sandbox && !a.kill_pod);
    assert_eq!(
        a.start_init,
        Some(Start {
            index: 0,
            attempt: 0,
            restart: false
        })
    );
    assert!(
        a.start.is_empty(),
        "app containers wait for init containers"
    );
}

#[test]
fn init_containers_run_in_order_then_apps() {
    let p = pod(&["i1", "i2"], &["a", "b"], "Always");
    let mut rt = RuntimePod {
        sandboxes: vec![sandbox()],
        containers: vec![],
    };
    rt.containers
        .push(ctr("i1", 0, ContainerState::Running, None, (1, 0)));
    let a = run(&p, &rt, &Backoff::default(), 2);
    assert_eq!(
        (a.start_init.clone(), a.start.len()),
        (None, 0),
        "waits for the running init"
    );
    rt.containers[0] = ctr("i1", 0, ContainerState::Exited, Some(0), (1, 2));
    let a = run(&p, &rt, &Backoff::default(), 3);
    assert_eq!(a.start_init.map(|s| s.index), Some(1));
    rt.containers
        .push(ctr("i2", 0, ContainerState::Exited, Some(0), (3, 4)));
    let a = run(&p, &rt, &Backoff::default(), 5);
    assert_eq!(a.start_init, None);
    assert_eq!(a.start.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 1]);
}

#[test]
fn failing_init_container_follows_restart_policy() {
    let mut rt = RuntimePod {
        sandboxes: vec![sandbox()],
        containers: vec![],
    };
    rt.containers
        .push(ctr("i1", 0, ContainerState::Exited, Some(1), (1, 2)));
    let never = run(&pod(&["i1"], &["a"], "Never"), &rt, &Backoff::default(), 3);
    assert!(never.init_failed && never.start_init.is_none());
    let again = run(
        &pod(&["i1"], &["a"], "OnFailure"),
        &rt,
        &Backoff::default(),
        3,
    );
    assert_eq!(
        again.start_init,
        Some(Start {
            index: 0,
            attempt: 1,
            restart: true
        })
    );
}

#[test]
fn restart_policies_for_app_containers() {
    let mut rt = RuntimePod {
        sandboxes: vec![sandbox()],
        containers: vec![],
    };
    rt.containers
        .push(ctr("ok", 0, ContainerState::Exited, Some(0), (1, 2)));
    rt.containers
        .push(ctr("bad", 0, ContainerState::Exited, Some(2), (1, 2)));
    let b = Backoff::default();
    let names = |a: &PodActions| a.start.iter().map(|s| s.index).collect::<Vec<_>>();
    assert_eq!(
        names(&run(&pod(&[], &["ok", "bad"], "Always"), &rt, &b, 3)),
        [0, 1]
    );
    assert_eq!(
        names(&run(&pod(&[], &["ok", "bad"], "OnFailure"), &rt, &b, 3)),
        [1]
    );
    let never = run(&pod(&[], &["ok", "bad"], "Never"), &rt, &b, 3);
    assert!(never.start.is_empty() && never.pod_done);
}

#[test]
fn crash_loop_waits_out_growing_backoff() {
    let p = pod(&[], &["c"], "Always");
    let mut b = Backoff::default();
    let mut rt = RuntimePod {
        sandboxes: vec![sandbox()],
        containers: vec![],
    };
    rt.containers
        .push(ctr("c", 0, ContainerState::Exited, Some(1), (0, 1)));
    // first restart is immediate
    let a = run(&p, &rt, &b, 1);
    assert_eq!(
        a.start,
        [Start {
            index: 0,
            attempt: 1,
            restart: true
        }]
    );
    b.next("c", t(1));
    rt.containers
        .push(ctr("c", 1, ContainerState::Exited, Some(1), (1, 2)));
    let a = run(&p, &rt, &b, 3);
    assert!(a.start.is_empty());
    assert_eq!(a.waiting["c"].reason, "CrashLoopBackOff");
    assert!(
        a.waiting["c"].message.contains("back-off 10s"),
        "{}",
        a.waiting["c"].message
    );
    assert_eq!(a.requeue_after, Some(Duration::from_secs(9)));
    assert_eq!(run(&p, &rt, &b, 12).start.len(), 1);
    b.next("c", t(12));
    rt.containers
        .push(ctr("c", 2, ContainerState::Exited, Some(1), (12, 13)));
    let a = run(&p, &rt, &b, 14);
    assert_eq!(
        a.requeue_after,
        Some(Duration::from_secs(19)),
        "the delay doubled"
    );
}

#[test]
fn long_run_resets_backoff() {
    let p = pod(&[], &["c"], "Always");
    let mut b = Backoff::default();
    b.next("c", t(0));
    let rt = RuntimePod {
        sandboxes: vec![sandbox()],
        containers: vec![ctr("c", 3, ContainerState::Exited, Some(1), (1, 1000))],
    };
    let a = run(&p, &rt, &b, 1001);
    assert_eq!(a.reset_backoff, ["c"]);
    assert_eq!(a.start.len(), 1);
}

#[test]
fn liveness_failure_kills_and_lost_sandbox_recreates() {
    let p = pod(&[], &["c"], "Always");
    let rt = RuntimePod {
        sandboxes: vec![sandbox()],
        containers: vec![ctr("c", 0, ContainerState::Running, None, (1, 0))],
    };
    let failing =
        |id: &str| (id == "c-0").then(|| "HTTP probe failed with statuscode: 500".to_string());
    let a = compute(&Inputs {
        pod: &p,
        runtime: &rt,
        backoff: &Backoff::default(),
        liveness_failure: &failing,
        now: t(5),
    });
    assert_eq!(a.kill.len(), 1);
    assert!(a.kill[0].message.contains("failed liveness probe"));
    let mut gone = rt.clone();
    gone.sandboxes[0].state = SandboxState::NotReady;
    let a = run(&p, &gone, &Backoff::default(), 5);
    assert!(a.kill_pod && a.create_sandbox);
    assert_eq!(
        a.start,
        [Start {
            index: 0,
            attempt: 1,
            restart: true
        }]
    );
}
