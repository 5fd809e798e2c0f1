//! What a container sees of its pod, end to end (root, real runc/CNI/registry): env from a
//! ConfigMap and a Secret (envFrom, secretKeyRef, fieldRef, $(VAR) expansion), a configMap
//! volume updated in place in the running container (while a subPath mount of it keeps the
//! old content, as in Kubernetes), a missing ConfigMap reported as
//! CreateContainerConfigError until it appears, the termination message file; secret,
//! downwardAPI, projected, memory and size-limited emptyDir, hostPath and
//! persistentVolumeClaim volumes.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::Cluster;

const KUBECTL: &str = "1.33";
/// First start pulls from the local registry and sets up the sandbox.
const START_DEADLINE: Duration = Duration::from_secs(120);
/// The pod worker resyncs every 10 s; the kubelet's own period is about a minute.
const UPDATE_DEADLINE: Duration = Duration::from_secs(60);

fn apply(cluster: &Cluster, manifest: &str) {
    cluster
        .kubectl(KUBECTL)
        .stdin(manifest)
        .run(&["apply", "-f", "-"])
        .expect_success("kubectl apply");
}

fn pod(cluster: &Cluster, name: &str) -> Option<Value> {
    let r = cluster
        .server
        .admin_client()
        .get(&format!("/api/v1/namespaces/default/pods/{name}"))
        .ok()?;
    (r.status == 200).then(|| r.json())
}

fn container_status(pod: &Value) -> Option<&Value> {
    pod["status"]["containerStatuses"].get(0)
}

/// The container's output: `kubectl logs`, or the CRI log file on the node when the logs
/// endpoint is unavailable (this test is about what the container sees, not about logs).
fn logs(cluster: &Cluster, name: &str) -> String {
    let out = cluster.kubectl_run(KUBECTL, &["logs", name]);
    if out.success() {
        return out.stdout;
    }
    let Some(p) = pod(cluster, name) else {
        return String::new();
    };
    let uid = p["metadata"]["uid"].as_str().unwrap_or_default();
    let dir = cluster
        .agent_data_dir
        .join("pod-logs")
        .join(format!("default_{name}_{uid}"))
        .join("app");
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

fn wait_logs_contain(cluster: &Cluster, name: &str, needles: &[&str], deadline: Duration) {
    let found = testkit::wait_for(deadline, || {
        let text = logs(cluster, name);
        needles.iter().all(|n| text.contains(n)).then_some(())
    });
    if found.is_none() {
        panic!(
            "pod {name}: logs lack {needles:?} after {deadline:?}\n--- logs ---\n{}\n--- pod ---\n{}\n--- agent log ---\n{}",
            logs(cluster, name),
            pod(cluster, name).map(|p| p["status"].to_string()).unwrap_or_default(),
            cluster.agent_log()
        );
    }
}

fn wait_running(cluster: &Cluster, name: &str) -> Value {
    testkit::wait_for(START_DEADLINE, || {
        let p = pod(cluster, name)?;
        container_status(&p)?["state"]["running"]
            .is_object()
            .then_some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "pod {name} not running within {START_DEADLINE:?}: {}\n--- agent log ---\n{}",
            pod(cluster, name)
                .map(|p| p["status"].to_string())
                .unwrap_or_default(),
            cluster.agent_log()
        )
    })
}

const CONFIG: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data: {GREETING: hello, MODE: blue}
---
apiVersion: v1
kind: Secret
metadata: {name: app-secret}
stringData: {PASSWORD: hunter2}
"#;

fn config_pod(image: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: cfg-pod}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    command: ["sh", "-c", "env | sort; while true; do echo \"mode=`cat /config/MODE` sub=`cat /sub/MODE`\"; sleep 1; done"]
    envFrom:
    - configMapRef: {{name: app-config}}
    env:
    - name: DB_PASSWORD
      valueFrom: {{secretKeyRef: {{name: app-secret, key: PASSWORD}}}}
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    - name: COMBINED
      value: "$(GREETING)-$(POD_NAME)"
    volumeMounts:
    - {{name: config, mountPath: /config}}
    - {{name: config, mountPath: /sub/MODE, subPath: MODE}}
  volumes:
  - name: config
    configMap: {{name: app-config}}
"#
    )
}

fn late_pod(image: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: late-pod}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    command: ["sh", "-c", "echo late=$LATE; sleep 3600"]
    envFrom:
    - configMapRef: {{name: late-config}}
"#
    )
}

#[test]
fn config_and_secrets_reach_the_container_and_config_volumes_update_in_place() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let cluster = Cluster::start();
    apply(&cluster, CONFIG);
    apply(&cluster, &config_pod(&cluster.image));
    apply(&cluster, &late_pod(&cluster.image));
    apply_json(
        &cluster,
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "says-bye"},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "app", "image": cluster.image,
                                     "command": ["sh", "-c", "echo goodbye > /dev/termination-log; exit 3"]}]}
        }),
    );

    // Env: envFrom, secretKeyRef, fieldRef and $(VAR) expansion; the volume and its subPath.
    let running = wait_running(&cluster, "cfg-pod");
    wait_logs_contain(
        &cluster,
        "cfg-pod",
        &[
            "GREETING=hello",
            "MODE=blue",
            "DB_PASSWORD=hunter2",
            "POD_NAME=cfg-pod",
            "COMBINED=hello-cfg-pod",
            "mode=blue sub=blue",
        ],
        Duration::from_secs(30),
    );
    let container_id = container_status(&running).unwrap()["containerID"].clone();
    assert!(container_id.is_string(), "{running}");

    // The ConfigMap changes: the mounted file follows in the running container; the subPath
    // mount keeps what it had.
    cluster
        .kubectl_run(
            KUBECTL,
            &[
                "patch",
                "configmap",
                "app-config",
                "-p",
                r#"{"data":{"MODE":"green"}}"#,
            ],
        )
        .expect_success("patch the ConfigMap");
    wait_logs_contain(
        &cluster,
        "cfg-pod",
        &["mode=green sub=blue"],
        UPDATE_DEADLINE,
    );
    let after = pod(&cluster, "cfg-pod").unwrap();
    let status = container_status(&after).unwrap();
    assert_eq!(
        status["containerID"], container_id,
        "the container was not replaced"
    );
    assert_eq!(status["restartCount"], 0, "{after}");

    // A ConfigMap that does not exist yet: CreateContainerConfigError with Kubernetes'
    // message, then the pod starts once it is created.
    let waiting = testkit::wait_for(START_DEADLINE, || {
        let p = pod(&cluster, "late-pod")?;
        let w = container_status(&p)?["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    })
    .unwrap_or_else(|| {
        panic!(
            "late-pod never reported CreateContainerConfigError: {}\n--- agent log ---\n{}",
            pod(&cluster, "late-pod")
                .map(|p| p["status"].to_string())
                .unwrap_or_default(),
            cluster.agent_log()
        )
    });
    assert!(
        waiting["message"]
            .as_str()
            .unwrap_or_default()
            .contains(r#"configmap "late-config" not found"#),
        "{waiting}"
    );
    apply(
        &cluster,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late-config}\ndata: {LATE: arrived}\n",
    );
    wait_running(&cluster, "late-pod");
    wait_logs_contain(
        &cluster,
        "late-pod",
        &["late=arrived"],
        Duration::from_secs(30),
    );

    // The termination message file is the container's to write, and reaches its status.
    let terminated = testkit::wait_for(START_DEADLINE, || {
        let p = pod(&cluster, "says-bye")?;
        let t = container_status(&p)?["state"]["terminated"].clone();
        t.is_object().then_some(t)
    })
    .unwrap_or_else(|| {
        panic!(
            "says-bye never terminated: {}\n--- agent log ---\n{}",
            pod(&cluster, "says-bye")
                .map(|p| p["status"].to_string())
                .unwrap_or_default(),
            cluster.agent_log()
        )
    });
    assert_eq!(terminated["exitCode"], 3, "{terminated}");
    assert_eq!(terminated["message"], "goodbye\n", "{terminated}");
}

/// Events about `object` with `reason`, newest last.
fn events(cluster: &Cluster, object: &str, reason: &str) -> Vec<String> {
    let Ok(r) = cluster
        .server
        .admin_client()
        .get("/api/v1/namespaces/default/events")
    else {
        return Vec::new();
    };
    r.json()["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == object && e["reason"] == reason)
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

fn wait_event(cluster: &Cluster, object: &str, reason: &str, needle: &str) {
    testkit::wait_for(START_DEADLINE, || {
        events(cluster, object, reason)
            .iter()
            .any(|m| m.contains(needle))
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no {reason} event for {object} containing {needle:?}: {:?}\n--- agent log ---\n{}",
            events(cluster, object, reason),
            cluster.agent_log()
        )
    });
}

fn apply_json(cluster: &Cluster, obj: &Value) {
    apply(cluster, &obj.to_string());
}

#[test]
fn secret_downward_projected_memory_host_path_and_claim_volumes() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let cluster = Cluster::start();
    let image = cluster.image.clone();
    apply(
        &cluster,
        r#"
apiVersion: v1
kind: Secret
metadata: {name: vol-secret}
stringData: {password: s3cret, unused: x}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: vol-ca}
data: {ca.crt: PEMDATA}
"#,
    );
    let script = [
        "grep ' /mem ' /proc/mounts | cut -d' ' -f3 | sed 's/^/memfs=/'",
        "echo pw=`cat /secret/pw` mode=`stat -L -c %a /secret/pw` files=`ls /secret | tr '\\n' ,`",
        "echo ns=`cat /proj/namespace` ca=`cat /proj/ca.crt` proj=`ls /proj | tr '\\n' ,`",
        "while true; do echo labels=`cat /info/labels | tr '\\n' ,`; sleep 1; done",
    ]
    .join("; ");
    apply_json(
        &cluster,
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "vols", "labels": {"tier": "one"}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "app", "image": image, "command": ["sh", "-c", script],
                    "volumeMounts": [
                        {"name": "secret", "mountPath": "/secret"},
                        {"name": "info", "mountPath": "/info"},
                        {"name": "proj", "mountPath": "/proj"},
                        {"name": "mem", "mountPath": "/mem"}
                    ]
                }],
                "volumes": [
                    {"name": "secret", "secret": {"secretName": "vol-secret",
                        "items": [{"key": "password", "path": "pw", "mode": 0o400}]}},
                    {"name": "info", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "proj", "projected": {"sources": [
                        {"configMap": {"name": "vol-ca"}},
                        {"downwardAPI": {"items": [
                            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                        {"serviceAccountToken": {"path": "token"}}
                    ]}},
                    {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}
                ]
            }
        }),
    );

    // hostPath with a type that does not match: FailedMount with Kubernetes' message.
    let missing = cluster.scratch_dir().join("not-there");
    apply_json(
        &cluster,
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad-host"},
            "spec": {"containers": [{"name": "app", "image": image, "command": ["true"],
                                     "volumeMounts": [{"name": "h", "mountPath": "/h"}]}],
                     "volumes": [{"name": "h", "hostPath": {"path": missing, "type": "Directory"}}]}
        }),
    );

    // A claim that is not bound yet holds its pod back on the node. The claim names no
    // class ("" opts out of the default local-path provisioner) and the pod names its node
    // (the scheduler would keep it Pending for the unbound claim, never reaching the agent).
    let pv_dir = cluster.scratch_dir().join("pv-data");
    std::fs::create_dir_all(&pv_dir).unwrap();
    apply_json(
        &cluster,
        &serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "resources": {"requests": {"storage": "1Mi"}}}
        }),
    );
    apply_json(
        &cluster,
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "claimant"},
            "spec": {"terminationGracePeriodSeconds": 1, "nodeName": cluster.node_name,
                     "containers": [{"name": "app", "image": image,
                                     "command": ["sh", "-c", "echo from-pod > /data/written; sleep 3600"],
                                     "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}
        }),
    );

    // An emptyDir on disk outgrowing its sizeLimit gets its pod evicted.
    apply_json(
        &cluster,
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hog"},
            "spec": {"terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
                     "containers": [{"name": "app", "image": image,
                                     "command": ["sh", "-c", "dd if=/dev/zero of=/scratch/big bs=1024 count=4096; sleep 3600"],
                                     "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
                     "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}]}
        }),
    );

    wait_running(&cluster, "vols");
    wait_logs_contain(
        &cluster,
        "vols",
        &[
            "memfs=tmpfs",
            "pw=s3cret mode=400 files=pw,",
            "ns=default ca=PEMDATA proj=ca.crt,namespace,",
            "labels=tier=\"one\"",
        ],
        Duration::from_secs(30),
    );
    // Labels change: the downwardAPI file follows in the running container.
    cluster
        .kubectl_run(
            KUBECTL,
            &["label", "pod", "vols", "tier=two", "--overwrite"],
        )
        .expect_success("relabel the pod");
    wait_logs_contain(&cluster, "vols", &["labels=tier=\"two\""], UPDATE_DEADLINE);

    wait_event(
        &cluster,
        "bad-host",
        "FailedMount",
        &format!(
            "hostPath type check failed: {} is not a directory",
            missing.display()
        ),
    );
    let bad = pod(&cluster, "bad-host").unwrap();
    assert_ne!(bad["status"]["phase"], "Running", "{bad}");

    wait_event(&cluster, "claimant", "FailedMount", "is not bound");
    assert_eq!(
        pod(&cluster, "claimant").unwrap()["status"]["phase"],
        "Pending"
    );
    // A volume pre-bound to the claim: the control plane's binder binds the pair; the
    // patches below do by hand what it does (idempotent when it was first).
    apply_json(
        &cluster,
        &serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-data"},
            "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": pv_dir},
                     "claimRef": {"namespace": "default", "name": "data"}}
        }),
    );
    cluster
        .kubectl_run(
            KUBECTL,
            &[
                "patch",
                "pvc",
                "data",
                "--type=merge",
                "-p",
                r#"{"spec":{"volumeName":"pv-data"}}"#,
            ],
        )
        .expect_success("set the claim's volume");
    cluster
        .kubectl_run(
            KUBECTL,
            &[
                "patch",
                "pvc",
                "data",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":"Bound"}}"#,
            ],
        )
        .expect_success("mark the claim Bound");
    wait_running(&cluster, "claimant");
    let written = testkit::wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(pv_dir.join("written")).ok()
    });
    assert_eq!(written.as_deref(), Some("from-pod\n"));

    let evicted = testkit::wait_for(UPDATE_DEADLINE, || {
        let p = pod(&cluster, "hog")?;
        (p["status"]["reason"] == "Evicted").then_some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "hog was not evicted: {}\n--- agent log ---\n{}",
            pod(&cluster, "hog")
                .map(|p| p["status"].to_string())
                .unwrap_or_default(),
            cluster.agent_log()
        )
    });
    assert_eq!(evicted["status"]["phase"], "Failed", "{evicted}");
    assert!(
        evicted["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(r#"Usage of EmptyDir volume "scratch" exceeds the limit "1Mi""#),
        "{evicted}"
    );
}
