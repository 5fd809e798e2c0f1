//! A StatefulSet with real containers (root): `flotilla server` with its scheduler and
//! controllers, a real node agent (runc, CNI, a local registry). Its pod's claim comes from
//! the volumeClaimTemplate, bound through the default StorageClass (`local-path`); the data
//! the first pod writes there is what its replacement, under the same name, finds.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::Cluster;

const KUBECTL: &str = "1.33";
const DEADLINE: Duration = Duration::from_secs(90);

fn kubectl(c: &Cluster, args: &[&str]) -> String {
    c.kubectl_run(KUBECTL, args)
        .expect_success(&args.join(" "))
        .to_string()
}

fn get(c: &Cluster, what: &[&str]) -> Option<Value> {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json"]);
    let out = c.kubectl_run(KUBECTL, &args);
    if !out.success() {
        return None;
    }
    serde_json::from_str(&out.stdout).ok()
}

fn ready(p: &Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_null()
        && p["status"]["phase"] == "Running"
        && p["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// What the pod's container printed, once it printed a line starting with `prefix`.
fn log_line(c: &Cluster, pod: &str, prefix: &str) -> Option<String> {
    let out = c.kubectl_run(KUBECTL, &["logs", pod]);
    out.success()
        .then(|| {
            out.stdout
                .lines()
                .find(|l| l.starts_with(prefix))
                .map(str::to_string)
        })
        .flatten()
}

fn diagnostics(c: &Cluster) -> String {
    let log = c.agent_log();
    format!(
        "{}\n{}\n{}\n--- agent log ---\n{}",
        c.kubectl_run(KUBECTL, &["get", "pods,pvc,pv,sc", "-o", "wide"])
            .stdout,
        c.kubectl_run(KUBECTL, &["get", "events"]).stdout,
        c.kubectl_run(KUBECTL, &["get", "sts", "-o", "yaml"]).stdout,
        &log[log.len().saturating_sub(4000)..]
    )
}

#[test]
fn a_statefulset_pod_keeps_its_data_when_recreated() {
    let c = Cluster::start();
    // The first pod writes a random token into its volume; any later pod finds it.
    let script = "if [ -f /data/token ]; then echo \"found $(cat /data/token)\"; \
                  else t=$(cat /proc/sys/kernel/random/uuid); echo $t > /data/token; \
                  echo \"wrote $t\"; fi; exec sleep 3600";
    let set = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "db", "image": c.image,
                        "command": ["sh", "-c", script],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                    }]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "16Mi"}}
                }
            }]
        }
    });
    // Claims made before the default class exists get none and never bind.
    testkit::wait_for(DEADLINE, || get(&c, &["storageclass", "local-path"]))
        .unwrap_or_else(|| panic!("no default StorageClass\n{}", diagnostics(&c)));
    c.kubectl(KUBECTL)
        .stdin(set.to_string())
        .run(&["apply", "-f", "-"])
        .expect_success("kubectl apply");

    let first = testkit::wait_for(DEADLINE, || get(&c, &["pod", "db-0"]).filter(ready))
        .unwrap_or_else(|| panic!("db-0 never Running and Ready\n{}", diagnostics(&c)));
    let wrote = testkit::wait_for(DEADLINE, || log_line(&c, "db-0", "wrote "))
        .unwrap_or_else(|| panic!("db-0 wrote nothing\n{}", diagnostics(&c)));
    let token = wrote.trim_start_matches("wrote ").to_string();
    assert!(!token.is_empty());

    // The claim came from the template, got the default class and a volume.
    let claim = get(&c, &["pvc", "data-db-0"]).unwrap();
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
    assert_eq!(claim["metadata"]["labels"]["app"], "db");
    let pv_name = claim["spec"]["volumeName"].as_str().unwrap().to_string();

    kubectl(&c, &["delete", "pod", "db-0", "--wait=false"]);
    let second = testkit::wait_for(DEADLINE, || {
        get(&c, &["pod", "db-0"])
            .filter(|p| p["metadata"]["uid"] != first["metadata"]["uid"] && ready(p))
    })
    .unwrap_or_else(|| panic!("db-0 not recreated\n{}", diagnostics(&c)));
    let found =
        testkit::wait_for(DEADLINE, || log_line(&c, "db-0", "found ")).unwrap_or_else(|| {
            panic!(
                "the new db-0 did not find the token: {:?}\n{}",
                c.kubectl_run(KUBECTL, &["logs", "db-0"]).stdout,
                diagnostics(&c)
            )
        });
    assert_eq!(found, format!("found {token}"));
    assert_eq!(second["metadata"]["name"], "db-0");
    // The same claim and volume.
    let claim_after = get(&c, &["pvc", "data-db-0"]).unwrap();
    assert_eq!(claim_after["metadata"]["uid"], claim["metadata"]["uid"]);
    assert_eq!(claim_after["spec"]["volumeName"], pv_name.as_str());
}
