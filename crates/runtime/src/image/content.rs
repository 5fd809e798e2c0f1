//! The content store's on-disk layout and its atomic writes. Every blob is stored under its
//! verified digest; every unpacked layer under its diff ID; temp files and dirs live in
//! `tmp/` on the same filesystem so a rename publishes them, and whatever a crash leaves
//! there by a process that no longer runs is cleared on open.
//!
//! ```text
//! ROOT/blobs/sha256/<hex>     manifests, configs, layer blobs
//! ROOT/layers/<hex>/          an unpacked layer (hex of its diff ID): an overlay lower dir
//! ROOT/images/<hex>.json      image records (hex of the config digest, the image ID)
//! ROOT/tmp/                   in-flight downloads and unpacks
//! ```

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::cri::RuntimeError;

#[derive(Debug)]
pub struct ContentStore {
    root: PathBuf,
    counter: AtomicU64,
}

/// The hex part of a `sha256:` digest, validated so it is safe as a file name.
pub fn digest_hex(digest: &str) -> Result<&str, RuntimeError> {
    match digest.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            Ok(hex)
        }
        _ => Err(RuntimeError::Invalid {
            what: "digest".into(),
            message: format!("{digest:?} is not a sha256 digest"),
        }),
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

impl ContentStore {
    pub fn open(root: &Path) -> Result<Self, RuntimeError> {
        for dir in ["blobs/sha256", "layers", "images"] {
            let d = root.join(dir);
            fs::create_dir_all(&d)
                .map_err(|e| RuntimeError::io(format!("create {}", d.display()), e))?;
        }
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp)
            .map_err(|e| RuntimeError::io(format!("create {}", tmp.display()), e))?;
        clear_stale_temps(&tmp);
        Ok(ContentStore {
            root: root.to_path_buf(),
            counter: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, RuntimeError> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    pub fn layer_path(&self, diff_id: &str) -> Result<PathBuf, RuntimeError> {
        Ok(self.root.join("layers").join(digest_hex(diff_id)?))
    }

    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// A fresh path under `tmp/` (not created).
    pub fn temp_path(&self, what: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, RuntimeError> {
        let p = self.blob_path(digest)?;
        fs::read(&p).map_err(|e| RuntimeError::io(format!("read blob {digest}"), e))
    }

    /// Stores `data` as the blob `digest` after checking it hashes to that digest.
    pub fn write_blob(&self, digest: &str, data: &[u8]) -> Result<PathBuf, RuntimeError> {
        let actual = sha256_digest(data);
        if actual != digest {
            return Err(digest_mismatch(digest, &actual));
        }
        let tmp = self.temp_path("blob");
        fs::write(&tmp, data).map_err(|e| RuntimeError::io("write blob", e))?;
        self.publish_blob(&tmp, digest)
    }

    /// Copies the file at `src` into the store as blob `digest`, hashing while copying.
    pub fn copy_blob_from(&self, src: &Path, digest: &str) -> Result<PathBuf, RuntimeError> {
        digest_hex(digest)?;
        let mut input = fs::File::open(src)
            .map_err(|e| RuntimeError::io(format!("open {}", src.display()), e))?;
        let tmp = self.temp_path("blob");
        let mut out = fs::File::create(&tmp).map_err(|e| RuntimeError::io("create blob", e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = input
                .read(&mut buf)
                .map_err(|e| RuntimeError::io(format!("read {}", src.display()), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| RuntimeError::io("write blob", e))?;
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            let _ = fs::remove_file(&tmp);
            return Err(digest_mismatch(digest, &actual));
        }
        self.publish_blob(&tmp, digest)
    }

    /// Renames a verified temp file into place; the same content may already be there.
    pub fn publish_blob(&self, tmp: &Path, digest: &str) -> Result<PathBuf, RuntimeError> {
        let dst = self.blob_path(digest)?;
        fs::rename(tmp, &dst).map_err(|e| RuntimeError::io(format!("store blob {digest}"), e))?;
        Ok(dst)
    }

    pub fn remove_blob(&self, digest: &str) -> Result<(), RuntimeError> {
        match fs::remove_file(self.blob_path(digest)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::io(format!("remove blob {digest}"), e)),
        }
    }

    /// Removes an unpacked layer: renamed into tmp first so a crash mid-delete never leaves a
    /// half layer under its real name.
    pub fn remove_layer(&self, diff_id: &str) -> Result<(), RuntimeError> {
        let dir = self.layer_path(diff_id)?;
        if !dir.exists() {
            return Ok(());
        }
        let doomed = self.temp_path("deleted-layer");
        fs::rename(&dir, &doomed)
            .map_err(|e| RuntimeError::io(format!("remove layer {diff_id}"), e))?;
        fs::remove_dir_all(&doomed)
            .map_err(|e| RuntimeError::io(format!("remove layer {diff_id}"), e))
    }
}

/// Removes what processes that no longer run left in `tmp/` (names carry the writer's pid),
/// so a CLI opening the store never disturbs a running agent's downloads.
fn clear_stale_temps(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if alive {
            continue;
        }
        let path = entry.path();
        let _ = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}

pub fn digest_mismatch(expected: &str, actual: &str) -> RuntimeError {
    RuntimeError::Invalid {
        what: "content".into(),
        message: format!("digest {actual} does not match {expected}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_verified_before_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cs = ContentStore::open(dir.path()).expect("open");
        let d = sha256_digest(b"hello");
        cs.write_blob(&d, b"hello").expect("write");
        assert!(cs.has_blob(&d));
        assert_eq!(cs.read_blob(&d).expect("read"), b"hello");
        let other = sha256_digest(b"other");
        assert!(matches!(
            cs.write_blob(&other, b"hello"),
            Err(RuntimeError::Invalid { .. })
        ));
        assert!(!cs.has_blob(&other));
        let src = dir.path().join("src");
        fs::write(&src, b"hello").expect("write");
        assert!(cs.copy_blob_from(&src, &other).is_err());
        cs.copy_blob_from(&src, &d).expect("same content again");
        cs.remove_blob(&d).expect("remove");
        cs.remove_blob(&d).expect("remove twice");
        assert!(!cs.has_blob(&d));
    }

    #[test]
    fn digests_must_be_safe_names() {
        assert!(digest_hex("sha256:../../etc/passwd").is_err());
        assert!(digest_hex(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(digest_hex(&format!("sha512:{}", "a".repeat(64))).is_err());
        assert!(digest_hex(&format!("sha256:{}", "a".repeat(64))).is_ok());
    }

    #[test]
    fn open_clears_leftover_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cs = ContentStore::open(dir.path()).expect("open");
        let mine = cs.temp_path("layer");
        fs::create_dir_all(&mine).expect("mkdir");
        // pid 0 is never a user process: a writer that is gone.
        let dead = dir.path().join("tmp/blob-0-7");
        fs::write(&dead, b"partial").expect("write");
        drop(cs);
        ContentStore::open(dir.path()).expect("reopen");
        assert!(!dead.exists(), "a dead writer's temp file survived");
        assert!(mine.exists(), "a live writer's temp dir was removed");
    }
}
