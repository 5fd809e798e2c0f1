//! Containers: OCI bundles generated from a [`crate::cri::ContainerConfig`], run by runc
//! under a per-container supervisor, with CRI-format logs, exec, attach and cgroup stats.
//! Implements [`crate::cri::ContainerRuntime`].
//!
//! All state lives on disk under `root/<id>/` (see [`state`]); this value holds only
//! configuration, so an agent that restarts builds a new one and finds every container,
//! its labels and its exit code where the supervisor left them.

mod attach;
mod cri_log;
mod exec;
mod fdio;
mod runc;
mod spec;
mod state;
pub mod supervisor;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::net::UnixStream;

use crate::cgroups;
use crate::cri::{
    CgroupStats, ContainerConfig, ContainerRuntime, ContainerState, ContainerStatus, ExecResult,
    PodSandbox, RuntimeError, StreamOptions, StreamSession,
};
use crate::image::rootfs;
pub use cri_log::DEFAULT_LOG_MAX_BYTES;
use runc::Runc;
use state::{ContainerRecord, ExitRecord, StartedRecord};

pub struct ContainersConfig {
    /// DATA_DIR/containers: bundles, rootfs mounts, supervisor state.
    pub root: PathBuf,
    /// runc, or crun (same command line).
    pub runtime_binary: PathBuf,
    /// runc --root: unique per node, since tests run several on one machine.
    pub runtime_root: PathBuf,
    /// argv prefix that starts a supervisor, e.g. [current_exe, "supervise"]; the
    /// container directory is appended.
    pub supervisor: Vec<String>,
}

pub struct Containers {
    config: ContainersConfig,
    runc: Runc,
}

/// How long start waits for the supervisor to report the container started.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGKILLed container may take to be reaped and recorded.
const KILL_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(10);

/// The exit code the CRI reports for a container whose process never ran.
const START_ERROR_EXIT: i32 = 128;

fn timestamp_to_system(t: jiff::Timestamp) -> SystemTime {
    t.into()
}

/// Unix socket paths are limited to 108 bytes; a long data dir is reached through the
/// directory's descriptor instead.
pub(crate) async fn connect_unix(path: &Path) -> Result<UnixStream, RuntimeError> {
    let err = |e| RuntimeError::io(format!("connecting to {}", path.display()), e);
    if path.as_os_str().len() < 100 {
        return UnixStream::connect(path).await.map_err(err);
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(RuntimeError::Invalid {
            what: "socket path".into(),
            message: path.display().to_string(),
        });
    };
    let dir = std::fs::File::open(parent).map_err(err)?;
    let short = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    ))
    .join(name);
    let stream = UnixStream::connect(&short).await.map_err(err);
    drop(dir);
    stream
}

/// Polls for any of `names` in `dir` until `timeout`; returns the first found.
async fn wait_for_file(
    dir: &Path,
    names: &[&'static str],
    timeout: Duration,
) -> Option<&'static str> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(found) = names.iter().find(|n| dir.join(n).exists()) {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn process_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => {
            // A zombie still answers kill(0): check that it has not exited.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    !s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(false)
        }
        Err(_) => false,
    }
}

impl Containers {
    pub fn new(config: ContainersConfig) -> Result<Self, RuntimeError> {
        if config.supervisor.is_empty() {
            return Err(RuntimeError::Invalid {
                what: "containers config".into(),
                message: "supervisor command is empty".into(),
            });
        }
        for dir in [&config.root, &config.runtime_root] {
            std::fs::create_dir_all(dir)
                .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
        }
        let runc = Runc::new(&config.runtime_binary, &config.runtime_root);
        Ok(Containers { config, runc })
    }

    fn dir(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        state::check_id(id)?;
        Ok(self.config.root.join(id))
    }

    fn record(&self, id: &str) -> Result<(PathBuf, ContainerRecord), RuntimeError> {
        let dir = self.dir(id)?;
        let record = state::read_json::<ContainerRecord>(&dir, state::RECORD)?
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        Ok((dir, record))
    }

    fn status_of(&self, dir: &Path, rec: ContainerRecord) -> Result<ContainerStatus, RuntimeError> {
        let started: Option<StartedRecord> = state::read_json(dir, state::STARTED)?;
        let mut exit: Option<ExitRecord> = state::read_json(dir, state::EXIT)?;
        let mut state = ContainerState::Created;
        let mut message = None;
        if exit.is_none() {
            if let Some(s) = &started {
                state = ContainerState::Running;
                if !process_alive(s.supervisor_pid) {
                    // It may have written exit.json just before exiting.
                    exit = state::read_json(dir, state::EXIT)?;
                    // Without its supervisor a still-living container runs on, unrecorded.
                    if exit.is_none() && !process_alive(s.pid) {
                        exit = Some(ExitRecord {
                            exit_code: 255,
                            finished_at: jiff::Timestamp::now(),
                            reason: "Error".into(),
                            message: Some(
                                "the container's supervisor exited without recording its exit"
                                    .into(),
                            ),
                        });
                    }
                }
            } else if let Ok(err) = std::fs::read_to_string(dir.join(state::START_ERROR)) {
                exit = Some(ExitRecord {
                    exit_code: START_ERROR_EXIT,
                    finished_at: jiff::Timestamp::now(),
                    reason: "StartError".into(),
                    message: Some(err),
                });
            }
        }
        if let Some(e) = &exit {
            state = ContainerState::Exited;
            message = e.message.clone();
        }
        Ok(ContainerStatus {
            id: rec.id,
            sandbox_id: rec.sandbox_id,
            name: rec.name,
            attempt: rec.attempt,
            state,
            created_at: timestamp_to_system(rec.created_at),
            started_at: started.map(|s| timestamp_to_system(s.started_at)),
            finished_at: exit.as_ref().map(|e| timestamp_to_system(e.finished_at)),
            exit_code: exit.as_ref().map(|e| e.exit_code),
            reason: exit.map(|e| e.reason),
            message,
            image_ref: rec.image_ref,
            image_id: rec.image_id,
            log_path: rec.log_path,
            labels: rec.labels,
            annotations: rec.annotations,
        })
    }

    fn require_running(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        let (dir, rec) = self.record(id)?;
        match self.status_of(&dir, rec)?.state {
            ContainerState::Running => Ok(dir),
            other => Err(RuntimeError::Invalid {
                what: "container state".into(),
                message: format!("container {id} is not running ({other:?})"),
            }),
        }
    }

    async fn create_inner(
        &self,
        dir: &Path,
        id: &str,
        sandbox: &PodSandbox,
        config: &ContainerConfig,
    ) -> Result<(), RuntimeError> {
        let cgroup_parent = sandbox.cgroup_parent.trim_matches('/');
        let cgroup = if cgroup_parent.is_empty() {
            id.to_owned()
        } else {
            format!("{cgroup_parent}/{id}")
        };
        let rootfs = dir.join("rootfs");
        let spec = spec::build(
            sandbox,
            config,
            &rootfs,
            &format!("/{cgroup}"),
            cgroups::is_v2(),
        )?;
        rootfs::mount_overlay(
            &config.image.layers,
            &dir.join("upper"),
            &dir.join("work"),
            &rootfs,
        )?;
        let spec_json = serde_json::to_vec_pretty(&spec)
            .map_err(|e| RuntimeError::Other(format!("encoding OCI spec: {e}")))?;
        state::write_bytes_atomic(dir, "config.json", &spec_json)?;
        let record = ContainerRecord {
            id: id.to_owned(),
            sandbox_id: sandbox.id.clone(),
            name: config.name.clone(),
            attempt: config.attempt,
            image_ref: config.image.reference.clone(),
            image_id: config.image.id.clone(),
            log_path: config.log_path.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            created_at: jiff::Timestamp::now(),
            tty: config.tty,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            termination_message_path: config.termination_message_path.clone(),
            cgroup,
            runtime_binary: self.config.runtime_binary.clone(),
            runtime_root: self.config.runtime_root.clone(),
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
        };
        // The record last: a directory without one is a create that never finished.
        state::write_atomic(dir, state::RECORD, &record)
    }

    async fn kill_and_wait(
        &self,
        id: &str,
        dir: &Path,
        signal: &str,
        timeout: Duration,
    ) -> Result<bool, RuntimeError> {
        if let Err(e) = self.runc.kill(id, signal).await {
            if !dir.join(state::EXIT).exists() {
                tracing::debug!(container = id, error = %e, "runc kill");
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (_, rec) = self.record(id)?;
            if self.status_of(dir, rec)?.state == ContainerState::Exited {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[async_trait]
impl ContainerRuntime for Containers {
    async fn create_container(
        &self,
        sandbox: &PodSandbox,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError> {
        let id = state::new_id()?;
        let dir = self.config.root.join(&id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
        if let Err(e) = self.create_inner(&dir, &id, sandbox, config).await {
            let _ = rootfs::unmount(&dir.join("rootfs"));
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        tracing::debug!(container = %id, name = %config.name, "created container");
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let (dir, rec) = self.record(id)?;
        match self.status_of(&dir, rec)?.state {
            ContainerState::Created => {}
            ContainerState::Running => return Ok(()),
            other => {
                return Err(RuntimeError::Invalid {
                    what: "container state".into(),
                    message: format!("container {id} cannot be started again ({other:?})"),
                })
            }
        }
        let (program, prefix) = self
            .config
            .supervisor
            .split_first()
            .ok_or_else(|| RuntimeError::Other("no supervisor command".into()))?;
        let out = tokio::process::Command::new(program)
            .args(prefix)
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| RuntimeError::io(format!("starting supervisor {program}"), e))?;
        if !out.status.success() {
            return Err(RuntimeError::Other(format!(
                "supervisor failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        match wait_for_file(&dir, &[state::STARTED, state::START_ERROR], START_TIMEOUT).await {
            Some(state::STARTED) => Ok(()),
            Some(_) => Err(RuntimeError::Oci(
                std::fs::read_to_string(dir.join(state::START_ERROR)).unwrap_or_default(),
            )),
            None => {
                let log =
                    std::fs::read_to_string(dir.join(state::SUPERVISOR_LOG)).unwrap_or_default();
                Err(RuntimeError::Oci(format!(
                    "container {id} did not start in time: {}",
                    log.trim()
                )))
            }
        }
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let (dir, rec) = self.record(id)?;
        if self.status_of(&dir, rec)?.state != ContainerState::Running {
            return Ok(());
        }
        if !grace.is_zero() && self.kill_and_wait(id, &dir, "TERM", grace).await? {
            return Ok(());
        }
        if self.kill_and_wait(id, &dir, "KILL", KILL_TIMEOUT).await? {
            return Ok(());
        }
        Err(RuntimeError::Oci(format!(
            "container {id} did not exit after SIGKILL"
        )))
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.dir(id)?;
        if !dir.exists() {
            return Ok(());
        }
        if let Ok((_, rec)) = self.record(id) {
            if self.status_of(&dir, rec.clone())?.state == ContainerState::Running {
                self.stop_container(id, Duration::ZERO).await?;
            }
            self.runc.delete(id).await?;
            if let Err(e) = cgroups::remove(&rec.cgroup) {
                tracing::warn!(container = id, error = %e, "removing container cgroup");
            }
        } else {
            self.runc.delete(id).await?;
        }
        rootfs::unmount(&dir.join("rootfs"))?;
        std::fs::remove_dir_all(&dir).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(RuntimeError::io(format!("removing {}", dir.display()), e)),
        })
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let (dir, rec) = self.record(id)?;
        self.status_of(&dir, rec)
    }

    async fn list_containers(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let entries = std::fs::read_dir(&self.config.root)
            .map_err(|e| RuntimeError::io(format!("reading {}", self.config.root.display()), e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str() else { continue };
            if state::check_id(id).is_err() {
                continue;
            }
            // One unreadable container must not hide the others from the agent.
            match self
                .record(id)
                .and_then(|(dir, rec)| self.status_of(&dir, rec))
            {
                Ok(status) => out.push(status),
                Err(RuntimeError::NotFound(_)) => continue, // a create in progress
                Err(e) => {
                    tracing::warn!(container = id, error = %e, "skipping unreadable container")
                }
            }
        }
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let dir = self.require_running(id)?;
        exec::exec_sync(&self.runc, &dir, id, cmd, timeout).await
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        opts: StreamOptions,
    ) -> Result<StreamSession, RuntimeError> {
        self.require_running(id)?;
        exec::exec_stream(&self.runc, id, cmd, opts).await
    }

    async fn attach(&self, id: &str, opts: StreamOptions) -> Result<StreamSession, RuntimeError> {
        let dir = self.require_running(id)?;
        attach::connect(&dir.join(state::ATTACH_SOCKET), opts).await
    }

    async fn container_stats(&self, id: &str) -> Result<CgroupStats, RuntimeError> {
        let (_, rec) = self.record(id)?;
        cgroups::stats(&rec.cgroup)
    }

    async fn cgroup_stats(&self, cgroup: &str) -> Result<CgroupStats, RuntimeError> {
        cgroups::stats(cgroup)
    }
}
