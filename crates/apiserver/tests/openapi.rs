//! The OpenAPI routes as a client sees them: the v3 index and its documents, caching, the
//! v2 document, and the properties kubectl explain and apply depend on.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use api::Catalogue;
use axum::body::Body;
use axum::Router;
use http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .to_str()
            .expect("ascii header")
    }
}

fn router() -> Router {
    flotilla_apiserver::openapi::router_for(Arc::new(Catalogue::builtin()))
}

async fn get(router: &Router, uri: &str, headers: &[(header::HeaderName, &str)]) -> Reply {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("router answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// Every `$ref` in `value`, recursively.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(s) = v.as_str() {
                        out.push(s);
                    }
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn assert_refs_resolve(doc: &Value, prefix: &str, definitions: &Value) {
    let mut found = Vec::new();
    refs(doc, &mut found);
    assert!(!found.is_empty(), "a document without references");
    for r in found {
        let name = r
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("reference {r} outside {prefix}"));
        assert!(
            definitions.get(name).is_some(),
            "reference {r} does not resolve"
        );
    }
}

fn doc_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

#[tokio::test]
async fn index_lists_every_group_version_by_hash() {
    let router = router();
    let catalogue = Catalogue::builtin();
    let index = get(&router, "/openapi/v3", &[]).await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(index.header(header::CONTENT_TYPE), "application/json");
    let index = index.json();
    let listed: BTreeSet<String> = index["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    let served: BTreeSet<String> = catalogue
        .iter()
        .map(|r| doc_path(r.group, r.version))
        .collect();
    assert_eq!(listed, served);

    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .expect("url");
    let hash = url
        .strip_prefix("/openapi/v3/apis/apps/v1?hash=")
        .expect("hash url");
    assert_eq!(hash.len(), 128);
    let doc = get(&router, url, &[(header::ACCEPT, "application/json")]).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.header(header::ETAG), format!("\"{hash}\""));
    assert_eq!(doc.header(header::CACHE_CONTROL), "public, immutable");
    assert!(doc.header(header::EXPIRES).ends_with(" GMT"));

    // Without a hash the document is the same but must be revalidated.
    let plain = get(&router, "/openapi/v3/apis/apps/v1", &[]).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.body, doc.body);
    assert_eq!(plain.header(header::CACHE_CONTROL), "no-cache, private");
}

#[tokio::test]
async fn etag_revalidation_and_stale_hashes() {
    let router = router();
    let first = get(&router, "/openapi/v3/api/v1", &[]).await;
    let etag = first.header(header::ETAG).to_string();
    let again = get(
        &router,
        "/openapi/v3/api/v1",
        &[(header::IF_NONE_MATCH, &etag)],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.header(header::ETAG), etag);

    let other = get(
        &router,
        "/openapi/v3/api/v1",
        &[(header::IF_NONE_MATCH, "\"0\"")],
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);

    let index = get(&router, "/openapi/v3", &[]).await;
    let index_etag = index.header(header::ETAG).to_string();
    let index_again = get(
        &router,
        "/openapi/v3",
        &[(header::IF_NONE_MATCH, &index_etag)],
    )
    .await;
    assert_eq!(index_again.status, StatusCode::NOT_MODIFIED);

    let stale = get(&router, "/openapi/v3/api/v1?hash=0123", &[]).await;
    assert_eq!(stale.status, StatusCode::MOVED_PERMANENTLY);
    let hash = etag.trim_matches('"');
    assert_eq!(
        stale.header(header::LOCATION),
        format!("/openapi/v3/api/v1?hash={hash}")
    );
}

#[tokio::test]
async fn unknown_documents_are_a_not_found_status() {
    let router = router();
    for uri in ["/openapi/v3/apis/nope.example.com/v1", "/openapi/v3/api/v2"] {
        let reply = get(&router, uri, &[]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        let status = reply.json();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
    }
    let refused = get(
        &router,
        "/openapi/v3/api/v1",
        &[(
            header::ACCEPT,
            "application/com.github.proto-openapi.spec.v3@v1.0+protobuf",
        )],
    )
    .await;
    assert_eq!(refused.status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn every_document_is_self_contained_and_marks_every_kind() {
    let router = router();
    let catalogue = Catalogue::builtin();
    let index = get(&router, "/openapi/v3", &[]).await.json();
    for (path, entry) in index["paths"].as_object().expect("paths") {
        let url = entry["serverRelativeURL"].as_str().expect("url");
        let doc = get(&router, url, &[]).await.json();
        assert_eq!(doc["openapi"], "3.0.0");
        let schemas = &doc["components"]["schemas"];
        assert_refs_resolve(&doc, "#/components/schemas/", schemas);

        // Every served kind and list kind carries its group/version/kind.
        for r in catalogue
            .iter()
            .filter(|r| doc_path(r.group, r.version) == *path)
        {
            for kind in [r.kind.to_string(), r.list_kind()] {
                let marked = schemas.as_object().expect("schemas").values().any(|s| {
                    s["x-kubernetes-group-version-kind"]
                        .as_array()
                        .is_some_and(|gvks| {
                            gvks.iter().any(|g| {
                                g["group"] == r.group
                                    && g["version"] == r.version
                                    && g["kind"] == kind.as_str()
                            })
                        })
                });
                assert!(marked, "{path}: no schema marked {kind}");
            }
        }

        // Every patch operation is usable by kubectl apply.
        for (p, item) in doc["paths"].as_object().expect("paths") {
            // Connect operations (a proxied PATCH) carry no patch body.
            let Some(patch) = item
                .get("patch")
                .filter(|op| op["x-kubernetes-action"] == "patch")
            else {
                continue;
            };
            let content = patch["requestBody"]["content"]
                .as_object()
                .expect("content");
            for t in [
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
            ] {
                assert!(content.contains_key(t), "{p}: patch lacks {t}");
            }
            let names: Vec<&str> = patch["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            for n in ["fieldValidation", "fieldManager", "dryRun", "force"] {
                assert!(names.contains(&n), "{p}: patch lacks {n}");
            }
            assert!(patch["x-kubernetes-group-version-kind"]["kind"].is_string());
            assert_eq!(patch["x-kubernetes-action"], "patch");
        }
    }
}

#[tokio::test]
async fn deployment_document_has_every_verb_explain_and_apply_need() {
    let router = router();
    let doc = get(&router, "/openapi/v3/apis/apps/v1", &[]).await.json();
    let paths = &doc["paths"];
    let item = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let expect = [
        ("get", "readAppsV1NamespacedDeployment", "get"),
        ("put", "replaceAppsV1NamespacedDeployment", "put"),
        ("patch", "patchAppsV1NamespacedDeployment", "patch"),
        ("delete", "deleteAppsV1NamespacedDeployment", "delete"),
    ];
    for (method, id, action) in expect {
        assert_eq!(item[method]["operationId"], id);
        assert_eq!(item[method]["x-kubernetes-action"], action);
        assert_eq!(
            item[method]["x-kubernetes-group-version-kind"],
            serde_json::json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
    }
    let collection = &paths["/apis/apps/v1/namespaces/{namespace}/deployments"];
    assert_eq!(collection["get"]["x-kubernetes-action"], "list");
    assert_eq!(collection["post"]["x-kubernetes-action"], "post");
    assert_eq!(
        collection["delete"]["x-kubernetes-action"],
        "deletecollection"
    );
    assert_eq!(
        paths["/apis/apps/v1/deployments"]["get"]["operationId"],
        "listAppsV1DeploymentForAllNamespaces"
    );
    assert_eq!(
        paths["/apis/apps/v1/watch/namespaces/{namespace}/deployments/{name}"]["get"]
            ["x-kubernetes-action"],
        "watch"
    );
    let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"]["group"],
        "autoscaling"
    );
    assert!(doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());

    // What `kubectl explain deployment.spec.replicas` walks.
    let schemas = &doc["components"]["schemas"];
    let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
    let spec_ref = deployment["properties"]["spec"]["allOf"][0]["$ref"]
        .as_str()
        .expect("spec ref");
    let spec = &schemas[spec_ref.trim_start_matches("#/components/schemas/")];
    assert_eq!(spec["properties"]["replicas"]["type"], "integer");
    assert_eq!(spec["properties"]["replicas"]["format"], "int32");
}

#[tokio::test]
async fn core_document_has_pod_subresources() {
    let router = router();
    let doc = get(&router, "/openapi/v3/api/v1", &[]).await.json();
    let paths = &doc["paths"];
    let log = &paths["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"];
    assert_eq!(log["operationId"], "readCoreV1NamespacedPodLog");
    let exec = &paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"];
    assert_eq!(exec["get"]["x-kubernetes-action"], "connect");
    assert_eq!(
        exec["post"]["operationId"],
        "connectCoreV1PostNamespacedPodExec"
    );
    let eviction = &paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
    assert_eq!(
        eviction["x-kubernetes-group-version-kind"]["kind"],
        "Eviction"
    );
    let status = &paths["/api/v1/namespaces/{namespace}/pods/{name}/status"];
    assert!(status["patch"].is_object());
    // Cluster-scoped resources have no namespace segment and no all-namespaces list.
    assert!(paths["/api/v1/nodes/{name}"]["get"].is_object());
    assert!(paths["/api/v1/namespaces/{namespace}/nodes"].is_null());
}

#[tokio::test]
async fn swagger_document_covers_every_group_version() {
    let router = router();
    let reply = get(
        &router,
        "/openapi/v2",
        &[(header::ACCEPT, "application/json")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get(header::ETAG).is_some());
    let doc = reply.json();
    assert_eq!(doc["swagger"], "2.0");
    let definitions = &doc["definitions"];
    assert_refs_resolve(&doc, "#/definitions/", definitions);
    assert!(
        doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
            .is_object()
    );
    assert!(
        doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"]["parameters"][0]["in"]
            == "body"
    );
    let gvks = definitions["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"]
        ["x-kubernetes-group-version-kind"]
        .as_array()
        .expect("gvks");
    assert!(
        gvks.len() > 1,
        "DeleteOptions is registered in every group-version"
    );
}

#[tokio::test]
async fn schemas_carry_the_patch_metadata_kubectl_merges_with() {
    let router = router();
    for doc in ["/openapi/v3/api/v1", "/openapi/v3/apis/apps/v1"] {
        let doc = get(&router, doc, &[]).await.json();
        let containers =
            &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(
            containers["x-kubernetes-list-map-keys"],
            serde_json::json!(["name"])
        );
    }
    let v2 = get(&router, "/openapi/v2", &[]).await.json();
    let ports = &v2["definitions"]["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
}

#[tokio::test]
async fn swagger_protobuf_for_old_kubectl() {
    let router = router();
    let json = get(&router, "/openapi/v2", &[]).await;
    let proto = get(
        &router,
        "/openapi/v2",
        &[(
            header::ACCEPT,
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )],
    )
    .await;
    assert_eq!(proto.status, StatusCode::OK);
    assert_eq!(
        proto.header(header::CONTENT_TYPE),
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    // Both encodings of one document share its ETag, as in Kubernetes.
    assert_eq!(proto.header(header::ETAG), json.header(header::ETAG));
    assert!(proto.body.len() > 100_000);
    // Field 1 of the gnostic Document is the swagger version string.
    assert_eq!(&proto.body[..5], b"\x0a\x032.0");
    let etag = proto.header(header::ETAG).to_string();
    let again = get(
        &router,
        "/openapi/v2",
        &[
            (
                header::ACCEPT,
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            ),
            (header::IF_NONE_MATCH, &etag),
        ],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    let refused = get(&router, "/openapi/v2", &[(header::ACCEPT, "text/html")]).await;
    assert_eq!(refused.status, StatusCode::NOT_ACCEPTABLE);
}

/// Build cost and size of every document, cold: what the first kubectl pays.
#[tokio::test]
async fn documents_build_quickly() {
    let router = router();
    let started = Instant::now();
    let index = get(&router, "/openapi/v3", &[]).await;
    let all_v3 = started.elapsed();
    let mut total = 0;
    for entry in index.json()["paths"].as_object().expect("paths").values() {
        let url = entry["serverRelativeURL"].as_str().expect("url");
        total += get(&router, url, &[]).await.body.len();
    }
    let started = Instant::now();
    let v2 = get(&router, "/openapi/v2", &[]).await;
    let v2_time = started.elapsed();
    eprintln!(
        "openapi: all v3 documents built in {all_v3:?} ({total} bytes); v2 in {v2_time:?} ({} bytes)",
        v2.body.len()
    );
    // Generous bounds for unoptimised builds on a loaded two-core machine.
    assert!(all_v3.as_secs() < 20, "v3 documents took {all_v3:?}");
    assert!(v2_time.as_secs() < 20, "v2 document took {v2_time:?}");
}
