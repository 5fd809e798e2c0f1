//! ResourceQuota end to end against a real `flotilla server`: kubectl sees the quota's use,
//! creates past it are refused in upstream's words, a dry run checks without charging,
//! deleted pods give their share back, and concurrent creates never overshoot a limit.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::Server;

fn create(server: &Server, manifest: serde_json::Value, extra: &[&str]) -> support::KubectlOutput {
    let mut args = vec!["create", "-f", "-"];
    args.extend_from_slice(extra);
    server
        .kubectl("1.33")
        .stdin(manifest.to_string())
        .run(&args)
}

fn pod(ns: &str, name: &str, requests: Option<(&str, &str)>) -> serde_json::Value {
    let resources = match requests {
        Some((cpu, memory)) => json!({"requests": {"cpu": cpu, "memory": memory}}),
        None => json!({}),
    };
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}})
}

/// `status.used[resource]` of quota `q` in `ns`, once the quota has a status.
fn used(server: &Server, ns: &str, resource: &str) -> Option<String> {
    let out = server.kubectl("1.33").run(&[
        "get",
        "quota",
        "q",
        "-n",
        ns,
        "-o",
        &format!("jsonpath={{.status.used.{}}}", resource.replace('.', "\\.")),
    ]);
    let v = out.expect_success("get quota").trim().to_string();
    (!v.is_empty()).then_some(v)
}

fn wait_used(server: &Server, ns: &str, resource: &str, want: &str) {
    let got = testkit::wait_for(Duration::from_secs(30), || {
        used(server, ns, resource).filter(|v| v == want)
    });
    assert!(
        got.is_some(),
        "{resource} used never became {want}: {:?}",
        used(server, ns, resource)
    );
}

/// A server with namespace `ns` holding quota `q` of `hard`, once its `first` use shows.
fn server_with_quota(ns: &str, hard: &str, first: &str) -> Server {
    let server = Server::start();
    server
        .kubectl("1.33")
        .run(&["create", "namespace", ns])
        .expect_success("create ns");
    server
        .kubectl("1.33")
        .run(&["create", "quota", "q", "-n", ns, &format!("--hard={hard}")])
        .expect_success("create quota");
    wait_used(&server, ns, first, "0");
    server
}

#[test]
fn pods_past_the_quota_are_refused_and_deleted_ones_give_their_share_back() {
    let ns = "quota-pods";
    let server = server_with_quota(ns, "pods=2,requests.cpu=1,requests.memory=1Gi", "pods");

    create(&server, pod(ns, "p1", Some(("300m", "100Mi"))), &[]).expect_success("p1");
    // A create that fails after admission (the name is taken) gives its charge back.
    let again = create(&server, pod(ns, "p1", Some(("300m", "100Mi"))), &[]);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(used(&server, ns, "pods").as_deref(), Some("1"));
    // A dry run is checked but charges nothing.
    create(
        &server,
        pod(ns, "p2", Some(("300m", "100Mi"))),
        &["--dry-run=server"],
    )
    .expect_success("p2 dry run");
    assert_eq!(used(&server, ns, "pods").as_deref(), Some("1"));
    create(&server, pod(ns, "p2", Some(("300m", "100Mi"))), &[]).expect_success("p2");
    assert_eq!(used(&server, ns, "requests.cpu").as_deref(), Some("600m"));
    assert_eq!(
        used(&server, ns, "requests.memory").as_deref(),
        Some("200Mi")
    );

    let refused = create(&server, pod(ns, "p3", Some(("300m", "100Mi"))), &[]);
    assert!(!refused.success());
    assert!(
        refused.stderr.contains(
            "pods \"p3\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        ),
        "{}",
        refused.stderr
    );
    let dry = create(
        &server,
        pod(ns, "p3", Some(("300m", "100Mi"))),
        &["--dry-run=server"],
    );
    assert!(dry.stderr.contains("exceeded quota: q"), "{}", dry.stderr);
    let unspecified = create(&server, pod(ns, "bare", None), &[]);
    assert!(
        unspecified.stderr.contains(
            "pods \"bare\" is forbidden: failed quota: q: must specify requests.cpu for: c; requests.memory for: c"
        ),
        "{}",
        unspecified.stderr
    );
    let table = server
        .kubectl("1.33")
        .run(&["get", "quota", "-n", ns])
        .expect_success("get quota")
        .to_string();
    assert!(
        table.contains("pods: 2/2") && table.contains("requests.cpu: 600m/1"),
        "{table}"
    );

    // A deleted pod's share comes back with the controller's next count.
    server
        .kubectl("1.33")
        .run(&["delete", "pod", "p1", "-n", ns])
        .expect_success("delete p1");
    wait_used(&server, ns, "pods", "1");
    wait_used(&server, ns, "requests.cpu", "300m");
    create(&server, pod(ns, "p3", Some(("300m", "100Mi"))), &[]).expect_success("p3 now fits");
}

#[test]
fn concurrent_creates_never_overshoot_a_count_quota() {
    let ns = "quota-race";
    let server = server_with_quota(ns, "count/configmaps=3", "count/configmaps");

    let client = server.admin_client();
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let codes: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (client, path) = (client.clone(), path.clone());
                s.spawn(move || {
                    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("cm-{i}")}});
                    client
                        .request(
                            "POST",
                            &path,
                            Some("application/json"),
                            body.to_string().into_bytes(),
                        )
                        .unwrap()
                        .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 403).count(), 5, "{codes:?}");
    let list = client.get(&path).unwrap().json();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    wait_used(&server, ns, "count/configmaps", "3");
}
