//! Unreachable host routes for the cluster and service CIDRs: a packet to a cluster
//! address that no more specific route (this node's pod bridge, another node's pod CIDR, a
//! proxy rule) claims fails at once instead of leaving through the default route.
//!
//! Longest-prefix match does the carving: the node's pod CIDR on the bridge (a /24 inside
//! the /16) stays reachable. The route goes in with the lowest priority there is
//! ([`UNREACHABLE_METRIC`]), so that a real route for exactly the same prefix (a cluster
//! CIDR that is the node's whole pod subnet, whose bridge route the kernel adds later; a
//! test host's service-CIDR route to its pod bridge) always wins over it, whichever came
//! first. An unreachable route already there counts as done.

use std::process::Command;

use ipnet::IpNet;

use crate::cri::RuntimeError;

/// The metric of the unreachable routes: the largest, so any other route for the same
/// prefix is preferred.
pub const UNREACHABLE_METRIC: &str = "4294967295";

/// Installs `unreachable <cidr>` in the main table, at [`UNREACHABLE_METRIC`].
pub fn ensure_unreachable(cidr: &IpNet) -> Result<(), RuntimeError> {
    let family = match cidr {
        IpNet::V4(_) => "-4",
        IpNet::V6(_) => "-6",
    };
    let net = cidr.trunc().to_string();
    let out = Command::new("ip")
        .args([
            family,
            "route",
            "add",
            "unreachable",
            &net,
            "metric",
            UNREACHABLE_METRIC,
        ])
        .output()
        .map_err(|e| RuntimeError::io("run ip route add", e))?;
    if out.status.success() {
        tracing::info!(cidr = %net, "installed unreachable route");
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("File exists") {
        return Ok(());
    }
    Err(RuntimeError::Other(format!(
        "ip route add unreachable {net}: {}",
        stderr.trim()
    )))
}
