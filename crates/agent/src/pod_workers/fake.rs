//! In-memory runtimes and a recording API for the pod workers' unit tests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use runtime::cri::*;

#[derive(Default)]
pub struct FakeImages {
    pub pulls: Mutex<Vec<String>>,
    pub present: Mutex<HashMap<String, Image>>,
}

pub fn image(reference: &str) -> Image {
    Image {
        reference: reference.to_string(),
        id: "sha256:cfg".into(),
        repo_digest: Some(format!(
            "{}@sha256:m1",
            reference.split(':').next().unwrap_or(reference)
        )),
        layers: vec![],
        config: ImageConfig {
            entrypoint: vec!["/bin/ep".into()],
            cmd: vec!["default".into()],
            env: vec!["PATH=/bin".into()],
            working_dir: None,
            user: None,
        },
        size: 1,
    }
}

#[async_trait]
impl ImageService for FakeImages {
    async fn ensure_image(
        &self,
        reference: &str,
        policy: PullPolicy,
        _auth: &[RegistryAuth],
    ) -> Result<Image> {
        if policy != PullPolicy::Always {
            if let Some(i) = self.present.lock().unwrap().get(reference) {
                return Ok(i.clone());
            }
        }
        self.pulls.lock().unwrap().push(reference.to_string());
        if reference.contains("missing") {
            return Err(RuntimeError::ImageNotFound {
                image: reference.into(),
                message: "manifest unknown".into(),
            });
        }
        let i = image(reference);
        self.present
            .lock()
            .unwrap()
            .insert(reference.to_string(), i.clone());
        Ok(i)
    }
    async fn image_status(&self, reference: &str) -> Result<Option<Image>> {
        Ok(self.present.lock().unwrap().get(reference).cloned())
    }
    async fn list_images(&self) -> Result<Vec<Image>> {
        Ok(self.present.lock().unwrap().values().cloned().collect())
    }
    async fn remove_image(&self, _reference: &str) -> Result<()> {
        Ok(())
    }
    async fn garbage_collect(
        &self,
        _in_use: &[String],
        _bytes: u64,
        _min_age: std::time::Duration,
    ) -> Result<u64> {
        Ok(0)
    }
}

#[derive(Default)]
pub struct FakeSandboxes {
    pub sandboxes: Mutex<HashMap<String, PodSandbox>>,
    pub configs: Mutex<Vec<PodSandboxConfig>>,
}

#[async_trait]
impl SandboxRuntime for FakeSandboxes {
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<PodSandbox> {
        let mut all = self.sandboxes.lock().unwrap();
        if let Some(s) = all
            .values()
            .find(|s| s.pod_uid == config.pod_uid && s.state == SandboxState::Ready)
        {
            return Ok(s.clone());
        }
        self.configs.lock().unwrap().push(config.clone());
        let n = all.len() + 2;
        let ip: IpAddr = format!("10.244.77.{n}").parse().unwrap();
        let s = PodSandbox {
            id: format!("sb-{}-{n}", config.pod_uid),
            pod_uid: config.pod_uid.clone(),
            namespace: config.namespace.clone(),
            name: config.name.clone(),
            state: SandboxState::Ready,
            created_at: SystemTime::now(),
            netns_path: None,
            ipc_ns_path: None,
            uts_ns_path: None,
            ips: if config.host_network {
                vec![]
            } else {
                vec![ip]
            },
            hosts_path: PathBuf::new(),
            hostname_path: PathBuf::new(),
            resolv_conf_path: PathBuf::new(),
            cgroup_parent: config.cgroup_parent.clone(),
            labels: config.labels.clone(),
        };
        all.insert(s.id.clone(), s.clone());
        Ok(s)
    }
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        if let Some(s) = self.sandboxes.lock().unwrap().get_mut(id) {
            s.state = SandboxState::NotReady;
        }
        Ok(())
    }
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.sandboxes.lock().unwrap().remove(id);
        Ok(())
    }
    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandbox> {
        self.sandboxes
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(id.into()))
    }
    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandbox>> {
        Ok(self.sandboxes.lock().unwrap().values().cloned().collect())
    }
}

#[derive(Default)]
pub struct FakeContainers {
    pub containers: Mutex<HashMap<String, (ContainerStatus, ContainerConfig)>>,
    pub stops: Mutex<Vec<(String, Duration)>>,
    next: Mutex<u32>,
}

impl FakeContainers {
    /// The container's process exits with `code`.
    pub fn exit(&self, name: &str, code: i32) {
        let mut all = self.containers.lock().unwrap();
        for (s, _) in all.values_mut() {
            if s.name == name && s.state == ContainerState::Running {
                s.state = ContainerState::Exited;
                s.exit_code = Some(code);
                s.finished_at = Some(SystemTime::now());
                s.reason = Some(if code == 0 { "Completed" } else { "Error" }.into());
            }
        }
    }

    pub fn by_name(&self, name: &str) -> Vec<(ContainerStatus, ContainerConfig)> {
        let mut v: Vec<_> = self
            .containers
            .lock()
            .unwrap()
            .values()
            .filter(|(s, _)| s.name == name)
            .cloned()
            .collect();
        v.sort_by_key(|(s, _)| s.attempt);
        v
    }
}

#[async_trait]
impl ContainerRuntime for FakeContainers {
    async fn create_container(
        &self,
        sandbox: &PodSandbox,
        config: &ContainerConfig,
    ) -> Result<String> {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        let id = format!("c{n}");
        let s = ContainerStatus {
            id: id.clone(),
            sandbox_id: sandbox.id.clone(),
            name: config.name.clone(),
            attempt: config.attempt,
            state: ContainerState::Created,
            created_at: SystemTime::now(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            message: None,
            image_ref: config.image.reference.clone(),
            image_id: config.image.id.clone(),
            log_path: config.log_path.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        };
        self.containers
            .lock()
            .unwrap()
            .insert(id.clone(), (s, config.clone()));
        Ok(id)
    }
    async fn start_container(&self, id: &str) -> Result<()> {
        let mut all = self.containers.lock().unwrap();
        let (s, cfg) = all
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        if cfg.args.first().map(String::as_str) == Some("/no/such/binary") {
            s.state = ContainerState::Exited;
            s.exit_code = Some(128);
            s.reason = Some("StartError".into());
            s.finished_at = Some(SystemTime::now());
            return Err(RuntimeError::Oci(
                "exec: \"/no/such/binary\": stat /no/such/binary: no such file or directory".into(),
            ));
        }
        s.state = ContainerState::Running;
        s.started_at = Some(SystemTime::now());
        Ok(())
    }
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        self.stops.lock().unwrap().push((id.to_string(), grace));
        if let Some((s, _)) = self.containers.lock().unwrap().get_mut(id) {
            if s.state == ContainerState::Running {
                s.state = ContainerState::Exited;
                s.exit_code = Some(137);
                s.reason = Some("Error".into());
                s.finished_at = Some(SystemTime::now());
            }
        }
        Ok(())
    }
    async fn remove_container(&self, id: &str) -> Result<()> {
        self.containers.lock().unwrap().remove(id);
        Ok(())
    }
    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        self.containers
            .lock()
            .unwrap()
            .get(id)
            .map(|(s, _)| s.clone())
            .ok_or_else(|| RuntimeError::NotFound(id.into()))
    }
    async fn list_containers(&self) -> Result<Vec<ContainerStatus>> {
        Ok(self
            .containers
            .lock()
            .unwrap()
            .values()
            .map(|(s, _)| s.clone())
            .collect())
    }
    async fn exec_sync(&self, _id: &str, _cmd: &[String], _t: Duration) -> Result<ExecResult> {
        Ok(ExecResult::default())
    }
    async fn exec(&self, _id: &str, _cmd: &[String], _o: StreamOptions) -> Result<StreamSession> {
        Err(RuntimeError::Other("not in the fake".into()))
    }
    async fn attach(&self, _id: &str, _o: StreamOptions) -> Result<StreamSession> {
        Err(RuntimeError::Other("not in the fake".into()))
    }
    async fn container_stats(&self, _id: &str) -> Result<CgroupStats> {
        Err(RuntimeError::Other("not in the fake".into()))
    }
    async fn cgroup_stats(&self, _c: &str) -> Result<CgroupStats> {
        Err(RuntimeError::Other("not in the fake".into()))
    }
}

/// One request the fake API server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: String,
}

/// A kube::Client talking to an in-process HTTP server on loopback that answers from
/// memory: writes succeed, lists are empty, other GETs are 404. Every request is recorded.
pub async fn api() -> (kube::Client, Arc<Mutex<Vec<Seen>>>) {
    use axum::body::Bytes;
    use axum::http::{Method, StatusCode, Uri};
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let handler = move |method: Method, uri: Uri, body: Bytes| {
        let log = log.clone();
        async move {
            let path = uri.path().to_string();
            log.lock().unwrap().push(Seen {
                method: method.to_string(),
                path: format!("{path}?{}", uri.query().unwrap_or_default()),
                body: String::from_utf8_lossy(&body).to_string(),
            });
            let last = path.rsplit('/').next().unwrap_or_default().to_string();
            let (code, json) = match method.as_str() {
                "PATCH" | "DELETE" | "POST" | "PUT" => (
                    StatusCode::OK,
                    r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}"#.to_string(),
                ),
                "GET" if matches!(last.as_str(), "services" | "pods" | "events") => (
                    StatusCode::OK,
                    r#"{"apiVersion":"v1","kind":"List","metadata":{},"items":[]}"#.to_string(),
                ),
                _ => (
                    StatusCode::NOT_FOUND,
                    format!(
                        r#"{{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"NotFound","code":404,"message":"{last} not found"}}"#
                    ),
                ),
            };
            (code, [("content-type", "application/json")], json)
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    (kube::Client::try_from(config).unwrap(), seen)
}
