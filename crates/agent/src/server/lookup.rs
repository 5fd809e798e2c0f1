//! Finding a pod's containers and sandbox in the runtime by the labels every one carries
//! (the kubelet asks its pod cache; the runtime's labels are the truth after a restart).

use runtime::cri::{
    ContainerState, ContainerStatus, PodSandbox, SandboxState, LABEL_CONTAINER_NAME,
    LABEL_POD_NAME, LABEL_POD_NAMESPACE,
};
use runtime::{ContainerRuntime, SandboxRuntime};

use super::ServerError;

fn label<'a>(labels: &'a std::collections::BTreeMap<String, String>, key: &str) -> &'a str {
    labels.get(key).map(String::as_str).unwrap_or_default()
}

/// Every attempt of the named container, oldest first.
pub async fn attempts(
    containers: &dyn ContainerRuntime,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<Vec<ContainerStatus>, ServerError> {
    let mut found: Vec<ContainerStatus> = containers
        .list_containers()
        .await
        .map_err(ServerError::Runtime)?
        .into_iter()
        .filter(|c| {
            label(&c.labels, LABEL_POD_NAMESPACE) == namespace
                && label(&c.labels, LABEL_POD_NAME) == pod
                && (label(&c.labels, LABEL_CONTAINER_NAME) == container || c.name == container)
        })
        .collect();
    found.sort_by_key(|c| (c.attempt, c.created_at));
    Ok(found)
}

/// The current attempt (highest restart count) of the named container.
pub async fn current(
    containers: &dyn ContainerRuntime,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<ContainerStatus, ServerError> {
    attempts(containers, namespace, pod, container)
        .await?
        .pop()
        .ok_or_else(|| {
            ServerError::NotFound(format!(
                "container {container:?} in pod \"{namespace}/{pod}\" not found"
            ))
        })
}

/// The current attempt, which must be running (exec, attach).
pub async fn running(
    containers: &dyn ContainerRuntime,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<ContainerStatus, ServerError> {
    let c = current(containers, namespace, pod, container).await?;
    if c.state != ContainerState::Running {
        return Err(ServerError::BadRequest(format!(
            "container {container} is not running in pod {pod}"
        )));
    }
    Ok(c)
}

/// The pod's ready sandbox (the newest, if a restart left an old one behind).
pub async fn sandbox(
    sandboxes: &dyn SandboxRuntime,
    namespace: &str,
    pod: &str,
) -> Result<PodSandbox, ServerError> {
    sandboxes
        .list_pod_sandboxes()
        .await
        .map_err(ServerError::Runtime)?
        .into_iter()
        .filter(|s| s.namespace == namespace && s.name == pod && s.state == SandboxState::Ready)
        .max_by_key(|s| s.created_at)
        .ok_or_else(|| {
            ServerError::NotFound(format!("pod \"{namespace}/{pod}\" has no running sandbox"))
        })
}
