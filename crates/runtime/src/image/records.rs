//! Image records: what the node knows about each image, one JSON file per image ID, written
//! atomically (temp file + rename). References point at exactly one image; pulling a tag
//! that moved re-points it and leaves the old image untagged until it is collected.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cri::{Image, ImageConfig, RuntimeError};

use super::content::{digest_hex, ContentStore};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordConfig {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

impl From<&RecordConfig> for ImageConfig {
    fn from(c: &RecordConfig) -> Self {
        ImageConfig {
            entrypoint: c.entrypoint.clone(),
            cmd: c.cmd.clone(),
            env: c.env.clone(),
            working_dir: c.working_dir.clone(),
            user: c.user.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest: the image ID.
    pub id: String,
    /// Normalised names (`docker.io/library/busybox:latest`), newest first.
    pub references: Vec<String>,
    /// `repo@sha256:…` of the manifests it was pulled by.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// The platform image manifest (inside the index, for multi-arch images); None for a
    /// `docker save` import, which has none.
    #[serde(default)]
    pub manifest_digest: Option<String>,
    /// Blobs this image holds in the store: manifest(s), config, layer blobs.
    #[serde(default)]
    pub blobs: Vec<String>,
    /// Layer diff IDs, lowest first.
    pub diff_ids: Vec<String>,
    pub config: RecordConfig,
    /// Bytes of the unpacked layers.
    pub size: u64,
    pub last_used: jiff::Timestamp,
}

impl ImageRecord {
    /// Whether `key` names this image: a reference, the ID (with or without `sha256:`, or an
    /// unambiguous ≥12-hex prefix as `crictl` accepts), or a repo digest.
    pub fn matches(&self, key: &str, normalized: Option<&str>) -> bool {
        if normalized.is_some_and(|n| self.references.iter().any(|r| r == n)) {
            return true;
        }
        if self.references.iter().any(|r| r == key) || self.repo_digests.iter().any(|d| d == key) {
            return true;
        }
        if normalized.is_some_and(|n| self.repo_digests.iter().any(|d| d == n)) {
            return true;
        }
        let hex = self.id.trim_start_matches("sha256:");
        let k = key.trim_start_matches("sha256:");
        k.len() >= 12 && hex.starts_with(k)
    }

    pub fn to_image(&self, store: &ContentStore, reference: Option<&str>) -> Image {
        let reference = reference
            .map(String::from)
            .or_else(|| self.references.first().cloned())
            .or_else(|| self.repo_digests.first().cloned())
            .unwrap_or_else(|| self.id.clone());
        Image {
            reference,
            id: self.id.clone(),
            repo_digest: self.repo_digests.first().cloned(),
            layers: self
                .diff_ids
                .iter()
                .filter_map(|d| store.layer_path(d).ok())
                .collect(),
            config: ImageConfig::from(&self.config),
            size: self.size,
        }
    }
}

fn record_path(dir: &Path, id: &str) -> Result<PathBuf, RuntimeError> {
    Ok(dir.join(format!("{}.json", digest_hex(id)?)))
}

/// Loads every record under `dir`. A record that does not parse is skipped with a warning
/// rather than making the whole store unusable.
pub fn load_all(dir: &Path) -> Result<BTreeMap<String, ImageRecord>, RuntimeError> {
    let mut out = BTreeMap::new();
    let entries =
        fs::read_dir(dir).map_err(|e| RuntimeError::io(format!("read {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let parsed = fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<ImageRecord>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(r) => {
                out.insert(r.id.clone(), r);
            }
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping image record"),
        }
    }
    Ok(out)
}

pub fn save(store: &ContentStore, record: &ImageRecord) -> Result<(), RuntimeError> {
    let path = record_path(&store.images_dir(), &record.id)?;
    let data = serde_json::to_vec_pretty(record).map_err(|e| RuntimeError::Other(e.to_string()))?;
    let tmp = store.temp_path("record");
    fs::write(&tmp, data).map_err(|e| RuntimeError::io("write image record", e))?;
    fs::rename(&tmp, &path).map_err(|e| RuntimeError::io("store image record", e))
}

pub fn delete(store: &ContentStore, id: &str) -> Result<(), RuntimeError> {
    match fs::remove_file(record_path(&store.images_dir(), id)?) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io("remove image record", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ImageRecord {
        ImageRecord {
            id: format!("sha256:{}", "ab".repeat(32)),
            references: vec!["docker.io/library/busybox:latest".into()],
            repo_digests: vec![format!(
                "docker.io/library/busybox@sha256:{}",
                "cd".repeat(32)
            )],
            manifest_digest: Some(format!("sha256:{}", "cd".repeat(32))),
            blobs: vec![],
            diff_ids: vec![format!("sha256:{}", "ef".repeat(32))],
            config: RecordConfig {
                cmd: vec!["sh".into()],
                ..Default::default()
            },
            size: 10,
            last_used: jiff::Timestamp::now(),
        }
    }

    #[test]
    fn matches_by_reference_id_prefix_and_digest() {
        let r = record();
        assert!(r.matches("busybox", Some("docker.io/library/busybox:latest")));
        assert!(r.matches(&r.id, None));
        assert!(r.matches("abababababab", None));
        assert!(!r.matches("abab", None));
        assert!(r.matches(&r.repo_digests[0], None));
        assert!(!r.matches("nginx", Some("docker.io/library/nginx:latest")));
    }

    #[test]
    fn saved_records_load_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cs = ContentStore::open(dir.path()).expect("open");
        let r = record();
        save(&cs, &r).expect("save");
        fs::write(cs.images_dir().join("junk.json"), b"{").expect("write");
        let all = load_all(&cs.images_dir()).expect("load");
        assert_eq!(all.get(&r.id), Some(&r));
        assert_eq!(all.len(), 1);
        let img = r.to_image(&cs, None);
        assert_eq!(img.reference, "docker.io/library/busybox:latest");
        assert_eq!(
            img.layers,
            vec![cs.layer_path(&r.diff_ids[0]).expect("path")]
        );
        delete(&cs, &r.id).expect("delete");
        assert!(load_all(&cs.images_dir()).expect("load").is_empty());
    }
}
