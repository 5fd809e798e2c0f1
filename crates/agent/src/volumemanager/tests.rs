//! VolumeManager against a fake API server and temp dirs.

use std::os::unix::fs::PermissionsExt;

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};
use serde_json::json;

use super::testing::FakeApi;
use super::*;

fn pod(uid: &str, volumes: serde_json::Value, mounts: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", "uid": uid, "labels": {"app": "web"}},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "volumeMounts": mounts,
                            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
            "volumes": volumes
        }
    }))
    .unwrap()
}

fn container(pod: &Pod) -> Container {
    pod.spec.as_ref().unwrap().containers[0].clone()
}

fn config_map(name: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "ns"}, "data": data})
}

#[tokio::test]
async fn config_map_volume_updates_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::default();
    api.put(config_map("cfg", json!({"a": "1", "b": "2"})));
    let vm = VolumeManager::new(tmp.path().to_path_buf(), api.client());
    let p = pod(
        "u1",
        json!([{"name": "conf", "configMap": {"name": "cfg"}}]),
        json!([{"name": "conf", "mountPath": "/etc/conf"}]),
    );
    vm.setup_pod(&p).await.unwrap();
    let dir = tmp.path().join("u1/volumes/kubernetes.io~configmap/conf");
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");

    let mounts = vm.container_mounts(&p, &container(&p)).unwrap();
    assert_eq!(mounts[0].host_path, dir);
    assert!(mounts[0].readonly, "configMap volumes are read-only");
    assert_eq!(mounts[1].container_path, "/dev/termination-log");

    api.put(config_map("cfg", json!({"a": "changed"})));
    vm.setup_pod(&p).await.unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "changed");
    assert!(!dir.join("b").exists(), "a removed key disappears");
}

#[tokio::test]
async fn missing_sources_fail_with_kubernetes_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::default();
    let vm = VolumeManager::new(tmp.path().to_path_buf(), api.client());
    let p = pod(
        "u2",
        json!([{"name": "conf", "configMap": {"name": "nope"}}]),
        json!([]),
    );
    let err = vm.setup_pod(&p).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"conf\" : configmap \"nope\" not found"
    );
    assert_eq!(err.reason(), "FailedMount");

    let p = pod(
        "u3",
        json!([{"name": "s", "secret": {"secretName": "gone"}}]),
        json!([]),
    );
    let err = vm.setup_pod(&p).await.unwrap_err();
    assert!(
        err.to_string().ends_with("secret \"gone\" not found"),
        "{err}"
    );

    // Optional and missing: an empty volume.
    let p = pod(
        "u4",
        json!([{"name": "conf", "configMap": {"name": "nope", "optional": true}}]),
        json!([]),
    );
    vm.setup_pod(&p).await.unwrap();

    api.put(config_map("cfg", json!({"a": "1"})));
    let p = pod(
        "u5",
        json!([{"name": "conf", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}]),
        json!([]),
    );
    let err = vm.setup_pod(&p).await.unwrap_err();
    assert!(err
        .to_string()
        .ends_with("configmap references non-existent config key: zz"));
}

#[tokio::test]
async fn secret_volume_is_tmpfs_with_modes_and_torn_down() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::default();
    api.put(json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "creds", "namespace": "ns"},
                   "data": {"user": "YWRtaW4=", "pass": "czNjcjN0"}}));
    let vm = VolumeManager::new(tmp.path().to_path_buf(), api.client());
    let p = pod(
        "u6",
        json!([{"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400,
                 "items": [{"key": "user", "path": "u/name"}, {"key": "pass", "path": "pw", "mode": 0o440}]}}]),
        json!([{"name": "s", "mountPath": "/secret"}]),
    );
    let guard = Teardown(&vm, "u6");
    vm.setup_pod(&p).await.unwrap();
    let dir = tmp.path().join("u6/volumes/kubernetes.io~secret/s");
    assert!(mounter::is_mount_point(&dir).unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.join("u/name")).unwrap(),
        "admin"
    );
    let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("u/name"), 0o400);
    assert_eq!(mode("pw"), 0o440);
    assert_eq!(vm.pods_on_disk(), ["u6"]);
    vm.teardown_pod("u6").await.unwrap();
    assert!(!tmp.path().join("u6").exists());
    assert!(vm.pods_on_disk().is_empty());
    vm.teardown_pod("u6").await.unwrap();
    drop(guard);
}

/// Unmounts even when an assertion failed.
struct Teardown<'a>(&'a VolumeManager, &'static str);

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let _ = teardown_dir(&self.0.root.join(self.1));
    }
}

#[tokio::test]
async fn downward_api_and_projected() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::default();
    api.put(config_map("ca", json!({"ca.crt": "PEM"})));
    let vm = VolumeManager::new(tmp.path().to_path_buf(), api.client());
    let mut p = pod(
        "u7",
        json!([
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "api", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token"}},
                {"configMap": {"name": "ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
            ]}}
        ]),
        json!([]),
    );
    let _guard = Teardown(&vm, "u7");
    vm.setup_pod(&p).await.unwrap();
    let info = tmp
        .path()
        .join("u7/volumes/kubernetes.io~downward-api/info");
    assert_eq!(
        std::fs::read_to_string(info.join("labels")).unwrap(),
        "app=\"web\""
    );
    let proj = tmp.path().join("u7/volumes/kubernetes.io~projected/api");
    assert_eq!(std::fs::read_to_string(proj.join("ca.crt")).unwrap(), "PEM");
    assert_eq!(
        std::fs::read_to_string(proj.join("namespace")).unwrap(),
        "ns"
    );
    assert!(!proj.join("token").exists());

    // A label change is rewritten on the next sync.
    p.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    vm.setup_pod(&p).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(info.join("labels")).unwrap(),
        "app=\"db\""
    );
}

#[tokio::test]
async fn empty_dir_sub_path_and_propagation() {
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::default();
    let vm = VolumeManager::new(tmp.path().to_path_buf(), api.client());
    let host = tmp.path().join("host-data");
    let p = pod(
        "u8",
        json!([
            {"name": "cache", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": host.to_str().unwrap(), "type": "DirectoryOrCreate"}}
        ]),
        json!([
            {"name": "cache", "mountPath": "/cache", "subPath": "one"},
            {"name": "cache", "mountPath": "/per-pod", "subPathExpr": "logs/$(POD)"},
            {"name": "host", "mountPath": "/host", "readOnly": true, "mountPropagation": "HostToContainer"}
        ]),
    );
    vm.setup_pod(&p).await.unwrap();
    assert!(host.is_dir());
    let mounts = vm.container_mounts(&p, &container(&p)).unwrap();
    let cache =
        std::fs::canonicalize(tmp.path().join("u8/volumes/kubernetes.io~empty-dir/cache")).unwrap();
    assert_eq!(mounts[0].host_path, cache.join("one"));
    assert!(!mounts[0].readonly);
    assert_eq!(mounts[1].host_path, cache.join("logs/p"));
    assert_eq!(mounts[2].host_path, host);
    assert!(mounts[2].readonly);
    assert_eq!(mounts[2].propagation, MountPropagation::HostToContainer);
    let tl = &mounts[3];
    assert_eq!(tl.container_path, "/dev/termination-log");
    assert_eq!(
        tl.host_path,
        vm.termination_message_file("u8", "c").unwrap()
    );
    assert!(tl.host_path.is_file());

    // Bidirectional needs privilege; an unknown volume is a config error.
    let mut c = container(&p);
    c.volume_mounts = Some(vec![VolumeMount {
        name: "cache".into(),
        mount_path: "/x".into(),
        mount_propagation: Some("Bidirectional".into()),
        ..Default::default()
    }]);
    let err = vm.container_mounts(&p, &c).unwrap_err();
    assert_eq!(err.reason(), "CreateContainerConfigError");
    c.volume_mounts = Some(vec![VolumeMount {
        name: "missing".into(),
        mount_path: "/x".into(),
        ..Default::default()
    }]);
    assert!(vm.container_mounts(&p, &c).is_err());
    c.volume_mounts = Some(vec![VolumeMount {
        name: "cache".into(),
        mount_path: "/x".into(),
        sub_path_expr: Some("$(UNSET)".into()),
        ..Default::default()
    }]);
    assert_eq!(
        vm.container_mounts(&p, &c).unwrap_err().to_string(),
        "missing value for UNSET"
    );
    vm.teardown_pod("u8").await.unwrap();
    assert!(host.is_dir(), "teardown leaves hostPath data alone");
}

#[tokio::test]
async fn host_path_type_failure_is_failed_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = VolumeManager::new(tmp.path().to_path_buf(), FakeApi::default().client());
    let missing = tmp.path().join("nope");
    let p = pod(
        "u9",
        json!([{"name": "h", "hostPath": {"path": missing.to_str().unwrap(), "type": "Directory"}}]),
        json!([]),
    );
    let err = vm.setup_pod(&p).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a directory",
            missing.display()
        )
    );
}

#[tokio::test]
async fn size_limit_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = VolumeManager::new(tmp.path().to_path_buf(), FakeApi::default().client());
    let p = pod(
        "u10",
        json!([{"name": "small", "emptyDir": {"sizeLimit": "64Ki"}}]),
        json!([]),
    );
    vm.setup_pod(&p).await.unwrap();
    assert!(vm.size_limit_violations(&p).await.unwrap().is_empty());
    let dir = tmp.path().join("u10/volumes/kubernetes.io~empty-dir/small");
    std::fs::write(dir.join("big"), vec![1u8; 256 * 1024]).unwrap();
    let v = vm.size_limit_violations(&p).await.unwrap();
    assert_eq!(v.len(), 1);
    assert!(v[0].used_bytes >= 256 * 1024);
    assert_eq!(
        v[0].message(),
        "Usage of EmptyDir volume \"small\" exceeds the limit \"64Ki\". "
    );
}

#[tokio::test]
async fn persistent_volume_claims() {
    let tmp = tempfile::tempdir().unwrap();
    let api = FakeApi::default();
    let vm = VolumeManager::new(tmp.path().to_path_buf(), api.client());
    let data = tmp.path().join("pv-data");
    std::fs::create_dir(&data).unwrap();
    let p = pod(
        "u11",
        json!([{"name": "d", "persistentVolumeClaim": {"claimName": "claim"}}]),
        json!([{"name": "d", "mountPath": "/data"}]),
    );
    let err = vm.setup_pod(&p).await.unwrap_err();
    assert!(matches!(err, VolumeError::ClaimNotReady { .. }), "{err}");
    assert!(vm.container_mounts(&p, &container(&p)).is_err());

    api.put(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "claim", "namespace": "ns"},
                   "spec": {}, "status": {"phase": "Pending"}}));
    let err = vm.setup_pod(&p).await.unwrap_err();
    assert!(err.to_string().contains("is not bound"), "{err}");

    api.put(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "claim", "namespace": "ns"},
                   "spec": {"volumeName": "pv1"}, "status": {"phase": "Bound"}}));
    api.put(json!({"apiVersion": "v1", "kind": "PersistentVolume",
                   "metadata": {"name": "pv1"},
                   "spec": {"local": {"path": data.to_str().unwrap()},
                            "claimRef": {"name": "claim", "namespace": "ns"}}}));
    vm.setup_pod(&p).await.unwrap();
    let mounts = vm.container_mounts(&p, &container(&p)).unwrap();
    assert_eq!(mounts[0].host_path, data);
    vm.teardown_pod("u11").await.unwrap();
    assert!(data.is_dir());
}

#[tokio::test]
async fn bad_uids_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let vm = VolumeManager::new(tmp.path().to_path_buf(), FakeApi::default().client());
    assert!(vm.teardown_pod("../etc").await.is_err());
    assert!(vm.teardown_pod("").await.is_err());
    let mut p = pod("x", json!([]), json!([]));
    p.metadata.uid = None;
    assert!(vm.setup_pod(&p).await.is_err());
}
