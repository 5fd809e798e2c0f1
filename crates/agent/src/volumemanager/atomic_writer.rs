//! The kubelet's atomic writer: a volume's files live in an immutable timestamped directory
//! (`..2024_01_02_03_04_05.123456789`); `..data` is a symlink to the current one, replaced
//! with rename(2); each top-level user-visible name is a symlink `name -> ..data/name`.
//! A running container, which bind-mounts the volume directory, sees a new set of files
//! appear at once: readers that open through `..data` get either the old or the new set,
//! never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
const MAX_PATH: usize = 4096;
const MAX_NAME: usize = 255;

/// One file to write: content and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path (may contain `/`) → file.
pub type Payload = BTreeMap<String, FileProjection>;

#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    #[error("invalid path {path:?}: {why}")]
    InvalidPath { path: String, why: &'static str },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AtomicWriteError + 'a {
    move |source| AtomicWriteError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks a payload path as Kubernetes' validatePath does: relative, no `..` element, not
/// starting with `..`, bounded lengths.
pub fn validate_path(path: &str) -> Result<(), AtomicWriteError> {
    let invalid = |why| AtomicWriteError::InvalidPath {
        path: path.to_string(),
        why,
    };
    if path.is_empty() {
        return Err(invalid("empty"));
    }
    if path.len() > MAX_PATH {
        return Err(invalid("longer than 4096 bytes"));
    }
    if path.starts_with('/') {
        return Err(invalid("must be relative"));
    }
    if path.starts_with("..") {
        return Err(invalid("must not start with '..'"));
    }
    for element in path.split('/') {
        if element.len() > MAX_NAME {
            return Err(invalid("an element is longer than 255 bytes"));
        }
        if element == ".." {
            return Err(invalid("must not contain '..'"));
        }
    }
    if Path::new(path)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(invalid("must be a plain relative path"));
    }
    Ok(())
}

/// Ownership applied to every written file and directory (fsGroup).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ownership {
    pub gid: Option<u32>,
}

/// Writes `payload` into `target` atomically. Returns whether anything changed.
pub fn write(target: &Path, payload: &Payload, owner: Ownership) -> Result<bool, AtomicWriteError> {
    for path in payload.keys() {
        validate_path(path)?;
    }
    fs::create_dir_all(target).map_err(io_err("mkdir", target))?;
    let data_link = target.join(DATA_DIR);
    let old_ts = fs::read_link(&data_link).ok();
    let old_paths = match &old_ts {
        Some(ts) => existing_paths(&target.join(ts))?,
        None => BTreeSet::new(),
    };
    if let Some(ts) = &old_ts {
        if unchanged(&target.join(ts), payload, &old_paths, owner)?
            && user_visible_ok(target, payload)
        {
            return Ok(false);
        }
    }

    let ts_dir = new_ts_dir(target)?;
    if let Err(e) = write_payload(&ts_dir, payload, owner) {
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(e);
    }
    let ts_name = ts_dir
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| ts_dir.clone());

    let tmp_link = target.join(DATA_DIR_TMP);
    match fs::remove_file(&tmp_link) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &tmp_link)(e)),
    }
    symlink(&ts_name, &tmp_link).map_err(io_err("symlink", &tmp_link))?;
    fs::rename(&tmp_link, &data_link).map_err(io_err("rename", &data_link))?;

    // User-visible names: the top-level element of every payload path.
    let new_top: BTreeSet<String> = payload.keys().map(|p| top_level(p)).collect();
    for name in &new_top {
        let link = target.join(name);
        let want = Path::new(DATA_DIR).join(name);
        match fs::read_link(&link) {
            Ok(current) if current == want => continue,
            Ok(_) => fs::remove_file(&link).map_err(io_err("remove", &link))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => {
                // Something that is not a symlink squats the name: it was not ours to keep.
                remove_any(&link)?;
            }
        }
        symlink(&want, &link).map_err(io_err("symlink", &link))?;
    }
    let old_top: BTreeSet<String> = old_paths.iter().map(|p| top_level(p)).collect();
    for gone in old_top.difference(&new_top) {
        let link = target.join(gone);
        match fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &link)(e)),
        }
    }
    if let Some(ts) = old_ts {
        let old = target.join(ts);
        if old != ts_dir {
            remove_any(&old)?;
        }
    }
    Ok(true)
}

fn top_level(path: &str) -> String {
    path.split('/').next().unwrap_or(path).to_string()
}

fn remove_any(path: &Path) -> Result<(), AtomicWriteError> {
    let res = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    res.map_err(io_err("remove", path))
}

fn new_ts_dir(target: &Path) -> Result<PathBuf, AtomicWriteError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = jiff::Timestamp::now();
    let stamp = now.strftime("%Y_%m_%d_%H_%M_%S");
    loop {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("..{stamp}.{}{seq}", now.subsec_nanosecond());
        let dir = target.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &dir))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("mkdir", &dir)(e)),
        }
    }
}

fn write_payload(dir: &Path, payload: &Payload, owner: Ownership) -> Result<(), AtomicWriteError> {
    for (rel, file) in payload {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            if parent != dir {
                fs::create_dir_all(parent).map_err(io_err("mkdir", parent))?;
                let mut p = parent;
                while p != dir {
                    chown_group(p, owner, 0o755)?;
                    match p.parent() {
                        Some(next) => p = next,
                        None => break,
                    }
                }
            }
        }
        fs::write(&path, &file.data).map_err(io_err("write", &path))?;
        chown_group(&path, owner, file.mode & 0o7777)?;
    }
    chown_group(dir, owner, 0o755)
}

/// Sets the mode (umask-free), and with an fsGroup the group and the group read bits, as
/// the kubelet's SetVolumeOwnership does for read-only volumes.
fn chown_group(path: &Path, owner: Ownership, mode: u32) -> Result<(), AtomicWriteError> {
    if let Some(gid) = owner.gid {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|e| {
            AtomicWriteError::Io {
                op: "chown",
                path: path.to_path_buf(),
                source: io::Error::from(e),
            }
        })?;
    }
    let mode = effective_mode(mode, owner, path.is_dir());
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))
}

fn effective_mode(mode: u32, owner: Ownership, dir: bool) -> u32 {
    match (owner.gid, dir) {
        (None, _) => mode,
        (Some(_), false) => mode | 0o440,
        (Some(_), true) => mode | 0o2550,
    }
}

/// Relative paths of the regular files under a timestamped dir.
fn existing_paths(dir: &Path) -> Result<BTreeSet<String>, AtomicWriteError> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(base, &path, out)?;
            } else if let Ok(rel) = path.strip_prefix(base) {
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    match walk(dir, dir, &mut out) {
        Ok(()) => Ok(out),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(io_err("read", dir)(e)),
    }
}

fn unchanged(
    dir: &Path,
    payload: &Payload,
    existing: &BTreeSet<String>,
    owner: Ownership,
) -> Result<bool, AtomicWriteError> {
    if existing.len() != payload.len() {
        return Ok(false);
    }
    for (rel, file) in payload {
        if !existing.contains(rel) {
            return Ok(false);
        }
        let path = dir.join(rel);
        let meta = fs::metadata(&path).map_err(io_err("stat", &path))?;
        if meta.permissions().mode() & 0o7777 != effective_mode(file.mode & 0o7777, owner, false) {
            return Ok(false);
        }
        let current = fs::read(&path).map_err(io_err("read", &path))?;
        if current != file.data {
            return Ok(false);
        }
    }
    Ok(true)
}

fn user_visible_ok(target: &Path, payload: &Payload) -> bool {
    payload.keys().all(|p| {
        let name = top_level(p);
        fs::read_link(target.join(&name)).is_ok_and(|l| l == Path::new(DATA_DIR).join(&name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn payload(files: &[(&str, &str)]) -> Payload {
        files
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    FileProjection {
                        data: v.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn writes_links_and_updates_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        assert!(write(
            t,
            &payload(&[("a", "1"), ("sub/b", "2")]),
            Ownership::default()
        )
        .unwrap());
        assert_eq!(fs::read_link(t.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(
            fs::read_link(t.join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        assert_eq!(fs::read_to_string(t.join("sub/b")).unwrap(), "2");
        let first = fs::read_link(t.join("..data")).unwrap();
        assert!(first.to_string_lossy().starts_with(".."));
        let mode = fs::metadata(t.join("a")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);

        // Same payload: nothing rewritten.
        assert!(!write(
            t,
            &payload(&[("a", "1"), ("sub/b", "2")]),
            Ownership::default()
        )
        .unwrap());
        assert_eq!(fs::read_link(t.join("..data")).unwrap(), first);

        // Update with a removed key: the old dir and the stale link disappear.
        assert!(write(t, &payload(&[("a", "9"), ("c", "3")]), Ownership::default()).unwrap());
        assert_eq!(fs::read_to_string(t.join("a")).unwrap(), "9");
        assert_eq!(fs::read_to_string(t.join("c")).unwrap(), "3");
        assert!(fs::symlink_metadata(t.join("sub")).is_err());
        assert!(!t.join(&first).exists());
        let entries: Vec<_> = fs::read_dir(t)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries.len(), 4, "{entries:?}"); // a, c, ..data, one ts dir
    }

    #[test]
    fn modes_are_exact() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = payload(&[("k", "v")]);
        p.get_mut("k").unwrap().mode = 0o400;
        write(dir.path(), &p, Ownership::default()).unwrap();
        let mode = fs::metadata(dir.path().join("k"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        // Only the mode changes: that is an update too.
        p.get_mut("k").unwrap().mode = 0o600;
        assert!(write(dir.path(), &p, Ownership::default()).unwrap());
        let mode = fs::metadata(dir.path().join("k"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn fs_group_owns_files_and_dirs() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut p = payload(&[("d/k", "v")]);
        p.get_mut("d/k").unwrap().mode = 0o600;
        write(dir.path(), &p, Ownership { gid: Some(2345) }).unwrap();
        let file = fs::metadata(dir.path().join("d/k")).unwrap();
        assert_eq!(file.gid(), 2345);
        assert_eq!(file.uid(), 0);
        assert_eq!(file.permissions().mode() & 0o7777, 0o640);
        let sub = fs::metadata(dir.path().join("d")).unwrap();
        assert_eq!(sub.gid(), 2345);
        assert_eq!(sub.permissions().mode() & 0o7777, 0o2755);
        // Rewriting the same content with the same owner is a no-op.
        assert!(!write(dir.path(), &p, Ownership { gid: Some(2345) }).unwrap());
    }

    #[test]
    fn rejects_escaping_paths() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../x", "..data", ""] {
            assert!(
                write(dir.path(), &payload(&[(bad, "x")]), Ownership::default()).is_err(),
                "{bad}"
            );
        }
        assert!(!dir.path().join("..data").exists());
    }

    /// A reader resolving `..data` once and reading every file sees one version only.
    #[test]
    fn reader_never_sees_a_mix() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().to_path_buf();
        write(
            &t,
            &payload(&[("a", "0"), ("b", "0")]),
            Ownership::default(),
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut consistent_reads = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(ts) = fs::read_link(t.join("..data")) else {
                        continue;
                    };
                    let base = t.join(ts);
                    let (Ok(a), Ok(b)) = (
                        fs::read_to_string(base.join("a")),
                        fs::read_to_string(base.join("b")),
                    ) else {
                        continue; // the old set was removed under us: re-resolve
                    };
                    assert_eq!(a, b, "mixed versions");
                    consistent_reads += 1;
                }
                consistent_reads
            })
        };
        for i in 1..300 {
            let v = i.to_string();
            write(&t, &payload(&[("a", &v), ("b", &v)]), Ownership::default()).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let reads = reader.join().unwrap();
        assert!(reads > 0);
        assert_eq!(fs::read_to_string(t.join("a")).unwrap(), "299");
    }
}
