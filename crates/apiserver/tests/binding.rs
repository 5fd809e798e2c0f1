//! The binding fast path (pods/binding): what a binding writes, the conflicts it answers,
//! the resourceVersion it produces and the watch event it emits.
#![allow(clippy::unwrap_used)]

mod common;

use common::{pod, Cluster};
use http::StatusCode;
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn binding(pod: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod},
           "target": {"kind": "Node", "name": node}})
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_binding_is_one_write_seen_by_watchers_with_pod_scheduled_true() {
    let c = Cluster::start().await;
    let created = c.post(PODS, &pod("bind-watch")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let before = rv(&created.body);
    let mut watch = c
        .watch(
            &format!(
                "{PODS}?watch=true&fieldSelector=metadata.name=bind-watch&resourceVersion={before}"
            ),
            None,
        )
        .await;
    assert_eq!(watch.status, StatusCode::OK);

    let mut b = binding("bind-watch", "n1");
    b["metadata"]["annotations"] = json!({"example.com/placed-by": "test"});
    let r = c.post(&format!("{PODS}/bind-watch/binding"), &b).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["status"], "Success");

    let ev = watch.next_change().await;
    assert_eq!(ev["type"], "MODIFIED", "{ev}");
    let seen = &ev["object"];
    assert_eq!(seen["spec"]["nodeName"], "n1");
    assert_eq!(
        seen["metadata"]["annotations"]["example.com/placed-by"],
        "test"
    );
    let scheduled: Vec<&Value> = seen["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "PodScheduled")
        .collect();
    assert_eq!(scheduled.len(), 1, "{seen}");
    assert_eq!(scheduled[0]["status"], "True");
    assert!(scheduled[0]["lastTransitionTime"].is_string());
    assert!(rv(seen) > before, "the binding is a new revision");

    // What a GET returns is what the watcher saw, resourceVersion included.
    let got = c.get(&format!("{PODS}/bind-watch")).await.body;
    assert_eq!(rv(&got), rv(seen));
    assert_eq!(got["spec"]["nodeName"], "n1");
    assert_eq!(got["status"]["conditions"], seen["status"]["conditions"]);
}

#[tokio::test]
async fn bindings_that_cannot_apply_are_conflicts_and_change_nothing() {
    let c = Cluster::start().await;
    let created = c.post(PODS, &pod("bind-pre")).await.body;
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();

    let mut wrong_uid = binding("bind-pre", "n1");
    wrong_uid["metadata"]["uid"] = json!("not-the-uid");
    let r = c
        .post(&format!("{PODS}/bind-pre/binding"), &wrong_uid)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    let mut stale = binding("bind-pre", "n1");
    stale["metadata"]["resourceVersion"] = json!((rv(&created) - 1).to_string());
    let r = c.post(&format!("{PODS}/bind-pre/binding"), &stale).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    let other_name = binding("someone-else", "n1");
    let r = c
        .post(&format!("{PODS}/bind-pre/binding"), &other_name)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    let mut not_a_node = binding("bind-pre", "n1");
    not_a_node["target"]["kind"] = json!("Pod");
    let r = c
        .post(&format!("{PODS}/bind-pre/binding"), &not_a_node)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);

    let unchanged = c.get(&format!("{PODS}/bind-pre")).await.body;
    assert_eq!(
        rv(&unchanged),
        rv(&created),
        "refused bindings write nothing"
    );
    assert!(unchanged["spec"].get("nodeName").is_none());

    let mut right = binding("bind-pre", "n1");
    right["metadata"]["uid"] = json!(uid);
    let r = c.post(&format!("{PODS}/bind-pre/binding"), &right).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let again = c
        .post(
            &format!("{PODS}/bind-pre/binding"),
            &binding("bind-pre", "n2"),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(
        again.body["message"],
        "Operation cannot be fulfilled on pods \"bind-pre\": pod bind-pre is already assigned to node \"n1\""
    );

    let mut gated = pod("bind-gated");
    gated["spec"]["schedulingGates"] = json!([{"name": "example.com/hold"}]);
    let r = c.post(PODS, &gated).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = c
        .post(
            &format!("{PODS}/bind-gated/binding"),
            &binding("bind-gated", "n1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
}
