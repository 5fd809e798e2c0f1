//! PodSandboxConfig from a pod spec: hostname, DNS per dnsPolicy, hostPorts, host aliases
//! and the pod cgroup (the kubelet's generatePodSandboxConfig and dns configurer).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use runtime::cri::{self, DnsConfig, PodSandboxConfig, PortMapping, Protocol};

use super::qos;

/// What the node contributes to every sandbox.
pub struct NodeDns<'a> {
    pub cluster_dns: &'a [String],
    pub cluster_domain: &'a str,
    /// The host's resolv.conf, for dnsPolicy Default.
    pub host_resolv_conf: &'a str,
}

pub fn sandbox_config(pod: &Pod, dns: &NodeDns<'_>, cgroup_root: &str) -> PodSandboxConfig {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let hostname: String = spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| name.clone())
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string();
    let mut port_mappings = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            let Some(host_port) = p.host_port.and_then(|h| u16::try_from(h).ok()) else {
                continue;
            };
            let Ok(container_port) = u16::try_from(p.container_port) else {
                continue;
            };
            port_mappings.push(PortMapping {
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => Protocol::Udp,
                    Some("SCTP") => Protocol::Sctp,
                    _ => Protocol::Tcp,
                },
                container_port,
                host_port,
                host_ip: p.host_ip.as_deref().and_then(|ip| ip.parse().ok()),
            });
        }
    }
    let host_aliases = spec
        .host_aliases
        .iter()
        .flatten()
        .map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()))
        .collect();
    let mut labels = BTreeMap::new();
    labels.insert(cri::LABEL_POD_UID.to_string(), uid.clone());
    labels.insert(cri::LABEL_POD_NAME.to_string(), name.clone());
    labels.insert(cri::LABEL_POD_NAMESPACE.to_string(), namespace.clone());
    PodSandboxConfig {
        cgroup_parent: qos::pod_cgroup_parent(cgroup_root, qos::pod_qos(pod), &uid),
        pod_uid: uid,
        hostname,
        subdomain: spec.subdomain.clone().filter(|s| !s.is_empty()),
        host_network: spec.host_network.unwrap_or(false),
        port_mappings,
        dns: dns_config(pod, dns, &namespace),
        host_aliases,
        labels,
        namespace,
        name,
    }
}

/// Kubernetes' dnsPolicy: ClusterFirst (the default; host DNS for hostNetwork pods),
/// ClusterFirstWithHostNet, Default (the node's resolv.conf) and None (dnsConfig only);
/// dnsConfig is merged on top of every policy.
pub fn dns_config(pod: &Pod, node: &NodeDns<'_>, namespace: &str) -> DnsConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut cfg = match policy {
        "None" => DnsConfig::default(),
        _ if cluster && !node.cluster_dns.is_empty() => {
            let d = node.cluster_domain;
            DnsConfig {
                servers: node.cluster_dns.to_vec(),
                searches: vec![
                    format!("{namespace}.svc.{d}"),
                    format!("svc.{d}"),
                    d.to_string(),
                ],
                options: vec!["ndots:5".to_string()],
            }
        }
        _ => parse_resolv_conf(node.host_resolv_conf),
    };
    if let Some(extra) = spec.dns_config.as_ref() {
        for s in extra.nameservers.iter().flatten() {
            if !cfg.servers.contains(s) {
                cfg.servers.push(s.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !cfg.searches.contains(s) {
                cfg.searches.push(s.clone());
            }
        }
        for o in extra.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            if name.is_empty() {
                continue;
            }
            cfg.options
                .retain(|existing| existing.split(':').next() != Some(name.as_str()));
            cfg.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    // The resolver's limits that the kubelet also enforces.
    cfg.servers.truncate(3);
    cfg.searches.truncate(32);
    cfg
}

pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut cfg = DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => cfg.servers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => {
                cfg.searches = words.map(str::to_string).collect();
            }
            Some("options") => cfg.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, PodDNSConfig, PodDNSConfigOption, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(spec: PodSpec) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns1".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        }
    }

    const HOST: &str = "nameserver 192.0.2.53\nsearch example.test\noptions edns0\n";

    fn node<'a>(dns: &'a [String]) -> NodeDns<'a> {
        NodeDns {
            cluster_dns: dns,
            cluster_domain: "cluster.local",
            host_resolv_conf: HOST,
        }
    }

    #[test]
    fn cluster_first_and_host_network() {
        let servers = vec!["10.43.0.10".to_string()];
        let p = pod(PodSpec::default());
        let d = dns_config(&p, &node(&servers), "ns1");
        assert_eq!(d.servers, ["10.43.0.10"]);
        assert_eq!(
            d.searches,
            [
                "ns1.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(d.options, ["ndots:5"]);
        let hn = pod(PodSpec {
            host_network: Some(true),
            ..Default::default()
        });
        assert_eq!(
            dns_config(&hn, &node(&servers), "ns1").servers,
            ["192.0.2.53"]
        );
        let hn_cluster = pod(PodSpec {
            host_network: Some(true),
            dns_policy: Some("ClusterFirstWithHostNet".into()),
            ..Default::default()
        });
        assert_eq!(
            dns_config(&hn_cluster, &node(&servers), "ns1").servers,
            ["10.43.0.10"]
        );
    }

    #[test]
    fn none_policy_uses_dns_config() {
        let p = pod(PodSpec {
            dns_policy: Some("None".into()),
            dns_config: Some(PodDNSConfig {
                nameservers: Some(vec!["1.2.3.4".into()]),
                searches: Some(vec!["a.test".into()]),
                options: Some(vec![PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                }]),
            }),
            ..Default::default()
        });
        let d = dns_config(&p, &node(&[]), "ns1");
        assert_eq!(d.servers, ["1.2.3.4"]);
        assert_eq!(d.searches, ["a.test"]);
        assert_eq!(d.options, ["ndots:2"]);
        let dflt = pod(PodSpec {
            dns_policy: Some("Default".into()),
            ..Default::default()
        });
        let d = dns_config(&dflt, &node(&[]), "ns1");
        assert_eq!(
            (d.servers, d.searches, d.options),
            (
                vec!["192.0.2.53".to_string()],
                vec!["example.test".to_string()],
                vec!["edns0".to_string()]
            )
        );
    }

    #[test]
    fn sandbox_fields() {
        let mut spec = PodSpec {
            subdomain: Some("sub".into()),
            ..Default::default()
        };
        spec.containers.push(k8s_openapi::api::core::v1::Container {
            name: "c".into(),
            ports: Some(vec![
                ContainerPort {
                    container_port: 80,
                    host_port: Some(8080),
                    ..Default::default()
                },
                ContainerPort {
                    container_port: 53,
                    protocol: Some("UDP".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        });
        let cfg = sandbox_config(&pod(spec), &node(&[]), "fl");
        assert_eq!(cfg.hostname, "web");
        assert_eq!(cfg.subdomain.as_deref(), Some("sub"));
        assert_eq!(cfg.cgroup_parent, "fl/besteffort/podu1");
        assert_eq!(cfg.port_mappings.len(), 1);
        assert_eq!(cfg.port_mappings[0].host_port, 8080);
        assert_eq!(cfg.labels[cri::LABEL_POD_UID], "u1");
    }
}
