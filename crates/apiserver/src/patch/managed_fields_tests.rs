use serde_json::{json, Value};

use super::*;

fn deployment(replicas: u32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "web", "image": image,
                "ports": [{"containerPort": 80}]}]}}
        }
    })
}

fn entries(obj: &Value) -> Vec<Entry> {
    read(obj).expect("well formed")
}

#[test]
fn create_records_every_field_for_the_manager() {
    let mut obj = deployment(1, "nginx");
    record_update(None, &mut obj, "kubectl-create", None);
    let mf = &obj["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "kubectl-create");
    assert_eq!(mf["operation"], "Update");
    assert_eq!(mf["apiVersion"], "apps/v1");
    assert_eq!(mf["fieldsType"], "FieldsV1");
    assert!(mf["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(mf.get("subresource").is_none());
    let f = &mf["fieldsV1"];
    assert_eq!(f["f:spec"]["f:replicas"], json!({}));
    // Label selectors are atomic: owned whole.
    assert_eq!(f["f:spec"]["f:selector"], json!({}));
    assert_eq!(f["f:metadata"]["f:labels"]["f:app"], json!({}));
    // Identity metadata belongs to nobody.
    assert!(f["f:metadata"].get("f:name").is_none());
    assert!(f.get("f:apiVersion").is_none());
    let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(c["."], json!({}));
    assert_eq!(c["f:image"], json!({}));
    assert_eq!(
        c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["f:containerPort"],
        json!({})
    );
}

#[test]
fn an_update_moves_changed_fields_to_its_manager() {
    let mut old = deployment(1, "nginx");
    record_update(None, &mut old, "creator", None);
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(3);
    record_update(Some(&old), &mut new, "scaler", Some("scale"));
    let es = entries(&new);
    assert_eq!(es.len(), 2);
    let replicas = [
        PathElement::Field("spec".into()),
        PathElement::Field("replicas".into()),
    ];
    let creator = es.iter().find(|e| e.manager == "creator").expect("creator");
    let scaler = es.iter().find(|e| e.manager == "scaler").expect("scaler");
    assert!(!creator.fields.contains(&replicas));
    assert!(scaler.fields.contains(&replicas));
    assert_eq!(scaler.subresource, "scale");
    assert_eq!(scaler.fields.paths().len(), 1);
}

#[test]
fn same_manager_entries_merge_and_a_no_op_keeps_managed_fields_identical() {
    let mut old = deployment(1, "nginx");
    record_update(None, &mut old, "m", None);
    let mut same = old.clone();
    record_update(Some(&old), &mut same, "m", None);
    assert_eq!(same, old);
    let mut new = old.clone();
    new["spec"]["paused"] = json!(true);
    record_update(Some(&old), &mut new, "m", None);
    let es = entries(&new);
    assert_eq!(es.len(), 1);
    assert!(es[0].fields.contains(&[
        PathElement::Field("spec".into()),
        PathElement::Field("paused".into())
    ]));
}

#[test]
fn removed_fields_leave_every_manager() {
    let mut old = deployment(1, "nginx");
    record_update(None, &mut old, "a", None);
    let mut new = old.clone();
    new["metadata"]["labels"] = json!({});
    record_update(Some(&old), &mut new, "b", None);
    let es = entries(&new);
    let a = es.iter().find(|e| e.manager == "a").expect("a");
    assert!(!a.fields.has_prefix(&[
        PathElement::Field("metadata".into()),
        PathElement::Field("labels".into())
    ]));
}

#[test]
fn managed_fields_set_by_the_request_are_kept() {
    let mut old = deployment(1, "nginx");
    record_update(None, &mut old, "a", None);
    let mut new = old.clone();
    new["metadata"]["managedFields"] = json!([{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}
    }]);
    record_update(Some(&old), &mut new, "kubectl", None);
    let es = entries(&new);
    assert_eq!(es.len(), 1);
    assert_eq!(es[0].operation, "Apply");
    // An explicitly empty list resets ownership.
    let mut reset = old.clone();
    reset["metadata"]["managedFields"] = json!([]);
    record_update(Some(&old), &mut reset, "x", None);
    assert!(reset["metadata"].get("managedFields").is_none());
}

#[test]
fn custom_resources_own_lists_atomically() {
    let mut cr = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"items": [1, 2], "size": {"w": 1}}});
    record_update(None, &mut cr, "m", None);
    let f = &cr["metadata"]["managedFields"][0]["fieldsV1"];
    assert_eq!(f["f:spec"]["f:items"], json!({}));
    assert_eq!(f["f:spec"]["f:size"]["f:w"], json!({}));
}

#[test]
fn many_update_managers_fold_into_ancient_changes() {
    let mut obj = deployment(0, "nginx");
    record_update(None, &mut obj, "m0", None);
    for i in 1..=12 {
        let mut next = obj.clone();
        next["spec"]["replicas"] = json!(i);
        next["metadata"]["labels"][format!("l{i}")] = json!("x");
        record_update(Some(&obj), &mut next, &format!("m{i}"), None);
        obj = next;
    }
    let es = entries(&obj);
    assert_eq!(es.len(), MAX_UPDATE_MANAGERS);
    let ancient = es
        .iter()
        .find(|e| e.manager == ANCIENT_CHANGES)
        .expect("folded");
    // The first manager's fields were folded in, not lost.
    assert!(ancient.fields.contains(&[
        PathElement::Field("metadata".into()),
        PathElement::Field("labels".into()),
        PathElement::Field("l1".into())
    ]));
    assert!(es.iter().any(|e| e.manager == "m12"));
}
