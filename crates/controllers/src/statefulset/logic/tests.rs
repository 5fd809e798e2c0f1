#![allow(clippy::unwrap_used)]

use super::*;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

fn now() -> jiff::Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

fn ago(secs: i64) -> Time {
    Time(now() - jiff::SignedDuration::from_secs(secs))
}

fn set_from(extra: Value) -> StatefulSet {
    let mut v = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid", "generation": 2},
        "spec": {
            "replicas": 3,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "img:1"}]}
            },
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "podManagementPolicy": "OrderedReady",
        }
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn set() -> StatefulSet {
    set_from(json!({}))
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn revs() -> Revisions {
    let s = set();
    let mut old = s.spec.clone().unwrap().template;
    old.spec.as_mut().unwrap().containers[0].image = Some("img:0".into());
    Revisions {
        current: "web-old".into(),
        current_template: old,
        update: "web-new".into(),
        update_template: s.spec.unwrap().template,
    }
}

/// A pod of `web` at `ordinal` and revision, `state` one of "pending", "running" (not
/// ready), "ready" (ready for 60 s), "fresh" (ready 1 s ago), "failed", "succeeded".
fn pod(ordinal: i32, revision: &str, state: &str) -> Pod {
    let s = set();
    let mut p = new_pod(&s, &s.spec.clone().unwrap().template, ordinal, revision);
    p.metadata.uid = Some(format!("pod-uid-{ordinal}"));
    let (phase, ready_since) = match state {
        "pending" => ("Pending", None),
        "running" => ("Running", None),
        "ready" => ("Running", Some(60)),
        "fresh" => ("Running", Some(1)),
        "failed" => ("Failed", None),
        "succeeded" => ("Succeeded", None),
        other => panic!("{other}"),
    };
    p.status = Some(PodStatus {
        phase: Some(phase.into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready_since.is_some() {
                "True"
            } else {
                "False"
            }
            .into(),
            last_transition_time: ready_since.map(ago),
            ..Default::default()
        }]),
        ..Default::default()
    });
    p
}

fn terminating(mut p: Pod) -> Pod {
    p.metadata.deletion_timestamp = Some(ago(1));
    p
}

/// The plan's steps in a short form: "create web-1@web-new", "delete web-2 (ScaleDown)".
fn summary(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| match s {
            Step::CreatePod { pod, claims } => {
                let mut out = format!("create {}@{}", pod.name_any(), pod_revision(pod).unwrap());
                for c in claims {
                    out.push_str(&format!(" +{}", c.name_any()));
                }
                out
            }
            Step::CreateClaims { pod, claims } => format!(
                "claims {pod}: {}",
                claims
                    .iter()
                    .map(|c| c.name_any())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Step::DeletePod { name, reason } => format!("delete {name} ({reason:?})"),
            Step::FixIdentity { name, .. } => format!("identity {name}"),
            Step::SetClaimOwners { claim, owners, .. } => format!(
                "owners {claim}: {}",
                owners
                    .iter()
                    .map(|o| o.kind.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        })
        .collect()
}

fn plan_of(s: &StatefulSet, pods: &[Pod]) -> Plan {
    plan(s, pods, &[], &revs(), now())
}

#[test]
fn names_and_ordinals() {
    assert_eq!(pod_name("web", 3), "web-3");
    assert_eq!(parent_and_ordinal("web-3"), Some(("web", 3)));
    assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
    assert_eq!(parent_and_ordinal("web"), None);
    assert_eq!(parent_and_ordinal("web-"), None);
    assert_eq!(parent_and_ordinal("web-x1"), None);
    assert_eq!(parent_and_ordinal("web-+1"), None);
    assert_eq!(parent_and_ordinal("web-99999999999"), None);
    let s = set();
    assert_eq!(ordinal_of(&s, &pod(2, "r", "ready")), Some(2));
    let mut other = pod(2, "r", "ready");
    other.metadata.name = Some("webby-2".into());
    assert_eq!(ordinal_of(&s, &other), None);
    assert!(!is_member(&s, &other));
    assert_eq!(claim_name("www", "web", 0), "www-web-0");
}

#[test]
fn pods_carry_a_stable_identity() {
    let s = set_from(json!({"spec": {"template": {"spec": {
        "volumes": [{"name": "www", "emptyDir": {}}, {"name": "cfg", "emptyDir": {}}]
    }}, "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}
    }}]}}));
    let p = new_pod(&s, &s.spec.clone().unwrap().template, 1, "web-abc");
    assert_eq!(p.metadata.name.as_deref(), Some("web-1"));
    assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
    let labels = p.metadata.labels.clone().unwrap();
    assert_eq!(labels["app"], "web");
    assert_eq!(labels[POD_NAME_LABEL], "web-1");
    assert_eq!(labels[POD_INDEX_LABEL], "1");
    assert_eq!(labels[CONTROLLER_REVISION_HASH], "web-abc");
    let spec = p.spec.clone().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-1"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    // The claim replaces the template's volume of the same name; others stay.
    let vols = spec.volumes.unwrap();
    assert_eq!(vols.len(), 2);
    assert_eq!(vols[0].name, "www");
    assert_eq!(
        vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
        "www-web-1"
    );
    assert!(vols[0].empty_dir.is_none());
    assert_eq!(vols[1].name, "cfg");
    let owner = &p.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("StatefulSet", "set-uid")
    );
    assert_eq!(owner.controller, Some(true));
    assert!(identity_matches(&s, &pod(1, "r", "ready"), 1));
    let mut lost = pod(1, "r", "ready");
    lost.metadata
        .labels
        .as_mut()
        .unwrap()
        .remove(POD_NAME_LABEL);
    assert!(!identity_matches(&s, &lost, 1));
}

#[test]
fn claims_are_named_labelled_and_owned_by_policy() {
    let s = set_from(json!({"spec": {"volumeClaimTemplates": [{
        "metadata": {"name": "data", "labels": {"tier": "db"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }]}}));
    let claims = claims_for(&s, 2);
    assert_eq!(claims.len(), 1);
    let (volume, c) = &claims[0];
    assert_eq!(volume, "data");
    assert_eq!(c.metadata.name.as_deref(), Some("data-web-2"));
    assert_eq!(c.metadata.namespace.as_deref(), Some("ns"));
    let labels = c.metadata.labels.clone().unwrap();
    assert_eq!(
        (labels["tier"].as_str(), labels["app"].as_str()),
        ("db", "web")
    );
    // Retain by default: nobody owns the claim, so it outlives pods and the set.
    assert_eq!(c.metadata.owner_references, None);
    assert!(c.spec.is_some());

    let mut deleting = s.clone();
    deleting
        .spec
        .as_mut()
        .unwrap()
        .persistent_volume_claim_retention_policy = Some(
        serde_json::from_value(json!({"whenDeleted": "Delete", "whenScaled": "Retain"})).unwrap(),
    );
    let (_, c) = &claims_for(&deleting, 0)[0];
    let refs = c.metadata.owner_references.clone().unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].kind.as_str(), refs[0].uid.as_str()),
        ("StatefulSet", "set-uid")
    );
    assert_eq!(refs[0].controller, None);
}

fn with_policy(deleted: &str, scaled: &str) -> StatefulSet {
    set_from(json!({"spec": {
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": deleted, "whenScaled": scaled},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]
    }}))
}

#[test]
fn retention_policy_decides_claim_owners() {
    let p = pod(1, "r", "ready");
    let bare = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data-web-1".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let kinds = |refs: Option<Vec<OwnerReference>>| {
        refs.map(|r| r.into_iter().map(|o| o.kind).collect::<Vec<_>>())
    };
    // Retain/Retain: nothing to own; an existing owner is removed.
    let s = with_policy("Retain", "Retain");
    assert_eq!(desired_claim_owners(&s, &bare, &p, false), None);
    let mut owned = bare.clone();
    owned.metadata.owner_references = Some(vec![owner_ref(&s)]);
    assert_eq!(
        kinds(desired_claim_owners(&s, &owned, &p, true)),
        Some(vec![])
    );
    // whenDeleted Delete: the set owns it, scaled down or not.
    let s = with_policy("Delete", "Retain");
    assert_eq!(
        kinds(desired_claim_owners(&s, &bare, &p, false)),
        Some(vec!["StatefulSet".into()])
    );
    assert_eq!(desired_claim_owners(&s, &owned, &p, true), None);
    // whenScaled Delete: the pod owns it once scaled down.
    let s = with_policy("Retain", "Delete");
    assert_eq!(desired_claim_owners(&s, &bare, &p, false), None);
    assert_eq!(
        kinds(desired_claim_owners(&s, &bare, &p, true)),
        Some(vec!["Pod".into()])
    );
    // Both: the set in range, the pod instead once scaled down.
    let s = with_policy("Delete", "Delete");
    assert_eq!(
        kinds(desired_claim_owners(&s, &bare, &p, false)),
        Some(vec!["StatefulSet".into()])
    );
    let by_set = PersistentVolumeClaim {
        metadata: ObjectMeta {
            owner_references: Some(vec![owner_ref(&s)]),
            ..bare.metadata.clone()
        },
        ..Default::default()
    };
    assert_eq!(
        kinds(desired_claim_owners(&s, &by_set, &p, true)),
        Some(vec!["Pod".into()])
    );
    // A claim still owned by an earlier pod of that name is stale; a deleted one too.
    let mut stale = bare.clone();
    stale.metadata.owner_references = Some(vec![owner_ref(&p)]);
    assert!(claim_is_stale(&stale, "web-1"));
    assert!(!claim_is_stale(&stale, "web-2"));
    assert!(!claim_is_stale(&bare, "web-1"));
    let mut going = bare;
    going.metadata.deletion_timestamp = Some(ago(1));
    assert!(claim_is_stale(&going, "web-1"));
}

#[test]
fn ordered_ready_creates_one_pod_at_a_time() {
    let s = set();
    let p = plan_of(&s, &[]);
    assert_eq!(summary(&p), ["create web-0@web-new"]);
    assert!(p.monotonic);
    // web-0 exists but is not Ready: nothing more.
    let p = plan_of(&s, &[pod(0, "web-new", "running")]);
    assert!(p.steps.is_empty());
    assert!(p.waiting.unwrap().contains("web-0"));
    let p = plan_of(&s, &[pod(0, "web-new", "pending")]);
    assert!(p.steps.is_empty());
    // Ready: the next one.
    let p = plan_of(&s, &[pod(0, "web-new", "ready")]);
    assert_eq!(summary(&p), ["create web-1@web-new"]);
    // A gap below is filled first.
    let p = plan_of(&s, &[pod(1, "web-new", "ready")]);
    assert_eq!(summary(&p), ["create web-0@web-new"]);
    // All there and healthy: nothing to do.
    let all: Vec<Pod> = (0..3).map(|i| pod(i, "web-new", "ready")).collect();
    let p = plan_of(&s, &all);
    assert!(p.steps.is_empty(), "{:?}", summary(&p));
    assert_eq!(p.waiting, None);
}

#[test]
fn ordered_ready_waits_for_min_ready_seconds() {
    let s = set_from(json!({"spec": {"minReadySeconds": 10}}));
    let p = plan_of(&s, &[pod(0, "web-new", "fresh")]);
    assert!(p.steps.is_empty());
    let after = p.requeue_after.unwrap();
    assert!(
        after > Duration::from_secs(8) && after <= Duration::from_secs(10),
        "{after:?}"
    );
    let p = plan_of(&s, &[pod(0, "web-new", "ready")]);
    assert_eq!(summary(&p), ["create web-1@web-new"]);
}

#[test]
fn ordinals_start_where_the_spec_says() {
    let s = set_from(json!({"spec": {"replicas": 2, "ordinals": {"start": 5}}}));
    assert_eq!(summary(&plan_of(&s, &[])), ["create web-5@web-new"]);
    let p = plan_of(&s, &[pod(5, "web-new", "ready")]);
    assert_eq!(summary(&p), ["create web-6@web-new"]);
    // web-0 is outside [5, 7): condemned.
    let p = plan_of(
        &s,
        &[
            pod(0, "web-new", "ready"),
            pod(5, "web-new", "ready"),
            pod(6, "web-new", "ready"),
        ],
    );
    assert_eq!(summary(&p), ["delete web-0 (ScaleDown)"]);
}

#[test]
fn parallel_creates_and_deletes_at_once() {
    let s = set_from(json!({"spec": {"podManagementPolicy": "Parallel"}}));
    let p = plan_of(&s, &[]);
    assert!(!p.monotonic);
    assert_eq!(
        summary(&p),
        [
            "create web-0@web-new",
            "create web-1@web-new",
            "create web-2@web-new"
        ]
    );
    let mut down = s.clone();
    down.spec.as_mut().unwrap().replicas = Some(1);
    let pods = vec![
        pod(0, "web-new", "running"),
        pod(1, "web-new", "running"),
        pod(2, "web-new", "ready"),
    ];
    assert_eq!(
        summary(&plan_of(&down, &pods)),
        ["delete web-2 (ScaleDown)", "delete web-1 (ScaleDown)"]
    );
}

#[test]
fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
    let mut s = set();
    s.spec.as_mut().unwrap().replicas = Some(1);
    let pods: Vec<Pod> = (0..3).map(|i| pod(i, "web-new", "ready")).collect();
    assert_eq!(summary(&plan_of(&s, &pods)), ["delete web-2 (ScaleDown)"]);
    // web-2 terminating: wait for it before web-1.
    let mut going = pods.clone();
    going[2] = terminating(going[2].clone());
    let p = plan_of(&s, &going);
    assert!(p.steps.is_empty());
    assert!(p.waiting.unwrap().contains("web-2"));
    // Gone: web-1 next.
    assert_eq!(
        summary(&plan_of(&s, &pods[..2])),
        ["delete web-1 (ScaleDown)"]
    );
    // Not while a lower pod is unhealthy.
    let sick = vec![pod(0, "web-new", "running"), pods[1].clone()];
    assert!(plan_of(&s, &sick).steps.is_empty());
    // An unhealthy condemned pod blocks the ones below it unless it is the first unhealthy.
    let mixed = vec![
        pods[0].clone(),
        pod(1, "web-new", "running"),
        pods[2].clone(),
    ];
    assert_eq!(summary(&plan_of(&s, &mixed)), ["delete web-2 (ScaleDown)"]);
    let mixed = vec![
        pods[0].clone(),
        pod(1, "web-new", "ready"),
        pod(2, "web-new", "running"),
    ];
    assert_eq!(summary(&plan_of(&s, &mixed)), ["delete web-2 (ScaleDown)"]);
    let mixed = vec![
        pods[0].clone(),
        pod(1, "web-new", "running"),
        pod(2, "web-new", "running"),
    ];
    assert!(plan_of(&s, &mixed).steps.is_empty());
}

#[test]
fn failed_pods_are_recreated_under_the_same_name() {
    let s = set();
    let pods = vec![pod(0, "web-new", "ready"), pod(1, "web-new", "failed")];
    assert_eq!(
        summary(&plan_of(&s, &pods)),
        ["delete web-1 (Failed)", "create web-1@web-new"]
    );
    let pods = vec![pod(0, "web-new", "succeeded")];
    assert_eq!(
        summary(&plan_of(&s, &pods)),
        ["delete web-0 (Succeeded)", "create web-0@web-new"]
    );
    // Already being deleted: waited for, not deleted again.
    let pods = vec![terminating(pod(0, "web-new", "failed"))];
    let p = plan_of(&s, &pods);
    assert!(p.steps.is_empty(), "{:?}", summary(&p));
    assert!(p.waiting.unwrap().contains("terminate"));
}

#[test]
fn a_terminating_pod_blocks_ordered_ready_until_gone() {
    let s = set();
    let pods = vec![terminating(pod(0, "web-new", "ready"))];
    let p = plan_of(&s, &pods);
    assert!(p.steps.is_empty());
    assert!(p.waiting.unwrap().contains("terminate"));
}

#[test]
fn missing_claims_are_created_before_the_pod_and_stale_ones_waited_for() {
    let s = with_policy("Retain", "Retain");
    let p = plan_of(&s, &[]);
    assert_eq!(summary(&p), ["create web-0@web-new +data-web-0"]);
    // An existing claim is reused, not recreated.
    let existing = claims_for(&s, 0).remove(0).1;
    let p = plan(&s, &[], std::slice::from_ref(&existing), &revs(), now());
    assert_eq!(summary(&p), ["create web-0@web-new"]);
    // A pending pod whose claim vanished gets it back.
    let p = plan_of(&s, &[pod(0, "web-new", "pending")]);
    assert_eq!(summary(&p), ["claims web-0: data-web-0"]);
    // A claim being deleted: wait.
    let mut going = existing;
    going.metadata.deletion_timestamp = Some(ago(1));
    let p = plan(&s, &[], &[going], &revs(), now());
    assert!(p.steps.is_empty());
    assert!(p.waiting.unwrap().contains("claims"));
}

#[test]
fn condemned_claims_pass_to_their_pod_under_when_scaled_delete() {
    let mut s = with_policy("Retain", "Delete");
    s.spec.as_mut().unwrap().replicas = Some(1);
    let claims: Vec<PersistentVolumeClaim> =
        (0..2).map(|o| claims_for(&s, o).remove(0).1).collect();
    let pods = vec![pod(0, "web-new", "ready"), pod(1, "web-new", "ready")];
    let p = plan(&s, &pods, &claims, &revs(), now());
    assert_eq!(
        summary(&p),
        ["owners data-web-1: Pod", "delete web-1 (ScaleDown)"]
    );
}

#[test]
fn rolling_update_goes_from_the_highest_ordinal_down() {
    let s = set();
    let old: Vec<Pod> = (0..3).map(|i| pod(i, "web-old", "ready")).collect();
    assert_eq!(summary(&plan_of(&s, &old)), ["delete web-2 (Update)"]);
    // web-2 terminating: no further deletion.
    let mut pods = old.clone();
    pods[2] = terminating(pods[2].clone());
    let p = plan_of(&s, &pods);
    assert!(p.steps.is_empty());
    // web-2 gone: recreated at the update revision.
    assert_eq!(summary(&plan_of(&s, &old[..2])), ["create web-2@web-new"]);
    // web-2 updated but not Ready: wait.
    pods[2] = pod(2, "web-new", "running");
    let p = plan_of(&s, &pods);
    assert!(p.steps.is_empty());
    // Ready: web-1 next.
    pods[2] = pod(2, "web-new", "ready");
    assert_eq!(summary(&plan_of(&s, &pods)), ["delete web-1 (Update)"]);
    // All updated: done.
    let new: Vec<Pod> = (0..3).map(|i| pod(i, "web-new", "ready")).collect();
    let p = plan_of(&s, &new);
    assert!(p.steps.is_empty());
    assert_eq!(p.waiting, None);
}

#[test]
fn partition_and_on_delete_limit_the_update() {
    let s = set_from(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}}));
    let pods = vec![
        pod(0, "web-old", "ready"),
        pod(1, "web-old", "ready"),
        pod(2, "web-new", "ready"),
    ];
    let p = plan_of(&s, &pods);
    assert!(p.steps.is_empty(), "{:?}", summary(&p));
    // Below the partition a recreated pod keeps the current revision.
    assert!(new_pod_gets_current(&s, 1));
    assert!(!new_pod_gets_current(&s, 2));
    assert_eq!(
        summary(&plan_of(&s, &[pod(0, "web-old", "ready")])),
        ["create web-1@web-old"]
    );

    let on_delete =
        set_from(json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}));
    let old: Vec<Pod> = (0..3).map(|i| pod(i, "web-old", "ready")).collect();
    assert!(plan_of(&on_delete, &old).steps.is_empty());
    // A pod deleted by hand comes back at the update revision.
    assert_eq!(
        summary(&plan_of(&on_delete, &old[..2])),
        ["create web-2@web-new"]
    );
}

#[test]
fn a_set_being_deleted_only_reports() {
    let mut s = set();
    s.metadata.deletion_timestamp = Some(ago(1));
    assert!(plan_of(&s, &[]).steps.is_empty());
}

#[test]
fn identity_labels_are_restored() {
    let s = set();
    let mut p = pod(0, "web-new", "ready");
    p.metadata.labels.as_mut().unwrap().remove(POD_INDEX_LABEL);
    let pods = vec![p, pod(1, "web-new", "ready"), pod(2, "web-new", "ready")];
    assert_eq!(summary(&plan_of(&s, &pods)), ["identity web-0"]);
}

#[test]
fn status_counts_pods_and_completes_the_update() {
    let s = set();
    let pods = vec![
        pod(0, "web-old", "ready"),
        pod(1, "web-old", "running"),
        terminating(pod(2, "web-new", "ready")),
    ];
    let st = compute_status(&s, &pods, &revs(), 0, now());
    assert_eq!(st.replicas, 3);
    assert_eq!(st.ready_replicas, Some(2));
    assert_eq!(st.available_replicas, Some(2));
    assert_eq!(st.current_replicas, Some(2));
    assert_eq!(st.updated_replicas, Some(0));
    assert_eq!(st.current_revision.as_deref(), Some("web-old"));
    assert_eq!(st.update_revision.as_deref(), Some("web-new"));
    assert_eq!(st.observed_generation, Some(2));
    assert_eq!(st.collision_count, Some(0));

    // minReadySeconds: ready but not for long enough is not available.
    let m = set_from(json!({"spec": {"minReadySeconds": 30}}));
    let st = compute_status(&m, &[pod(0, "web-new", "fresh")], &revs(), 0, now());
    assert_eq!(
        (st.ready_replicas, st.available_replicas),
        (Some(1), Some(0))
    );

    // Everything updated and ready: the update revision becomes current.
    let new: Vec<Pod> = (0..3).map(|i| pod(i, "web-new", "ready")).collect();
    let st = compute_status(&s, &new, &revs(), 1, now());
    assert_eq!(st.current_revision.as_deref(), Some("web-new"));
    assert_eq!(st.current_replicas, Some(3));
    assert_eq!(st.updated_replicas, Some(3));
    assert_eq!(st.collision_count, Some(1));
    // Not under OnDelete.
    let od =
        set_from(json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}));
    let st = compute_status(&od, &new, &revs(), 0, now());
    assert_eq!(st.current_revision.as_deref(), Some("web-old"));

    assert!(status_equal(Some(&st), &st));
    assert!(!status_equal(None, &st));
    let mut older = st.clone();
    older.observed_generation = Some(1);
    assert!(!status_equal(Some(&older), &st));
}

#[test]
fn revisions_store_the_template_patch_and_restore_it() {
    let s = set();
    let data = revision_data(&s);
    assert_eq!(data["spec"]["template"]["$patch"], "replace");
    assert_eq!(
        data["spec"]["template"]["spec"]["containers"][0]["image"],
        "img:1"
    );
    assert_eq!(data.as_object().unwrap().len(), 1);
    let rev = history::new_revision(&s, &BTreeMap::new(), data, 1, Some(0));
    assert_eq!(template_of(&rev), Some(s.spec.clone().unwrap().template));
    assert_eq!(template_of(&ControllerRevision::default()), None);
}

#[test]
fn the_update_revision_is_reused_renumbered_or_created() {
    let s = set();
    let mut other = s.clone();
    other
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("img:2".into());
    let rev = |set: &StatefulSet, n: i64| {
        history::new_revision(set, &BTreeMap::new(), revision_data(set), n, Some(0))
    };
    let candidate = rev(&s, 3);
    assert_eq!(
        choose_update_revision(&[], &candidate),
        UpdateRevision::Create
    );
    assert_eq!(
        choose_update_revision(&[rev(&other, 1), rev(&s, 2)], &candidate),
        UpdateRevision::Latest(1)
    );
    // A rollback to an older template renumbers that revision.
    assert_eq!(
        choose_update_revision(&[rev(&s, 1), rev(&other, 2)], &candidate),
        UpdateRevision::Renumber(0)
    );
    assert_eq!(
        choose_update_revision(&[rev(&other, 1)], &candidate),
        UpdateRevision::Create
    );
}

#[test]
fn spec_defaults_follow_upstream() {
    let bare: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "template": {}}
    }))
    .unwrap();
    assert_eq!(replicas(&bare), 1);
    assert_eq!(start_ordinal(&bare), 0);
    assert!(!is_parallel(&bare));
    assert!(!is_on_delete(&bare));
    assert_eq!(partition(&bare), None);
    assert_eq!(revision_history_limit(&bare), 10);
    assert_eq!(
        retention(&bare),
        Retention {
            when_deleted_delete: false,
            when_scaled_delete: false
        }
    );
}
