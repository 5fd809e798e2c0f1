//! Discovery documents built from the catalogue: `/api`, `/apis`, `/api/v1`,
//! `/apis/<group>/<version>`, and the aggregated formats (apidiscovery.k8s.io v2 and v2beta1).
//!
//! Field names follow k8s.io/apimachinery's `APIResource`/`APIGroup` and
//! k8s.io/api/apidiscovery/v2's `APIGroupDiscovery`; optional fields are left out when empty,
//! as Go's `omitempty` does, because clients treat a missing list and an empty one alike.

use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::catalogue::{Catalogue, ResourceInfo, Subresource};

/// Which aggregated discovery document the client negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregatedFormat {
    V2,
    V2Beta1,
}

impl AggregatedFormat {
    /// The `apiVersion` of the APIGroupDiscoveryList in this format.
    pub fn api_version(self) -> &'static str {
        match self {
            AggregatedFormat::V2 => "apidiscovery.k8s.io/v2",
            AggregatedFormat::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }
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
pub fn api_group_list(catalogue: &Catalogue) -> Value {
    let groups: Vec<Value> = catalogue
        .groups()
        .into_iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, versions)| group_body(group, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`: an APIResourceList, or None when the
/// group-version is not served.
pub fn api_resource_list(catalogue: &Catalogue, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for info in catalogue
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(api_resource(info));
        for sub in info.subresources {
            resources.push(api_subresource(info, sub));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// `GET /apis/<group>`: one APIGroup, or None.
pub fn api_group(catalogue: &Catalogue, group: &str) -> Option<Value> {
    if group.is_empty() {
        return None;
    }
    let (name, versions) = catalogue.groups().into_iter().find(|(g, _)| *g == group)?;
    let mut body = group_body(name, &versions);
    if let Value::Object(map) = &mut body {
        map.insert("kind".into(), json!("APIGroup"));
        map.insert("apiVersion".into(), json!("v1"));
    }
    Some(body)
}

/// The aggregated APIGroupDiscoveryList: for `/api` (`core == true`: only the core group)
/// or for `/apis` (every other group).
pub fn aggregated(catalogue: &Catalogue, core: bool, format: AggregatedFormat) -> Value {
    let items: Vec<Value> = catalogue
        .groups()
        .into_iter()
        .filter(|(group, _)| group.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = catalogue
                        .iter()
                        .filter(|r| r.group == group && r.version == *version)
                        .map(resource_discovery)
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format.api_version(),
        "metadata": {},
        "items": items,
    })
}

/// The `name`, `versions` and `preferredVersion` shared by APIGroup and APIGroupList
/// entries. The first version listed is the preferred one.
fn group_body(group: &str, versions: &[&str]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = entries.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": entries, "preferredVersion": preferred})
}

/// Sets `key` only when the list is non-empty (Go's `omitempty`).
fn insert_list(map: &mut Map<String, Value>, key: &str, list: &[&str]) {
    if !list.is_empty() {
        map.insert(key.to_string(), json!(list));
    }
}

fn api_resource(info: &ResourceInfo) -> Value {
    let mut map = Map::new();
    map.insert("name".into(), json!(info.plural));
    map.insert("singularName".into(), json!(info.singular));
    map.insert("namespaced".into(), json!(info.namespaced));
    map.insert("kind".into(), json!(info.kind));
    map.insert("verbs".into(), json!(info.verbs));
    insert_list(&mut map, "shortNames", info.short_names);
    insert_list(&mut map, "categories", info.categories);
    if let Some(hash) = storage_version_hash(info) {
        map.insert("storageVersionHash".into(), json!(hash));
    }
    Value::Object(map)
}

/// kube-apiserver's `storageVersionHash`: the first 8 bytes of the SHA-256 of the storage
/// version's "group/version/kind", base64-encoded. Storage-migration tools compare it to
/// notice a changed storage version. Resources that are never stored (bindings, reviews,
/// which only take `create`) have none.
fn storage_version_hash(info: &ResourceInfo) -> Option<String> {
    if !info.verbs.contains(&"get") {
        return None;
    }
    // events.k8s.io Events live in the same storage as core Events, encoded as core/v1.
    let stored = if info.group == "events.k8s.io" && info.kind == "Event" {
        "/v1/Event".to_string()
    } else {
        format!("{}/{}/{}", info.group, info.version, info.kind)
    };
    let digest = Sha256::digest(stored.as_bytes());
    Some(base64::engine::general_purpose::STANDARD.encode(&digest[..8]))
}

/// A subresource's APIResource entry ("pods/status"). Group and version are given only
/// when they differ from the parent's, as kube-apiserver does (deployments/scale names
/// autoscaling/v1, deployments/status names nothing).
fn api_subresource(info: &ResourceInfo, sub: &Subresource) -> Value {
    let mut map = Map::new();
    map.insert(
        "name".into(),
        json!(format!("{}/{}", info.plural, sub.name)),
    );
    map.insert("singularName".into(), json!(""));
    map.insert("namespaced".into(), json!(info.namespaced));
    if !same_group_version(info, sub) {
        map.insert("group".into(), json!(sub.group));
        map.insert("version".into(), json!(sub.version));
    }
    map.insert("kind".into(), json!(sub.kind));
    map.insert("verbs".into(), json!(sub.verbs));
    Value::Object(map)
}

fn same_group_version(info: &ResourceInfo, sub: &Subresource) -> bool {
    info.group == sub.group && info.version == sub.version
}

/// A GroupVersionKind as aggregated discovery's `responseKind`: group and version stay
/// empty when they are the enclosing group-version's.
fn response_kind(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn resource_discovery(info: &ResourceInfo) -> Value {
    let mut map = Map::new();
    map.insert("resource".into(), json!(info.plural));
    map.insert("responseKind".into(), response_kind("", "", info.kind));
    map.insert("scope".into(), json!(info.scope()));
    map.insert("singularResource".into(), json!(info.singular));
    map.insert("verbs".into(), json!(info.verbs));
    insert_list(&mut map, "shortNames", info.short_names);
    insert_list(&mut map, "categories", info.categories);
    if !info.subresources.is_empty() {
        let subs: Vec<Value> = info
            .subresources
            .iter()
            .map(|sub| {
                let kind = if same_group_version(info, sub) {
                    response_kind("", "", sub.kind)
                } else {
                    response_kind(sub.group, sub.version, sub.kind)
                };
                json!({"subresource": sub.name, "responseKind": kind, "verbs": sub.verbs})
            })
            .collect();
        map.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(list: &'a Value, key: &str, name: &str) -> &'a Value {
        list.as_array()
            .expect("array")
            .iter()
            .find(|v| v[key] == name)
            .unwrap_or_else(|| panic!("{name} not found"))
    }

    #[test]
    fn legacy_group_list_and_group() {
        let cat = Catalogue::builtin();
        let list = api_group_list(&cat);
        assert_eq!(list["kind"], "APIGroupList");
        let groups = list["groups"].as_array().expect("groups");
        assert!(
            groups.iter().all(|g| g["name"] != ""),
            "core is not in /apis"
        );
        let apps = find(&list["groups"], "name", "apps");
        assert_eq!(
            apps,
            &json!({
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
            })
        );
        let group = api_group(&cat, "batch").expect("batch");
        assert_eq!(group["kind"], "APIGroup");
        assert_eq!(group["preferredVersion"]["groupVersion"], "batch/v1");
        assert!(api_group(&cat, "nope.example.com").is_none());
        assert!(api_group(&cat, "").is_none());
    }

    #[test]
    fn legacy_resource_list_for_core_and_apps() {
        let cat = Catalogue::builtin();
        let core = api_resource_list(&cat, "", "v1").expect("core");
        assert_eq!(core["groupVersion"], "v1");
        let pods = find(&core["resources"], "name", "pods");
        assert_eq!(
            pods,
            &json!({
                "name": "pods",
                "singularName": "pod",
                "namespaced": true,
                "kind": "Pod",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": ["po"],
                "categories": ["all"],
                "storageVersionHash": "xPOwRZ+Yhw8=",
            })
        );
        let bindings = find(&core["resources"], "name", "bindings");
        assert!(bindings.get("storageVersionHash").is_none());
        let eviction = find(&core["resources"], "name", "pods/eviction");
        assert_eq!(eviction["group"], "policy");
        assert_eq!(eviction["kind"], "Eviction");
        let status = find(&core["resources"], "name", "pods/status");
        assert!(status.get("group").is_none());
        assert_eq!(status["kind"], "Pod");
        // Secrets have neither short names nor categories: the keys are absent.
        let secrets = find(&core["resources"], "name", "secrets");
        assert!(secrets.get("shortNames").is_none() && secrets.get("categories").is_none());

        let apps = api_resource_list(&cat, "apps", "v1").expect("apps");
        assert_eq!(apps["groupVersion"], "apps/v1");
        let scale = find(&apps["resources"], "name", "deployments/scale");
        assert_eq!(
            scale,
            &json!({
                "name": "deployments/scale",
                "singularName": "",
                "namespaced": true,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            })
        );
        assert!(api_resource_list(&cat, "apps", "v1beta1").is_none());
        let deploy = find(&apps["resources"], "name", "deployments");
        assert_eq!(deploy["storageVersionHash"], "8aSe+NMegvE=");
        // Both Event APIs share core/v1 storage, hence the hash.
        let events = api_resource_list(&cat, "events.k8s.io", "v1").expect("events");
        assert_eq!(
            find(&events["resources"], "name", "events")["storageVersionHash"],
            find(&core["resources"], "name", "events")["storageVersionHash"]
        );
    }

    #[test]
    fn aggregated_apis_has_deployments_with_scale() {
        let cat = Catalogue::builtin();
        let doc = aggregated(&cat, false, AggregatedFormat::V2);
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = doc["items"].as_array().expect("items");
        assert!(items.iter().all(|g| g["metadata"]["name"] != ""));
        let apps = items
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .expect("apps");
        let v1 = &apps["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let deploy = find(&v1["resources"], "resource", "deployments");
        assert_eq!(
            deploy,
            &json!({
                "resource": "deployments",
                "responseKind": {"group": "", "version": "", "kind": "Deployment"},
                "scope": "Namespaced",
                "singularResource": "deployment",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": ["deploy"],
                "categories": ["all"],
                "subresources": [
                    {"subresource": "scale",
                     "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                     "verbs": ["get", "patch", "update"]},
                    {"subresource": "status",
                     "responseKind": {"group": "", "version": "", "kind": "Deployment"},
                     "verbs": ["get", "patch", "update"]},
                ],
            })
        );
    }

    #[test]
    fn aggregated_api_is_the_core_group_only() {
        let cat = Catalogue::builtin();
        let doc = aggregated(&cat, true, AggregatedFormat::V2Beta1);
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let items = doc["items"].as_array().expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"], json!({"name": ""}));
        let resources = &items[0]["versions"][0]["resources"];
        let pods = find(resources, "resource", "pods");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["scope"], "Namespaced");
        let nodes = find(resources, "resource", "nodes");
        assert_eq!(nodes["scope"], "Cluster");
        assert!(nodes.get("categories").is_none());
        let token = find(
            &find(resources, "resource", "serviceaccounts")["subresources"],
            "subresource",
            "token",
        );
        assert_eq!(
            token["responseKind"],
            json!({"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"})
        );
        // v2 and v2beta1 differ only in apiVersion.
        let mut v2 = aggregated(&cat, true, AggregatedFormat::V2);
        v2["apiVersion"] = doc["apiVersion"].clone();
        assert_eq!(v2, doc);
    }

    #[test]
    fn every_resource_of_the_catalogue_is_discoverable() {
        let cat = Catalogue::builtin();
        let core = aggregated(&cat, true, AggregatedFormat::V2);
        let named = aggregated(&cat, false, AggregatedFormat::V2);
        let count = |doc: &Value| -> usize {
            doc["items"]
                .as_array()
                .expect("items")
                .iter()
                .flat_map(|g| g["versions"].as_array().expect("versions"))
                .map(|v| v["resources"].as_array().expect("resources").len())
                .sum()
        };
        assert_eq!(count(&core) + count(&named), cat.iter().count());
    }
}
