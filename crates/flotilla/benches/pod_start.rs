//! Pod start benchmark (root): the time from a pod's create through the API to its Running
//! status seen through a watch, over sequential pods with the image already present, next
//! to the floor — what the same container costs with no orchestrator at all: a network
//! namespace, one CNI bridge ADD and a bare `runc run -d` of an equivalent bundle.
//!
//! ```sh
//! cargo bench -p flotilla --bench pod_start             # 100 pods each side
//! cargo bench -p flotilla --bench pod_start -- --quick  # 20 pods each side
//! ```

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::{json, Value};
use support::Cluster;
use tokio::sync::mpsc;

const GOAL_RATIO: f64 = 2.0;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("FLOTILLA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let n = if quick { 20 } else { 100 };
    let cluster = Cluster::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pods = rt.block_on(pod_starts(&cluster, n));
    let floor = floor_starts(n);
    println!("pod start, {n} pods one after another, image present (create → Running via watch)");
    report("flotilla pod", &pods);
    report("floor: netns + CNI ADD + runc run", &floor);
    let ratio50 = percentile(&pods, 50).as_secs_f64() / percentile(&floor, 50).as_secs_f64();
    let ratio99 = percentile(&pods, 99).as_secs_f64() / percentile(&floor, 99).as_secs_f64();
    println!(
        "ratio pod/floor: p50 {ratio50:.2}x, p99 {ratio99:.2}x (goal: p99 within {GOAL_RATIO}x)"
    );
}

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    let idx = ((v.len() * p).div_ceil(100))
        .saturating_sub(1)
        .min(v.len() - 1);
    v[idx]
}

fn report(what: &str, samples: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {what:<36} p50 {:>8.1} ms   p99 {:>8.1} ms   min {:>8.1} ms   max {:>8.1} ms",
        ms(percentile(samples, 50)),
        ms(percentile(samples, 99)),
        ms(*samples.iter().min().unwrap()),
        ms(*samples.iter().max().unwrap()),
    );
}

fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pod-start"}},
        "spec": {"terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": image, "imagePullPolicy": "IfNotPresent",
                                 "command": ["sleep", "3600"]}]}
    }))
    .unwrap()
}

async fn client(cluster: &Cluster) -> kube::Client {
    cluster.server.kube_client().await
}

async fn pod_starts(cluster: &Cluster, n: usize) -> Vec<Duration> {
    let client = client(cluster).await;
    let api: Api<Pod> = Api::namespaced(client, "default");
    // Running, by name, as the watch reports it.
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let watch_api = api.clone();
    let watch = tokio::spawn(async move {
        let cfg = watcher::Config::default().labels("bench=pod-start");
        let mut events = watcher::watcher(watch_api, cfg).boxed();
        while let Some(ev) = events.next().await {
            if let Ok(Event::Apply(p) | Event::InitApply(p)) = ev {
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                if running {
                    let _ = tx.send((p.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
        }
    });
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let mut wait_running = async |name: &str| -> Instant {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(t) = seen.get(name) {
                return *t;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((n, t))) => {
                    seen.entry(n).or_insert(t);
                }
                _ => panic!(
                    "pod {name} not Running within 120 s\n{}",
                    cluster.agent_log()
                ),
            }
        }
    };
    // The first pod pulls the image; it is not measured.
    api.create(&PostParams::default(), &pod("warm", &cluster.image))
        .await
        .unwrap();
    wait_running("warm").await;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("start-{i}");
        let t0 = Instant::now();
        api.create(&PostParams::default(), &pod(&name, &cluster.image))
            .await
            .unwrap();
        out.push(wait_running(&name).await - t0);
    }
    watch.abort();
    let lp = ListParams::default().labels("bench=pod-start");
    api.delete_collection(&DeleteParams::default(), &lp)
        .await
        .unwrap();
    let gone = testkit::wait_for_async(Duration::from_secs(300), || {
        let api = api.clone();
        let lp = lp.clone();
        async move {
            api.list(&lp)
                .await
                .ok()
                .filter(|l| l.items.is_empty())
                .map(|_| ())
        }
    })
    .await;
    if gone.is_none() {
        eprintln!("warning: benchmark pods still present at exit");
    }
    out
}

/// Everything the floor creates, removed on drop even if a step fails.
struct Floor {
    dir: tempfile::TempDir,
    runc_root: PathBuf,
    bridge: String,
    netns_prefix: String,
    cgroup: String,
    subnet: testkit::SubnetLease,
    live: Vec<String>,
}

impl Floor {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-floor-")
            .tempdir()
            .unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        for d in ["proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        Floor {
            runc_root: dir.path().join("runc"),
            bridge: testkit::unique_name("flb"),
            netns_prefix: format!("{}-", testkit::unique_name("flf")),
            cgroup: testkit::unique_name("flotilla-floor"),
            subnet: testkit::unique_subnet(),
            live: Vec::new(),
            dir,
        }
    }

    fn netconf(&self) -> Vec<u8> {
        json!({
            "cniVersion": "1.0.0", "name": "floor", "type": "bridge", "bridge": self.bridge,
            "isGateway": true, "ipMasq": false,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": self.subnet.cidr()}]],
                     "dataDir": self.dir.path().join("ipam")}
        })
        .to_string()
        .into_bytes()
    }

    fn cni(&self, command: &str, id: &str) -> Result<(), String> {
        let mut child = Command::new("/usr/lib/cni/bridge")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", format!("/run/netns/{}{id}", self.netns_prefix))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&self.netconf())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        out.status.success().then_some(()).ok_or_else(|| {
            format!(
                "CNI {command}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    fn bundle(&self, id: &str) -> PathBuf {
        let bundle = self.dir.path().join("bundles").join(id);
        std::fs::create_dir_all(&bundle).unwrap();
        run(Command::new("runc")
            .arg("spec")
            .arg("--bundle")
            .arg(&bundle))
        .unwrap();
        let path = bundle.join("config.json");
        let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(["sleep", "3600"]);
        spec["root"] = json!({"path": self.dir.path().join("rootfs"), "readonly": true});
        spec["linux"]["cgroupsPath"] = json!(format!("/{}/{id}", self.cgroup));
        let ns = spec["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
        ns.push(
            json!({"type": "network", "path": format!("/run/netns/{}{id}", self.netns_prefix)}),
        );
        std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
        bundle
    }

    /// One container start: a netns, the CNI ADD into it, `runc run -d`.
    fn start(&mut self, id: &str) -> Duration {
        let bundle = self.bundle(id);
        let t0 = Instant::now();
        run(Command::new("ip").args(["netns", "add", &format!("{}{id}", self.netns_prefix)]))
            .unwrap();
        self.live.push(id.to_string());
        self.cni("ADD", id).unwrap();
        // The detached container inherits runc's stdio: nothing of ours may be held open.
        let status = Command::new("runc")
            .arg("--root")
            .arg(&self.runc_root)
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "runc run {id}: {status}");
        t0.elapsed()
    }

    fn stop(&mut self, id: &str) {
        let _ = run(Command::new("runc")
            .arg("--root")
            .arg(&self.runc_root)
            .args(["delete", "-f", id]));
        let _ = self.cni("DEL", id);
        let _ =
            run(Command::new("ip").args(["netns", "del", &format!("{}{id}", self.netns_prefix)]));
        self.live.retain(|l| l != id);
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        for id in self.live.clone() {
            self.stop(&id);
        }
        let _ = run(Command::new("ip").args(["link", "del", &self.bridge]));
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(ctrl.path().join(&self.cgroup));
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&self.cgroup));
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    out.status.success().then_some(()).ok_or_else(|| {
        format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn floor_starts(n: usize) -> Vec<Duration> {
    let mut floor = Floor::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("f{i}");
        out.push(floor.start(&id));
        floor.stop(&id);
    }
    out
}
