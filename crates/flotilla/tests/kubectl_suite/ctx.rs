//! The suite's view of one kubectl release against one server: runs with and without
//! stdin, parsed JSON and jsonpath reads, long-lived kubectl processes (watches, editors)
//! killed on drop, and waits on streamed lines with deadlines.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::kubectl::kubectl_path;
use crate::support::{KubectlOutput, Server};

pub const NS: &str = "demo";

/// How long a `get -w` may take to show a line.
pub const WATCH_DEADLINE: Duration = Duration::from_secs(20);

pub fn testdata(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/kubectl")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

/// One kubectl version against one server.
pub struct Ctx<'a> {
    pub server: &'a Server,
    pub version: &'a str,
}

impl Ctx<'_> {
    pub fn run(&self, args: &[&str]) -> KubectlOutput {
        self.server.kubectl_run(self.version, args)
    }

    pub fn run_stdin(&self, input: &str, args: &[&str]) -> KubectlOutput {
        self.server.kubectl(self.version).stdin(input).run(args)
    }

    /// Runs kubectl and returns stdout, failing the case with the whole output otherwise.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        out.expect_success(&format!("kubectl {}", args.join(" ")))
            .to_string()
    }

    pub fn ok_stdin(&self, input: &str, args: &[&str]) -> String {
        let out = self.run_stdin(input, args);
        out.expect_success(&format!("kubectl {} < stdin", args.join(" ")))
            .to_string()
    }

    /// `kubectl get <what> -n demo -o json` parsed.
    pub fn get_json(&self, what: &[&str]) -> Value {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-n", NS, "-o", "json"]);
        let text = self.ok(&args);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("get {what:?}: not JSON ({e}):\n{text}"))
    }

    pub fn jsonpath(&self, what: &[&str], path: &str) -> String {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        let expr = format!("jsonpath={path}");
        args.extend_from_slice(&["-n", NS, "-o", &expr]);
        self.ok(&args)
    }

    /// A kubectl process that outlives one call (watches, editors), killed on drop.
    pub fn spawn(&self, args: &[&str], envs: &[(&str, &str)]) -> Spawned {
        let home = self.server.scratch_dir().join("home");
        std::fs::create_dir_all(&home).expect("create kubectl's HOME");
        let mut cmd = Command::new(kubectl_path(self.version));
        cmd.args(args)
            .arg("--cache-dir")
            .arg(home.join(".kube/cache"))
            .env("KUBECONFIG", self.server.kubeconfig())
            .env("HOME", &home)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn kubectl");
        Spawned { child }
    }
}

pub struct Spawned {
    child: Child,
}

impl Spawned {
    /// Streams stdout lines to a channel from a reader thread.
    pub fn lines(&mut self) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel();
        let out = self.child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }

    /// Waits for exit within `deadline`; returns (success, stdout, stderr).
    pub fn finish(mut self, deadline: Duration) -> (bool, String, String) {
        use std::io::Read;
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for kubectl") {
                break s;
            }
            assert!(
                start.elapsed() < deadline,
                "kubectl did not finish within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status.success(), out, err)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Receives lines until one satisfies `pred`, or fails after `deadline` listing what came.
pub fn wait_line(
    rx: &mpsc::Receiver<String>,
    deadline: Duration,
    pred: impl Fn(&str) -> bool,
) -> String {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(line) => seen.push(line),
            Err(e) => panic!("no matching watch line within {deadline:?} ({e}); saw: {seen:#?}"),
        }
    }
}

pub fn assert_contains(haystack: &str, needle: &str, what: &str) {
    assert!(
        haystack.contains(needle),
        "{what}: expected {needle:?} in:\n{haystack}"
    );
}

pub fn make_executable(path: &PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let mut perm = std::fs::metadata(path)
        .expect("stat the script")
        .permissions();
    perm.set_mode(0o755);
    std::fs::set_permissions(path, perm).expect("chmod the script");
}
