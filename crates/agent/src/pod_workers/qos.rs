//! The pod's QoS class and the cgroup it implies, and a container's resources mapped to
//! cgroup limits (the kubelet's qos and kuberuntime resource mapping).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }

    /// The cgroup directory of the class under the node's cgroup root.
    pub fn cgroup_dir(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "guaranteed",
            QosClass::Burstable => "burstable",
            QosClass::BestEffort => "besteffort",
        }
    }
}

/// CFS period the kubelet uses for every container.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota the kernel accepts.
const MIN_QUOTA_US: i64 = 1_000;
/// cpu.shares of a container without a CPU request.
const MIN_SHARES: u64 = 2;

const TRACKED: [&str; 2] = ["cpu", "memory"];

fn get<'a>(m: &'a Option<BTreeMap<String, Quantity>>, k: &str) -> Option<&'a str> {
    m.as_ref()?.get(k).map(|q| q.0.as_str())
}

/// Requests default to limits, as API defaulting does for a limit without a request.
fn request<'a>(r: &'a ResourceRequirements, k: &str) -> Option<&'a str> {
    get(&r.requests, k).or_else(|| get(&r.limits, k))
}

/// Kubernetes' rules: Guaranteed when every container limits CPU and memory with equal
/// requests; BestEffort when no container requests or limits either; else Burstable.
pub fn pod_qos(pod: &Pod) -> QosClass {
    let Some(spec) = pod.spec.as_ref() else {
        return QosClass::BestEffort;
    };
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        let r = c.resources.clone().unwrap_or_default();
        for k in TRACKED {
            let req = request(&r, k).and_then(value_of(k));
            let lim = get(&r.limits, k).and_then(value_of(k));
            if req.is_some_and(|v| v > 0) || lim.is_some_and(|v| v > 0) {
                any = true;
            }
            match (req, lim) {
                (Some(a), Some(b)) if a == b && b > 0 => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        QosClass::BestEffort
    } else if guaranteed {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

fn value_of(k: &str) -> fn(&str) -> Option<i64> {
    if k == "cpu" {
        quantity::millis
    } else {
        quantity::value
    }
}

/// `<cgroup_root>/<qos>/pod<uid>`: where the pod's containers' cgroups live.
pub fn pod_cgroup_parent(cgroup_root: &str, qos: QosClass, uid: &str) -> String {
    let root = cgroup_root.trim_matches('/');
    if root.is_empty() {
        format!("{}/pod{uid}", qos.cgroup_dir())
    } else {
        format!("{root}/{}/pod{uid}", qos.cgroup_dir())
    }
}

/// cpu shares = request millicores × 1024 / 1000 (at least 2); quota from the limit over a
/// 100 ms period; memory limit in bytes.
pub fn container_resources(c: &Container) -> runtime::cri::Resources {
    let r = c.resources.clone().unwrap_or_default();
    let shares = request(&r, "cpu")
        .and_then(quantity::millis)
        .map(|m| (m as u64 * 1024 / 1000).max(MIN_SHARES))
        .unwrap_or(MIN_SHARES);
    let quota = get(&r.limits, "cpu")
        .and_then(quantity::millis)
        .filter(|m| *m > 0)
        .map(|m| (m * CPU_PERIOD_US as i64 / 1000).max(MIN_QUOTA_US));
    let memory = get(&r.limits, "memory")
        .and_then(quantity::value)
        .filter(|m| *m > 0);
    runtime::cri::Resources {
        cpu_shares: Some(shares),
        cpu_quota: quota,
        cpu_period: quota.map(|_| CPU_PERIOD_US),
        memory_limit: memory,
        pids_limit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn container(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let m = |kv: &[(&str, &str)]| {
            (!kv.is_empty()).then(|| {
                kv.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: m(req),
                limits: m(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(cs: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: cs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn classes() {
        assert_eq!(
            pod_qos(&pod(vec![container(&[], &[])])),
            QosClass::BestEffort
        );
        let g = container(&[], &[("cpu", "500m"), ("memory", "64Mi")]);
        assert_eq!(pod_qos(&pod(vec![g.clone()])), QosClass::Guaranteed);
        let b = container(&[("cpu", "100m")], &[]);
        assert_eq!(pod_qos(&pod(vec![b.clone()])), QosClass::Burstable);
        assert_eq!(pod_qos(&pod(vec![g, b])), QosClass::Burstable);
        let unequal = container(
            &[("cpu", "100m"), ("memory", "64Mi")],
            &[("cpu", "200m"), ("memory", "64Mi")],
        );
        assert_eq!(pod_qos(&pod(vec![unequal])), QosClass::Burstable);
    }

    #[test]
    fn cgroup_parent_per_class() {
        assert_eq!(
            pod_cgroup_parent("/flotilla-t1/", QosClass::Burstable, "u-1"),
            "flotilla-t1/burstable/podu-1"
        );
        assert_eq!(
            pod_cgroup_parent("", QosClass::Guaranteed, "u"),
            "guaranteed/podu"
        );
    }

    #[test]
    fn resources_mapping() {
        let r = container_resources(&container(
            &[("cpu", "250m")],
            &[("cpu", "500m"), ("memory", "32Mi")],
        ));
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.memory_limit, Some(32 << 20));
        let none = container_resources(&container(&[], &[]));
        assert_eq!(none.cpu_shares, Some(2));
        assert_eq!(none.cpu_quota, None);
        // a limit alone is also the request
        let lim = container_resources(&container(&[], &[("cpu", "1")]));
        assert_eq!(lim.cpu_shares, Some(1024));
        // tiny requests still get the minimum shares and quota
        let tiny = container_resources(&container(&[("cpu", "1m")], &[("cpu", "1m")]));
        assert_eq!(tiny.cpu_shares, Some(2));
        assert_eq!(tiny.cpu_quota, Some(1_000));
    }
}
