//! Runs the installed kubectl binaries (one per minor version) against a test server, each
//! with its own HOME and discovery cache, with a timeout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The kubectl versions every e2e test of the wire covers.
pub const KUBECTL_VERSIONS: [&str; 5] = ["1.29", "1.30", "1.31", "1.32", "1.33"];

pub const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// The binary for `version` ("1.33"); "dispatcher" is /usr/bin/kubectl, which picks a
/// binary by the server's version.
pub fn kubectl_path(version: &str) -> PathBuf {
    if version == "dispatcher" {
        PathBuf::from("/usr/bin/kubectl")
    } else {
        Path::new(KUBECTL_DIR).join(format!("kubectl.{version}"))
    }
}

#[derive(Debug)]
pub struct KubectlOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with the whole output unless kubectl succeeded; returns stdout.
    pub fn expect_success(&self, what: &str) -> &str {
        assert!(
            self.success(),
            "{what}: kubectl failed ({})\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }
}

/// One kubectl invocation being prepared.
pub struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

/// How long past its own `--timeout` kubectl is given to report and exit.
const GRACE: Duration = Duration::from_secs(30);

/// The `--timeout=` kubectl was given in seconds or minutes (`90s`, `2m`), if any.
fn own_timeout(args: &[&str]) -> Option<Duration> {
    let value = args.iter().find_map(|a| a.strip_prefix("--timeout="))?;
    let (digits, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = digits.parse().ok()?;
    match unit {
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

impl Kubectl {
    pub fn new(version: &str, kubeconfig: &Path, home: &Path) -> Self {
        Self {
            binary: kubectl_path(version),
            kubeconfig: kubeconfig.to_path_buf(),
            home: home.to_path_buf(),
            stdin: None,
            timeout: Duration::from_secs(60),
        }
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs kubectl with `args`; kills it and panics if it outlives the timeout.
    pub fn run(&self, args: &[&str]) -> KubectlOutput {
        std::fs::create_dir_all(&self.home).expect("create kubectl's HOME");
        // The global flag goes first: after the arguments it would land in a pod's argv
        // behind `run … -- CMD` or `exec … -- CMD`.
        let mut child = Command::new(&self.binary)
            .arg("--cache-dir")
            .arg(self.home.join(".kube/cache"))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary.display()));
        let stdin = child.stdin.take();
        let input = self.stdin.clone();
        let writer = std::thread::spawn(move || {
            if let (Some(mut pipe), Some(bytes)) = (stdin, input) {
                let _ = pipe.write_all(&bytes);
            }
        });
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        // kubectl's own `--timeout=` (wait, delete, rollout status) must fire before ours,
        // so that a slow case fails with kubectl's message, not a kill.
        let limit = own_timeout(args).map_or(self.timeout, |t| self.timeout.max(t + GRACE));
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for kubectl") {
                break status;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "kubectl {args:?} did not finish within {:?}\nstderr so far:\n{}",
                    limit,
                    err_reader.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let _ = writer.join();
        KubectlOutput {
            status,
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
        }
    }
}
