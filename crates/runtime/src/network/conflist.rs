//! The node's CNI network configuration, generated from its pod CIDR rather than read from
//! /etc/cni/net.d, so every node (several per machine in tests) gets its own bridge, IPAM
//! dataDir and subnet.
//!
//! Debian's containernetworking-plugins 1.1.1 speak CNI 0.1.0 through 1.0.0; we use 1.0.0.
//!
//! - bridge: `isGateway` gives the bridge the subnet's first address, so the node reaches
//!   its pods directly. `ipMasq` is off: the bridge plugin would masquerade everything
//!   leaving the pod subnet, including pod-to-pod traffic to other nodes' pod CIDRs, which
//!   hides pod source IPs (breaking NetworkPolicy and what servers log) and leaves an
//!   iptables chain per pod. Off-cluster egress masquerading belongs to the node's proxy
//!   rules, which know the cluster CIDR. `hairpinMode` lets a pod reach itself through a
//!   Service that picks its own endpoint.
//! - host-local IPAM with the node's pod CIDR, the node's own dataDir, and a default route.
//! - portmap with the `portMappings` capability: hostPorts. In 1.1.1 it programs iptables
//!   (chains CNI-HOSTPORT-*, CNI-DN-*), so the node needs the `iptables` binary.
//! - loopback as its own network on `lo`: a fresh namespace's loopback is down.

use serde_json::{json, Value};

use crate::cri::{PortMapping, Protocol};

pub const CNI_VERSION: &str = "1.0.0";
/// The network's name: host-local keeps its allocations in `<dataDir>/<name>/`.
pub const NETWORK_NAME: &str = "flotilla";
pub const POD_IFNAME: &str = "eth0";
pub const REQUIRED_PLUGINS: [&str; 4] = ["bridge", "host-local", "portmap", "loopback"];

pub struct PodNetwork<'a> {
    pub bridge: &'a str,
    pub pod_cidr: &'a str,
    pub data_dir: &'a str,
    pub mtu: Option<u32>,
}

impl PodNetwork<'_> {
    /// The list for the pod's `eth0`. portmap is left out when the pod maps no ports: with
    /// none it does nothing on ADD, yet its DEL walks the iptables chains, which costs
    /// every pod start and stop time. The list is stored with the sandbox, so DEL runs
    /// exactly the plugins ADD ran.
    pub fn conflist(&self, with_portmap: bool) -> Value {
        let mut bridge = json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.pod_cidr}]],
                "routes": [{"dst": default_route(self.pod_cidr)}],
                "dataDir": self.data_dir,
            },
        });
        if let (Some(mtu), Some(obj)) = (self.mtu, bridge.as_object_mut()) {
            obj.insert("mtu".to_string(), json!(mtu));
        }
        let mut plugins = vec![bridge];
        if with_portmap {
            plugins.push(json!({
                "type": "portmap",
                "capabilities": {"portMappings": true},
                "snat": true,
            }));
        }
        json!({"cniVersion": CNI_VERSION, "name": NETWORK_NAME, "plugins": plugins})
    }
}

fn default_route(pod_cidr: &str) -> &'static str {
    if pod_cidr.contains(':') {
        "::/0"
    } else {
        "0.0.0.0/0"
    }
}

/// The loopback network, applied to `lo`.
pub fn loopback_config() -> Value {
    json!({"cniVersion": CNI_VERSION, "name": "cni-loopback", "type": "loopback"})
}

/// `runtimeConfig` for the list: the hostPorts in portmap's format.
pub fn runtime_config(ports: &[PortMapping]) -> Value {
    let mappings: Vec<Value> = ports
        .iter()
        .map(|p| {
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": match p.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                    Protocol::Sctp => "sctp",
                },
            });
            if let (Some(ip), Some(obj)) = (p.host_ip, m.as_object_mut()) {
                obj.insert("hostIP".to_string(), json!(ip.to_string()));
            }
            m
        })
        .collect();
    json!({"portMappings": mappings})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_list_carries_the_node_settings() {
        let net = PodNetwork {
            bridge: "flo0",
            pod_cidr: "10.244.7.0/24",
            data_dir: "/tmp/ipam",
            mtu: Some(1400),
        };
        let list = net.conflist(true);
        assert_eq!(list["cniVersion"], "1.0.0");
        let bridge = &list["plugins"][0];
        assert_eq!(bridge["bridge"], "flo0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["mtu"], 1400);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.7.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/tmp/ipam");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(list["plugins"][1]["type"], "portmap");
        assert_eq!(list["plugins"][1]["capabilities"]["portMappings"], true);

        let without = PodNetwork { mtu: None, ..net }.conflist(false);
        assert_eq!(without["plugins"].as_array().map(Vec::len), Some(1));
        assert!(without["plugins"][0].get("mtu").is_none());
    }

    #[test]
    fn port_mappings_use_portmaps_field_names() {
        let rc = runtime_config(&[
            PortMapping {
                protocol: Protocol::Tcp,
                container_port: 80,
                host_port: 8080,
                host_ip: None,
            },
            PortMapping {
                protocol: Protocol::Udp,
                container_port: 53,
                host_port: 5353,
                host_ip: Some("127.0.0.1".parse().unwrap()),
            },
        ]);
        assert_eq!(
            rc,
            json!({"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
            ]})
        );
    }
}
