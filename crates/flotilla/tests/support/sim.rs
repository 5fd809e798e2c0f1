//! The control-plane e2e harness: a real `flotilla server`, a kube client for it, and tasks
//! run in process against it (simulated nodes, a controller under test, a scheduler), all
//! stopped when the [`SimCluster`] is dropped. Plus the async polling helper and the small
//! object builders those tests share.

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::kubectl::{Kubectl, KubectlOutput};
use super::{Server, ServerOptions};

pub use agent::simulated::SimulatedConfig;

/// How long simulated nodes may take to register.
pub const REGISTER_DEADLINE: Duration = Duration::from_secs(30);

/// Logs to stderr, filtered by RUST_LOG, only when RUST_LOG is set: without it the clients'
/// reconnect errors after a test's server is gone are noise.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Polls `check` until it yields a value, failing after `secs` seconds with `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_for(Duration::from_secs(secs), what, check).await
}

/// As [`eventually`], with the deadline as a `Duration`.
pub async fn eventually_for<T, F, Fut>(deadline: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    testkit::wait_for_async(deadline, check)
        .await
        .unwrap_or_else(|| panic!("timed out after {deadline:?}: {what}"))
}

/// `count` simulated nodes named `<prefix>-<i>`; the rest as `SimulatedConfig`'s defaults.
pub fn nodes(prefix: &str, count: usize) -> SimulatedConfig {
    SimulatedConfig {
        count,
        name_prefix: prefix.into(),
        ..Default::default()
    }
}

/// Derefs a test's harness struct (one with a `sim: SimCluster` field) to that cluster, so
/// `h.client`, `h.server` and the cluster's helpers read as the harness's own.
#[macro_export]
macro_rules! deref_to_sim {
    ($harness:ty) => {
        impl std::ops::Deref for $harness {
            type Target = $crate::support::sim::SimCluster;
            fn deref(&self) -> &Self::Target {
                &self.sim
            }
        }
    };
}

/// A server with the tasks a test runs against it in process.
pub struct SimCluster {
    // Dropped first: the in-process tasks see their shutdown before the server goes away.
    stops: Vec<oneshot::Sender<()>>,
    /// Shared by the controllers the test starts, as the controller manager shares its own.
    pub informers: controllers::informers::Informers,
    pub client: kube::Client,
    pub server: Server,
}

impl SimCluster {
    /// Starts a server with `opts` (no nodes yet).
    pub async fn start(opts: ServerOptions) -> Self {
        init_tracing();
        let server = Server::start_with(opts);
        let client = server.kube_client().await;
        SimCluster {
            stops: Vec::new(),
            informers: controllers::informers::Informers::new(client.clone()),
            client,
            server,
        }
    }

    /// A server with its scheduler (and its controllers if `with_controllers`), and `count`
    /// simulated nodes `<prefix>-<i>`, registered before this returns.
    pub async fn with_nodes(prefix: &str, count: usize, with_controllers: bool) -> Self {
        let mut sim = Self::start(ServerOptions {
            with_scheduler: true,
            with_controllers,
            ..Default::default()
        })
        .await;
        sim.add_nodes(nodes(prefix, count)).await;
        sim
    }

    /// Runs `task` (given the cluster's shared informers and a shutdown future) until the
    /// cluster is dropped: how a controller's `run(informers, shutdown)` is started.
    pub fn spawn_shared<Fut>(
        &mut self,
        task: impl FnOnce(controllers::informers::Informers, BoxFuture<'static, ()>) -> Fut,
    ) -> JoinHandle<Fut::Output>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let informers = self.informers.clone();
        self.spawn(move |_, shutdown| task(informers, shutdown))
    }

    /// Runs `task` (given the client and a shutdown future) until the cluster is dropped.
    /// This is how a controller's `run(client, shutdown)` is started in process.
    pub fn spawn<Fut>(
        &mut self,
        task: impl FnOnce(kube::Client, BoxFuture<'static, ()>) -> Fut,
    ) -> JoinHandle<Fut::Output>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<()>();
        self.stops.push(tx);
        let shutdown: BoxFuture<'static, ()> = Box::pin(async {
            let _ = rx.await;
        });
        tokio::spawn(task(self.client.clone(), shutdown))
    }

    /// Stops the task started last (e.g. simulated nodes, before deleting their Node).
    pub fn stop_newest(&mut self) {
        if let Some(tx) = self.stops.pop() {
            let _ = tx.send(());
        }
    }

    /// Starts the simulated nodes `config` describes and waits until all are registered.
    pub async fn add_nodes(&mut self, config: SimulatedConfig) {
        let stop = start_nodes(&self.client, config).await;
        self.stops.push(stop);
    }

    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn cluster_api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::all(self.client.clone())
    }

    /// kubectl `version` with `args` (and `stdin`), run off the async runtime.
    pub async fn kubectl_output(
        &self,
        version: &str,
        timeout: Duration,
        args: &[&str],
        stdin: Option<String>,
    ) -> KubectlOutput {
        let mut k = self.server.kubectl(version).timeout(timeout);
        if let Some(s) = stdin {
            k = k.stdin(s);
        }
        run_kubectl(k, args).await
    }

    /// As [`Self::kubectl_output`], panicking unless kubectl succeeds; its stdout.
    pub async fn kubectl(
        &self,
        version: &str,
        timeout: Duration,
        args: &[&str],
        stdin: Option<String>,
    ) -> String {
        let out = self.kubectl_output(version, timeout, args, stdin).await;
        out.expect_success(&format!("kubectl {args:?}")).to_string()
    }
}

/// Starts the simulated nodes `config` describes against `client` and waits until all are
/// registered; they run until the returned sender is dropped (or sent on).
pub async fn start_nodes(client: &kube::Client, config: SimulatedConfig) -> oneshot::Sender<()> {
    let (prefix, count) = (config.name_prefix.clone(), config.count);
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(agent::simulated::run(client.clone(), config, async {
        let _ = rx.await;
    }));
    let api: Api<Node> = Api::all(client.clone());
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        let what = format!("simulated node {name} registers");
        eventually_for(REGISTER_DEADLINE, &what, || async {
            api.get_opt(&name).await.ok().flatten()
        })
        .await;
    }
    tx
}

/// Waits until `name` is gone from `api` (GET answers 404), failing after `deadline` with
/// `what`.
pub async fn until_gone<K>(api: &Api<K>, name: &str, deadline: Duration, what: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually_for(deadline, what, || async {
        match api.get_opt(name).await {
            Ok(None) => Some(()),
            Ok(Some(_)) => None,
            Err(e) => panic!("GET {name}: {e}"),
        }
    })
    .await
}

/// Applies a JSON merge patch to `name`, panicking with the API's answer if it fails.
pub async fn merge_patch<K, P>(api: &Api<K>, name: &str, patch: P) -> K
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    P: serde::Serialize + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("merge patch {name} with {patch:?}: {e}"))
}

/// Runs `kubectl` on a blocking thread, so the in-process tasks keep running meanwhile.
pub async fn run_kubectl(kubectl: Kubectl, args: &[&str]) -> KubectlOutput {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl.run(&a)
    })
    .await
    .expect("the kubectl thread")
}

pub async fn create_namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("a Namespace");
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

/// An `apps/v1` workload of `kind` (Deployment, ReplicaSet, StatefulSet) named `name` with
/// `replicas` pods, selected and labelled `app: <name>`, each running `container`. No
/// namespace: the API or kubectl request says which.
pub fn app_workload(kind: &str, name: &str, replicas: i32, container: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]}
            }
        }
    })
}

/// The first container's image.
pub fn image_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

pub fn phase_of(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
