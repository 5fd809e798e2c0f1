//! The downward API's two selectors, shared by env vars and downwardAPI volumes:
//! `fieldRef` (pod metadata, spec and status fields) and `resourceFieldRef` (a container's
//! requests and limits, scaled by a divisor), as Kubernetes' pkg/fieldpath and
//! pkg/api/v1/resource resolve them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldPathError {
    #[error("unsupported fieldPath: {0}")]
    UnsupportedField(String),
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
    BadQuantity(String),
    #[error("divisor of resource {0} must be greater than zero")]
    ZeroDivisor(String),
    #[error("container {0:?} not found in the pod")]
    NoContainer(String),
}

/// Values a fieldRef can need that are not in the pod object itself (the kubelet's own
/// view: node IP, the sandbox's IPs).
pub struct FieldContext<'a> {
    pub node_ip: Option<String>,
    pub pod_ips: &'a [String],
}

/// Resolves a fieldRef path as the kubelet does for env vars (`status.*`, `spec.*`) and
/// volumes (`metadata.*`, including whole label/annotation maps).
pub fn field_value(pod: &Pod, path: &str, ctx: &FieldContext) -> Result<String, FieldPathError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let host_ips = || -> Vec<String> {
        let mut ips: Vec<String> = status
            .and_then(|s| s.host_ips.as_ref())
            .map(|v| v.iter().map(|h| h.ip.clone()).collect())
            .unwrap_or_default();
        if ips.is_empty() {
            ips.extend(ctx.node_ip.clone());
        }
        ips
    };
    let pod_ips = || -> Vec<String> {
        if !ctx.pod_ips.is_empty() {
            return ctx.pod_ips.to_vec();
        }
        status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|v| v.iter().map(|p| p.ip.clone()).collect())
            .unwrap_or_default()
    };
    if let Some((map, key)) = subscript(path) {
        let source = match map {
            "metadata.labels" => &meta.labels,
            "metadata.annotations" => &meta.annotations,
            _ => return Err(FieldPathError::UnsupportedField(path.into())),
        };
        return Ok(source
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => host_ips().into_iter().next().unwrap_or_default(),
        "status.hostIPs" => host_ips().join(","),
        "status.podIP" => pod_ips().into_iter().next().unwrap_or_default(),
        "status.podIPs" => pod_ips().join(","),
        _ => return Err(FieldPathError::UnsupportedField(path.into())),
    })
}

/// `metadata.labels['app']` → ("metadata.labels", "app").
fn subscript(path: &str) -> Option<(&str, &str)> {
    let open = path.find("['")?;
    let key = path[open + 2..].strip_suffix("']")?;
    Some((&path[..open], key))
}

/// Kubernetes' FormatMap: sorted `key="value"` lines, values quoted as Go's %q does.
fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", go_quote(v)))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Node-wide figures that stand in for a missing limit (the kubelet uses allocatable).
#[derive(Debug, Clone, Copy)]
pub struct NodeAllocatable {
    pub cpu_millis: i128,
    pub memory_bytes: i128,
    pub ephemeral_storage_bytes: i128,
}

impl NodeAllocatable {
    /// This machine's CPUs, memory and root filesystem size.
    pub fn detect() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i128>().ok())
            })
            .map(|kb| kb * 1024)
            .unwrap_or(0);
        let storage = nix::sys::statvfs::statvfs("/")
            .map(|s| i128::from(s.blocks()) * i128::from(s.fragment_size()))
            .unwrap_or(0);
        NodeAllocatable {
            cpu_millis: cpus as i128 * 1000,
            memory_bytes: memory,
            ephemeral_storage_bytes: storage,
        }
    }
}

/// Resolves a resourceFieldRef against `container` (or the pod container it names):
/// CPU in ceil(millicores / divisor millicores), other resources in ceil(value / divisor).
pub fn resource_value(
    pod: &Pod,
    default_container: Option<&Container>,
    sel: &ResourceFieldSelector,
    node: &NodeAllocatable,
) -> Result<String, FieldPathError> {
    let container = match sel.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| FieldPathError::NoContainer(name.into()))?,
        None => default_container.ok_or_else(|| FieldPathError::NoContainer(String::new()))?,
    };
    let (kind, resource) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| FieldPathError::UnsupportedResource(sel.resource.clone()))?;
    let res = container.resources.as_ref();
    let limits = res.and_then(|r| r.limits.as_ref());
    let requests = res.and_then(|r| r.requests.as_ref());
    let lookup = |m: Option<&BTreeMap<String, Quantity>>| -> Result<Option<i128>, FieldPathError> {
        m.and_then(|m| m.get(resource))
            .map(|q| parse_quantity_nanos(&q.0))
            .transpose()
    };
    let fallback = match resource {
        "cpu" => node.cpu_millis * 1_000_000,
        "memory" => node.memory_bytes * NANO,
        "ephemeral-storage" => node.ephemeral_storage_bytes * NANO,
        r if r.starts_with("hugepages-") => 0,
        _ => return Err(FieldPathError::UnsupportedResource(sel.resource.clone())),
    };
    let nanos = match kind {
        // A missing limit reads as node allocatable, as MergeContainerResourceLimits does.
        "limits" => lookup(limits)?.unwrap_or(fallback),
        // API defaulting copies a limit into a missing request.
        "requests" => match lookup(requests)? {
            Some(v) => v,
            None => lookup(limits)?.unwrap_or(0),
        },
        _ => return Err(FieldPathError::UnsupportedResource(sel.resource.clone())),
    };
    let divisor = match sel.divisor.as_ref().map(|d| d.0.as_str()) {
        None | Some("") => NANO,
        Some(d) => parse_quantity_nanos(d)?,
    };
    let (value, divisor) = if resource == "cpu" {
        (ceil_div(nanos, 1_000_000), ceil_div(divisor, 1_000_000))
    } else {
        (ceil_div(nanos, NANO), ceil_div(divisor, NANO))
    };
    if divisor <= 0 {
        return Err(FieldPathError::ZeroDivisor(sel.resource.clone()));
    }
    Ok(ceil_div(value, divisor).to_string())
}

const NANO: i128 = 1_000_000_000;

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if (a % b != 0) && ((a < 0) == (b < 0)) {
        q + 1
    } else {
        q
    }
}

/// A Kubernetes quantity (`500m`, `1.5Gi`, `2e3`) in billionths of a unit.
pub fn parse_quantity_nanos(q: &str) -> Result<i128, FieldPathError> {
    api::quantity::parse(q)
        .map(api::quantity::Quantity::nanos)
        .map_err(|_| FieldPathError::BadQuantity(q.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity_nanos("1").unwrap(), NANO);
        assert_eq!(parse_quantity_nanos("500m").unwrap(), NANO / 2);
        assert_eq!(parse_quantity_nanos("1Ki").unwrap(), 1024 * NANO);
        assert_eq!(
            parse_quantity_nanos("1.5Gi").unwrap(),
            1536 * 1024 * 1024 * NANO
        );
        assert_eq!(parse_quantity_nanos("2e3").unwrap(), 2000 * NANO);
        assert_eq!(parse_quantity_nanos("129M").unwrap(), 129_000_000 * NANO);
        assert_eq!(parse_quantity_nanos("-1").unwrap(), -NANO);
        assert!(parse_quantity_nanos("abc").is_err());
        assert!(parse_quantity_nanos("1Zi").is_err());
        assert!(parse_quantity_nanos("").is_err());
        assert!(parse_quantity_nanos("1.2.3").is_err());
        assert!(parse_quantity_nanos("99999999999999999999999999999999999999Ei").is_err());
    }

    fn pod_with(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Pod {
        let q = |v: &[(&str, &str)]| {
            Some(
                v.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect(),
            )
        };
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        limits: q(limits),
                        requests: q(requests),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sel(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            container_name: Some("c".into()),
            resource: resource.into(),
            divisor: divisor.map(|d| Quantity(d.into())),
        }
    }

    const NODE: NodeAllocatable = NodeAllocatable {
        cpu_millis: 4000,
        memory_bytes: 8 << 30,
        ephemeral_storage_bytes: 100 << 30,
    };

    #[test]
    fn divisor_math() {
        let pod = pod_with(&[("cpu", "1500m"), ("memory", "64Mi")], &[("cpu", "250m")]);
        let v = |r, d| resource_value(&pod, None, &sel(r, d), &NODE).unwrap();
        // CPU rounds up to whole cores by default.
        assert_eq!(v("limits.cpu", None), "2");
        assert_eq!(v("limits.cpu", Some("1m")), "1500");
        assert_eq!(v("requests.cpu", Some("1m")), "250");
        assert_eq!(v("requests.cpu", None), "1");
        assert_eq!(v("limits.memory", None), (64u64 << 20).to_string());
        assert_eq!(v("limits.memory", Some("1Mi")), "64");
        assert_eq!(v("limits.memory", Some("1M")), "68");
        // No memory request: the limit is the request.
        assert_eq!(v("requests.memory", Some("1Mi")), "64");
        // No limit: node allocatable.
        assert_eq!(v("limits.ephemeral-storage", Some("1Gi")), "100");
        assert!(resource_value(&pod, None, &sel("limits.gpu", None), &NODE).is_err());
        assert!(resource_value(&pod, None, &sel("limits.cpu", Some("0")), &NODE).is_err());
    }

    #[test]
    fn fields() {
        let mut pod = pod_with(&[], &[]);
        pod.metadata.name = Some("web".into());
        pod.metadata.labels = Some(
            [("b", "2"), ("a", "x\"y")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let ctx = FieldContext {
            node_ip: Some("10.0.0.1".into()),
            pod_ips: &["10.244.1.5".into(), "fd00::5".into()],
        };
        assert_eq!(field_value(&pod, "metadata.name", &ctx).unwrap(), "web");
        assert_eq!(
            field_value(&pod, "metadata.labels", &ctx).unwrap(),
            "a=\"x\\\"y\"\nb=\"2\""
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['b']", &ctx).unwrap(),
            "2"
        );
        assert_eq!(
            field_value(&pod, "status.podIP", &ctx).unwrap(),
            "10.244.1.5"
        );
        assert_eq!(
            field_value(&pod, "status.podIPs", &ctx).unwrap(),
            "10.244.1.5,fd00::5"
        );
        assert_eq!(
            field_value(&pod, "status.hostIP", &ctx).unwrap(),
            "10.0.0.1"
        );
        assert!(field_value(&pod, "spec.containers", &ctx).is_err());
    }
}
