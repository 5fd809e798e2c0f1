//! The pod's /etc/hosts, /etc/hostname and /etc/resolv.conf, in the formats the kubelet
//! writes, so tools that parse them (and people who read them) see what Kubernetes gives.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::cri::{DnsConfig, PodSandboxConfig, RuntimeError};

/// The resolver reads at most this many nameservers (glibc MAXNS); the kubelet trims too.
const MAX_NAMESERVERS: usize = 3;
/// The kubelet's limit on search domains (glibc ≥ 2.26 has no fixed limit).
const MAX_SEARCHES: usize = 32;

const HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const HOSTS_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

fn invalid(what: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Invalid {
        what: what.to_string(),
        message: message.into(),
    }
}

/// Rejects what would corrupt the files (whitespace, newlines, comments) or what the
/// kernel refuses as a hostname. The API server validates pods; this guards the files.
pub fn validate(config: &PodSandboxConfig) -> Result<(), RuntimeError> {
    validate_hostname(&config.hostname)?;
    if let Some(sub) = &config.subdomain {
        if !sub.is_empty() {
            validate_name("subdomain", sub)?;
        }
    }
    validate_name("namespace", &config.namespace)?;
    for (ip, names) in &config.host_aliases {
        ip.parse::<IpAddr>()
            .map_err(|e| invalid("hostAliases ip", format!("{ip:?}: {e}")))?;
        for n in names {
            validate_word("hostAliases hostname", n)?;
        }
    }
    for s in &config.dns.servers {
        s.parse::<IpAddr>()
            .map_err(|e| invalid("dnsConfig nameserver", format!("{s:?}: {e}")))?;
    }
    for s in &config.dns.searches {
        validate_word("dnsConfig search", s)?;
    }
    for s in &config.dns.options {
        validate_word("dnsConfig option", s)?;
    }
    Ok(())
}

fn validate_hostname(h: &str) -> Result<(), RuntimeError> {
    // The kernel's limit (HOST_NAME_MAX) and a DNS label's.
    if h.len() > 63 {
        return Err(invalid(
            "hostname",
            format!("{h:?} is longer than 63 bytes"),
        ));
    }
    validate_name("hostname", h)
}

fn validate_name(what: &str, s: &str) -> Result<(), RuntimeError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !s.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(invalid(what, format!("{s:?} is not a DNS name")))
    }
}

fn validate_word(what: &str, s: &str) -> Result<(), RuntimeError> {
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        return Err(invalid(what, format!("{s:?} must be one word")));
    }
    Ok(())
}

/// /etc/hosts of a pod with its own network namespace.
pub fn hosts(config: &PodSandboxConfig, ips: &[IpAddr], cluster_domain: &str) -> String {
    let mut out = String::from(HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    let names = match config.subdomain.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => format!(
            "{h}.{sub}.{ns}.svc.{cluster_domain}\t{h}",
            h = config.hostname,
            ns = config.namespace
        ),
        None => config.hostname.clone(),
    };
    for ip in ips {
        let _ = writeln!(out, "{ip}\t{names}");
    }
    push_aliases(&mut out, &config.host_aliases);
    out
}

/// /etc/hosts of a hostNetwork pod: the node's own, marked as managed.
pub fn hosts_host_network(node_hosts: &str, aliases: &[(String, Vec<String>)]) -> String {
    let mut out = String::from(HOSTS_HEADER_HOST_NETWORK);
    out.push_str(node_hosts);
    if !node_hosts.is_empty() && !node_hosts.ends_with('\n') {
        out.push('\n');
    }
    push_aliases(&mut out, aliases);
    out
}

fn push_aliases(out: &mut String, aliases: &[(String, Vec<String>)]) {
    if aliases.is_empty() {
        return;
    }
    out.push_str("\n# Entries added by HostAliases.\n");
    for (ip, names) in aliases {
        let _ = writeln!(out, "{ip}\t{}", names.join("\t"));
    }
}

pub fn hostname(name: &str) -> String {
    format!("{name}\n")
}

/// /etc/resolv.conf: the pod's DnsConfig when it has one, else the node's file. A
/// loopback nameserver of the node (systemd-resolved, dnsmasq) means nothing inside the
/// pod's network namespace, so those are dropped unless the pod shares the node's network.
pub fn resolv_conf(dns: &DnsConfig, node_resolv: &str, host_network: bool) -> String {
    let given = !(dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty());
    let cfg = if given {
        dns.clone()
    } else {
        let mut node = parse_resolv_conf(node_resolv);
        if !host_network {
            node.servers.retain(|s| {
                s.parse::<IpAddr>()
                    .map(|ip| !ip.is_loopback())
                    .unwrap_or(false)
            });
        }
        node
    };
    let mut out = String::new();
    for s in cfg.servers.iter().take(MAX_NAMESERVERS) {
        let _ = writeln!(out, "nameserver {s}");
    }
    if !cfg.searches.is_empty() {
        let searches: Vec<&str> = cfg
            .searches
            .iter()
            .take(MAX_SEARCHES)
            .map(String::as_str)
            .collect();
        let _ = writeln!(out, "search {}", searches.join(" "));
    }
    if !cfg.options.is_empty() {
        let _ = writeln!(out, "options {}", cfg.options.join(" "));
    }
    out
}

/// Whether a node resolv.conf names a nameserver a pod's own namespace can reach.
pub fn has_usable_nameserver(text: &str) -> bool {
    parse_resolv_conf(text)
        .servers
        .iter()
        .any(|s| s.parse::<IpAddr>().is_ok_and(|ip| !ip.is_loopback()))
}

/// The nameserver, search (or domain) and options lines of a resolv.conf.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut cfg = DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => cfg.servers.extend(words.next().map(String::from)),
            // The last search/domain line wins, as in the resolver.
            Some("search") | Some("domain") => cfg.searches = words.map(String::from).collect(),
            Some("options") => cfg.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config() -> PodSandboxConfig {
        PodSandboxConfig {
            pod_uid: "u".into(),
            namespace: "default".into(),
            name: "web-0".into(),
            hostname: "web-0".into(),
            subdomain: None,
            host_network: false,
            port_mappings: vec![],
            dns: DnsConfig::default(),
            host_aliases: vec![],
            cgroup_parent: String::new(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn hosts_file_matches_the_kubelets() {
        let mut c = config();
        c.subdomain = Some("nginx".into());
        c.host_aliases = vec![("10.1.2.3".into(), vec!["foo.local".into(), "bar".into()])];
        let ip: IpAddr = "10.244.1.4".parse().unwrap();
        let text = hosts(&c, &[ip], "cluster.local");
        assert_eq!(
            text,
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             10.244.1.4\tweb-0.nginx.default.svc.cluster.local\tweb-0\n\
             \n# Entries added by HostAliases.\n\
             10.1.2.3\tfoo.local\tbar\n"
        );
        let plain = hosts(&config(), &[ip], "cluster.local");
        assert!(plain.ends_with("10.244.1.4\tweb-0\n"), "{plain}");
    }

    #[test]
    fn host_network_hosts_copies_the_node_file() {
        let text = hosts_host_network("127.0.0.1 localhost\n10.0.0.5 node1", &[]);
        assert_eq!(
            text,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n10.0.0.5 node1\n"
        );
    }

    #[test]
    fn resolv_conf_from_dns_config_or_the_node() {
        let dns = DnsConfig {
            servers: vec!["10.43.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(&dns, "nameserver 9.9.9.9\n", false),
            "nameserver 10.43.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
        );
        let node = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2 # lan\nnameserver ::1\n\
                    nameserver 10.0.0.3\nnameserver 10.0.0.4\nnameserver 10.0.0.5\ndomain a.example\n\
                    search corp.example lab.example\noptions edns0 trust-ad\n";
        assert_eq!(
            resolv_conf(&DnsConfig::default(), node, false),
            "nameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n\
             search corp.example lab.example\noptions edns0 trust-ad\n"
        );
        assert!(has_usable_nameserver(node));
        assert!(!has_usable_nameserver(
            "nameserver 127.0.0.53\noptions edns0\n"
        ));
        // In the node's network namespace its loopback resolver is reachable.
        assert!(
            resolv_conf(&DnsConfig::default(), node, true).starts_with("nameserver 127.0.0.53\n")
        );
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        type Mutation = Box<dyn Fn(&mut PodSandboxConfig)>;
        let bad: Vec<Mutation> = vec![
            Box::new(|c| c.hostname = "has space".into()),
            Box::new(|c| c.hostname = String::new()),
            Box::new(|c| c.hostname = "a".repeat(64)),
            Box::new(|c| c.hostname = "line\nbreak".into()),
            Box::new(|c| c.subdomain = Some("x y".into())),
            Box::new(|c| c.host_aliases = vec![("not-an-ip".into(), vec!["a".into()])]),
            Box::new(|c| c.host_aliases = vec![("1.2.3.4".into(), vec!["a\n5.6.7.8 evil".into()])]),
            Box::new(|c| c.dns.servers = vec!["dns.example".into()]),
            Box::new(|c| c.dns.searches = vec!["a b".into()]),
            Box::new(|c| c.dns.options = vec![String::new()]),
        ];
        for (i, mutate) in bad.iter().enumerate() {
            let mut c = config();
            mutate(&mut c);
            assert!(
                matches!(validate(&c), Err(RuntimeError::Invalid { .. })),
                "case {i}"
            );
        }
        assert!(validate(&config()).is_ok());
    }
}
