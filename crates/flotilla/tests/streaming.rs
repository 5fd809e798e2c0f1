//! Streaming through the API server to the node (root): `kubectl logs` (-f, --tail,
//! --since, --timestamps, --previous, -c), `exec` (exit codes, -it through a
//! pseudo-terminal), `cp` both ways, `attach` and `port-forward`, with kubectl 1.29 (SPDY)
//! and 1.33 (WebSocket, and SPDY tunnelled in WebSocket for port-forward).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::kubectl::kubectl_path;
use support::{wait_for, Cluster};

const VERSIONS: [&str; 2] = ["1.29", "1.33"];

fn apply(c: &Cluster, obj: Value) {
    c.kubectl("1.33")
        .stdin(obj.to_string())
        .run(&["apply", "-f", "-"])
        .expect_success("kubectl apply");
}

fn pod(c: &Cluster, name: &str) -> Option<Value> {
    let out = c.kubectl_run("1.33", &["get", "pod", name, "-o", "json"]);
    serde_json::from_str(&out.stdout).ok()
}

fn wait_running(c: &Cluster, name: &str) -> Value {
    let found = testkit::wait_for(Duration::from_secs(90), || {
        let p = pod(c, name)?;
        let all_running = p["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|s| s["state"]["running"].is_object()));
        (p["status"]["phase"] == "Running" && all_running).then_some(p)
    });
    found.unwrap_or_else(|| {
        panic!(
            "pod {name} not running: {:?}\n{}",
            pod(c, name),
            c.agent_log()
        )
    })
}

/// Runs kubectl with its flags ahead of `args`, so that a command after `--` stays whole.
fn kubectl(c: &Cluster, version: &str, stdin: Option<&str>, args: &[&str]) -> Output {
    let home = c.scratch_dir().join(format!("home-{version}"));
    let mut child = Command::new("timeout")
        .arg("60")
        .arg(kubectl_path(version))
        .arg("--cache-dir")
        .arg(home.join(".kube/cache"))
        .args(args)
        .env("KUBECONFIG", c.server.kubeconfig())
        .env("HOME", &home)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A kubectl left running (logs -f, attach, port-forward), killed on drop.
struct Background {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Background {
    fn spawn(c: &Cluster, version: &str, args: &[&str]) -> Self {
        use std::os::unix::process::CommandExt;
        let home = c.scratch_dir().join(format!("home-{version}"));
        let mut child = Command::new(kubectl_path(version))
            .args(args)
            .arg("--cache-dir")
            .arg(home.join(".kube/cache"))
            .env("KUBECONFIG", c.server.kubeconfig())
            .env("HOME", &home)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        for mut pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Self { child, output }
    }

    fn text(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output satisfies `check`; panics with the output otherwise.
    fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&str) -> Option<T>) -> T {
        let found = testkit::wait_for(Duration::from_secs(30), || check(&self.text()));
        found.unwrap_or_else(|| panic!("{what}: not seen in kubectl output:\n{}", self.text()))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }
}

/// Runs `kubectl exec -it` under a pseudo-terminal (util-linux `script`), typing `input`.
fn exec_tty(c: &Cluster, version: &str, args: &str, input: &str) -> String {
    let home = c.scratch_dir().join(format!("home-{version}"));
    let cmd = format!(
        "{} --cache-dir {} {args}",
        kubectl_path(version).display(),
        home.join(".kube/cache").display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("KUBECONFIG", c.server.kubeconfig())
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    stdin.write_all(input.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "exec -it ({version}) did not finish: {}",
                reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let out = reader.join().unwrap();
    assert!(status.success(), "exec -it ({version}) failed: {out}");
    out
}

#[test]
fn logs_exec_and_cp() {
    let c = Cluster::start();
    apply(
        &c,
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "logger", "namespace": "default"},
        "spec": {"containers": [
            {"name": "main", "image": c.image, "command": ["sh", "-c",
                "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.2; done"]},
            {"name": "side", "image": c.image, "command": ["sh", "-c",
                "echo side-says-hi; exec sleep 3600"]}]}}),
    );
    apply(
        &c,
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "crasher", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": c.image, "command": ["sh", "-c",
            "echo crash-run; sleep 1; exit 1"]}]}}),
    );
    wait_running(&c, "logger");
    // Enough history that --since and --tail select a part of it.
    wait_for("30 log lines", Duration::from_secs(30), || {
        let out = c.kubectl_run("1.33", &["logs", "logger", "-c", "main"]);
        (out.stdout.lines().count() >= 30).then_some(())
    });

    for v in VERSIONS {
        // -f sees lines written after it started.
        let follow = Background::spawn(&c, v, &["logs", "-f", "logger", "-c", "main"]);
        let first = follow.wait_for("a first line", |t| {
            let n = t
                .lines()
                .filter_map(|l| l.strip_prefix("line-")?.parse::<u64>().ok())
                .max()?;
            Some(n)
        });
        follow.wait_for("lines written while following", |t| {
            t.lines()
                .filter_map(|l| l.strip_prefix("line-")?.parse::<u64>().ok())
                .any(|n| n >= first + 5)
                .then_some(())
        });
        drop(follow);

        let out = c.kubectl_run(v, &["logs", "logger", "-c", "main", "--tail", "3"]);
        let lines: Vec<&str> = out.expect_success("logs --tail").lines().collect();
        assert_eq!(lines.len(), 3, "{v}: {lines:?}");
        assert!(
            lines.iter().all(|l| l.starts_with("line-")),
            "{v}: {lines:?}"
        );

        let out = c.kubectl_run(
            v,
            &[
                "logs",
                "logger",
                "-c",
                "main",
                "--timestamps",
                "--tail",
                "1",
            ],
        );
        let line = out.expect_success("logs --timestamps").trim().to_string();
        let (ts, rest) = line.split_once(' ').unwrap();
        assert!(
            ts.len() >= 20 && ts.contains('T') && ts.ends_with('Z') && rest.starts_with("line-"),
            "{v}: {line}"
        );

        let all = c.kubectl_run(v, &["logs", "logger", "-c", "main"]);
        let recent = c.kubectl_run(v, &["logs", "logger", "-c", "main", "--since", "4s"]);
        let (all, recent) = (
            all.expect_success("logs").lines().count(),
            recent.expect_success("logs --since").lines().count(),
        );
        assert!(
            recent > 0 && recent < all,
            "{v}: --since 4s gave {recent} of {all} lines"
        );

        let out = c.kubectl_run(v, &["logs", "logger", "-c", "side"]);
        assert_eq!(out.expect_success("logs -c side"), "side-says-hi\n");

        let out = c.kubectl_run(v, &["logs", "logger", "-c", "nope"]);
        assert!(!out.success());
        assert!(
            out.stderr
                .contains("container nope is not valid for pod logger"),
            "{v}: {}",
            out.stderr
        );
        let out = c.kubectl_run(v, &["logs", "logger", "-c", "main", "--previous"]);
        assert!(
            !out.success() && out.stderr.contains("previous terminated container"),
            "{v}: {}",
            out.stderr
        );

        // exec: output, exit codes, stdin.
        let out = kubectl(
            &c,
            v,
            None,
            &[
                "exec", "logger", "-c", "main", "--", "echo", "hello", "exec",
            ],
        );
        assert_eq!(
            text(&out.stdout),
            "hello exec\n",
            "{v}: {}",
            text(&out.stderr)
        );
        let script = "echo to-err >&2; exit 3";
        let out = kubectl(
            &c,
            v,
            None,
            &["exec", "logger", "-c", "main", "--", "sh", "-c", script],
        );
        assert_eq!(out.status.code(), Some(3), "{v}: {out:?}");
        assert!(text(&out.stderr).contains("to-err"), "{v}: {out:?}");
        let out = kubectl(
            &c,
            v,
            Some("piped input\n"),
            &["exec", "-i", "logger", "-c", "main", "--", "cat"],
        );
        assert_eq!(
            text(&out.stdout),
            "piped input\n",
            "{v}: {}",
            text(&out.stderr)
        );

        if v == "1.33" {
            // Outlasts kubectl's WebSocket heartbeat (a ping every 5 s): pongs must flow.
            let out = kubectl(
                &c,
                v,
                None,
                &[
                    "exec",
                    "logger",
                    "-c",
                    "main",
                    "--",
                    "sh",
                    "-c",
                    "sleep 12; echo slept",
                ],
            );
            assert_eq!(text(&out.stdout), "slept\n", "{v}: {}", text(&out.stderr));
        }

        // exec -it through a real terminal.
        let out = exec_tty(
            &c,
            v,
            "exec -it logger -c main -- sh",
            "tty; echo sum=$((6*7)); exit\n",
        );
        assert!(out.contains("sum=42"), "{v}: {out}");
        assert!(
            out.contains("/dev/pts/"),
            "{v}: no terminal in the container: {out}"
        );

        // cp both ways.
        let local = c.scratch_dir().join(format!("upload-{v}.txt"));
        std::fs::write(&local, format!("uploaded by {v}\n")).unwrap();
        let dest = format!("default/logger:/tmp/up-{v}.txt");
        c.kubectl_run(v, &["cp", local.to_str().unwrap(), &dest, "-c", "main"])
            .expect_success("cp to the pod");
        let upload = format!("/tmp/up-{v}.txt");
        let out = kubectl(
            &c,
            v,
            None,
            &["exec", "logger", "-c", "main", "--", "cat", &upload],
        );
        assert_eq!(
            text(&out.stdout),
            format!("uploaded by {v}\n"),
            "{}",
            text(&out.stderr)
        );
        let back = c.scratch_dir().join(format!("download-{v}.txt"));
        c.kubectl_run(
            v,
            &[
                "cp",
                &format!("default/logger:/tmp/up-{v}.txt"),
                back.to_str().unwrap(),
                "-c",
                "main",
            ],
        )
        .expect_success("cp from the pod");
        assert_eq!(
            std::fs::read_to_string(&back).unwrap(),
            format!("uploaded by {v}\n")
        );
    }

    // --previous once the crasher has restarted.
    wait_for("crasher restarted", Duration::from_secs(90), || {
        let p = pod(&c, "crasher")?;
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64()? >= 1).then_some(())
    });
    for v in VERSIONS {
        let out = c.kubectl_run(v, &["logs", "crasher", "--previous"]);
        assert_eq!(out.expect_success("logs --previous"), "crash-run\n", "{v}");
    }
}

#[test]
fn attach_and_port_forward() {
    let c = Cluster::start();
    apply(
        &c,
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": [
            {"name": "httpd", "image": c.image, "command": ["sh", "-c",
                "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www"]},
            {"name": "ticker", "image": c.image, "command": ["sh", "-c",
                "while true; do echo tick; sleep 0.5; done"]}]}}),
    );
    wait_running(&c, "web");
    for v in VERSIONS {
        let attach = Background::spawn(&c, v, &["attach", "web", "-c", "ticker"]);
        let seen = testkit::wait_for(Duration::from_secs(30), || {
            (attach.text().matches("tick").count() >= 2).then_some(())
        });
        assert!(
            seen.is_some(),
            "{v} attach: {}\n{}\n{}",
            attach.text(),
            c.agent_log(),
            c.server.log()
        );
        drop(attach);

        let pf = Background::spawn(&c, v, &["port-forward", "pod/web", ":8080"]);
        let port: u16 = pf.wait_for("the forwarding line", |t| {
            let line = t
                .lines()
                .find(|l| l.starts_with("Forwarding from 127.0.0.1:"))?;
            line.strip_prefix("Forwarding from 127.0.0.1:")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        });
        for _ in 0..2 {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(b"GET /index.html HTTP/1.0\r\nHost: web\r\n\r\n")
                .unwrap();
            let mut page = String::new();
            s.read_to_string(&mut page).unwrap();
            assert!(
                page.starts_with("HTTP/1.") && page.contains("hello-from-pod"),
                "{v}: {page}\n{}",
                pf.text()
            );
        }
    }
}
