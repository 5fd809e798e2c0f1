//! One scheduling cycle: find feasible nodes (stopping early on large clusters, as
//! kube-scheduler's percentageOfNodesToScore does), score them, pick the best.

use std::collections::BTreeMap;

use super::{Code, CycleState, Framework, NodeInfo, PodInfo, Status, MAX_NODE_SCORE};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    pub node: String,
    pub evaluated: usize,
    pub feasible: usize,
}

/// Why no node fits: per node, the reasons and whether preemption could help.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// node name → the failing plugin's status.
    pub node_statuses: BTreeMap<String, Status>,
    /// A pre-filter rejected the pod for every node.
    pub pre_filter: Option<Status>,
    /// Appended after the filter reasons (the preemption attempt's own summary).
    pub post_filter_message: Option<String>,
}

impl FitError {
    /// Kubernetes' message: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had
    /// untolerated taint {…}.` — reasons counted per node, sorted as strings.
    pub fn message(&self) -> String {
        let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
        match &self.pre_filter {
            Some(status) => {
                for r in &status.reasons {
                    *histogram.entry(r.as_str()).or_default() += self.num_all_nodes;
                }
            }
            None => {
                for status in self.node_statuses.values() {
                    for r in &status.reasons {
                        *histogram.entry(r.as_str()).or_default() += 1;
                    }
                }
            }
        }
        let mut reasons: Vec<String> = histogram
            .into_iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        reasons.sort();
        let mut msg = if reasons.is_empty() {
            format!("0/{} nodes are available.", self.num_all_nodes)
        } else {
            format!(
                "0/{} nodes are available: {}.",
                self.num_all_nodes,
                reasons.join(", ")
            )
        };
        if let Some(post) = &self.post_filter_message {
            msg.push(' ');
            msg.push_str(post);
        }
        msg
    }
}

/// How many feasible nodes to find before scoring: all of them in small clusters, an
/// adaptive percentage (50% minus 1% per 125 nodes, at least 5%) and never fewer than 100 in
/// large ones — kube-scheduler's default, which is what keeps it fast at 5,000 nodes.
pub fn num_feasible_nodes_to_find(num_nodes: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if num_nodes < MIN_FEASIBLE {
        return num_nodes;
    }
    let percentage = 50usize.saturating_sub(num_nodes / 125).max(5);
    (num_nodes * percentage / 100).max(MIN_FEASIBLE)
}

impl Framework {
    /// Runs the cycle for `pod` over `nodes`, starting the filter scan at `*next_start`
    /// (advanced past what was scanned, so successive pods spread the work).
    pub fn schedule(
        &self,
        pod: &PodInfo,
        nodes: &[NodeInfo],
        next_start: &mut usize,
        tie_breaker: &mut u64,
    ) -> Result<ScheduleResult, FitError> {
        let mut state = CycleState::default();
        if nodes.is_empty() {
            return Err(FitError::default());
        }
        for p in &self.pre_filters {
            let status = p.pre_filter(&mut state, pod, nodes);
            if !status.is_success() {
                return Err(FitError {
                    num_all_nodes: nodes.len(),
                    pre_filter: Some(status),
                    ..Default::default()
                });
            }
        }

        let want = num_feasible_nodes_to_find(nodes.len());
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(nodes.len()));
        let mut failed = BTreeMap::new();
        let n = nodes.len();
        let start = *next_start % n;
        let mut scanned = 0;
        for i in 0..n {
            if feasible.len() >= want {
                break;
            }
            let node = &nodes[(start + i) % n];
            scanned += 1;
            match self.run_filters(&state, pod, node) {
                None => feasible.push(node),
                Some(status) => {
                    failed.insert(node.name.clone(), status);
                }
            }
        }
        *next_start = (start + scanned) % n;

        if feasible.is_empty() {
            return Err(FitError {
                num_all_nodes: n,
                node_statuses: failed,
                ..Default::default()
            });
        }
        let evaluated = scanned;
        let feasible_count = feasible.len();
        if feasible.len() == 1 || self.scores.is_empty() {
            return Ok(ScheduleResult {
                node: feasible[0].name.clone(),
                evaluated,
                feasible: feasible_count,
            });
        }

        let mut totals = vec![0i64; feasible.len()];
        for (plugin, weight) in &self.scores {
            plugin.pre_score(&mut state, pod, &feasible);
            let mut scores: Vec<i64> = feasible
                .iter()
                .map(|node| plugin.score(&state, pod, node))
                .collect();
            plugin.normalize(&mut scores);
            for (t, s) in totals.iter_mut().zip(scores) {
                *t += s.clamp(0, MAX_NODE_SCORE) * weight;
            }
        }
        let best = select_host(&totals, tie_breaker);
        Ok(ScheduleResult {
            node: feasible[best].name.clone(),
            evaluated,
            feasible: feasible_count,
        })
    }

    /// The first failing filter's status, or None when the node fits.
    pub fn run_filters(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Option<Status> {
        for f in &self.filters {
            let status = f.filter(state, pod, node);
            if !status.is_success() {
                return Some(status);
            }
        }
        None
    }
}

/// The highest total; ties broken uniformly at random (reservoir sampling), as
/// kube-scheduler does so equal nodes share the load.
fn select_host(totals: &[i64], rng: &mut u64) -> usize {
    let mut best = 0;
    let mut ties = 1u64;
    for (i, &t) in totals.iter().enumerate().skip(1) {
        if t > totals[best] {
            best = i;
            ties = 1;
        } else if t == totals[best] {
            ties += 1;
            if next_random(rng).is_multiple_of(ties) {
                best = i;
            }
        }
    }
    best
}

/// xorshift64*: plenty for tie-breaking, and deterministic under a seed in tests.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state | 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

impl Status {
    /// Whether evicting pods from the node could ever make the pod fit there.
    pub fn preemption_may_help(&self) -> bool {
        self.code == Code::Unschedulable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feasible_node_count_follows_kube_scheduler() {
        assert_eq!(num_feasible_nodes_to_find(50), 50);
        assert_eq!(num_feasible_nodes_to_find(100), 100, "never fewer than 100");
        assert_eq!(num_feasible_nodes_to_find(5000), 500);
        assert_eq!(num_feasible_nodes_to_find(6000), 6000 * 5 / 100);
    }

    #[test]
    fn fit_error_counts_and_sorts_reasons() {
        let mut e = FitError {
            num_all_nodes: 3,
            ..Default::default()
        };
        e.node_statuses
            .insert("a".into(), Status::unschedulable("Insufficient memory"));
        e.node_statuses
            .insert("b".into(), Status::unschedulable("Insufficient memory"));
        e.node_statuses.insert(
            "c".into(),
            Status::unresolvable("node(s) had untolerated taint {dedicated: gpu}"),
        );
        assert_eq!(
            e.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient memory."
        );
    }

    #[test]
    fn ties_are_shared() {
        let mut rng = 42;
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[select_host(&[5, 5, 5], &mut rng)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        assert_eq!(select_host(&[1, 9, 5], &mut rng), 1);
    }
}
