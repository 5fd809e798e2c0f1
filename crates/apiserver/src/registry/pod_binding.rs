//! The single-node binding shortcut: until a scheduler runs (issue 5), a Pod created with no
//! `spec.nodeName` while exactly one Node exists is bound to that Node at create time, so a
//! one-node cluster runs pods. With no Node, or several, the pod stays unbound (Pending),
//! which is where the scheduler will pick it up.

use serde_json::{json, Value};

use super::{meta, Registry};
use crate::status::ApiError;

/// True for core/v1 pods.
pub(super) fn is_pod(info: &api::ResourceInfo) -> bool {
    info.group.is_empty() && info.plural == "pods"
}

/// The node a new pod should be bound to, given the Nodes that exist: the only one.
pub fn only_node(node_names: &[String]) -> Option<&str> {
    match node_names {
        [one] => Some(one.as_str()),
        _ => None,
    }
}

/// Sets `spec.nodeName` when the pod has none and `node` is given.
pub fn bind(pod: &mut Value, node: Option<&str>) {
    let Some(node) = node else { return };
    let unbound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if !unbound {
        return;
    }
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("nodeName".into(), json!(node));
    }
}

impl Registry {
    /// Binds an unbound pod to the cluster's only Node, if there is exactly one.
    pub(super) async fn bind_to_only_node(&self, pod: &mut Value) -> Result<(), ApiError> {
        let bound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if bound {
            return Ok(());
        }
        let Some(nodes) = self.info("", "Node") else {
            return Ok(());
        };
        // Two keys are enough to tell "exactly one" from "several".
        let page = self
            .store
            .list(store::ListOptions {
                prefix: nodes.storage_prefix(),
                limit: Some(2),
                ..Default::default()
            })
            .await
            .map_err(|e| ApiError::internal(format!("listing nodes to bind a pod: {e}")))?;
        if page.continue_token.is_some() {
            return Ok(());
        }
        let mut names = Vec::new();
        for kv in &page.kvs {
            let node = meta::decode_kv(kv)?;
            if meta::deletion_timestamp(&node).is_none() {
                names.push(meta::name(&node).unwrap_or_default().to_string());
            }
        }
        bind(pod, only_node(&names));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exactly_one_node_binds() {
        assert_eq!(only_node(&[]), None);
        assert_eq!(only_node(&["a".into()]), Some("a"));
        assert_eq!(only_node(&["a".into(), "b".into()]), None);
    }

    #[test]
    fn an_unbound_pod_gets_the_node_and_a_bound_one_keeps_its_own() {
        let mut pod = json!({"spec": {"containers": []}});
        bind(&mut pod, Some("n1"));
        assert_eq!(pod["spec"]["nodeName"], "n1");

        let mut pod = json!({"spec": {"nodeName": "other"}});
        bind(&mut pod, Some("n1"));
        assert_eq!(pod["spec"]["nodeName"], "other");

        let mut pod = json!({"spec": {"nodeName": ""}});
        bind(&mut pod, Some("n1"));
        assert_eq!(pod["spec"]["nodeName"], "n1");

        let mut pod = json!({"spec": {}});
        bind(&mut pod, None);
        assert!(pod["spec"].get("nodeName").is_none());
    }

    #[tokio::test]
    async fn the_registry_binds_new_pods_only_while_one_node_exists() {
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn store::Store> = Arc::new(
            store::EmbeddedStore::open(dir.path(), store::EmbeddedConfig::default()).unwrap(),
        );
        let state = crate::ApiState::new(store).await.unwrap();
        let reg = &state.registry;
        let pods = reg.info("", "Pod").unwrap();
        let nodes = reg.info("", "Node").unwrap();
        let opts = super::super::WriteOptions::default();
        let pod = |name: &str| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        };
        let node =
            |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});

        let p = reg
            .create(pods, Some("default"), pod("p0"), &opts)
            .await
            .unwrap();
        assert!(p["spec"].get("nodeName").is_none(), "no node: {p}");

        reg.create(nodes, None, node("n1"), &opts).await.unwrap();
        let p = reg
            .create(pods, Some("default"), pod("p1"), &opts)
            .await
            .unwrap();
        assert_eq!(p["spec"]["nodeName"], "n1");
        // The binding is not attributed to the creator's field manager.
        assert!(!p["metadata"]["managedFields"]
            .to_string()
            .contains("nodeName"));

        let mut pinned = pod("p2");
        pinned["spec"]["nodeName"] = json!("elsewhere");
        let p = reg
            .create(pods, Some("default"), pinned, &opts)
            .await
            .unwrap();
        assert_eq!(p["spec"]["nodeName"], "elsewhere");

        reg.create(nodes, None, node("n2"), &opts).await.unwrap();
        let p = reg
            .create(pods, Some("default"), pod("p3"), &opts)
            .await
            .unwrap();
        assert!(p["spec"].get("nodeName").is_none(), "two nodes: {p}");
    }
}
