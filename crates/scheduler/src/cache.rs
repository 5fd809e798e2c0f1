//! The scheduler's cache: every node with the pods bound or assumed to it. Assumed pods
//! (bound by this scheduler, binding not yet seen through the watch) count at once, so the
//! next cycle never double-books a node.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::framework::{NodeInfo, PodInfo};

#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// pod key → node name, for every pod counted on a node.
    placement: HashMap<String, String>,
    /// Pods bound to nodes the cache has not seen yet.
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
}

impl Cache {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn upsert_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let node = Arc::new(node);
        match self.index.get(&name) {
            Some(&i) => self.nodes[i].set_node(node),
            None => {
                let mut info = NodeInfo::new(node);
                for pod in self.orphans.remove(&name).unwrap_or_default() {
                    info.add_pod(pod);
                }
                self.index.insert(name, self.nodes.len());
                self.nodes.push(info);
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let removed = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        // Its pods wait for the node to come back (or for their own deletion).
        self.orphans.insert(removed.name, removed.pods);
    }

    /// Counts `pod` on `node`, replacing any earlier placement of the same pod.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(&pod.key);
        self.placement.insert(pod.key.clone(), node.to_string());
        match self.index.get(node) {
            Some(&i) => self.nodes[i].add_pod(pod),
            None => self.orphans.entry(node.to_string()).or_default().push(pod),
        }
    }

    pub fn remove_pod(&mut self, key: &str) {
        let Some(node) = self.placement.remove(key) else {
            return;
        };
        match self.index.get(&node) {
            Some(&i) => {
                self.nodes[i].remove_pod(key);
            }
            None => {
                if let Some(list) = self.orphans.get_mut(&node) {
                    list.retain(|p| p.key != key);
                }
            }
        }
    }

    pub fn is_placed(&self, key: &str) -> bool {
        self.placement.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::types::testing::*;

    #[test]
    fn pods_follow_nodes_that_come_and_go() {
        let mut c = Cache::default();
        c.add_pod(Arc::new(info(pod("early", "100m", "1Mi"))), "a");
        c.upsert_node(node("a", "1", "1Gi"));
        c.upsert_node(node("b", "1", "1Gi"));
        assert_eq!(c.node("a").unwrap().requested.milli_cpu, 100);
        c.add_pod(Arc::new(info(pod("early", "100m", "1Mi"))), "b");
        assert_eq!(
            c.node("a").unwrap().requested.milli_cpu,
            0,
            "moved, not doubled"
        );
        c.remove_node("a");
        assert!(c.node("b").is_some());
        assert_eq!(c.node_count(), 1);
        c.remove_pod("default/early");
        assert!(!c.is_placed("default/early"));
        assert_eq!(c.node("b").unwrap().pods.len(), 0);
    }
}
