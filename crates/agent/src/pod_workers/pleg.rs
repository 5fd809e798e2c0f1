//! The pod lifecycle event generator (the kubelet's generic PLEG): relists the runtime's
//! containers and names the pods whose containers changed state, so their workers wake
//! without polling each container.

use std::collections::{HashMap, HashSet};

use runtime::cri::{self, ContainerState, ContainerStatus};

#[derive(Default)]
pub struct Pleg {
    last: HashMap<String, (String, ContainerState)>,
}

impl Pleg {
    /// Pods (UIDs) with a container that appeared, disappeared or changed state since the
    /// previous relist.
    pub fn diff(&mut self, containers: &[ContainerStatus]) -> HashSet<String> {
        let mut changed = HashSet::new();
        let mut now = HashMap::with_capacity(containers.len());
        for c in containers {
            let Some(uid) = c.labels.get(cri::LABEL_POD_UID) else {
                continue;
            };
            if self.last.get(&c.id).map(|(_, s)| *s) != Some(c.state) {
                changed.insert(uid.clone());
            }
            now.insert(c.id.clone(), (uid.clone(), c.state));
        }
        for (id, (uid, _)) in &self.last {
            if !now.contains_key(id) {
                changed.insert(uid.clone());
            }
        }
        self.last = now;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::SystemTime;

    fn c(id: &str, uid: &str, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            id: id.into(),
            sandbox_id: String::new(),
            name: "c".into(),
            attempt: 0,
            state,
            created_at: SystemTime::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            message: None,
            image_ref: String::new(),
            image_id: String::new(),
            log_path: PathBuf::new(),
            labels: [(cri::LABEL_POD_UID.to_string(), uid.to_string())].into(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn reports_changed_pods_only() {
        let mut p = Pleg::default();
        let first = p.diff(&[
            c("a", "u1", ContainerState::Running),
            c("b", "u2", ContainerState::Running),
        ]);
        assert_eq!(first.len(), 2);
        assert!(p
            .diff(&[
                c("a", "u1", ContainerState::Running),
                c("b", "u2", ContainerState::Running)
            ])
            .is_empty());
        let exited = p.diff(&[
            c("a", "u1", ContainerState::Exited),
            c("b", "u2", ContainerState::Running),
        ]);
        assert_eq!(exited, HashSet::from(["u1".to_string()]));
        let removed = p.diff(&[c("a", "u1", ContainerState::Exited)]);
        assert_eq!(removed, HashSet::from(["u2".to_string()]));
    }
}
