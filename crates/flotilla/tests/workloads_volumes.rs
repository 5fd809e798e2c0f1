//! Persistent volumes with real containers (root): `flotilla server` with its scheduler
//! and controllers, a real node agent, kubectl. A claim of the default class `local-path`
//! gets a directory under the agent's data dir once a pod uses it; what one pod writes
//! there the next pod reads; deleting the claim deletes the volume and its directory (the
//! node's cleanup).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use support::{wait_for, Cluster};

const KUBECTL: &str = "1.33";
/// Generous: the first pod waits for provisioning, binding and the first image pull.
const DEADLINE: Duration = Duration::from_secs(120);
const NS: &str = "vol-real";

fn kubectl(c: &Cluster, args: &[&str]) -> String {
    c.kubectl_run(KUBECTL, args)
        .expect_success(&args.join(" "))
        .to_string()
}

fn get(c: &Cluster, args: &[&str]) -> Option<Value> {
    let out = c.kubectl_run(KUBECTL, args);
    out.success()
        .then(|| serde_json::from_str(&out.stdout).ok())
        .flatten()
}

fn apply(c: &Cluster, obj: &Value) {
    c.kubectl(KUBECTL)
        .stdin(obj.to_string())
        .run(&["apply", "-f", "-"])
        .expect_success("kubectl apply");
}

/// A pod that runs `script` once with the claim mounted at /data.
fn pod(c: &Cluster, name: &str, script: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": name, "namespace": NS},
    "spec": {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": c.image,
                        "command": ["sh", "-c", script],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
    }})
}

/// Waits until the pod has finished and returns its phase.
fn finished(c: &Cluster, name: &str) -> String {
    wait_for(&format!("pod {name} finished"), DEADLINE, || {
        let p = get(c, &["get", "pod", name, "-n", NS, "-o", "json"])?;
        let phase = p["status"]["phase"].as_str()?.to_string();
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
    })
}

#[test]
fn a_claim_keeps_data_across_pods_and_its_deletion_removes_the_directory() {
    let c = Cluster::start();
    kubectl(&c, &["create", "namespace", NS]);
    // A claim made before the default class exists gets none.
    wait_for("the default StorageClass", DEADLINE, || {
        get(&c, &["get", "storageclass", "local-path", "-o", "json"])
    });
    apply(
        &c,
        &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": NS},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "64Mi"}}}}),
    );
    let pvc = get(&c, &["get", "pvc", "data", "-n", NS, "-o", "json"]).unwrap();
    assert_eq!(pvc["spec"]["storageClassName"], "local-path");

    // The writer is not root: the provisioned directory is writable by any user.
    let mut writer = pod(&c, "writer", "echo kept-across-pods > /data/greeting");
    writer["spec"]["securityContext"] = json!({"runAsUser": 1000, "runAsGroup": 1000});
    apply(&c, &writer);
    assert_eq!(finished(&c, "writer"), "Succeeded");
    let pvc = get(&c, &["get", "pvc", "data", "-n", NS, "-o", "json"]).unwrap();
    assert_eq!(pvc["status"]["phase"], "Bound");
    assert_eq!(
        pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        c.node_name.as_str()
    );
    let uid = pvc["metadata"]["uid"].as_str().unwrap().to_string();
    let pv_name = format!("pvc-{uid}");
    assert_eq!(pvc["spec"]["volumeName"], pv_name.as_str());
    let dir: PathBuf = c
        .agent_data_dir
        .join("storage")
        .join(format!("{pv_name}_{NS}_data"));
    let pv = get(&c, &["get", "pv", &pv_name, "-o", "json"]).unwrap();
    assert_eq!(
        pv["spec"]["hostPath"]["path"],
        dir.to_string_lossy().as_ref()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("greeting")).unwrap(),
        "kept-across-pods\n",
        "the file is in the node's directory"
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o777
    );
    assert_eq!(
        std::fs::metadata(dir.join("greeting")).unwrap().uid(),
        1000,
        "written by the pod's user"
    );
    kubectl(&c, &["delete", "pod", "writer", "-n", NS, "--wait=true"]);

    apply(&c, &pod(&c, "reader", "cat /data/greeting"));
    assert_eq!(finished(&c, "reader"), "Succeeded");
    let logs = wait_for("reader's logs", DEADLINE, || {
        let out = c.kubectl_run(KUBECTL, &["logs", "reader", "-n", NS]);
        (out.success() && !out.stdout.is_empty()).then(|| out.stdout.clone())
    });
    assert_eq!(logs, "kept-across-pods\n");
    kubectl(&c, &["delete", "pod", "reader", "-n", NS, "--wait=true"]);

    // Delete: the volume goes once the node has removed the directory.
    kubectl(&c, &["delete", "pvc", "data", "-n", NS, "--wait=true"]);
    wait_for("the volume deleted", DEADLINE, || {
        let out = c.kubectl_run(KUBECTL, &["get", "pv", &pv_name]);
        (!out.success() && out.stderr.contains("NotFound")).then_some(())
    });
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        c.agent_data_dir.join("storage").exists(),
        "the node's root itself stays"
    );
}
