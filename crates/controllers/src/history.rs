//! Controller revision history: the ControllerRevisions through which DaemonSets and
//! StatefulSets remember the pod templates they have rolled out (Kubernetes'
//! `pkg/controller/history` and the DaemonSet controller's `snapshot`).
//!
//! A revision is named `<owner>-<hash>`, carries the owner's selector labels plus
//! `controller-revision-hash: <hash>`, a controller ownerReference to its owner, a
//! monotonically increasing `revision` number, and `data`:
//!
//! - **DaemonSet**: the strategic merge patch that restores the template,
//!   `{"spec":{"template":{…the template…,"$patch":"replace"}}}` (see [`template_patch`]).
//!   `kubectl rollout history ds/x --revision=N` applies this patch to the live DaemonSet
//!   to show revision N's template, and `kubectl rollout undo ds/x` sends it verbatim as a
//!   strategic merge patch, so the shape must be exactly this.
//! - **StatefulSet**: the same shape, built from the StatefulSet's `spec.template`
//!   (upstream's `getPatch` for StatefulSets also only records the template), which is
//!   what `kubectl rollout history/undo sts/x` read back.
//!
//! Two revisions are the same revision when their `data` is equal ([`equal_revision`]); the
//! hash only names them, and a `collision_count` perturbs it when two different `data` hash
//! alike (the owner then bumps `status.collisionCount` and retries).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Resource, ResourceExt};
use serde_json::Value;

/// The label naming the revision a pod (and a ControllerRevision) belongs to
/// (`apps.DefaultDaemonSetUniqueLabelKey` / `ControllerRevisionHashLabelKey`).
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";

/// Upstream's default `revisionHistoryLimit` for DaemonSets and StatefulSets.
pub const DEFAULT_REVISION_HISTORY_LIMIT: usize = 10;

/// The alphabet of apimachinery's `rand.SafeEncodeString`: no vowels, no look-alikes.
const SAFE_ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const FNV32_OFFSET: u32 = 0x811c_9dc5;

fn fnv32a(data: &[u8], mut h: u32) -> u32 {
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHANUMS[usize::from(b) % SAFE_ALPHANUMS.len()] as char)
        .collect()
}

/// The hash naming a revision (upstream's `HashControllerRevision`): FNV-32a over the
/// JSON of `data`, then the collision count as 4 little-endian bytes when there is one,
/// the sum in decimal, safe-encoded.
pub fn hash_revision(data: &Value, collision_count: Option<i32>) -> String {
    // serde_json renders a Value deterministically for the same Value, which is all a
    // name needs; equality of revisions is decided on the Value itself.
    let rendered = serde_json::to_vec(data).unwrap_or_default();
    let mut h = fnv32a(&rendered, FNV32_OFFSET);
    if let Some(c) = collision_count {
        h = fnv32a(&(c as u32).to_le_bytes(), h);
    }
    safe_encode(&h.to_string())
}

/// The strategic merge patch a DaemonSet or StatefulSet revision stores for `template`
/// (the JSON of a `PodTemplateSpec`): it replaces the whole template when applied.
pub fn template_patch(template: &Value) -> Value {
    let mut template = template.clone();
    if let Value::Object(map) = &mut template {
        map.insert("$patch".into(), Value::String("replace".into()));
    }
    serde_json::json!({ "spec": { "template": template } })
}

/// A new revision of `owner` (not yet created): named `<owner>-<hash>`, labelled with the
/// owner's selector labels and the hash, controlled by the owner.
pub fn new_revision<K>(
    owner: &K,
    selector_labels: &BTreeMap<String, String>,
    data: Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision
where
    K: Resource<DynamicType = ()>,
{
    let hash = hash_revision(&data, collision_count);
    let mut labels = selector_labels.clone();
    labels.insert(CONTROLLER_REVISION_HASH.into(), hash.clone());
    let meta = owner.meta();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", owner.name_any())),
            namespace: meta.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations.clone(),
            owner_references: Some(vec![OwnerReference {
                api_version: K::api_version(&()).into_owned(),
                kind: K::kind(&()).into_owned(),
                name: owner.name_any(),
                uid: meta.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// The hash a revision is named by (its `controller-revision-hash` label).
pub fn revision_hash(rev: &ControllerRevision) -> Option<&str> {
    rev.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH)
        .map(String::as_str)
}

/// The revisions in `ns` whose labels match `selector` (a label selector string, as in
/// `ListParams::labels`) and whose controller is `owner_uid`, oldest revision first.
pub async fn list_revisions(
    client: kube::Client,
    ns: &str,
    owner_uid: &str,
    selector: &str,
) -> Result<Vec<ControllerRevision>, kube::Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client, ns);
    let mut lp = ListParams::default();
    if !selector.is_empty() {
        lp = lp.labels(selector);
    }
    let mut revs: Vec<ControllerRevision> = api
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|r| controlled_by(r, owner_uid))
        .collect();
    sort_revisions(&mut revs);
    Ok(revs)
}

fn controlled_by(rev: &ControllerRevision, owner_uid: &str) -> bool {
    rev.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == owner_uid)
}

/// Oldest first: by revision number, then creation time, then name (upstream's
/// `SortControllerRevisions`).
pub fn sort_revisions(revs: &mut [ControllerRevision]) {
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
                ta.cmp(&tb)
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// A label selector in the string form of `ListParams::labels` (`k=v`, `k in (a,b)`,
/// `k notin (a)`, `k`, `!k`), or None when it can match nothing (an unknown operator).
pub fn selector_string(sel: &LabelSelector) -> Option<String> {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            _ => return None,
        });
    }
    Some(parts.join(","))
}

/// One more than the highest revision number (1 when there are none).
pub fn next_revision_number(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Whether two revisions hold the same data (the same template).
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// Which of `old` to delete, oldest revision first, so that at most `limit` revisions not
/// in use remain. A revision is in use (never deleted) when `live_hashes` holds its
/// `controller-revision-hash` label or its name: DaemonSet pods carry the hash,
/// StatefulSet pods the revision's name; live are the current and update revisions and
/// those some pod still runs.
pub fn revisions_to_truncate<'a>(
    old: &'a [ControllerRevision],
    live_hashes: &HashSet<String>,
    limit: usize,
) -> Vec<&'a ControllerRevision> {
    let mut unused: Vec<&ControllerRevision> = old
        .iter()
        .filter(|r| {
            revision_hash(r).is_none_or(|h| !live_hashes.contains(h))
                && r.metadata
                    .name
                    .as_ref()
                    .is_none_or(|n| !live_hashes.contains(n))
        })
        .collect();
    unused.sort_by_key(|r| r.revision);
    let excess = unused.len().saturating_sub(limit);
    unused.truncate(excess);
    unused
}

/// Deletes the oldest revisions beyond `limit` that no live hash refers to.
pub async fn truncate_history(
    client: kube::Client,
    ns: &str,
    old: Vec<ControllerRevision>,
    live_hashes: &HashSet<String>,
    limit: usize,
) -> Result<(), kube::Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client, ns);
    for rev in revisions_to_truncate(&old, live_hashes, limit) {
        match api.delete(&rev.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSet;
    use serde_json::json;

    fn rev(name: &str, hash: &str, n: i64) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([(
                    CONTROLLER_REVISION_HASH.to_string(),
                    hash.to_string(),
                )])),
                ..Default::default()
            },
            data: Some(RawExtension(json!({"n": n}))),
            revision: n,
        }
    }

    #[test]
    fn hash_is_stable_safe_and_perturbed_by_collisions() {
        let d = json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}}}});
        let h = hash_revision(&d, None);
        assert_eq!(h, hash_revision(&d.clone(), None));
        assert!(h.bytes().all(|b| SAFE_ALPHANUMS.contains(&b)));
        assert_ne!(h, hash_revision(&d, Some(1)));
        assert_ne!(hash_revision(&d, Some(1)), hash_revision(&d, Some(2)));
        assert_ne!(h, hash_revision(&json!({"other": 1}), None));
    }

    #[test]
    fn fnv32a_matches_known_vectors() {
        assert_eq!(fnv32a(b"", FNV32_OFFSET), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a", FNV32_OFFSET), 0xe40c_292c);
        assert_eq!(fnv32a(b"foobar", FNV32_OFFSET), 0xbf9c_f968);
    }

    #[test]
    fn template_patch_replaces_the_template() {
        let t = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}});
        assert_eq!(
            template_patch(&t),
            json!({"spec": {"template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": []},
                "$patch": "replace"
            }}})
        );
    }

    #[test]
    fn new_revision_is_named_labelled_and_owned() {
        let ds = DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                annotations: Some(BTreeMap::from([(
                    "kubernetes.io/change-cause".to_string(),
                    "set image".to_string(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        let sel = BTreeMap::from([("app".to_string(), "agent".to_string())]);
        let data = json!({"spec": {"template": {"$patch": "replace"}}});
        let r = new_revision(&ds, &sel, data.clone(), 3, None);
        let hash = hash_revision(&data, None);
        assert_eq!(r.metadata.name.as_deref(), Some(&*format!("agent-{hash}")));
        assert_eq!(r.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(revision_hash(&r), Some(hash.as_str()));
        assert_eq!(r.metadata.labels.as_ref().unwrap()["app"], "agent");
        assert_eq!(r.revision, 3);
        let o = &r.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.api_version.as_str(), o.uid.as_str()),
            ("DaemonSet", "apps/v1", "u1")
        );
        assert_eq!(o.controller, Some(true));
        assert!(r
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("kubernetes.io/change-cause"));
        assert!(controlled_by(&r, "u1"));
        assert!(!controlled_by(&r, "u2"));
    }

    #[test]
    fn numbering_equality_and_sorting() {
        assert_eq!(next_revision_number(&[]), 1);
        let mut revs = vec![rev("c", "h3", 3), rev("a", "h1", 1), rev("b", "h2", 2)];
        assert_eq!(next_revision_number(&revs), 4);
        sort_revisions(&mut revs);
        assert_eq!(
            revs.iter().map(|r| r.revision).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(equal_revision(&rev("x", "h", 1), &rev("y", "g", 1)));
        assert!(!equal_revision(&rev("x", "h", 1), &rev("x", "h", 2)));
    }

    #[test]
    fn truncation_keeps_live_and_newest() {
        let revs: Vec<_> = (1..=6)
            .map(|n| rev(&format!("r{n}"), &format!("h{n}"), n))
            .collect();
        let live = HashSet::from(["h1".to_string(), "h6".to_string()]);
        let doomed: Vec<i64> = revisions_to_truncate(&revs, &live, 2)
            .iter()
            .map(|r| r.revision)
            .collect();
        // Unused: 2,3,4,5; keep the newest two of them.
        assert_eq!(doomed, [2, 3]);
        assert!(revisions_to_truncate(&revs, &live, 10).is_empty());
        assert_eq!(revisions_to_truncate(&revs, &HashSet::new(), 0).len(), 6);
        // StatefulSet pods name their revision rather than its hash.
        let by_name = HashSet::from(["r1".to_string(), "r2".to_string()]);
        let doomed: Vec<i64> = revisions_to_truncate(&revs, &by_name, 0)
            .iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(doomed, [3, 4, 5, 6]);
    }

    #[test]
    fn selector_strings() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let req = |k: &str, op: &str, v: &[&str]| LabelSelectorRequirement {
            key: k.into(),
            operator: op.into(),
            values: Some(v.iter().map(|s| s.to_string()).collect()),
        };
        let sel = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "x".to_string())])),
            match_expressions: Some(vec![
                req("tier", "In", &["a", "b"]),
                req("env", "NotIn", &["dev"]),
                req("k", "Exists", &[]),
                req("g", "DoesNotExist", &[]),
            ]),
        };
        assert_eq!(
            selector_string(&sel).as_deref(),
            Some("app=x,tier in (a,b),env notin (dev),k,!g")
        );
        assert_eq!(
            selector_string(&LabelSelector::default()).as_deref(),
            Some("")
        );
        let bad = LabelSelector {
            match_expressions: Some(vec![req("k", "Bogus", &[])]),
            ..Default::default()
        };
        assert_eq!(selector_string(&bad), None);
    }
}
