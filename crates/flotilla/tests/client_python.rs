//! The official Python `kubernetes` client (from PyPI, installed by scripts/deps) against a
//! fresh server with the admin kubeconfig: list, create, strategic/merge/JSON patches, a
//! watch through ADDED/MODIFIED/DELETED, delete and 404. The script reports one line per
//! step, so a failure names the step.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{Etcd, Server, ServerOptions};

/// The whole script takes about two seconds; generous for a loaded two-core machine.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(90);

const STEPS: [&str; 6] = [
    "list-namespaces",
    "create-namespace",
    "configmap",
    "deployment",
    "watch",
    "delete-configmap",
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_roundtrip.py")
}

/// Runs the script to completion, killing it (and failing) if it outlives the deadline.
fn run_script(kubeconfig: &Path, namespace: &str) -> Output {
    let child = Command::new("python3")
        .arg(script())
        .arg(kubeconfig)
        .arg(namespace)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (scripts/deps installs it and the kubernetes client)");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let started = Instant::now();
    match rx.recv_timeout(SCRIPT_DEADLINE) {
        Ok(out) => out.expect("wait for the script"),
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            panic!(
                "the Python client script did not finish within {:?}",
                started.elapsed()
            );
        }
    }
}

fn assert_roundtrip(server: &Server) {
    let out = run_script(&server.kubeconfig(), "python-client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'kubernetes'"),
        "the Python kubernetes client is missing: run scripts/deps\n{stderr}"
    );
    let context = format!(
        "--- stdout ---\n{stdout}--- stderr ---\n{stderr}--- server log (tail) ---\n{}",
        tail(&server.log(), 40)
    );
    assert!(
        out.status.success(),
        "script failed ({})\n{context}",
        out.status
    );
    for step in STEPS {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("ok {step} "))),
            "step {step} did not report ok\n{context}"
        );
    }
    assert_eq!(
        stdout.lines().last(),
        Some("all steps passed"),
        "\n{context}"
    );
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn python_client_round_trip_on_the_embedded_store() {
    let server = Server::start();
    assert_roundtrip(&server);
}

#[test]
fn python_client_round_trip_on_etcd() {
    let etcd = Etcd::start();
    let server = Server::start_with(ServerOptions::etcd(&etcd));
    assert_roundtrip(&server);
}
