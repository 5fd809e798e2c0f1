use api::ResourceInfo;
use serde_json::{json, Value};

use super::super::managed_fields::{read, record_update};
use super::super::{ApplyOptions, PatchError};
use super::server_side_apply;

fn deployments() -> ResourceInfo {
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        verbs: &[],
        subresources: &[],
    }
}

fn config(replicas: Option<u32>, image: &str, env: &[(&str, &str)]) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    let mut c = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, "env": env}]}}
        }
    });
    if let Some(r) = replicas {
        c["spec"]["replicas"] = json!(r);
    }
    c
}

fn apply(
    live: Option<&Value>,
    cfg: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, PatchError> {
    server_side_apply(
        live,
        cfg,
        &ApplyOptions {
            field_manager: manager,
            force,
        },
        &deployments(),
    )
}

#[test]
fn apply_creates_and_records_an_apply_entry() {
    let out = apply(
        None,
        &config(Some(2), "nginx:1", &[("A", "1")]),
        "kubectl",
        false,
    )
    .expect("create");
    assert_eq!(out["spec"]["replicas"], 2);
    assert_eq!(out["kind"], "Deployment");
    let mf = &out["metadata"]["managedFields"];
    assert_eq!(mf.as_array().map(Vec::len), Some(1));
    assert_eq!(mf[0]["manager"], "kubectl");
    assert_eq!(mf[0]["operation"], "Apply");
    let c = &mf[0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
        ["k:{\"name\":\"web\"}"];
    assert_eq!(c["."], json!({}));
    assert_eq!(c["f:env"]["k:{\"name\":\"A\"}"]["f:value"], json!({}));
}

#[test]
fn reapplying_unchanged_changes_nothing() {
    let cfg = config(Some(2), "nginx:1", &[("A", "1")]);
    let first = apply(None, &cfg, "kubectl", false).expect("create");
    let second = apply(Some(&first), &cfg, "kubectl", false).expect("re-apply");
    assert_eq!(first, second);
}

#[test]
fn fields_left_out_of_the_next_apply_are_removed() {
    let first = apply(
        None,
        &config(Some(2), "nginx:1", &[("A", "1"), ("B", "2")]),
        "kubectl",
        false,
    )
    .expect("create");
    let out = apply(
        Some(&first),
        &config(None, "nginx:1", &[("A", "1")]),
        "kubectl",
        false,
    )
    .expect("apply");
    assert!(out["spec"].get("replicas").is_none());
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}])
    );
    let fields = &read(&out).expect("mf")[0].fields;
    assert_eq!(
        fields.to_fields_v1()["f:spec"].get("f:replicas"),
        None,
        "ownership follows the applied configuration"
    );
}

#[test]
fn fields_another_manager_also_owns_survive_removal() {
    let first = apply(None, &config(Some(2), "nginx:1", &[]), "kubectl", false).expect("create");
    // Another manager writes the same replicas value: both own it.
    let shared = apply(
        Some(&first),
        &config(Some(2), "nginx:1", &[]),
        "other",
        false,
    )
    .expect("same value is no conflict");
    let out = apply(
        Some(&shared),
        &config(None, "nginx:1", &[]),
        "kubectl",
        false,
    )
    .expect("apply");
    assert_eq!(out["spec"]["replicas"], 2);
}

#[test]
fn conflicting_with_an_update_manager_is_refused_then_forced() {
    let mut created = config(Some(2), "nginx:1", &[]);
    record_update(None, &mut created, "kubectl-client-side-apply", None);
    let cfg = config(Some(5), "nginx:1", &[]);
    let err = apply(Some(&created), &cfg, "kubectl", false).expect_err("conflict");
    let PatchError::Conflicts(conflicts) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].field, ".spec.replicas");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );

    let forced = apply(Some(&created), &cfg, "kubectl", true).expect("force");
    assert_eq!(forced["spec"]["replicas"], 5);
    let es = read(&forced).expect("mf");
    let replicas = [
        super::PathElement::Field("spec".into()),
        super::PathElement::Field("replicas".into()),
    ];
    let csa = es
        .iter()
        .find(|e| e.manager == "kubectl-client-side-apply")
        .expect("still owns the rest");
    assert!(!csa.fields.contains(&replicas));
    let kubectl = es.iter().find(|e| e.manager == "kubectl").expect("applier");
    assert!(kubectl.fields.contains(&replicas));
}

#[test]
fn conflicts_name_keyed_list_items() {
    let first = apply(None, &config(None, "nginx:1", &[]), "a", false).expect("create");
    let err = apply(Some(&first), &config(None, "nginx:2", &[]), "b", false).expect_err("conflict");
    assert!(matches!(&err, PatchError::Conflicts(c)
        if c[0].field == ".spec.template.spec.containers[name=\"web\"].image"
        && c[0].manager == "\"a\""));
}

#[test]
fn apply_rejects_the_wrong_kind_and_a_missing_manager() {
    let mut cfg = config(None, "x", &[]);
    cfg["kind"] = json!("StatefulSet");
    assert!(matches!(
        apply(None, &cfg, "m", false),
        Err(PatchError::Invalid(_))
    ));
    assert!(matches!(
        apply(None, &config(None, "x", &[]), "", false),
        Err(PatchError::Invalid(_))
    ));
}

#[test]
fn applied_managed_fields_are_ignored() {
    let mut cfg = config(Some(1), "x", &[]);
    cfg["metadata"]["managedFields"] = json!([{"manager": "evil"}]);
    let out = apply(None, &cfg, "m", false).expect("create");
    let es = read(&out).expect("mf");
    assert_eq!(es.len(), 1);
    assert_eq!(es[0].manager, "m");
}

#[test]
fn ports_match_live_items_with_a_defaulted_protocol() {
    let mut cfg = config(None, "x", &[]);
    cfg["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    let mut live = apply(None, &cfg, "m", false).expect("create");
    // The server defaulted the protocol.
    live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
    let out = apply(Some(&live), &cfg, "m", false).expect("re-apply");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
}

#[test]
fn the_registry_bookkeeping_after_an_apply_adds_no_update_entry() {
    let first = apply(None, &config(Some(1), "x", &[]), "kubectl", false).expect("create");
    let mut second = apply(Some(&first), &config(Some(4), "x", &[]), "kubectl", false)
        .expect("change a value the manager owns");
    assert_eq!(second["spec"]["replicas"], 4);
    let after_apply = second.clone();
    // The registry records every write as an update by the request's manager.
    record_update(Some(&first), &mut second, "kubectl", None);
    assert_eq!(second, after_apply);
    let es = read(&second).expect("mf");
    assert_eq!(es.len(), 1);
    assert_eq!(es[0].operation, "Apply");
}
