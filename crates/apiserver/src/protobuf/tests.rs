//! Bodies are built here field by field with prost's encoders, as kubectl's Go encoder
//! lays them out, and must decode to the JSON the same object has.

use proptest::prelude::*;
use prost::encoding::{encode_key, encode_varint, WireType};
use serde_json::json;

use super::*;

fn key(out: &mut Vec<u8>, n: u32, wt: WireType) {
    encode_key(n, wt, out);
}

fn bytes(n: u32, v: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    key(&mut out, n, WireType::LengthDelimited);
    encode_varint(v.len() as u64, &mut out);
    out.extend_from_slice(v);
    out
}

fn string(n: u32, v: &str) -> Vec<u8> {
    bytes(n, v.as_bytes())
}

fn varint(n: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    key(&mut out, n, WireType::Varint);
    encode_varint(v, &mut out);
    out
}

fn message(n: u32, parts: &[Vec<u8>]) -> Vec<u8> {
    bytes(n, &parts.concat())
}

fn map_entry(n: u32, k: &str, v: &[u8]) -> Vec<u8> {
    message(n, &[string(1, k), bytes(2, v)])
}

fn envelope(api_version: &str, kind: &str, raw: &[Vec<u8>]) -> Vec<u8> {
    let mut body = MAGIC.to_vec();
    body.extend(message(1, &[string(1, api_version), string(2, kind)]));
    body.extend(bytes(2, &raw.concat()));
    body.extend(string(3, ""));
    body.extend(string(4, ""));
    body
}

/// ObjectMeta as Go writes it for a new object: non-pointer fields always present.
fn object_meta(name: &str, namespace: &str, labels: &[(&str, &str)]) -> Vec<u8> {
    let mut parts = vec![
        string(1, name),
        string(2, ""),
        string(3, namespace),
        string(5, ""),
        string(6, ""),
        varint(7, 0),
        message(8, &[]),
    ];
    parts.extend(labels.iter().map(|(k, v)| map_entry(11, k, v.as_bytes())));
    message(1, &parts)
}

fn meta_json(name: &str, namespace: &str) -> serde_json::Value {
    let mut meta = json!({"name": name, "generation": 0, "creationTimestamp": null});
    if !namespace.is_empty() {
        meta["namespace"] = json!(namespace);
    }
    meta
}

#[test]
fn configmap() {
    let body = envelope(
        "v1",
        "ConfigMap",
        &[
            object_meta("x", "default", &[]),
            map_entry(2, "a", b"b"),
            map_entry(2, "c", b"d"),
            map_entry(3, "bin", &[0, 159, 146, 150]),
        ],
    );
    assert_eq!(
        decode_request_body(&body).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta_json("x", "default"),
            "data": {"a": "b", "c": "d"}, "binaryData": {"bin": "AJ+Slg=="},
        })
    );
}

#[test]
fn secret_with_binary_data() {
    let body = envelope(
        "v1",
        "Secret",
        &[
            object_meta("s", "ns1", &[]),
            map_entry(2, "key", &[0xff, 0x00, 0x01]),
            string(3, "Opaque"),
            varint(5, 1),
        ],
    );
    let mut want = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": meta_json("s", "ns1"),
        "data": {"key": "/wAB"}, "type": "Opaque", "immutable": true,
    });
    assert_eq!(decode_request_body(&body).unwrap(), want);
    // The same object as JSON must also load as a typed Secret with the bytes intact.
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(want.take()).unwrap();
    let data = secret.data.unwrap();
    assert_eq!(data["key"].0, vec![0xff, 0x00, 0x01]);
}

#[test]
fn namespace() {
    let body = envelope(
        "v1",
        "Namespace",
        &[object_meta("team-a", "", &[("env", "dev")])],
    );
    let mut meta = meta_json("team-a", "");
    meta["labels"] = json!({"env": "dev"});
    assert_eq!(
        decode_request_body(&body).unwrap(),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    );
}

#[test]
fn deployment_with_quantities_int_or_string_and_times() {
    let container = message(
        2,
        &[
            string(1, "nginx"),
            string(2, "nginx:1.27"),
            message(6, &[string(1, "http"), varint(3, 80), string(4, "TCP")]),
            message(8, &[map_entry(1, "cpu", &string(1, "250m"))]),
            message(
                10,
                &[message(
                    1,
                    &[message(
                        2,
                        &[message(2, &[varint(1, 1), string(3, "http")])],
                    )],
                )],
            ),
        ],
    );
    let pod_template = message(
        3,
        &[
            message(1, &[message(8, &[]), map_entry(11, "app", b"web")]),
            message(2, &[container]),
        ],
    );
    let strategy = message(
        4,
        &[
            string(1, "RollingUpdate"),
            message(
                2,
                &[
                    message(1, &[varint(1, 0), varint(2, 1)]),
                    message(2, &[varint(1, 1), string(3, "25%")]),
                ],
            ),
        ],
    );
    let spec = message(
        2,
        &[
            varint(1, 3),
            message(2, &[map_entry(1, "app", b"web")]),
            pod_template,
            strategy,
        ],
    );
    let status = message(
        3,
        &[message(
            6,
            &[
                string(1, "Available"),
                message(7, &[varint(1, 1_700_000_000)]),
            ],
        )],
    );
    let body = envelope(
        "apps/v1",
        "Deployment",
        &[object_meta("web", "default", &[]), spec, status],
    );
    let got = decode_request_body(&body).unwrap();
    assert_eq!(got["spec"]["replicas"], json!(3));
    assert_eq!(
        got["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
    assert_eq!(
        got["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}})
    );
    let c = &got["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "nginx");
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(c["resources"], json!({"limits": {"cpu": "250m"}}));
    // ProbeHandler is embedded inline in Go, so httpGet sits directly on the probe.
    assert_eq!(c["livenessProbe"], json!({"httpGet": {"port": "http"}}));
    assert_eq!(
        got["spec"]["template"]["metadata"]["labels"],
        json!({"app": "web"})
    );
    assert_eq!(
        got["spec"]["template"]["metadata"]["creationTimestamp"],
        json!(null)
    );
    assert_eq!(
        got["status"]["conditions"][0],
        json!({"type": "Available", "lastTransitionTime": "2023-11-14T22:13:20Z"})
    );
    // What comes out is a Deployment our typed layer accepts.
    let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(got).unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(3));
}

#[test]
fn self_subject_access_review() {
    let spec = message(
        2,
        &[message(
            1,
            &[
                string(1, "default"),
                string(2, "create"),
                string(3, "apps"),
                string(4, ""),
                string(5, "deployments"),
                string(6, ""),
                string(7, ""),
            ],
        )],
    );
    let body = envelope(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &[
            message(1, &[string(1, "")]),
            spec,
            message(3, &[varint(1, 0)]),
        ],
    );
    let got = decode_request_body(&body).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "metadata": {},
            "spec": {"resourceAttributes": {
                "namespace": "default", "verb": "create", "group": "apps",
                "resource": "deployments",
            }},
            "status": {"allowed": false},
        })
    );
}

#[test]
fn empty_strings_are_unset_except_pointer_strings_map_values_and_list_items() {
    let body = envelope(
        "v1",
        "PersistentVolumeClaim",
        &[
            message(1, &[string(1, "c"), string(3, ""), map_entry(11, "k", b"")]),
            message(2, &[bytes(1, b""), string(5, ""), string(3, "")]),
        ],
    );
    let got = decode_request_body(&body).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "c", "labels": {"k": ""}},
            "spec": {"accessModes": [""], "storageClassName": ""},
        })
    );
}

#[test]
fn eviction_carries_delete_options() {
    let body = envelope(
        "policy/v1",
        "Eviction",
        &[
            object_meta("p", "default", &[]),
            message(2, &[varint(1, 30), string(4, "Foreground")]),
        ],
    );
    let got = decode_request_body(&body).unwrap();
    assert_eq!(
        got["deleteOptions"],
        json!({"gracePeriodSeconds": 30, "propagationPolicy": "Foreground"})
    );
}

#[test]
fn negative_int32_and_packed_repeated() {
    // ContainerPort.hostPort = -1 (sign-extended varint); Capabilities is unrelated, so
    // use a repeated int64: PodSecurityContext.supplementalGroups, packed.
    let mut packed = Vec::new();
    for v in [1000u64, 2000] {
        encode_varint(v, &mut packed);
    }
    let body = envelope(
        "v1",
        "Pod",
        &[message(
            2,
            &[
                message(14, &[bytes(4, &packed), varint(4, 3000)]),
                message(
                    2,
                    &[string(1, "c"), message(6, &[varint(2, (-1i64) as u64)])],
                ),
            ],
        )],
    );
    let got = decode_request_body(&body).unwrap();
    assert_eq!(
        got["spec"]["securityContext"]["supplementalGroups"],
        json!([1000, 2000, 3000])
    );
    assert_eq!(
        got["spec"]["containers"][0]["ports"][0]["hostPort"],
        json!(-1)
    );
}

#[test]
fn raw_extension_holds_json() {
    let body = envelope(
        "apps/v1",
        "ControllerRevision",
        &[
            message(2, &[bytes(1, br#"{"spec":{"x":1}}"#)]),
            varint(3, 2),
        ],
    );
    let got = decode_request_body(&body).unwrap();
    assert_eq!(got["data"], json!({"spec": {"x": 1}}));
    assert_eq!(got["revision"], json!(2));
}

#[test]
fn bad_bodies_are_typed_errors() {
    assert_eq!(decode_request_body(b"{}"), Err(ProtobufError::MissingMagic));
    assert_eq!(
        decode_request_body(&envelope("v1", "", &[])),
        Err(ProtobufError::MissingTypeMeta)
    );
    assert!(matches!(
        decode_request_body(&envelope("v1", "Nope", &[])),
        Err(ProtobufError::UnknownKind { .. })
    ));
    let mut truncated = envelope("v1", "ConfigMap", &[object_meta("x", "d", &[])]);
    truncated.truncate(truncated.len() - 6);
    assert!(decode_request_body(&truncated).is_err());
    // A string field holding a varint is a wire-type error.
    let wrong = envelope("v1", "ConfigMap", &[message(1, &[varint(1, 5)])]);
    assert!(matches!(
        decode_request_body(&wrong),
        Err(ProtobufError::WireType { field: "name", .. })
    ));
    let mut gz = MAGIC.to_vec();
    gz.extend(message(1, &[string(1, "v1"), string(2, "ConfigMap")]));
    gz.extend(string(3, "gzip"));
    assert_eq!(
        decode_request_body(&gz),
        Err(ProtobufError::ContentEncoding("gzip".into()))
    );
    let err: ApiError = ProtobufError::MissingMagic.into();
    assert_eq!(err.code, 400);
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    // JSONSchemaProps.not (28) nested far past the limit.
    let mut inner = Vec::new();
    for _ in 0..10_000 {
        inner = bytes(28, &inner);
    }
    let crd_spec = message(2, &[message(7, &[message(4, &[bytes(1, &inner)])])]);
    let body = envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &[crd_spec],
    );
    assert_eq!(decode_request_body(&body), Err(ProtobufError::TooDeep));
}

#[test]
fn content_type_detection() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "application/vnd.kubernetes.protobuf; charset=utf-8"
    ));
    assert!(!is_protobuf("application/json"));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut body = MAGIC.to_vec();
        body.extend(tail);
        let _ = decode_request_body(&body);
    }

    #[test]
    fn random_objects_of_known_kinds_never_panic(
        kind in prop::sample::select(vec!["Pod", "ConfigMap", "Secret", "Service", "Namespace"]),
        raw in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut body = MAGIC.to_vec();
        body.extend(message(1, &[string(1, "v1"), string(2, kind)]));
        body.extend(bytes(2, &raw));
        let _ = decode_request_body(&body);
    }
}
