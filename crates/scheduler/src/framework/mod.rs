//! The scheduling framework: extension points as traits, a profile of plugins, and one
//! scheduling cycle (pre-filter → filter → score → select) over the cluster's nodes.
//!
//! As in kube-scheduler, a plugin's verdict is a [`Status`], not an error; a rule is a
//! plugin, and a new rule never touches the cycle. Per-cycle data that pre-filter computes
//! for filter and score lives in [`CycleState`] as typed fields, not string keys.

mod cycle;
mod status;
pub mod types;

pub use cycle::{num_feasible_nodes_to_find, FitError, ScheduleResult};
pub use status::{Code, Status};
pub use types::{NodeInfo, PodInfo, Resources};

use std::sync::Arc;

use crate::plugins::{inter_pod_affinity, pod_topology_spread};

/// The highest score a plugin gives a node, as in Kubernetes.
pub const MAX_NODE_SCORE: i64 = 100;

pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
}

/// Runs once per cycle before any node is looked at; may compute state for later points,
/// or reject the pod outright.
pub trait PreFilterPlugin: Plugin {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[NodeInfo]) -> Status;
}

/// Says whether the pod may run on one node.
pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// Ranks a feasible node from 0 to [`MAX_NODE_SCORE`] (after `normalize`).
pub trait ScorePlugin: Plugin {
    /// Runs once per cycle before scoring, with the feasible nodes.
    fn pre_score(&self, _state: &mut CycleState, _pod: &PodInfo, _nodes: &[&NodeInfo]) {}
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Rescales raw scores of all feasible nodes into 0..=MAX_NODE_SCORE.
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// What pre-filter and pre-score computed for this cycle, one typed slot per plugin.
#[derive(Default)]
pub struct CycleState {
    pub topology_spread: Option<pod_topology_spread::PreFilterState>,
    pub topology_spread_score: Option<pod_topology_spread::PreScoreState>,
    pub inter_pod_affinity: Option<inter_pod_affinity::PreFilterState>,
    pub inter_pod_affinity_score: Option<inter_pod_affinity::PreScoreState>,
}

/// A scheduling profile: the plugins enabled at each extension point, in order.
#[derive(Clone, Default)]
pub struct Framework {
    pub pre_filters: Vec<Arc<dyn PreFilterPlugin>>,
    pub filters: Vec<Arc<dyn FilterPlugin>>,
    /// Each with its weight.
    pub scores: Vec<(Arc<dyn ScorePlugin>, i64)>,
}

impl Framework {
    /// Kubernetes' default profile (the plugins built so far).
    pub fn default_profile() -> Self {
        crate::plugins::default_profile()
    }
}
