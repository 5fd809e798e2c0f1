//! Bad input over raw HTTPS: every malformed, oversized, invalid or unauthorised request
//! gets the 4xx Kubernetes Status that kube-apiserver gives it (kind Status, reason, code)
//! — never a 5xx, a hang or a crash; the server still answers /readyz after all of them.
//!
//! All cases run against one server and are reported together (PASS/FAIL per case), so a
//! regression shows every case it breaks at once.

mod support;

use std::time::{Duration, Instant};

use apiserver::pki::{CertificateAuthority, LeafProfile};
use serde_json::{json, Value};
use support::https::Response;
use support::{Etcd, HttpsClient, Identity, Server, ServerOptions};

const NS: &str = "/api/v1/namespaces/default";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
/// Kubernetes' request body limit.
const MAX_BODY: usize = 3 * 1024 * 1024;
/// A watch from a future resourceVersion must be answered within this (kube-apiserver
/// gives up after about 3 s).
const FUTURE_WATCH_DEADLINE: Duration = Duration::from_secs(10);

type Outcome = Result<(), String>;
/// One bad-input case: run against the server, Ok when it answered as Kubernetes does.
type Case = fn(&Ctx) -> Outcome;

struct Ctx<'a> {
    server: &'a Server,
    admin: HttpsClient,
}

impl Ctx<'_> {
    fn send(
        &self,
        method: &str,
        path: &str,
        ct: Option<&str>,
        body: &[u8],
    ) -> Result<Response, String> {
        self.admin.request(method, path, ct, body.to_vec())
    }

    fn post_json(&self, path: &str, body: &Value) -> Result<Response, String> {
        self.send(
            "POST",
            path,
            Some("application/json"),
            body.to_string().as_bytes(),
        )
    }
}

/// `r` is a Kubernetes failure Status with `code` and `reason`, whose message contains
/// `message` (when given).
fn expect_status(r: &Response, code: u16, reason: &str, message: Option<&str>) -> Outcome {
    if r.status != code {
        return Err(format!("status {} (want {code}): {}", r.status, r.text()));
    }
    let s: Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("not JSON ({e}): {}", r.text()))?;
    let ok = s["kind"] == "Status"
        && s["apiVersion"] == "v1"
        && s["status"] == "Failure"
        && s["code"] == code
        && s["reason"] == reason;
    if !ok {
        return Err(format!("want a {code} {reason} Status, got {s}"));
    }
    if let Some(m) = message {
        let text = s["message"].as_str().unwrap_or_default();
        if !text.contains(m) {
            return Err(format!("message {text:?} lacks {m:?}"));
        }
    }
    Ok(())
}

fn expect_created(r: &Response) -> Outcome {
    if r.status != 201 {
        return Err(format!("status {} (want 201): {}", r.status, r.text()));
    }
    Ok(())
}

/// An Invalid Status that names `field` among its causes.
fn expect_invalid(r: &Response, field: &str) -> Outcome {
    expect_status(r, 422, "Invalid", None)?;
    let causes = r.json()["details"]["causes"].clone();
    let named = causes
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["field"] == field));
    if !named {
        return Err(format!("no cause for {field}: {causes}"));
    }
    Ok(())
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
}

fn malformed_json(c: &Ctx) -> Outcome {
    for body in [
        &b"{\"metadata\":"[..],
        b"not json at all",
        b"{\"a\":1}}",
        b"\xff\xfe",
    ] {
        let r = c.send(
            "POST",
            &format!("{NS}/configmaps"),
            Some("application/json"),
            body,
        )?;
        expect_status(&r, 400, "BadRequest", None)?;
    }
    Ok(())
}

fn malformed_yaml(c: &Ctx) -> Outcome {
    let path = format!("{NS}/configmaps");
    let r = c.send(
        "POST",
        &path,
        Some("application/yaml"),
        b"metadata:\n  name: [x\n",
    )?;
    expect_status(&r, 400, "BadRequest", None)?;
    let r = c.send(
        "POST",
        &path,
        Some("application/yaml"),
        b"- just\n- a list\n",
    )?;
    expect_status(&r, 400, "BadRequest", None)?;
    // The same route takes well-formed YAML, so the refusals above are about the syntax.
    let good =
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: \"1\"\n";
    expect_created(&c.send("POST", &path, Some("application/yaml"), good)?)
}

fn strict_unknown_field(c: &Ctx) -> Outcome {
    let mut body = configmap("strict-unknown");
    body["bogus"] = json!(1);
    body["metadata"]["alsoBogus"] = json!("x");
    let strict = format!("{NS}/configmaps?fieldValidation=Strict");
    let r = c.post_json(&strict, &body)?;
    expect_status(&r, 400, "BadRequest", Some("strict decoding error"))?;
    expect_status(&r, 400, "BadRequest", Some("unknown field \"bogus\""))?;
    // Without Strict the object is created and the unknown field reported as a warning.
    let r = c.post_json(&format!("{NS}/configmaps?fieldValidation=Warn"), &body)?;
    expect_created(&r)?;
    let warning = r
        .headers
        .get("warning")
        .and_then(|w| w.to_str().ok())
        .unwrap_or_default();
    if !warning.contains("bogus") {
        return Err(format!(
            "no Warning header for the unknown field: {:?}",
            r.headers
        ));
    }
    Ok(())
}

fn strict_duplicate_field(c: &Ctx) -> Outcome {
    let body =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup-a","name":"dup-b"}}"#;
    let r = c.send(
        "POST",
        &format!("{NS}/configmaps?fieldValidation=Strict"),
        Some("application/json"),
        body,
    )?;
    expect_status(&r, 400, "BadRequest", Some("strict decoding error"))?;
    expect_status(&r, 400, "BadRequest", Some("duplicate field"))?;
    let yaml =
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup-y\ndata:\n  k: a\n  k: b\n";
    let r = c.send(
        "POST",
        &format!("{NS}/configmaps?fieldValidation=Strict"),
        Some("application/yaml"),
        yaml,
    )?;
    expect_status(&r, 400, "BadRequest", None)
}

fn wrong_types(c: &Ctx) -> Outcome {
    let mut cm = configmap("wrong-type");
    cm["data"] = json!({"a": 1});
    let r = c.post_json(&format!("{NS}/configmaps"), &cm)?;
    expect_status(
        &r,
        400,
        "BadRequest",
        Some("cannot be handled as a ConfigMap"),
    )?;
    let mut cm = configmap("wrong-labels");
    cm["metadata"]["labels"] = json!(["not", "a", "map"]);
    expect_status(
        &c.post_json(&format!("{NS}/configmaps"), &cm)?,
        400,
        "BadRequest",
        None,
    )?;
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "wrong-replicas"}, "spec": {"replicas": "three"}});
    expect_status(&c.post_json(DEPLOYMENTS, &d)?, 400, "BadRequest", None)?;
    // A body of the wrong kind or namespace for the URL.
    let mut cm = configmap("wrong-version");
    cm["apiVersion"] = json!("apps/v1");
    expect_status(
        &c.post_json(&format!("{NS}/configmaps"), &cm)?,
        400,
        "BadRequest",
        None,
    )?;
    let mut cm = configmap("wrong-ns");
    cm["metadata"]["namespace"] = json!("kube-system");
    expect_status(
        &c.post_json(&format!("{NS}/configmaps"), &cm)?,
        400,
        "BadRequest",
        None,
    )
}

fn body_too_large(c: &Ctx) -> Outcome {
    let mut cm = configmap("huge");
    cm["data"]["a"] = json!("x".repeat(MAX_BODY + 1024));
    let body = cm.to_string().into_bytes();
    let path = format!("{NS}/configmaps");
    // HTTP/2 and HTTP/1.1 reach the limit by different paths in the server stack.
    for (proto, client) in [
        ("h2", c.admin.clone()),
        ("http/1.1", c.admin.clone().http1_only()),
    ] {
        let r = client
            .request("POST", &path, Some("application/json"), body.clone())
            .map_err(|e| format!("{proto}: {e}"))?;
        expect_status(&r, 413, "RequestEntityTooLarge", None)
            .map_err(|e| format!("{proto}: {e}"))?;
    }
    let r = c.send("GET", &format!("{NS}/configmaps/huge"), None, b"")?;
    expect_status(&r, 404, "NotFound", None)
}

fn invalid_names(c: &Ctx) -> Outcome {
    let path = format!("{NS}/configmaps");
    for name in ["Bad_Name!", "UPPER", "-leading-dash", &"a".repeat(254)] {
        let r = c.post_json(&path, &configmap(name))?;
        expect_invalid(&r, "metadata.name").map_err(|e| format!("name {name:.20}: {e}"))?;
    }
    let r = c.post_json(
        &path,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
    )?;
    expect_invalid(&r, "metadata.name")?;
    // Namespaces are DNS labels: no dots.
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "has.dots"}});
    expect_invalid(&c.post_json("/api/v1/namespaces", &ns)?, "metadata.name")?;
    let mut cm = configmap("bad-label");
    cm["metadata"]["labels"] = json!({"ok": "not a valid value!"});
    expect_invalid(&c.post_json(&path, &cm)?, "metadata.labels")
}

fn immutable_fields(c: &Ctx) -> Outcome {
    let mut cm = configmap("frozen");
    cm["immutable"] = json!(true);
    expect_created(&c.post_json(&format!("{NS}/configmaps"), &cm)?)?;
    let r = c.send(
        "PATCH",
        &format!("{NS}/configmaps/frozen"),
        Some("application/merge-patch+json"),
        br#"{"data":{"a":"2"}}"#,
    )?;
    expect_invalid(&r, "data")?;

    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fixed"},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {
            "metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "registry.local/c:1"}]}}}});
    expect_created(&c.post_json(DEPLOYMENTS, &d)?)?;
    let r = c.send(
        "PATCH",
        &format!("{DEPLOYMENTS}/fixed"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"selector":{"matchLabels":{"app":"b"}},"template":{"metadata":{"labels":{"app":"b"}}}}}"#,
    )?;
    expect_invalid(&r, "spec.selector")
}

fn patch_missing_object(c: &Ctx) -> Outcome {
    let path = format!("{NS}/configmaps/no-such-object");
    for ct in [
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
    ] {
        let body: &[u8] = if ct.contains("json-patch") {
            br#"[{"op":"add","path":"/data","value":{}}]"#
        } else {
            br#"{"data":{"a":"2"}}"#
        };
        let r = c.send("PATCH", &path, Some(ct), body)?;
        expect_status(&r, 404, "NotFound", Some("not found")).map_err(|e| format!("{ct}: {e}"))?;
    }
    Ok(())
}

fn unknown_resource(c: &Ctx) -> Outcome {
    for path in [
        format!("{NS}/widgets"),
        "/api/v1/widgets".to_string(),
        "/apis/nope.example.com/v1/widgets".to_string(),
        "/apis/apps/v9/deployments".to_string(),
        "/api/v2/pods".to_string(),
    ] {
        let r = c.send("GET", &path, None, b"")?;
        expect_status(&r, 404, "NotFound", None).map_err(|e| format!("{path}: {e}"))?;
    }
    let r = c.post_json(&format!("{NS}/widgets"), &json!({"kind": "Widget"}))?;
    expect_status(&r, 404, "NotFound", None)
}

fn watch_from_the_future(c: &Ctx) -> Outcome {
    let client = c.admin.clone().with_timeout(FUTURE_WATCH_DEADLINE);
    let started = Instant::now();
    let r = client.get(&format!(
        "{NS}/configmaps?watch=true&resourceVersion=999999999"
    ))?;
    let took = started.elapsed();
    expect_status(&r, 504, "Timeout", Some("Too large resource version"))?;
    if took > FUTURE_WATCH_DEADLINE {
        return Err(format!("answered after {took:?}"));
    }
    Ok(())
}

fn bad_query_parameters(c: &Ctx) -> Outcome {
    for query in [
        "labelSelector=a%3D%3D%3Db",
        "resourceVersion=abc&watch=true",
        "limit=abc",
        "fieldSelector=no-operator",
    ] {
        let r = c.send("GET", &format!("{NS}/configmaps?{query}"), None, b"")?;
        expect_status(&r, 400, "BadRequest", None).map_err(|e| format!("{query}: {e}"))?;
    }
    Ok(())
}

fn no_credentials(c: &Ctx) -> Outcome {
    let anon = c.server.client(Identity::Anonymous);
    expect_status(
        &anon.get(&format!("{NS}/configmaps"))?,
        401,
        "Unauthorized",
        None,
    )?;
    let r = anon.request(
        "POST",
        &format!("{NS}/configmaps"),
        Some("application/json"),
        configmap("anon").to_string().into_bytes(),
    )?;
    expect_status(&r, 401, "Unauthorized", None)?;
    let wrong = c.server.client(Identity::Bearer("no-such-token".into()));
    expect_status(
        &wrong.get(&format!("{NS}/configmaps"))?,
        401,
        "Unauthorized",
        None,
    )
}

fn certificate_from_another_ca(c: &Ctx) -> Outcome {
    let other = CertificateAuthority::generate("intruder-ca").map_err(|e| e.to_string())?;
    let pair = other
        .issue(&LeafProfile::Client {
            user: "admin".into(),
            group: Some("system:masters".into()),
        })
        .map_err(|e| e.to_string())?;
    let intruder = c.server.client(Identity::Certificate {
        cert_pem: pair.cert_pem,
        key_pem: pair.key_pem,
    });
    match intruder.get(&format!("{NS}/configmaps")) {
        // Refused in the TLS handshake, or answered 401: both keep the intruder out.
        Err(e) if e.contains("TLS") || e.contains("request") => Ok(()),
        Err(e) => Err(format!("unexpected failure: {e}")),
        Ok(r) => expect_status(&r, 401, "Unauthorized", None),
    }
}

fn unsupported_content_type(c: &Ctx) -> Outcome {
    let body = configmap("plain").to_string().into_bytes();
    for ct in [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
    ] {
        let r = c.send("POST", &format!("{NS}/configmaps"), Some(ct), &body)?;
        expect_status(&r, 415, "UnsupportedMediaType", None).map_err(|e| format!("{ct}: {e}"))?;
    }
    // A patch must say which kind of patch it is.
    expect_created(&c.post_json(&format!("{NS}/configmaps"), &configmap("patched"))?)?;
    let r = c.send(
        "PATCH",
        &format!("{NS}/configmaps/patched"),
        Some("application/json"),
        br#"{"data":{"a":"2"}}"#,
    )?;
    expect_status(&r, 415, "UnsupportedMediaType", None)
}

fn stale_preconditions(c: &Ctx) -> Outcome {
    let r = c.post_json(&format!("{NS}/configmaps"), &configmap("guarded"))?;
    expect_created(&r)?;
    let created = r.json();
    let path = format!("{NS}/configmaps/guarded");
    let stale_uid = json!({"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}});
    let r = c.send(
        "DELETE",
        &path,
        Some("application/json"),
        stale_uid.to_string().as_bytes(),
    )?;
    expect_status(&r, 409, "Conflict", Some("Precondition failed"))?;
    let stale_rv = json!({"preconditions": {"resourceVersion": "1"}});
    let r = c.send(
        "DELETE",
        &path,
        Some("application/json"),
        stale_rv.to_string().as_bytes(),
    )?;
    expect_status(&r, 409, "Conflict", None)?;
    // An update with a stale resourceVersion conflicts the same way.
    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let r = c.send(
        "PUT",
        &path,
        Some("application/json"),
        stale.to_string().as_bytes(),
    )?;
    expect_status(&r, 409, "Conflict", None)?;
    // Still there after the refused deletes; the right preconditions delete it.
    let fresh = json!({"preconditions": {
        "uid": created["metadata"]["uid"], "resourceVersion": created["metadata"]["resourceVersion"]}});
    let r = c.send(
        "DELETE",
        &path,
        Some("application/json"),
        fresh.to_string().as_bytes(),
    )?;
    if r.status != 200 {
        return Err(format!(
            "delete with current preconditions: {} {}",
            r.status,
            r.text()
        ));
    }
    Ok(())
}

const CASES: &[(&str, Case)] = &[
    ("malformed JSON", malformed_json),
    ("malformed YAML", malformed_yaml),
    ("unknown field, Strict", strict_unknown_field),
    ("duplicate field, Strict", strict_duplicate_field),
    ("wrong types", wrong_types),
    ("body over 3 MiB", body_too_large),
    ("invalid names", invalid_names),
    ("changed immutable field", immutable_fields),
    ("patch of a missing object", patch_missing_object),
    ("unknown resource", unknown_resource),
    ("watch from a future resourceVersion", watch_from_the_future),
    ("bad query parameters", bad_query_parameters),
    ("no credentials", no_credentials),
    (
        "client certificate from another CA",
        certificate_from_another_ca,
    ),
    ("unsupported Content-Type", unsupported_content_type),
    ("delete with a stale precondition", stale_preconditions),
];

fn run_all_cases(server: &Server) {
    let ctx = Ctx {
        server,
        admin: server.admin_client(),
    };
    let mut failures = Vec::new();
    for (name, case) in CASES {
        match case(&ctx) {
            Ok(()) => eprintln!("PASS {name}"),
            Err(why) => {
                eprintln!("FAIL {name}: {why}");
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    // None of it may have hurt the server.
    let ready = ctx.admin.get("/readyz").map(|r| (r.status, r.text()));
    assert_eq!(
        ready,
        Ok((200, "ok".to_string())),
        "/readyz after the bad input"
    );
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn bad_input_gets_4xx_statuses_on_the_embedded_store() {
    let server = Server::start();
    run_all_cases(&server);
}

#[test]
fn bad_input_gets_4xx_statuses_on_etcd() {
    let etcd = Etcd::start();
    let server = Server::start_with(ServerOptions::etcd(&etcd));
    run_all_cases(&server);
}
