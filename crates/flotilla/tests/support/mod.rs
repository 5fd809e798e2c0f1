//! End-to-end test harness: starts real `flotilla server` processes (and etcd) on free
//! loopback ports with temporary data directories, waits for readiness with deadlines,
//! runs the installed kubectl binaries against them, and cleans everything up on drop,
//! even when the test fails.
//!
//! Every e2e test file includes it with `mod support;`; not every file uses every helper.
#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod etcd;
pub mod https;
pub mod kubectl;
pub mod node_cleanup;
pub mod sim;

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

pub use cluster::{AgentMode, Cluster, ClusterOptions};
pub use etcd::Etcd;
pub use https::{HttpsClient, Identity};
pub use kubectl::{Kubectl, KubectlOutput, KUBECTL_VERSIONS};

/// How long a server may take to answer /readyz. Generous: on a busy two-core machine
/// several servers and builds run at once.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);

/// The `flotilla` binary Cargo built for this test run.
pub fn flotilla_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flotilla"))
}

/// A port that was free a moment ago on 127.0.0.1. Another process may take it before we
/// use it; starters retry on a bind failure.
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A child process in its own process group, killed with the whole group on drop.
pub struct ProcessGroup {
    child: Child,
}

impl ProcessGroup {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let child = cmd.process_group(0).stdin(Stdio::null()).spawn()?;
        Ok(Self { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn signal(&self, sig: Signal) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), sig);
        }
    }

    /// Sends `sig` to the group and waits up to `deadline` for the leader to exit.
    pub fn stop(&mut self, sig: Signal, deadline: Duration) -> Option<std::process::ExitStatus> {
        self.signal(sig);
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if start.elapsed() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // The whole group: children that would outlive the leader (the agent's supervisors,
        // later) go too. Signalled before reaping, while the group id is surely still ours.
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// How to start a server.
#[derive(Default, Clone)]
pub struct ServerOptions {
    /// Reuse this data directory (e.g. to test a restart); a fresh temporary one otherwise.
    pub data_dir: Option<PathBuf>,
    /// Use etcd at these URLs instead of the embedded store.
    pub etcd_endpoints: Vec<String>,
    pub token_auth_file: Option<PathBuf>,
    /// Further command-line arguments.
    pub args: Vec<String>,
    /// A fixed port (e.g. to restart on the same one); a free one otherwise.
    pub port: Option<u16>,
    /// Run the server's in-process node agent (configure it through `args`); by default
    /// servers start with `--no-agent`, needing neither root nor runc.
    pub with_agent: bool,
    /// Run the server's scheduler; by default servers start with `--no-scheduler`, so
    /// control-plane tests see only the writes they make.
    pub with_scheduler: bool,
    /// Run the server's controllers; off by default for the same reason.
    pub with_controllers: bool,
}

impl ServerOptions {
    pub fn etcd(etcd: &Etcd) -> Self {
        Self {
            etcd_endpoints: vec![etcd.client_url.clone()],
            ..Self::default()
        }
    }
}

/// A running `flotilla server` on a loopback port.
pub struct Server {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// From spawning the process to the first 200 from /readyz.
    pub startup: Duration,
    /// Holds the log, kubectl's HOME and caches; also the data directory unless one was given.
    scratch: tempfile::TempDir,
    process: Option<ProcessGroup>,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server and waits until /readyz answers 200, retrying with another port if
    /// the chosen one was taken meanwhile. Panics (failing the test) with the server's log
    /// if it does not become ready.
    pub fn start_with(opts: ServerOptions) -> Self {
        let scratch = tempfile::Builder::new()
            .prefix("flotilla-e2e-")
            .tempdir()
            .expect("create a temporary directory");
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| scratch.path().join("data"));
        let attempts = if opts.port.is_some() { 1 } else { 3 };
        let mut last_log = String::new();
        for attempt in 0..attempts {
            let port = opts.port.unwrap_or_else(free_port);
            let log_path = scratch.path().join(format!("server-{attempt}.log"));
            let mut process = spawn_server(&opts, &data_dir, port, &log_path);
            let started = Instant::now();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match wait_ready(&mut process, addr, &data_dir) {
                Ok(()) => {
                    return Self {
                        addr,
                        data_dir,
                        startup: started.elapsed(),
                        scratch,
                        process: Some(process),
                    }
                }
                Err(why) => {
                    drop(process);
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    let port_taken = last_log.contains("Address already in use");
                    if !port_taken {
                        panic!(
                            "flotilla server did not become ready: {why}\n--- log ---\n{last_log}"
                        );
                    }
                }
            }
        }
        panic!("flotilla server could not bind a free port\n--- log ---\n{last_log}");
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The server process's pid, while it runs.
    #[allow(dead_code)] // Not every test crate that includes this module reads it.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ProcessGroup::pid)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("admin.kubeconfig")
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("pki/ca.crt")).expect("read the CA")
    }

    pub fn node_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("node-token"))
            .expect("read the node token")
            .trim()
            .to_string()
    }

    /// An HTTPS client that trusts the cluster CA and presents `identity`.
    pub fn client(&self, identity: Identity) -> HttpsClient {
        HttpsClient::new(self.addr, &self.ca_pem(), identity)
    }

    /// An HTTPS client with the admin's client certificate.
    pub fn admin_client(&self) -> HttpsClient {
        let dir = self.data_dir.join("pki");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("read admin credentials");
        self.client(Identity::Certificate {
            cert_pem: read("admin.crt"),
            key_pem: read("admin.key"),
        })
    }

    /// kubectl of `version` ("1.33") with the admin kubeconfig and a private HOME.
    pub fn kubectl(&self, version: &str) -> Kubectl {
        Kubectl::new(
            version,
            &self.kubeconfig(),
            &self.scratch.path().join("home"),
        )
    }

    /// Runs kubectl `version` with `args`; the common case in one call.
    /// A `kube::Client` for the server, authenticated as the admin (its kubeconfig).
    pub async fn kube_client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())
            .expect("read the admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("a client configuration from the admin kubeconfig");
        kube::Client::try_from(config).expect("a kube client")
    }

    pub fn kubectl_run(&self, version: &str, args: &[&str]) -> KubectlOutput {
        self.kubectl(version).run(args)
    }

    /// The server's log so far (stderr), for assertion messages.
    pub fn log(&self) -> String {
        let mut out = String::new();
        let mut paths: Vec<_> = std::fs::read_dir(self.scratch.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        paths.sort();
        for p in paths {
            out.push_str(&std::fs::read_to_string(p).unwrap_or_default());
        }
        out
    }

    /// Stops the server with SIGTERM and returns whether it exited by itself in `deadline`.
    pub fn terminate(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let status = self.process.as_mut()?.stop(Signal::SIGTERM, deadline);
        self.process = None;
        status
    }

    /// Kills the server at once (like a crash).
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// The data directory survives the server only if the test supplied it; otherwise it
    /// lives in the scratch directory removed on drop.
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Kill before the scratch directory (and with it the data dir) is removed.
        self.process = None;
    }
}

fn spawn_server(opts: &ServerOptions, data_dir: &Path, port: u16, log: &Path) -> ProcessGroup {
    let log = File::create(log).expect("create the server log");
    let err = log.try_clone().expect("clone the log handle");
    let mut cmd = Command::new(flotilla_bin());
    cmd.arg("server")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--bind-address")
        .arg("127.0.0.1")
        .arg("--port")
        .arg(port.to_string())
        .args(if opts.with_agent {
            None
        } else {
            Some("--no-agent")
        })
        .args(if opts.with_scheduler {
            None
        } else {
            Some("--no-scheduler")
        })
        .args(if opts.with_controllers {
            None
        } else {
            Some("--no-controllers")
        })
        .args(&opts.args)
        .env(
            "RUST_LOG",
            std::env::var("FLOTILLA_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(log)
        .stderr(err);
    if !opts.etcd_endpoints.is_empty() {
        cmd.arg("--etcd-endpoints")
            .arg(opts.etcd_endpoints.join(","));
    }
    if let Some(f) = &opts.token_auth_file {
        cmd.arg("--token-auth-file").arg(f);
    }
    ProcessGroup::spawn(&mut cmd).expect("spawn flotilla server")
}

/// Waits until /readyz answers 200 "ok" over TLS verified against the cluster CA.
fn wait_ready(process: &mut ProcessGroup, addr: SocketAddr, data_dir: &Path) -> Result<(), String> {
    let ca_path = data_dir.join("pki/ca.crt");
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    let mut last = String::from("no answer yet");
    loop {
        if let Some(status) = process.exited() {
            return Err(format!("the server exited with {status}"));
        }
        if let Ok(ca) = std::fs::read_to_string(&ca_path) {
            let client = HttpsClient::new(addr, &ca, Identity::Anonymous)
                .with_timeout(Duration::from_secs(2));
            match client.get("/readyz") {
                Ok(r) if r.status == 200 && r.text() == "ok" => return Ok(()),
                Ok(r) => last = format!("/readyz answered {}: {}", r.status, r.text()),
                Err(e) => last = e,
            }
        }
        if start.elapsed() > READY_DEADLINE {
            return Err(format!("not ready after {READY_DEADLINE:?}: {last}"));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
