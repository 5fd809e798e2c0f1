//! The agent's wiring: builds the runtime, starts the node server, registers the Node and
//! keeps it alive, and runs the pod workers, until shutdown.
//!
//! Shutting down stops the agent's own tasks only. Pods keep running under their
//! supervisors, and the next agent adopts them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::events::EventRecorder;
use crate::node::{self, machine, NodeError, NodeFacts};
use crate::pod_workers::{PodWorkerDeps, PodWorkerError, PodWorkers};
use crate::prober::ProbeManager;
use crate::server::{NodeServer, NodeServerConfig, ServerError};
use crate::volumemanager::VolumeManager;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("runtime: {0}")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("node: {0}")]
    Node(#[from] NodeError),
    #[error("node server: {0}")]
    Server(#[from] ServerError),
    #[error("pod workers: {0}")]
    PodWorkers(#[from] PodWorkerError),
    #[error("agent task: {0}")]
    Task(String),
}

/// The three halves of the node's container runtime.
pub struct Runtime {
    pub images: Arc<dyn runtime::ImageService>,
    pub sandboxes: Arc<dyn runtime::SandboxRuntime>,
    pub containers: Arc<dyn runtime::ContainerRuntime>,
}

pub struct Agent;

impl Agent {
    /// Builds the runtime, starts the node server, registers the Node, starts heartbeats
    /// and the pod workers, and runs until `shutdown` fires. Shutting down never stops pods.
    pub async fn run(
        mut config: AgentConfig,
        client: kube::Client,
        cluster_ca_pem: String,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        validate(&config)?;
        tokio::pin!(shutdown);
        if config.pod_cidr.is_empty() {
            // The pod network needs the subnet before anything can run: register the Node
            // (without a podCIDR) and wait for node IPAM to assign one.
            let facts = node_facts(&config, config.port).await;
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                cidr = node::registration::await_pod_cidr(&client, &facts) => {
                    config.pod_cidr = cidr?;
                }
            }
        }
        for dir in [
            config.data_dir.clone(),
            config.pods_dir(),
            config.pod_logs_dir(),
            config.cni_data_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| AgentError::Io {
                context: format!("creating {}", dir.display()),
                source,
            })?;
        }
        let runtime = build_runtime(&config)?;
        let recorder = EventRecorder::new(client.clone(), &config.node_name);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();

        let rt = &runtime;
        let server = NodeServer::bind(
            NodeServerConfig {
                listen: SocketAddr::new(config.node_ip, config.port),
                client_ca_pem: cluster_ca_pem.clone(),
                allowed_client_cn: config.node_client_cn.clone(),
                node_name: config.node_name.clone(),
                pod_logs_dir: config.pod_logs_dir(),
            },
            rt.containers.clone(),
            rt.sandboxes.clone(),
            crate::stats::router(
                rt.containers.clone(),
                rt.sandboxes.clone(),
                config.node_name.clone(),
            ),
        )
        .await?;
        // Port 0 means "any": the Node must advertise the one actually bound.
        let port = server.local_addr().port();
        {
            let rx = stop_rx.clone();
            tasks.spawn(async move { server.serve(stopped(rx)).await.map_err(AgentError::from) });
        }
        tracing::info!(node = %config.node_name, ip = %config.node_ip, port, "node agent starting");

        let facts = node_facts(&config, port).await;
        {
            let client = client.clone();
            let images = Some(rt.images.clone());
            let containers = Some(rt.containers.clone());
            let recorder = recorder.clone();
            let rx = stop_rx.clone();
            let gc = config.image_gc;
            tasks.spawn(async move {
                node::run(client, facts, images, containers, gc, recorder, stopped(rx))
                    .await
                    .map_err(AgentError::from)
            });
        }

        {
            // Probe results wake the pod's worker.
            let (probe_tx, probe_rx) = tokio::sync::mpsc::channel(1024);
            let probes = Arc::new(ProbeManager::new(
                rt.containers.clone(),
                recorder.clone(),
                probe_tx,
            ));
            let workers = PodWorkers::new(PodWorkerDeps {
                client: client.clone(),
                node_name: config.node_name.clone(),
                node_ip: config.node_ip,
                images: rt.images.clone(),
                sandboxes: rt.sandboxes.clone(),
                containers: rt.containers.clone(),
                volumes: Arc::new(VolumeManager::new(config.pods_dir(), client.clone())),
                probes,
                recorder: recorder.clone(),
                pod_logs_dir: config.pod_logs_dir(),
                cluster_dns: config.cluster_dns.clone(),
                cluster_domain: config.cluster_domain.clone(),
                cgroup_root: config.cgroup_root.clone(),
            })
            .with_probe_updates(probe_rx);
            let rx = stop_rx.clone();
            tasks.spawn(async move { workers.run(stopped(rx)).await.map_err(AgentError::from) });
        }

        {
            // Released local-path volumes of this node: remove their directories.
            let cleanup = crate::volumemanager::local_path::run(
                client.clone(),
                config.node_name.clone(),
                crate::volumemanager::local_path::root_for(&config.data_dir),
                stopped(stop_rx.clone()),
            );
            tasks.spawn(async move {
                cleanup.await;
                Ok(())
            });
        }

        let outcome = tokio::select! {
            () = &mut shutdown => Ok(()),
            Some(done) = tasks.join_next() => match done {
                // A task that ends by itself before shutdown is a failure of the agent.
                Ok(Ok(())) => Err(AgentError::Task("an agent task ended unexpectedly".into())),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(AgentError::Task(e.to_string())),
            },
        };
        let _ = stop_tx.send(true);
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "an agent task failed while stopping");
            }
        }
        tracing::info!(node = %config.node_name, "node agent stopped; pods keep running");
        outcome
    }
}

/// Completes once the stop flag is raised (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn validate(config: &AgentConfig) -> Result<(), AgentError> {
    if config.node_name.is_empty() {
        return Err(AgentError::Config("the node name is empty".into()));
    }
    if config.bridge.is_empty() || config.bridge.len() > 15 {
        return Err(AgentError::Config(format!(
            "bridge name {:?} must be 1 to 15 characters",
            config.bridge
        )));
    }
    config.image_gc.validate().map_err(AgentError::Config)?;
    if config.max_pods == 0 {
        return Err(AgentError::Config("max pods must be at least 1".into()));
    }
    Ok(())
}

async fn node_facts(config: &AgentConfig, port: u16) -> NodeFacts {
    let system = tokio::task::spawn_blocking(machine::system_info)
        .await
        .unwrap_or_default();
    NodeFacts {
        name: config.node_name.clone(),
        ip: config.node_ip,
        port,
        pod_cidr: Some(config.pod_cidr.clone()).filter(|c| !c.is_empty()),
        max_pods: config.max_pods,
        labels: config.node_labels.clone(),
        control_plane: config.control_plane,
        data_dir: config.data_dir.clone(),
        runtime_binary: config.runtime_binary.clone(),
        cni_bin_dir: config.cni_bin_dir.clone(),
        runtime_version: machine::runtime_version(&config.runtime_binary).await,
        system,
        eviction: config.eviction_hard,
    }
}

/// The supervisor argv: the configured one, else this very binary's `supervise`.
pub fn supervisor_command(config: &AgentConfig) -> Result<Vec<String>, AgentError> {
    if !config.supervisor.is_empty() {
        return Ok(config.supervisor.clone());
    }
    let exe = std::env::current_exe().map_err(|source| AgentError::Io {
        context: "finding this executable".into(),
        source,
    })?;
    Ok(vec![exe.to_string_lossy().into_owned(), "supervise".into()])
}

fn build_runtime(config: &AgentConfig) -> Result<Runtime, AgentError> {
    let containers = runtime::containers::Containers::new(runtime::containers::ContainersConfig {
        root: config.containers_dir(),
        runtime_binary: config.runtime_binary.clone(),
        runtime_root: config.runtime_root.clone(),
        supervisor: supervisor_command(config)?,
    })?;
    let sandboxes = runtime::network::Sandboxes::new(runtime::network::NetworkConfig {
        root: config.sandboxes_dir(),
        cni_bin_dir: config.cni_bin_dir.clone(),
        cni_data_dir: config.cni_data_dir(),
        pod_cidr: config.pod_cidr.clone(),
        bridge: config.bridge.clone(),
        netns_prefix: config.netns_prefix.clone(),
        mtu: None,
        cluster_cidr: Some(config.cluster_cidr.clone()).filter(|c| !c.is_empty()),
        service_cidr: Some(config.service_cidr.clone()).filter(|c| !c.is_empty()),
        cluster_domain: config.cluster_domain.clone(),
    })?;
    let images = runtime::image::ImageStore::open(runtime::image::ImageStoreConfig {
        root: config.images_dir(),
        mirrors: config.registry_mirrors.clone(),
        insecure_registries: config.insecure_registries.clone(),
    })?;
    Ok(Runtime {
        images: Arc::new(images),
        sandboxes: Arc::new(sandboxes),
        containers: Arc::new(containers),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configurations_are_refused_before_anything_starts() {
        let mut c = AgentConfig {
            bridge: "a-very-long-bridge-name".into(),
            ..AgentConfig::default()
        };
        assert!(matches!(validate(&c), Err(AgentError::Config(_))));
        c.bridge = "fl0".into();
        assert!(validate(&c).is_ok());
        c.node_name.clear();
        assert!(matches!(validate(&c), Err(AgentError::Config(_))));
    }

    #[test]
    fn the_supervisor_defaults_to_this_binary() {
        let argv = supervisor_command(&AgentConfig::default()).unwrap();
        assert_eq!(argv[1], "supervise");
        let c = AgentConfig {
            supervisor: vec!["/x".into(), "y".into()],
            ..AgentConfig::default()
        };
        assert_eq!(supervisor_command(&c).unwrap(), ["/x", "y"]);
    }
}
