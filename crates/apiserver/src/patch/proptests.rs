//! Bounded fuzzing of the patch engines and their decoders with proptest: random documents
//! and patches never panic, and the engines agree with each other where they must.

use api::ResourceInfo;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::fieldpath::FieldSet;
use super::json::{apply_json_patch, apply_merge_patch, decode_apply_body};
use super::managed_fields::{read, record_update};
use super::schema::Schema;
use super::{apply_patch, server_side_apply, strategic, ApplyOptions, PatchError, PatchType};

const CASES: u32 = 96;

/// Keys that reach the typed parts of a Deployment, plus a few plain ones, so random
/// documents exercise merge keys, sets, retainKeys and atomic structs.
const KEYS: &[&str] = &[
    "spec",
    "template",
    "containers",
    "name",
    "env",
    "value",
    "ports",
    "containerPort",
    "protocol",
    "metadata",
    "labels",
    "finalizers",
    "strategy",
    "selector",
    "a",
    "b",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (-3i64..5).prop_map(|n| json!(n)),
        "[a-c]{0,2}".prop_map(Value::String),
    ]
}

/// Random JSON; `nulls` allows null leaves (merge patches use them to delete).
fn doc(nulls: bool) -> impl Strategy<Value = Value> {
    let leaf = if nulls {
        prop_oneof![1 => Just(Value::Null), 4 => scalar()].boxed()
    } else {
        scalar().boxed()
    };
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..5).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn object(nulls: bool) -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(prop::sample::select(KEYS), doc(nulls), 0..5)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn typed(kind_api: (&'static str, &'static str), body: Map<String, Value>) -> Value {
    let mut m = body;
    m.insert("apiVersion".into(), json!(kind_api.0));
    m.insert("kind".into(), json!(kind_api.1));
    Value::Object(m)
}

fn info(group: &'static str, kind: &'static str) -> ResourceInfo {
    ResourceInfo {
        group,
        version: "v1",
        kind,
        plural: "things",
        singular: "thing",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: &[],
        subresources: &[],
    }
}

/// The RFC 7386 merge patch that turns `from` into `to` (`to` without nulls).
fn merge_diff(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(f), Value::Object(t)) => {
            let mut p = Map::new();
            for k in f.keys().filter(|k| !t.contains_key(*k)) {
                p.insert(k.clone(), Value::Null);
            }
            for (k, tv) in t {
                match f.get(k) {
                    Some(fv) if fv == tv => {}
                    Some(fv @ Value::Object(_)) if tv.is_object() => {
                        p.insert(k.clone(), merge_diff(fv, tv));
                    }
                    _ => {
                        p.insert(k.clone(), tv.clone());
                    }
                }
            }
            Value::Object(p)
        }
        (_, t) => t.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn merge_patch_of_a_diff_reproduces_the_target(a in object(false), b in object(false)) {
        let (a, b) = (Value::Object(a), Value::Object(b));
        let patch = merge_diff(&a, &b);
        let out = apply_merge_patch(&a, patch.to_string().as_bytes()).expect("object patch");
        prop_assert_eq!(out, b);
    }

    #[test]
    fn json_patch_of_a_diff_reproduces_the_target(a in object(true), b in object(true)) {
        let (a, b) = (Value::Object(a), Value::Object(b));
        let patch = json_patch::diff(&a, &b);
        let body = serde_json::to_vec(&patch).expect("serialisable");
        prop_assert_eq!(apply_json_patch(&a, &body).expect("applies"), b);
    }

    #[test]
    fn strategic_merge_without_metadata_is_a_merge_patch(a in object(false), p in object(true)) {
        let a = typed(("example.com/v1", "Widget"), a);
        let p = Value::Object(p);
        let schema = Schema::for_object(&a);
        let smp = strategic::apply(&a, &p, schema.cursor()).expect("applies");
        let merge = apply_merge_patch(&a, p.to_string().as_bytes()).expect("applies");
        prop_assert_eq!(smp, merge);
    }

    #[test]
    fn patches_of_any_shape_never_panic(a in object(false), p in doc(true), raw in ".{0,64}") {
        let d = typed(("apps/v1", "Deployment"), a);
        let deploy = info("apps", "Deployment");
        let body = p.to_string();
        for t in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge, PatchType::Apply] {
            if let Ok(out) = apply_patch(t, &d, body.as_bytes(), &deploy) {
                prop_assert!(out.is_object());
            }
            let _ = apply_patch(t, &d, raw.as_bytes(), &deploy);
        }
    }

    #[test]
    fn strategic_directives_never_panic(
        a in object(false),
        p in object(true),
        directive in prop::sample::select(&["replace", "delete", "merge", "x"][..]),
        order in prop::collection::vec(doc(false), 0..3),
    ) {
        let d = typed(("apps/v1", "Deployment"), a);
        let mut p = p;
        p.insert("$setElementOrder/containers".into(), Value::Array(order.clone()));
        p.insert("$deleteFromPrimitiveList/finalizers".into(), Value::Array(order));
        p.insert("$retainKeys".into(), json!(["spec", "metadata"]));
        let mut items = p.get("containers").and_then(Value::as_array).cloned().unwrap_or_default();
        items.push(json!({"$patch": directive, "name": "a"}));
        p.insert("containers".into(), Value::Array(items));
        let schema = Schema::for_object(&d);
        let _ = strategic::apply(&d, &Value::Object(p), schema.cursor());
    }

    #[test]
    fn server_side_apply_is_idempotent_and_never_panics(
        live in object(false),
        cfg in object(true),
        force in any::<bool>(),
    ) {
        let deploy = info("apps", "Deployment");
        let cfg = typed(("apps/v1", "Deployment"), cfg);
        let mut live = typed(("apps/v1", "Deployment"), live);
        record_update(None, &mut live, "creator", None);
        prop_assert!(read(&live).is_some());
        let opts = ApplyOptions { field_manager: "applier", force };
        if let Ok(first) = server_side_apply(Some(&live), &cfg, &opts, &deploy) {
            prop_assert!(read(&first).is_some());
            let again = server_side_apply(Some(&first), &cfg, &opts, &deploy).expect("re-apply");
            prop_assert_eq!(&again, &first);
        }
        // Creation succeeds unless the configuration itself is invalid, which Kubernetes
        // refuses too: duplicate entries in a set or a keyed list.
        match server_side_apply(None, &cfg, &opts, &deploy) {
            Ok(_) => {}
            Err(PatchError::Invalid(m)) => prop_assert!(m.contains("duplicate entries"), "{}", m),
            Err(e) => prop_assert!(false, "{:?}", e),
        }
    }

    #[test]
    fn record_update_gives_the_manager_what_it_changed(
        a in object(false),
        b in object(false),
        kind in prop::sample::select(&[("apps/v1", "Deployment"), ("example.com/v1", "Widget")][..]),
    ) {
        let mut old = typed(kind, a);
        record_update(None, &mut old, "first", None);
        let mut new = typed(kind, b);
        // The request carries the stored managedFields, as an update's body does.
        let mut meta = new.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
        if let Some(mf) = old.pointer("/metadata/managedFields") {
            meta.insert("managedFields".into(), mf.clone());
        }
        new["metadata"] = Value::Object(meta);
        record_update(Some(&old), &mut new, "second", None);
        let entries = read(&new).expect("well formed");
        for e in &entries {
            prop_assert!(!e.fields.is_empty());
        }
        let mut managers: Vec<&str> = entries.iter().map(|e| e.manager.as_str()).collect();
        managers.dedup();
        prop_assert_eq!(managers.len(), entries.len());
    }

    #[test]
    fn fields_v1_decoding_never_panics_and_round_trips(v in doc(true)) {
        if let Some(set) = FieldSet::from_fields_v1(&v) {
            let again = FieldSet::from_fields_v1(&set.to_fields_v1()).expect("own output parses");
            prop_assert_eq!(again, set);
        }
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..96), yaml in "[a-z:\\[\\]{}\\-\\n \"'&*!|>#,0-9]{0,64}") {
        let _ = decode_apply_body(&bytes);
        let _ = decode_apply_body(yaml.as_bytes());
        let empty = json!({});
        let _ = apply_json_patch(&empty, &bytes);
        let _ = apply_merge_patch(&empty, &bytes);
    }

    #[test]
    fn yaml_and_json_apply_bodies_agree(body in object(false)) {
        let v = typed(("v1", "ConfigMap"), body);
        let yaml = serde_yaml::to_string(&v).expect("serialisable");
        prop_assert_eq!(decode_apply_body(yaml.as_bytes()).expect("yaml"), v.clone());
        prop_assert_eq!(decode_apply_body(v.to_string().as_bytes()).expect("json"), v);
    }
}
