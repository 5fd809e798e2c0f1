//! metrics.k8s.io in discovery. kube-apiserver lists it because metrics-server registers an
//! APIService; here the API server serves the group itself, so it adds the group to the
//! documents built from the catalogue (which holds only stored resources).

use serde_json::{json, Value};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

fn group_version() -> Value {
    json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION})
}

/// `GET /apis/metrics.k8s.io`.
pub fn api_group() -> Value {
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [group_version()],
        "preferredVersion": group_version(),
    })
}

/// `GET /apis/metrics.k8s.io/v1beta1`.
pub fn api_resource_list() -> Value {
    let resource = |name: &str, kind: &str, namespaced: bool| {
        json!({
            "name": name,
            "singularName": "",
            "namespaced": namespaced,
            "kind": kind,
            "verbs": ["get", "list"],
        })
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [
            resource("nodes", "NodeMetrics", false),
            resource("pods", "PodMetrics", true),
        ],
    })
}

/// Adds the group to a legacy APIGroupList (`GET /apis`).
pub fn add_to_group_list(list: &mut Value) {
    if let Some(groups) = list.get_mut("groups").and_then(Value::as_array_mut) {
        groups.push(json!({
            "name": GROUP,
            "versions": [group_version()],
            "preferredVersion": group_version(),
        }));
    }
}

/// Adds the group to an aggregated APIGroupDiscoveryList for `/apis`.
pub fn add_to_aggregated(list: &mut Value) {
    let resource = |name: &str, kind: &str, scope: &str| {
        json!({
            "resource": name,
            "responseKind": {"group": "", "version": "", "kind": kind},
            "scope": scope,
            "singularResource": "",
            "verbs": ["get", "list"],
        })
    };
    if let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) {
        items.push(json!({
            "metadata": {"name": GROUP},
            "versions": [{
                "version": VERSION,
                "resources": [
                    resource("nodes", "NodeMetrics", "Cluster"),
                    resource("pods", "PodMetrics", "Namespaced"),
                ],
                "freshness": "Current",
            }],
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_name_the_group_and_its_resources() {
        let mut legacy = json!({"kind": "APIGroupList", "groups": []});
        add_to_group_list(&mut legacy);
        assert_eq!(legacy["groups"][0]["name"], GROUP);
        assert_eq!(
            legacy["groups"][0]["preferredVersion"]["groupVersion"],
            "metrics.k8s.io/v1beta1"
        );
        let mut agg =
            json!({"kind": "APIGroupDiscoveryList", "items": [{"metadata": {"name": "apps"}}]});
        add_to_aggregated(&mut agg);
        let v = &agg["items"][1]["versions"][0];
        assert_eq!(v["resources"][1]["resource"], "pods");
        assert_eq!(v["resources"][1]["scope"], "Namespaced");
        assert_eq!(api_resource_list()["resources"][0]["kind"], "NodeMetrics");
        assert_eq!(api_group()["name"], GROUP);
    }
}
