//! A real etcd (Debian's etcd-server) for one test: its own temp data dir and free loopback
//! ports, killed and removed on drop, even when the test fails.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_store::{EtcdConfig, EtcdStore};

/// Where Debian installs etcd; `FLOTILLA_ETCD` overrides it.
const DEFAULT_ETCD: &str = "/usr/bin/etcd";
/// The contract accepts 1.5 MiB values; etcd's default request limit is exactly 1.5 MiB, so
/// a request carrying such a value plus its key and framing would be refused.
const MAX_REQUEST_BYTES: u64 = 4 * 1024 * 1024;
/// etcd raises a NOSPACE alarm past its quota (2 GiB by default); 8 GiB is etcd's
/// documented maximum and leaves the benchmark's history well inside it.
const QUOTA_BACKEND_BYTES: u64 = 8 * 1024 * 1024 * 1024;
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

pub struct EtcdServer {
    child: Child,
    // Declared after `child` so the process is gone before its directory is removed.
    dir: tempfile::TempDir,
    client_url: String,
}

impl EtcdServer {
    /// Starts etcd and waits until it serves requests. Panics (failing the test) if etcd is
    /// missing or does not come up: the conformance tests must not silently skip.
    pub async fn start() -> EtcdServer {
        let mut last_error = String::new();
        // A port picked free can be taken by another test before etcd binds it; then etcd
        // exits at once and a fresh pair of ports is tried.
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(server) => return server,
                Err(err) => last_error = err,
            }
        }
        panic!("etcd did not start: {last_error}");
    }

    async fn try_start() -> Result<EtcdServer, String> {
        let binary = std::env::var("FLOTILLA_ETCD").unwrap_or_else(|_| DEFAULT_ETCD.into());
        let dir = tempfile::Builder::new()
            .prefix("flotilla-etcd-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let (client_port, peer_port) = free_port_pair()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = File::create(dir.path().join("etcd.log")).map_err(|e| format!("log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let child = Command::new(&binary)
            .arg("--name=flotilla-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=flotilla-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg(format!("--max-request-bytes={MAX_REQUEST_BYTES}"))
            .arg(format!("--quota-backend-bytes={QUOTA_BACKEND_BYTES}"))
            // A single member has no peers to wait for; short ticks let it elect itself at
            // once instead of after the default one-second election timeout.
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=50")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {binary} (scripts/deps installs etcd-server): {e}"))?;
        let mut server = EtcdServer {
            child,
            dir,
            client_url,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("etcd exited with {status}: {}", self.log_tail()));
            }
            let config = EtcdConfig {
                endpoints: self.endpoints(),
                connect_timeout: Duration::from_millis(500),
                request_timeout: Duration::from_secs(1),
                ..EtcdConfig::default()
            };
            if EtcdStore::connect_with(config).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd not ready after {STARTUP_DEADLINE:?}: {}",
                    self.log_tail()
                ));
            }
            // Polling interval while waiting for the condition above, not a synchronisation.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        vec![self.client_url.clone()]
    }

    /// etcd's data directory (the benchmark measures its size).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A store on this etcd under `prefix`.
    pub async fn store(&self, prefix: &str) -> EtcdStore {
        EtcdStore::connect(&self.endpoints(), Some(prefix))
            .await
            .expect("connect to the test etcd")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills etcd now, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two distinct free loopback ports, held together while picking so they differ.
fn free_port_pair() -> Result<(u16, u16), String> {
    let a = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let b = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
    Ok((port(&a)?, port(&b)?))
}
