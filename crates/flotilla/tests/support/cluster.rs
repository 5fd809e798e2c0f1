//! A one-node cluster with a real agent, for pod e2e tests (root, real runc, real CNI, a
//! local registry with a busybox image built at test time).
//!
//! Every machine-wide name the node uses is unique to the test (bridge, netns prefix, runc
//! root, cgroup root, CNI data dir, pod subnet leased from testkit), so tests run in
//! parallel. Dropping the cluster tears everything down, even after a failed assertion.
//!
//! ```ignore
//! let cluster = Cluster::start();
//! cluster.kubectl_run("1.33", &["run", "web", "--image", &cluster.image]);
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use super::node_cleanup::NodeResources;
use super::{flotilla_bin, Kubectl, KubectlOutput, ProcessGroup, Server, ServerOptions};

/// How long a fresh node may take to report Ready.
pub const NODE_READY_DEADLINE: Duration = Duration::from_secs(60);

/// Where the node agent runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AgentMode {
    /// A `flotilla agent` process joined to a `--no-agent` server with the join token:
    /// the agent can be SIGKILLed and restarted on its own.
    #[default]
    Separate,
    /// The server's in-process agent (`flotilla server` without `--no-agent`).
    InProcess,
}

#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    pub agent: AgentMode,
    /// Further `flotilla agent` flags (also given to the server in InProcess mode).
    pub agent_args: Vec<String>,
    /// Further `flotilla server` flags.
    pub server_args: Vec<String>,
    /// Give the agent no `--pod-cidr`: the server's node IPAM assigns the test's subnet
    /// (its only one: `--cluster-cidr` is that /24).
    pub pod_cidr_from_ipam: bool,
}

pub struct Cluster {
    pub server: Server,
    pub registry: testkit::registry::Registry,
    /// `127.0.0.1:PORT/busybox:latest`, pushed before the cluster starts.
    pub image: String,
    pub node_name: String,
    /// The node's pod subnet (`10.244.N.0/24`).
    pub pod_cidr: String,
    /// The agent's data dir (the server's own in InProcess mode).
    pub agent_data_dir: PathBuf,
    pub resources: NodeResources,
    mode: AgentMode,
    agent_args: Vec<String>,
    agent: Option<ProcessGroup>,
    agent_starts: u32,
    scratch: tempfile::TempDir,
    _subnet: testkit::SubnetLease,
}

impl Cluster {
    pub fn start() -> Self {
        Self::start_with(ClusterOptions::default())
    }

    /// Starts the registry, the server and the node, and waits until the Node is Ready.
    /// Panics with the logs if it does not get there.
    pub fn start_with(opts: ClusterOptions) -> Self {
        let registry = testkit::registry::Registry::start();
        let image = testkit::images::push_busybox_blocking(&registry.host(), "busybox", "latest");
        let scratch = tempfile::Builder::new()
            .prefix("flotilla-node-")
            .tempdir()
            .expect("create the node's scratch directory");
        let subnet = testkit::unique_subnet();
        let node_name = format!("node-{}", testkit::unique_name("n"));
        let runtime_root = scratch.path().join("runc");
        let agent_data_dir = scratch.path().join("agent");
        let resources_for = |data: &Path| NodeResources {
            dirs: vec![data.to_path_buf(), scratch.path().to_path_buf()],
            runtime_binary: PathBuf::from("/usr/sbin/runc"),
            runtime_root: runtime_root.clone(),
            netns_prefix: format!("{}-", testkit::unique_name("fn")),
            bridge: testkit::unique_name("fb"),
            cgroup_root: testkit::unique_name("flt"),
            unreachable_routes: Vec::new(),
        };
        // The server's data dir is only known once it runs; InProcess mode points the
        // agent at it below.
        let mut resources = resources_for(&agent_data_dir);
        let mut agent_args = vec![
            "--node-name".to_string(),
            node_name.clone(),
            "--node-ip".into(),
            "127.0.0.1".into(),
            "--agent-port".into(),
            "0".into(),
            "--pod-cidr".into(),
            subnet.cidr(),
            "--bridge".into(),
            resources.bridge.clone(),
            "--netns-prefix".into(),
            resources.netns_prefix.clone(),
            "--runtime-root".into(),
            runtime_root.to_string_lossy().into_owned(),
            "--cgroup-root".into(),
            resources.cgroup_root.clone(),
            // The host's disk fills up as the suite builds and runs (CI's sits near 90%):
            // a test's images must not be collected under it because of that.
            "--image-gc-high-threshold=100".into(),
        ];
        // Likewise a nearly full disk would taint the node disk-pressure and leave every
        // test pod Pending: tests that are about pressure give their own thresholds.
        if !opts
            .agent_args
            .iter()
            .any(|a| a.starts_with("--eviction-hard"))
        {
            agent_args.push(
                "--eviction-hard=memory.available<1Mi,nodefs.available<1%,pid.available<1%".into(),
            );
        }
        agent_args.extend(opts.agent_args.iter().cloned());

        let mut server_args = opts.server_args.clone();
        if opts.pod_cidr_from_ipam {
            agent_args.retain(|a| *a != "--pod-cidr" && *a != subnet.cidr());
            server_args.push(format!("--cluster-cidr={}", subnet.cidr()));
            server_args.push("--node-cidr-mask-size=24".into());
            resources.unreachable_routes.push(subnet.cidr());
        }
        if opts.agent == AgentMode::InProcess {
            server_args.extend(agent_args.iter().cloned());
        }
        let server = Server::start_with(ServerOptions {
            args: server_args,
            with_agent: opts.agent == AgentMode::InProcess,
            with_scheduler: true,
            with_controllers: true,
            ..ServerOptions::default()
        });
        let agent_data_dir = match opts.agent {
            AgentMode::Separate => agent_data_dir,
            AgentMode::InProcess => {
                resources.dirs = vec![server.data_dir.clone(), scratch.path().to_path_buf()];
                server.data_dir.clone()
            }
        };
        let mut cluster = Cluster {
            server,
            registry,
            image,
            node_name,
            pod_cidr: subnet.cidr(),
            agent_data_dir,
            resources,
            mode: opts.agent,
            agent_args,
            agent: None,
            agent_starts: 0,
            scratch,
            _subnet: subnet,
        };
        if cluster.mode == AgentMode::Separate {
            cluster.start_agent();
        }
        cluster.wait_node_ready(NODE_READY_DEADLINE);
        cluster
    }

    fn start_agent(&mut self) {
        let token = std::fs::read_to_string(self.server.data_dir.join("token"))
            .expect("read the server's join token");
        let log_path = self
            .scratch
            .path()
            .join(format!("agent-{}.log", self.agent_starts));
        self.agent_starts += 1;
        let log = File::create(&log_path).expect("create the agent log");
        let err = log.try_clone().expect("clone the log handle");
        let mut cmd = Command::new(flotilla_bin());
        cmd.arg("agent")
            .arg("--server")
            .arg(format!("https://127.0.0.1:{}", self.server.port()))
            .arg("--token")
            .arg(token.trim())
            .arg("--data-dir")
            .arg(&self.agent_data_dir)
            .args(&self.agent_args)
            .env(
                "RUST_LOG",
                std::env::var("FLOTILLA_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(log)
            .stderr(err);
        self.agent = Some(ProcessGroup::spawn(&mut cmd).expect("spawn flotilla agent"));
    }

    /// The agent process's PID (Separate mode).
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(ProcessGroup::pid)
    }

    /// SIGKILLs the agent process (only it: its containers' supervisors run on in their own
    /// sessions) and waits until it is gone. The Node is left as the agent left it.
    pub fn kill_agent(&mut self) {
        assert_eq!(
            self.mode,
            AgentMode::Separate,
            "killing the agent alone needs AgentMode::Separate"
        );
        let Some(mut agent) = self.agent.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(agent.pid() as i32);
        // It may have been killed already by the test itself; it is then a zombie until
        // reaped, and the signal is harmless.
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        testkit::wait_for(Duration::from_secs(10), || agent.exited())
            .expect("the agent exits after SIGKILL");
    }

    /// Stops the agent with SIGTERM and returns its exit status, if it exited within
    /// `deadline`.
    pub fn terminate_agent(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let mut agent = self.agent.take()?;
        agent.stop(Signal::SIGTERM, deadline)
    }

    /// IDs of the containers runc runs for this node, with their status (`running`, …).
    pub fn runc_containers(&self) -> Vec<(String, String)> {
        let out = Command::new(&self.resources.runtime_binary)
            .arg("--root")
            .arg(&self.resources.runtime_root)
            .args(["list", "--format", "json"])
            .output()
            .expect("run runc list");
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        list.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or_default().to_string(),
                    c["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Starts the agent again with the same flags and data dir (after [`Self::kill_agent`])
    /// and waits until the Node is Ready.
    pub fn restart_agent(&mut self) {
        assert!(self.agent.is_none(), "the agent is still running");
        self.start_agent();
        self.wait_node_ready(NODE_READY_DEADLINE);
    }

    /// SIGKILLs the agent and starts it again; returns once the Node is Ready again.
    pub fn kill_agent_and_restart(&mut self) {
        self.kill_agent();
        self.restart_agent();
    }

    /// The Node object as the API has it.
    pub fn node(&self) -> Option<Value> {
        let r = self
            .server
            .admin_client()
            .get(&format!("/api/v1/nodes/{}", self.node_name))
            .ok()?;
        (r.status == 200).then(|| serde_json::from_slice(&r.body).ok())?
    }

    /// Waits for the Node's Ready condition to be True; panics with the logs otherwise.
    pub fn wait_node_ready(&self, deadline: Duration) -> Value {
        let ready = testkit::wait_for(deadline, || {
            let node = self.node()?;
            node_condition(&node, "Ready")
                .is_some_and(|c| c["status"] == "True")
                .then_some(node)
        });
        match ready {
            Some(node) => node,
            None => panic!(
                "node {} not Ready within {deadline:?}: {}\n--- agent log ---\n{}\n--- server log ---\n{}",
                self.node_name,
                self.node().map(|n| n["status"].to_string()).unwrap_or_default(),
                self.agent_log(),
                self.server.log()
            ),
        }
    }

    pub fn kubectl(&self, version: &str) -> Kubectl {
        self.server.kubectl(version)
    }

    pub fn kubectl_run(&self, version: &str, args: &[&str]) -> KubectlOutput {
        self.server.kubectl_run(version, args)
    }

    /// The agent's log (every start), or the server's in InProcess mode.
    pub fn agent_log(&self) -> String {
        if self.mode == AgentMode::InProcess {
            return self.server.log();
        }
        let mut out = String::new();
        for i in 0..self.agent_starts {
            let p = self.scratch.path().join(format!("agent-{i}.log"));
            out.push_str(&format!("--- agent start {i} ---\n"));
            out.push_str(&std::fs::read_to_string(p).unwrap_or_default());
        }
        out
    }

    /// A directory for the test's own files, removed with the cluster.
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }
}

/// The condition of `type_` in a Node's (or Pod's) status.
pub fn node_condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The agent and the server go first, so nothing recreates what is being removed.
        self.agent = None;
        self.server.kill();
        self.resources.clean();
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", self.agent_log());
        }
    }
}
