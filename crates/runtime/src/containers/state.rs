//! What a container leaves on disk under `root/<id>/`, so that the agent and the supervisor
//! never share memory: the agent writes the record at create time, the supervisor writes
//! `started.json` and `exit.json`, and a restarted agent reads all three back.
//!
//! Layout: `config.json` (the OCI spec runc reads), `container.json` (the CRI record),
//! `rootfs/`, `upper/`, `work/` (overlay), `pid` (runc's pid file), `started.json`,
//! `exit.json`, `start-error`, `supervisor.log`, `attach.sock`, `console.sock`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::cri::RuntimeError;

pub(crate) const RECORD: &str = "container.json";
pub(crate) const STARTED: &str = "started.json";
pub(crate) const EXIT: &str = "exit.json";
pub(crate) const START_ERROR: &str = "start-error";
pub(crate) const PID_FILE: &str = "pid";
pub(crate) const ATTACH_SOCKET: &str = "attach.sock";
pub(crate) const CONSOLE_SOCKET: &str = "console.sock";
pub(crate) const SUPERVISOR_LOG: &str = "supervisor.log";

/// Everything about a container that outlives the process that created it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub image_ref: String,
    pub image_id: String,
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub termination_message_path: Option<PathBuf>,
    /// Relative to the cgroup root, without a leading '/'.
    pub cgroup: String,
    pub runtime_binary: PathBuf,
    pub runtime_root: PathBuf,
    /// Bytes after which the supervisor rotates the log to `<log_path>.1`.
    pub log_max_bytes: u64,
}

/// Written by the supervisor once `runc start` returned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct StartedRecord {
    pub started_at: Timestamp,
    /// The container's init, in the host PID namespace.
    pub pid: i32,
    pub supervisor_pid: i32,
}

/// Written by the supervisor when the container's init was reaped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ExitRecord {
    pub exit_code: i32,
    pub finished_at: Timestamp,
    pub reason: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// Writes `value` as JSON to `dir/name` so that readers see either the old file or the
/// whole new one: write a temporary file, fsync, rename over.
pub(crate) fn write_atomic<T: Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
) -> Result<(), RuntimeError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| RuntimeError::Other(format!("encoding {name}: {e}")))?;
    write_bytes_atomic(dir, name, &bytes)
}

pub(crate) fn write_bytes_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), RuntimeError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let mut file = std::fs::File::create(&tmp)
        .map_err(|e| RuntimeError::io(format!("creating {}", tmp.display()), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| RuntimeError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &target)
        .map_err(|e| RuntimeError::io(format!("renaming to {}", target.display()), e))
}

/// Reads `dir/name`; Ok(None) when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(
    dir: &Path,
    name: &str,
) -> Result<Option<T>, RuntimeError> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RuntimeError::Invalid {
                what: path.display().to_string(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::io(format!("reading {}", path.display()), e)),
    }
}

/// Container IDs are 64 lowercase hex digits, like containerd's; anything else is refused
/// before it is joined to a path.
pub(crate) fn check_id(id: &str) -> Result<(), RuntimeError> {
    if id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(RuntimeError::NotFound(format!("container {id:?}")))
    }
}

pub(crate) fn new_id() -> Result<String, RuntimeError> {
    let mut bytes = [0u8; 32];
    let mut urandom = std::fs::File::open("/dev/urandom")
        .map_err(|e| RuntimeError::io("opening /dev/urandom", e))?;
    std::io::Read::read_exact(&mut urandom, &mut bytes)
        .map_err(|e| RuntimeError::io("reading /dev/urandom", e))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let exit = ExitRecord {
            exit_code: 3,
            finished_at: Timestamp::now(),
            reason: "Error".into(),
            message: None,
        };
        write_atomic(dir.path(), EXIT, &exit).unwrap();
        let back: ExitRecord = read_json(dir.path(), EXIT).unwrap().unwrap();
        assert_eq!(back, exit);
        assert!(read_json::<ExitRecord>(dir.path(), STARTED)
            .unwrap()
            .is_none());
        std::fs::write(dir.path().join(STARTED), b"{").unwrap();
        assert!(read_json::<StartedRecord>(dir.path(), STARTED).is_err());
    }

    #[test]
    fn ids() {
        let id = new_id().unwrap();
        check_id(&id).unwrap();
        assert_ne!(id, new_id().unwrap());
        assert!(check_id("../etc").is_err());
        assert!(check_id(&id.to_uppercase()).is_err());
    }
}
