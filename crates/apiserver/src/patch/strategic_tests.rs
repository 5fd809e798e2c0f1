//! Table tests of strategic merge patch, from the behaviour Kubernetes documents for
//! `kubectl patch` and `kubectl apply`.

use serde_json::{json, Value};

use super::super::schema::Schema;
use super::super::PatchError;
use super::apply;

fn smp(original: Value, patch: Value) -> Result<Value, PatchError> {
    let schema = Schema::for_object(&original);
    apply(&original, &patch, schema.cursor())
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

fn deployment(pod_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}}
    })
}

#[test]
fn containers_merge_by_name() {
    let out = smp(
        pod(json!({"containers": [
            {"name": "a", "image": "a:1"},
            {"name": "b", "image": "b:1"}
        ]})),
        json!({"spec": {"containers": [{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}]}}),
    )
    .expect("patch");
    assert_eq!(
        out["spec"]["containers"],
        json!([
            {"name": "a", "image": "a:1"},
            {"name": "b", "image": "b:2"},
            {"name": "c", "image": "c:1"}
        ])
    );
}

#[test]
fn lists_without_a_strategy_are_replaced() {
    let out = smp(
        pod(json!({"containers": [{"name": "a", "args": ["x", "y"]}], "tolerations": [{"key": "k"}]})),
        json!({"spec": {"containers": [{"name": "a", "args": ["z"]}], "tolerations": [{"key": "j"}]}}),
    )
    .expect("patch");
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["z"]));
    assert_eq!(out["spec"]["tolerations"], json!([{"key": "j"}]));
}

#[test]
fn nested_lists_merge_by_their_own_keys() {
    let out = smp(
        deployment(json!({"containers": [{
            "name": "web", "image": "nginx",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "ports": [{"containerPort": 80}]
        }]})),
        json!({"spec": {"template": {"spec": {"containers": [{
            "name": "web",
            "env": [{"name": "B", "value": "3"}],
            "ports": [{"containerPort": 443}]
        }]}}}}),
    )
    .expect("patch");
    let c = &out["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}])
    );
    // Without $setElementOrder, new items go before the server's (kube-apiserver's order).
    assert_eq!(
        c["ports"],
        json!([{"containerPort": 443}, {"containerPort": 80}])
    );
    assert_eq!(c["image"], "nginx");
}

#[test]
fn null_deletes_and_unmatched_nulls_are_ignored() {
    let out = smp(
        deployment(json!({"containers": []})),
        json!({"metadata": {"labels": {"gone": null}}, "spec": {"replicas": null, "paused": null}}),
    )
    .expect("patch");
    assert!(out["spec"].get("replicas").is_none());
    assert!(out["spec"].get("paused").is_none());
    assert!(out["metadata"].get("labels").is_none() || out["metadata"]["labels"] == json!({}));
}

#[test]
fn patch_delete_directive_in_a_list_item_removes_it() {
    let out = smp(
        pod(json!({"containers": [{"name": "a"}, {"name": "b"}]})),
        json!({"spec": {"containers": [{"$patch": "delete", "name": "a"}]}}),
    )
    .expect("patch");
    assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
}

#[test]
fn patch_replace_directive_in_a_list_replaces_it() {
    let out = smp(
        pod(json!({"containers": [{"name": "a", "image": "x"}, {"name": "b"}]})),
        json!({"spec": {"containers": [{"name": "c", "image": "y"}, {"$patch": "replace"}]}}),
    )
    .expect("patch");
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "c", "image": "y"}])
    );
}

#[test]
fn patch_directives_in_maps() {
    let out = smp(
        pod(json!({"containers": [], "nodeSelector": {"a": "1", "b": "2"}, "securityContext": {"runAsUser": 1}})),
        json!({"spec": {
            "nodeSelector": {"$patch": "replace", "c": "3"},
            "securityContext": {"$patch": "delete"}
        }}),
    )
    .expect("patch");
    assert_eq!(out["spec"]["nodeSelector"], json!({"c": "3"}));
    assert_eq!(out["spec"]["securityContext"], json!({}));
    let err = smp(pod(json!({})), json!({"spec": {"$patch": "sideways"}})).expect_err("bad");
    assert!(matches!(err, PatchError::Invalid(_)));
}

#[test]
fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "finalizers": ["a", "b"]}});
    let out = smp(obj.clone(), json!({"metadata": {"finalizers": ["b", "c"]}})).expect("patch");
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let out = smp(
        obj,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    )
    .expect("patch");
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
}

#[test]
fn retain_keys_clears_the_other_members_of_a_union() {
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
        "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    let out = smp(
        d.clone(),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
    )
    .expect("patch");
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    let err = smp(
        d,
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}}),
    )
    .expect_err("key outside retainKeys");
    assert!(matches!(err, PatchError::Unprocessable(_)));
}

#[test]
fn volumes_retain_keys_per_item() {
    let out = smp(
        pod(json!({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]})),
        json!({"spec": {"volumes": [{"$retainKeys": ["configMap", "name"], "name": "v", "configMap": {"name": "cm"}}]}}),
    )
    .expect("patch");
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name": "v", "configMap": {"name": "cm"}}, {"name": "w", "emptyDir": {}}])
    );
}

#[test]
fn set_element_order_reorders_and_keeps_server_only_items() {
    let out = smp(
        pod(json!({"containers": [{"name": "a"}, {"name": "sidecar"}, {"name": "b"}]})),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "x"}]
        }}),
    )
    .expect("patch");
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    // b and a follow the patch's order; sidecar, owned by the server, keeps its place
    // relative to its live neighbours where that does not contradict the patch.
    assert_eq!(names.len(), 3);
    let pos = |n: &str| names.iter().position(|x| *x == n).expect("present");
    assert!(pos("b") < pos("a"));
    assert_eq!(out["spec"]["containers"][pos("a")]["image"], "x");
}

/// `kubectl apply` after editing the manifest: a container was added and an env var removed.
/// The patch is exactly what kubectl's three-way merge sends.
#[test]
fn kubectl_apply_container_added_env_var_removed() {
    let live = deployment(json!({"containers": [{
        "name": "web", "image": "nginx:1.25",
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "terminationMessagePath": "/dev/termination-log"
    }], "dnsPolicy": "ClusterFirst"}));
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "side"}],
            "containers": [
                {"$setElementOrder/env": [{"name": "A"}], "env": [{"$patch": "delete", "name": "B"}], "name": "web"},
                {"image": "busybox", "name": "side"}
            ]
        }}}
    });
    let out = smp(live, patch).expect("patch");
    let spec = &out["spec"]["template"]["spec"];
    assert_eq!(
        spec["containers"],
        json!([
            {"name": "web", "image": "nginx:1.25", "env": [{"name": "A", "value": "1"}],
             "terminationMessagePath": "/dev/termination-log"},
            {"name": "side", "image": "busybox"}
        ])
    );
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{}"
    );
    assert_eq!(out["spec"]["replicas"], 1);
}

#[test]
fn merge_key_missing_or_lists_of_lists_are_unprocessable() {
    let err = smp(
        pod(json!({"containers": [{"name": "a"}]})),
        json!({"spec": {"containers": [{"image": "x"}]}}),
    )
    .expect_err("no key");
    assert!(matches!(err, PatchError::Unprocessable(m) if m.contains("merge key: name")));
    let err = smp(
        pod(json!({"containers": [{"name": "a"}]})),
        json!({"spec": {"containers": [["a"]]}}),
    )
    .expect_err("list of lists");
    assert!(matches!(err, PatchError::Unprocessable(_)));
}

#[test]
fn custom_resources_patch_like_merge_patch() {
    let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"items": [{"name": "a"}, {"name": "b"}], "size": 1}});
    let out = smp(
        cr,
        json!({"spec": {"items": [{"name": "c"}], "size": null, "color": "red"}}),
    )
    .expect("patch");
    assert_eq!(
        out["spec"],
        json!({"items": [{"name": "c"}], "color": "red"})
    );
}

#[test]
fn service_ports_merge_by_port_and_owner_references_by_uid() {
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "s", "ownerReferences": [{"uid": "1", "name": "a"}]},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
    let out = smp(
        svc,
        json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]},
               "spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443}]}}),
    )
    .expect("patch");
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443}])
    );
    assert_eq!(
        out["metadata"]["ownerReferences"],
        json!([{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}])
    );
}
