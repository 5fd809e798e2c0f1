//! The Summary against fake runtimes whose cgroups burn a known share of a core.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use runtime::cri::{
    ContainerConfig, ContainerStatus, ExecResult, PodSandbox, PodSandboxConfig, RuntimeError,
    StreamOptions, StreamSession,
};

use super::*;

/// Every cgroup uses `share` of a core since `epoch`; memory is fixed per cgroup.
struct Fake {
    epoch: Instant,
}

impl Fake {
    fn stats(&self, share: f64, mem: u64) -> CgroupStats {
        let nanos = self.epoch.elapsed().as_nanos() as f64 * share;
        CgroupStats {
            timestamp: SystemTime::now(),
            cpu_usage_nanos: 1_000_000 + nanos as u64,
            memory_working_set_bytes: mem,
            memory_usage_bytes: mem * 2,
        }
    }
}

fn no<T>() -> runtime::cri::Result<T> {
    Err(RuntimeError::Other("not in the fake".into()))
}

fn status(id: &str, sandbox: &str, name: &str, state: ContainerState) -> ContainerStatus {
    ContainerStatus {
        id: id.into(),
        sandbox_id: sandbox.into(),
        name: name.into(),
        attempt: 0,
        state,
        created_at: SystemTime::UNIX_EPOCH,
        started_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        finished_at: None,
        exit_code: None,
        reason: None,
        message: None,
        image_ref: String::new(),
        image_id: String::new(),
        log_path: PathBuf::new(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    }
}

#[async_trait]
impl runtime::ContainerRuntime for Fake {
    async fn create_container(
        &self,
        _: &PodSandbox,
        _: &ContainerConfig,
    ) -> runtime::cri::Result<String> {
        no()
    }
    async fn start_container(&self, _: &str) -> runtime::cri::Result<()> {
        no()
    }
    async fn stop_container(&self, _: &str, _: Duration) -> runtime::cri::Result<()> {
        no()
    }
    async fn remove_container(&self, _: &str) -> runtime::cri::Result<()> {
        no()
    }
    async fn container_status(&self, _: &str) -> runtime::cri::Result<ContainerStatus> {
        no()
    }
    async fn list_containers(&self) -> runtime::cri::Result<Vec<ContainerStatus>> {
        Ok(vec![
            status("c1", "sb1", "web", ContainerState::Running),
            status("c2", "sb1", "old", ContainerState::Exited),
        ])
    }
    async fn exec_sync(
        &self,
        _: &str,
        _: &[String],
        _: Duration,
    ) -> runtime::cri::Result<ExecResult> {
        no()
    }
    async fn exec(
        &self,
        _: &str,
        _: &[String],
        _: StreamOptions,
    ) -> runtime::cri::Result<StreamSession> {
        no()
    }
    async fn attach(&self, _: &str, _: StreamOptions) -> runtime::cri::Result<StreamSession> {
        no()
    }
    async fn container_stats(&self, id: &str) -> runtime::cri::Result<CgroupStats> {
        match id {
            "c1" => Ok(self.stats(0.25, 4 << 20)),
            _ => Err(RuntimeError::NotFound(id.into())),
        }
    }
    async fn cgroup_stats(&self, cgroup: &str) -> runtime::cri::Result<CgroupStats> {
        match cgroup {
            "" => Ok(self.stats(1.5, 1 << 30)),
            "flotilla/burstable/poduid-1" => Ok(self.stats(0.5, 8 << 20)),
            _ => Err(RuntimeError::NotFound(cgroup.into())),
        }
    }
}

#[async_trait]
impl runtime::SandboxRuntime for Fake {
    async fn run_pod_sandbox(&self, _: &PodSandboxConfig) -> runtime::cri::Result<PodSandbox> {
        no()
    }
    async fn stop_pod_sandbox(&self, _: &str) -> runtime::cri::Result<()> {
        no()
    }
    async fn remove_pod_sandbox(&self, _: &str) -> runtime::cri::Result<()> {
        no()
    }
    async fn pod_sandbox_status(&self, _: &str) -> runtime::cri::Result<PodSandbox> {
        no()
    }
    async fn list_pod_sandboxes(&self) -> runtime::cri::Result<Vec<PodSandbox>> {
        let sb = |id: &str, uid: &str, state| PodSandbox {
            id: id.into(),
            pod_uid: uid.into(),
            namespace: "default".into(),
            name: format!("pod-{uid}"),
            state,
            created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            netns_path: None,
            ipc_ns_path: None,
            uts_ns_path: None,
            ips: vec![],
            hosts_path: PathBuf::new(),
            hostname_path: PathBuf::new(),
            resolv_conf_path: PathBuf::new(),
            cgroup_parent: format!("flotilla/burstable/pod{uid}"),
            labels: BTreeMap::new(),
        };
        Ok(vec![
            sb("sb1", "uid-1", SandboxState::Ready),
            sb("sb2", "uid-2", SandboxState::NotReady),
        ])
    }
}

fn near(value: Option<u64>, want: f64) -> bool {
    // Wall-clock sampling on a loaded machine: allow 20% either way.
    value.is_some_and(|v| (v as f64 - want).abs() < want * 0.2)
}

#[tokio::test]
async fn summary_reports_rates_and_memory_for_node_pods_and_containers() {
    let fake = Arc::new(Fake {
        epoch: Instant::now(),
    });
    let c = Collector::new(fake.clone(), fake, "node-a".into());
    let t0 = Instant::now();
    let s = c.summary().await.unwrap();
    // The first scrape measured over one window.
    assert!(t0.elapsed() >= rates::MIN_WINDOW);
    assert_eq!(s.node.node_name, "node-a");
    let node_cpu = s.node.cpu.as_ref().unwrap();
    assert!(near(node_cpu.usage_nano_cores, 1.5e9), "{node_cpu:?}");
    let node_mem = s.node.memory.as_ref().unwrap();
    assert_eq!(node_mem.working_set_bytes, Some(1 << 30));
    assert_eq!(s.pods.len(), 1, "only ready sandboxes");
    let pod = &s.pods[0];
    assert_eq!(pod.pod_ref.uid, "uid-1");
    assert_eq!(pod.pod_ref.name, "pod-uid-1");
    assert!(near(pod.cpu.as_ref().unwrap().usage_nano_cores, 0.5e9));
    assert_eq!(
        pod.memory.as_ref().unwrap().working_set_bytes,
        Some(8 << 20)
    );
    assert_eq!(pod.containers.len(), 1, "only running containers");
    let web = &pod.containers[0];
    assert_eq!(web.name, "web");
    assert!(near(web.cpu.as_ref().unwrap().usage_nano_cores, 0.25e9));
    assert_eq!(
        web.memory.as_ref().unwrap().working_set_bytes,
        Some(4 << 20)
    );
    assert_eq!(web.start_time.as_deref(), Some("2023-11-14T22:13:20Z"));

    // A second scrape a little later reuses the stored samples: no extra wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t1 = Instant::now();
    let again = c.summary().await.unwrap();
    assert!(t1.elapsed() < rates::MIN_WINDOW);
    assert!(near(
        again.pods[0].cpu.as_ref().unwrap().usage_nano_cores,
        0.5e9
    ));

    // The kubelet's JSON names.
    let json = serde_json::to_value(&again).unwrap();
    assert!(json["node"]["cpu"]["usageNanoCores"].is_u64());
    assert!(json["node"]["memory"]["workingSetBytes"].is_u64());
    assert_eq!(json["pods"][0]["podRef"]["namespace"], "default");
    assert!(json["pods"][0]["containers"][0]["cpu"]["usageCoreNanoSeconds"].is_u64());
}
