//! The default plugins, one module per rule, and the default profile that orders them.

pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_basics;
pub mod node_resources;
pub mod owner_spread;
pub mod pod_topology_spread;
pub mod selectors;
pub mod taint_toleration;
pub mod volume_binding;

use std::sync::Arc;

use crate::framework::Framework;

/// Kubernetes' default profile: cheap, unresolvable checks first so most nodes fail fast.
pub fn default_profile() -> Framework {
    default_profile_with_volumes(volume_binding::VolumeCache::default())
}

/// The default profile whose VolumeBinding reads `volumes` (the scheduler fills it).
pub fn default_profile_with_volumes(volumes: volume_binding::VolumeCache) -> Framework {
    let volume_binding = Arc::new(volume_binding::VolumeBinding::new(volumes));
    let affinity = Arc::new(inter_pod_affinity::InterPodAffinity);
    let spread = Arc::new(pod_topology_spread::PodTopologySpread);
    let node_affinity = Arc::new(node_affinity::NodeAffinity);
    let taints = Arc::new(taint_toleration::TaintToleration);
    Framework {
        pre_filters: vec![volume_binding.clone(), affinity.clone(), spread.clone()],
        filters: vec![
            Arc::new(node_basics::NodeName),
            Arc::new(node_basics::NodeUnschedulable),
            taints.clone(),
            node_affinity.clone(),
            Arc::new(node_basics::NodePorts),
            Arc::new(node_resources::NodeResourcesFit),
            volume_binding,
            spread.clone(),
            affinity.clone(),
        ],
        // Kubernetes' default weights.
        scores: vec![
            (taints, 3),
            (node_affinity, 2),
            (spread, 2),
            (affinity, 2),
            (Arc::new(node_resources::LeastAllocated), 1),
            (Arc::new(node_resources::BalancedAllocation), 1),
            (Arc::new(owner_spread::OwnerSpread), 1),
        ],
    }
}
