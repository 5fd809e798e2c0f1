//! The sandbox record, `root/<id>/sandbox.json`: everything needed to report a sandbox and
//! to tear it down after the agent restarts — including the exact CNI configuration and
//! runtime config used on ADD, since DEL must repeat them (portmap leaves its rules
//! otherwise).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cri::{PodSandbox, RuntimeError, SandboxState};

pub const RECORD_FILE: &str = "sandbox.json";

/// A sandbox's ID: derived from the pod UID, so running the same pod's sandbox twice finds
/// the first one. 64 hex characters, like containerd's.
pub fn sandbox_id(pod_uid: &str) -> String {
    hex::encode(Sha256::digest(pod_uid.as_bytes()))
}

/// Whether `id` could be one of ours: guards path joins against `..` and slashes.
pub fn valid_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordState {
    Ready,
    NotReady,
}

/// What was handed to CNI on ADD, replayed verbatim on DEL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CniAttachment {
    pub conflist: serde_json::Value,
    pub runtime_config: serde_json::Value,
    /// `CNI_ARGS` pairs.
    pub args: Vec<(String, String)>,
    /// The ADD result, DEL's `prevResult`; None if ADD never finished.
    pub result: Option<serde_json::Value>,
    /// True from just before ADD until DEL succeeded: a crash in between leaves it set, so
    /// the next stop or remove releases what a partial ADD may hold.
    pub attached: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub pod_uid: String,
    pub namespace: String,
    pub name: String,
    pub hostname: String,
    pub host_network: bool,
    pub state: RecordState,
    pub created_at: SystemTime,
    pub netns_path: Option<PathBuf>,
    pub ipc_ns_path: PathBuf,
    pub uts_ns_path: PathBuf,
    pub ips: Vec<IpAddr>,
    pub cgroup_parent: String,
    pub labels: BTreeMap<String, String>,
    pub cni: Option<CniAttachment>,
}

impl SandboxRecord {
    pub fn to_pod_sandbox(&self, dir: &Path) -> PodSandbox {
        PodSandbox {
            id: self.id.clone(),
            pod_uid: self.pod_uid.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            state: match self.state {
                RecordState::Ready => SandboxState::Ready,
                RecordState::NotReady => SandboxState::NotReady,
            },
            created_at: self.created_at,
            netns_path: self.netns_path.clone(),
            ipc_ns_path: Some(self.ipc_ns_path.clone()),
            uts_ns_path: Some(self.uts_ns_path.clone()),
            ips: self.ips.clone(),
            hosts_path: dir.join("hosts"),
            hostname_path: dir.join("hostname"),
            resolv_conf_path: dir.join("resolv.conf"),
            cgroup_parent: self.cgroup_parent.clone(),
            labels: self.labels.clone(),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), RuntimeError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| RuntimeError::Other(format!("encode sandbox record: {e}")))?;
        write_atomic(&dir.join(RECORD_FILE), &bytes)
    }

    /// The record in `dir`, or None if there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>, RuntimeError> {
        let path = dir.join(RECORD_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RuntimeError::io(format!("read {}", path.display()), e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RuntimeError::Other(format!("decode {}: {e}", path.display())))
    }
}

/// Writes `bytes` to `path` so a reader (or a crash) sees the old file or the new, never
/// half of one: a temp file in the same dir, fsync, rename, fsync of the dir. For the
/// record, which must survive a machine crash: host-local's allocations on disk do too,
/// and only the record lets a later remove release them.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    write_replacing(path, bytes, true)
}

/// [`write_atomic`] without the fsyncs, for files that matter only while the machine is
/// up (the /etc files: after a reboot the namespaces are gone and the sandbox is rebuilt).
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    write_replacing(path, bytes, false)
}

fn write_replacing(path: &Path, bytes: &[u8], durable: bool) -> Result<(), RuntimeError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let ctx = |what: &str| format!("{what} {}", path.display());
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| RuntimeError::io(ctx("temp file for"), e))?;
    tmp.write_all(bytes)
        .and_then(|()| {
            if durable {
                tmp.as_file().sync_all()
            } else {
                Ok(())
            }
        })
        .map_err(|e| RuntimeError::io(ctx("write"), e))?;
    // Container bind mounts need the files world-readable (non-root users read resolv.conf).
    set_mode(tmp.path(), 0o644).map_err(|e| RuntimeError::io(ctx("chmod"), e))?;
    tmp.persist(path)
        .map_err(|e| RuntimeError::io(ctx("rename into"), e.error))?;
    if durable {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| RuntimeError::io(ctx("sync dir of"), e))?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_safe() {
        let a = sandbox_id("6b1f0c9e-1111-2222-3333-444455556666");
        assert_eq!(a, sandbox_id("6b1f0c9e-1111-2222-3333-444455556666"));
        assert_ne!(a, sandbox_id("other"));
        assert!(valid_id(&a));
        assert!(!valid_id("../../etc"));
        assert!(!valid_id(&format!("{}/", &a[..63])));
    }

    #[test]
    fn record_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SandboxRecord::load(dir.path()).unwrap().is_none());
        let mut rec = SandboxRecord {
            id: sandbox_id("u"),
            pod_uid: "u".into(),
            namespace: "ns".into(),
            name: "n".into(),
            hostname: "n".into(),
            host_network: false,
            state: RecordState::NotReady,
            created_at: SystemTime::now(),
            netns_path: Some("/run/netns/x".into()),
            ipc_ns_path: dir.path().join("ns/ipc"),
            uts_ns_path: dir.path().join("ns/uts"),
            ips: vec![],
            cgroup_parent: "flotilla/podu".into(),
            labels: BTreeMap::from([("a".into(), "b".into())]),
            cni: Some(CniAttachment {
                conflist: serde_json::json!({"name": "x"}),
                runtime_config: serde_json::json!({"portMappings": []}),
                args: vec![("K8S_POD_NAME".into(), "n".into())],
                result: None,
                attached: true,
            }),
        };
        rec.save(dir.path()).unwrap();
        rec.state = RecordState::Ready;
        rec.ips = vec!["10.244.0.2".parse().unwrap()];
        rec.save(dir.path()).unwrap();
        let back = SandboxRecord::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.state, RecordState::Ready);
        assert_eq!(back.ips, rec.ips);
        assert_eq!(back.created_at, rec.created_at);
        let sb = back.to_pod_sandbox(dir.path());
        assert_eq!(sb.state, SandboxState::Ready);
        assert_eq!(sb.hosts_path, dir.path().join("hosts"));
        // Only the record itself is left: no temp files.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);

        std::fs::write(dir.path().join(RECORD_FILE), b"{broken").unwrap();
        assert!(SandboxRecord::load(dir.path()).is_err());
    }
}
