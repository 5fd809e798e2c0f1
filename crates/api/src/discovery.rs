//! Discovery documents built from the catalogue: `/api`, `/apis`, `/api/v1`,
//! `/apis/<group>/<version>`, and the aggregated formats (apidiscovery.k8s.io v2 and v2beta1).

use serde_json::{json, Value};

use crate::catalogue::Catalogue;

/// Which aggregated discovery document the client negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregatedFormat {
    V2,
    V2Beta1,
}

/// `GET /api`: the legacy APIVersions document.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `GET /apis`: the legacy APIGroupList (every group but core).
pub fn api_group_list(_catalogue: &Catalogue) -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`: an APIResourceList, or None when the
/// group-version is not served.
pub fn api_resource_list(_catalogue: &Catalogue, _group: &str, _version: &str) -> Option<Value> {
    None
}

/// `GET /apis/<group>`: one APIGroup, or None.
pub fn api_group(_catalogue: &Catalogue, _group: &str) -> Option<Value> {
    None
}

/// The aggregated APIGroupDiscoveryList: for `/api` (`core == true`: only the core group)
/// or for `/apis` (every other group).
pub fn aggregated(_catalogue: &Catalogue, core: bool, format: AggregatedFormat) -> Value {
    let version = match format {
        AggregatedFormat::V2 => "apidiscovery.k8s.io/v2",
        AggregatedFormat::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
    };
    let _ = core;
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": version, "metadata": {}, "items": []})
}
