//! Pod worker behaviour against in-memory runtimes and a recording API.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use runtime::cri::{self, ContainerState};
use serde_json::Value;

use super::fake::{self, FakeContainers, FakeImages, FakeSandboxes, Seen};
use super::sync::{self, PodState, SyncOutcome};
use super::*;

struct Env {
    ctx: Arc<Ctx>,
    sandboxes: Arc<FakeSandboxes>,
    containers: Arc<FakeContainers>,
    seen: Arc<Mutex<Vec<Seen>>>,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (client, seen) = fake::api().await;
    let images = Arc::new(FakeImages::default());
    let sandboxes = Arc::new(FakeSandboxes::default());
    let containers = Arc::new(FakeContainers::default());
    let recorder = EventRecorder::discard();
    let (tx, _rx) = mpsc::channel(16);
    let deps = PodWorkerDeps {
        client: client.clone(),
        node_name: "n1".into(),
        node_ip: "192.0.2.10".parse().unwrap(),
        images: images.clone(),
        sandboxes: sandboxes.clone(),
        containers: containers.clone(),
        volumes: Arc::new(VolumeManager::new(dir.path().join("pods"), client)),
        probes: Arc::new(ProbeManager::new(containers.clone(), recorder.clone(), tx)),
        recorder,
        pod_logs_dir: dir.path().join("pod-logs"),
        cluster_dns: vec!["10.43.0.10".into()],
        cluster_domain: "cluster.local".into(),
        cgroup_root: "flotilla-test".into(),
    };
    Env {
        ctx: Arc::new(Ctx {
            deps,
            host_resolv_conf: String::new(),
        }),
        sandboxes,
        containers,
        seen,
        _dir: dir,
    }
}

fn container(name: &str, image: &str, command: Option<&[&str]>, args: &[&str]) -> Container {
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Container {
        name: name.into(),
        image: Some(image.into()),
        command: command.map(v),
        args: (!args.is_empty()).then(|| v(args)),
        ..Default::default()
    }
}

fn pod(inits: Vec<Container>, apps: Vec<Container>, policy: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p1".into()),
            namespace: Some("ns1".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            init_containers: (!inits.is_empty()).then_some(inits),
            containers: apps,
            restart_policy: Some(policy.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Env {
    fn last_status(&self) -> Value {
        let seen = self.seen.lock().unwrap();
        let p = seen
            .iter()
            .rev()
            .find(|s| s.method == "PATCH" && s.path.contains("/pods/p1/status"))
            .expect("a status patch");
        serde_json::from_str::<Value>(&p.body).unwrap()["status"].clone()
    }
}

async fn sync(e: &Env, st: &mut PodState, p: &Pod) -> SyncOutcome {
    sync::sync_pod(&e.ctx, st, p).await.unwrap()
}

#[tokio::test]
async fn init_containers_then_app_with_its_config_and_status() {
    let e = env().await;
    let mut web = container("web", "reg.test/web:1", None, &["serve", "$(PORT)"]);
    web.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
        name: "PORT".into(),
        value: Some("8080".into()),
        ..Default::default()
    }]);
    let q = |v: &str| Quantity(v.into());
    web.resources = Some(ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".to_string(), q("250m"))])),
        limits: Some(BTreeMap::from([
            ("cpu".to_string(), q("500m")),
            ("memory".to_string(), q("64Mi")),
        ])),
        ..Default::default()
    });
    let p = pod(
        vec![container(
            "setup",
            "reg.test/tools:1",
            Some(&["sh", "-c"]),
            &["true"],
        )],
        vec![web],
        "Always",
    );
    let mut st = PodState::new();
    sync(&e, &mut st, &p).await;
    let cfgs = e.sandboxes.configs.lock().unwrap().clone();
    assert_eq!(cfgs.len(), 1);
    assert_eq!(cfgs[0].cgroup_parent, "flotilla-test/burstable/poduid-1");
    assert_eq!(cfgs[0].dns.searches[0], "ns1.svc.cluster.local");
    assert_eq!(
        e.containers.by_name("setup")[0].0.state,
        ContainerState::Running
    );
    assert!(e.containers.by_name("web").is_empty(), "app waits for init");
    assert_eq!(e.last_status()["phase"], "Pending");

    e.containers.exit("setup", 0);
    sync(&e, &mut st, &p).await;
    let (status, cfg) = e.containers.by_name("web").remove(0);
    assert_eq!(status.state, ContainerState::Running);
    assert_eq!(cfg.args, ["/bin/ep", "serve", "8080"]);
    assert!(
        cfg.env.contains(&"PATH=/bin".to_string()) && cfg.env.contains(&"PORT=8080".to_string())
    );
    assert_eq!(
        (cfg.resources.cpu_shares, cfg.resources.cpu_quota),
        (Some(256), Some(50_000))
    );
    assert_eq!(cfg.resources.memory_limit, Some(64 << 20));
    assert!(
        cfg.log_path.ends_with("ns1_p1_uid-1/web/0.log"),
        "{}",
        cfg.log_path.display()
    );
    assert_eq!(cfg.labels[cri::LABEL_POD_UID], "uid-1");
    let s = e.last_status();
    assert_eq!(s["phase"], "Running");
    assert_eq!(s["podIP"], "10.244.77.2");
    assert_eq!(s["hostIP"], "192.0.2.10");
    assert_eq!(s["qosClass"], "Burstable");
    assert_eq!(
        s["containerStatuses"][0]["containerID"],
        format!("runc://{}", status.id)
    );
    assert_eq!(
        s["containerStatuses"][0]["imageID"],
        "reg.test/web@sha256:m1"
    );
    assert_eq!(
        s["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    // Nothing changed: no second patch.
    let patches = e
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "PATCH")
        .count();
    sync(&e, &mut st, &p).await;
    assert_eq!(
        e.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "PATCH")
            .count(),
        patches
    );
}

#[tokio::test]
async fn crash_loop_backs_off_and_keeps_the_last_dead_container() {
    let e = env().await;
    let p = pod(
        vec![],
        vec![container("c", "reg.test/c:1", Some(&["false"]), &[])],
        "Always",
    );
    let mut st = PodState::new();
    sync(&e, &mut st, &p).await;
    e.containers.exit("c", 1);
    sync(&e, &mut st, &p).await;
    assert_eq!(
        e.containers.by_name("c").len(),
        2,
        "first restart is immediate"
    );
    e.containers.exit("c", 2);
    let SyncOutcome::Requeue(wait) = sync(&e, &mut st, &p).await else {
        panic!("finished")
    };
    assert!(
        wait > Duration::from_secs(5) && wait <= Duration::from_secs(10),
        "{wait:?}"
    );
    assert_eq!(e.containers.by_name("c").len(), 2, "held back");
    let s = e.last_status();
    let c = &s["containerStatuses"][0];
    assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 2);
    assert_eq!(c["restartCount"], 1);
    assert_eq!(s["phase"], "Running");
}

#[tokio::test]
async fn failures_say_why() {
    let e = env().await;
    let p = pod(
        vec![],
        vec![
            container("img", "reg.test/missing:1", None, &[]),
            container("cmd", "reg.test/ok:1", Some(&["/no/such/binary"]), &[]),
        ],
        "Always",
    );
    let mut st = PodState::new();
    sync(&e, &mut st, &p).await;
    let s = e.last_status();
    let by = |n: &str| {
        s["containerStatuses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by("img")["state"]["waiting"]["reason"], "ErrImagePull");
    assert!(by("img")["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .contains("manifest unknown"));
    let cmd = by("cmd");
    assert_eq!(
        cmd["state"]["waiting"]["reason"], "RunContainerError",
        "{cmd}"
    );
    assert!(cmd["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .contains("no such file"));
    assert_eq!(cmd["lastState"]["terminated"]["exitCode"], 128);
    sync(&e, &mut st, &p).await;
    let s = e.last_status();
    assert_eq!(
        s["containerStatuses"][0]["state"]["waiting"]["reason"],
        "ImagePullBackOff"
    );
    assert_eq!(s["phase"], "Pending");
}

#[tokio::test]
async fn restart_never_finishes_with_phase() {
    let e = env().await;
    let p = pod(
        vec![],
        vec![container("c", "reg.test/c:1", Some(&["true"]), &[])],
        "Never",
    );
    let mut st = PodState::new();
    sync(&e, &mut st, &p).await;
    e.containers.exit("c", 0);
    assert!(matches!(sync(&e, &mut st, &p).await, SyncOutcome::Finished));
    assert_eq!(e.last_status()["phase"], "Succeeded");
    assert_eq!(e.containers.by_name("c").len(), 1, "never restarted");
}

#[tokio::test]
async fn housekeeping_removes_what_unknown_pods_left() {
    let e = env().await;
    let p = pod(
        vec![],
        vec![container("c", "reg.test/c:1", None, &[])],
        "Always",
    );
    let mut st = PodState::new();
    sync(&e, &mut st, &p).await;
    let log_dir = e.ctx.deps.pod_logs_dir.join("ns1_p1_uid-1");
    assert!(log_dir.exists());
    let kept = housekeeping::cleanup_orphans(&e.ctx, &HashSet::from(["uid-1".to_string()]))
        .await
        .unwrap();
    assert!(kept.is_empty());
    assert_eq!(e.containers.by_name("c").len(), 1);
    let cleaned = housekeeping::cleanup_orphans(&e.ctx, &HashSet::new())
        .await
        .unwrap();
    assert!(cleaned.contains("uid-1"));
    assert!(e.containers.containers.lock().unwrap().is_empty());
    assert!(e.sandboxes.sandboxes.lock().unwrap().is_empty());
    assert!(!log_dir.exists());
}

#[tokio::test]
async fn deletion_stops_with_grace_removes_and_deletes_with_uid_precondition() {
    let e = env().await;
    let mut p = pod(
        vec![],
        vec![container("c", "reg.test/c:1", None, &[])],
        "Always",
    );
    p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(30);
    let (tx, rx) = watch::channel(worker::Input {
        pod: Arc::new(p.clone()),
        gone: false,
        wake: 0,
    });
    let task = tokio::spawn(worker::run(e.ctx.clone(), rx));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while e.containers.by_name("c").first().map(|c| c.0.state) != Some(ContainerState::Running) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "container never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    p.metadata.deletion_grace_period_seconds = Some(5);
    tx.send_modify(|i| i.pod = Arc::new(p.clone()));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("worker ends")
        .unwrap();
    assert_eq!(
        e.containers.stops.lock().unwrap()[0].1,
        Duration::from_secs(5)
    );
    assert!(e.containers.containers.lock().unwrap().is_empty());
    assert!(e.sandboxes.sandboxes.lock().unwrap().is_empty());
    let seen = e.seen.lock().unwrap();
    let del = seen
        .iter()
        .find(|s| s.method == "DELETE")
        .expect("pod deleted");
    assert!(del.path.contains("/namespaces/ns1/pods/p1"));
    let body: Value = serde_json::from_str(&del.body).unwrap();
    assert_eq!(body["gracePeriodSeconds"], 0);
    assert_eq!(body["preconditions"]["uid"], "uid-1");
}
