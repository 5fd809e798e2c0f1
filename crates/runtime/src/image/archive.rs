//! Importing image archives: an OCI image layout in a tar (`oci-layout`, `index.json`,
//! `blobs/`), as `ctr export`/buildkit write it, or a `docker save` tar (`manifest.json` with
//! `RepoTags`). Every blob is checked against its digest, every layer against its diff ID.

use std::fs;
use std::path::{Path, PathBuf};

use oci_client::manifest::{OciImageIndex, OciImageManifest};
use serde::Deserialize;

use super::content::{digest_hex, sha256_digest};
use super::records::ImageRecord;
use super::{parse_config, record_config, reference, ImageStore};
use crate::cri::{Image, RuntimeError};

const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Removes the extraction dir however the import ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn invalid(message: impl Into<String>) -> RuntimeError {
    RuntimeError::Invalid {
        what: "image archive".into(),
        message: message.into(),
    }
}

pub(super) async fn import(store: &ImageStore, archive: &Path) -> Result<Vec<Image>, RuntimeError> {
    let _shared = store.inner.removal.read().await;
    let _flock = store.store_lock(false).await?;
    let dir = TempDir(store.inner.content.temp_path("import"));
    let (src, dst) = (archive.to_path_buf(), dir.0.clone());
    tokio::task::spawn_blocking(move || extract(&src, &dst))
        .await
        .map_err(|e| RuntimeError::Other(format!("extract task: {e}")))??;
    let root = &dir.0;
    if root.join("index.json").is_file() {
        import_oci(store, root).await
    } else if root.join("manifest.json").is_file() {
        import_docker(store, root).await
    } else {
        Err(invalid(
            "neither an OCI image layout (index.json) nor a docker save archive (manifest.json)",
        ))
    }
}

fn extract(archive: &Path, dest: &Path) -> Result<(), RuntimeError> {
    let file = fs::File::open(archive)
        .map_err(|e| RuntimeError::io(format!("open {}", archive.display()), e))?;
    fs::create_dir_all(dest).map_err(|e| RuntimeError::io("create import dir", e))?;
    let mut a = tar::Archive::new(std::io::BufReader::new(file));
    a.set_preserve_ownerships(false);
    a.set_preserve_permissions(false);
    // Archive::unpack refuses entries that would land outside `dest`.
    a.unpack(dest)
        .map_err(|e| invalid(format!("{}: {e}", archive.display())))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, RuntimeError> {
    let bytes = fs::read(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// A blob of an OCI layout, read and checked against its digest.
fn read_oci_blob(root: &Path, digest: &str) -> Result<Vec<u8>, RuntimeError> {
    let path = root.join("blobs/sha256").join(digest_hex(digest)?);
    let bytes = fs::read(&path).map_err(|e| invalid(format!("blob {digest}: {e}")))?;
    let actual = sha256_digest(&bytes);
    if actual != digest {
        return Err(invalid(format!("blob {digest} has digest {actual}")));
    }
    Ok(bytes)
}

async fn import_oci(store: &ImageStore, root: &Path) -> Result<Vec<Image>, RuntimeError> {
    let index: OciImageIndex = read_json(&root.join("index.json"))?;
    let mut out = Vec::new();
    for entry in &index.manifests {
        let annotations = entry.annotations.clone().unwrap_or_default();
        let name = annotations
            .get(CONTAINERD_NAME)
            .or_else(|| annotations.get(OCI_REF_NAME))
            // A bare tag (`latest`) names nothing on its own.
            .filter(|n| n.contains('/') || n.contains(':'))
            .and_then(|n| reference::normalize(n).ok());
        let mut top = read_oci_blob(root, &entry.digest)?;
        let mut manifest_digest = entry.digest.clone();
        let mut blobs = vec![entry.digest.clone()];
        store.inner.content.write_blob(&entry.digest, &top)?;
        if serde_json::from_slice::<serde_json::Value>(&top)
            .map(|v| v.get("manifests").is_some())
            .unwrap_or(false)
        {
            let nested: OciImageIndex =
                serde_json::from_slice(&top).map_err(|e| invalid(e.to_string()))?;
            manifest_digest = super::pull::select_platform(&nested.manifests).ok_or_else(|| {
                invalid(format!(
                    "no linux/{} image in {}",
                    super::pull::host_arch(),
                    entry.digest
                ))
            })?;
            top = read_oci_blob(root, &manifest_digest)?;
            store.inner.content.write_blob(&manifest_digest, &top)?;
            blobs.push(manifest_digest.clone());
        }
        let manifest: OciImageManifest =
            serde_json::from_slice(&top).map_err(|e| invalid(format!("manifest: {e}")))?;
        let config_bytes = read_oci_blob(root, &manifest.config.digest)?;
        store
            .inner
            .content
            .write_blob(&manifest.config.digest, &config_bytes)?;
        blobs.push(manifest.config.digest.clone());
        let label = name.clone().unwrap_or_else(|| manifest_digest.clone());
        let config = parse_config(&label, &config_bytes)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != manifest.layers.len() {
            return Err(invalid(format!(
                "{label}: config lists {} layers, manifest {}",
                diff_ids.len(),
                manifest.layers.len()
            )));
        }
        let mut size = 0;
        for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
            let src = root.join("blobs/sha256").join(digest_hex(&layer.digest)?);
            let blob = store.inner.content.copy_blob_from(&src, &layer.digest)?;
            blobs.push(layer.digest.clone());
            size += store.ensure_unpacked(diff_id, &blob).await?;
        }
        let repo_digests = name
            .as_deref()
            .and_then(|n| reference::parse(n).ok())
            .map(|r| {
                vec![format!(
                    "{}@{}",
                    reference::repository_name(&r),
                    entry.digest
                )]
            })
            .unwrap_or_default();
        let record = store.commit(ImageRecord {
            id: manifest.config.digest.clone(),
            references: name.iter().cloned().collect(),
            repo_digests,
            manifest_digest: Some(manifest_digest.clone()),
            blobs,
            diff_ids,
            config: record_config(&config),
            size,
            last_used: jiff::Timestamp::now(),
        })?;
        out.push(record.to_image(&store.inner.content, name.as_deref()));
    }
    Ok(out)
}

async fn import_docker(store: &ImageStore, root: &Path) -> Result<Vec<Image>, RuntimeError> {
    let entries: Vec<DockerManifestEntry> = read_json(&root.join("manifest.json"))?;
    let mut out = Vec::new();
    for entry in entries {
        let config_path = safe_join(root, &entry.config)?;
        let config_bytes =
            fs::read(&config_path).map_err(|e| invalid(format!("{}: {e}", entry.config)))?;
        let id = sha256_digest(&config_bytes);
        let names: Vec<String> = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| reference::normalize(t))
            .collect::<Result<_, _>>()?;
        let label = names.first().cloned().unwrap_or_else(|| id.clone());
        let config = parse_config(&label, &config_bytes)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != entry.layers.len() {
            return Err(invalid(format!(
                "{label}: config lists {} layers, manifest.json {}",
                diff_ids.len(),
                entry.layers.len()
            )));
        }
        store.inner.content.write_blob(&id, &config_bytes)?;
        let mut size = 0;
        for (layer, diff_id) in entry.layers.iter().zip(&diff_ids) {
            // docker save layers are plain tars (gzip in newer Docker): unpacked straight from
            // the archive, checked against the diff ID on the way.
            size += store
                .ensure_unpacked(diff_id, &safe_join(root, layer)?)
                .await?;
        }
        let record = store.commit(ImageRecord {
            id: id.clone(),
            references: names.clone(),
            repo_digests: vec![],
            manifest_digest: None,
            blobs: vec![id],
            diff_ids,
            config: record_config(&config),
            size,
            last_used: jiff::Timestamp::now(),
        })?;
        out.push(record.to_image(&store.inner.content, names.first().map(String::as_str)));
    }
    Ok(out)
}

/// `rel` under `root`, refusing paths that climb out of it.
fn safe_join(root: &Path, rel: &str) -> Result<PathBuf, RuntimeError> {
    let p = Path::new(rel);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(invalid(format!("path {rel:?} leaves the archive")));
    }
    Ok(root.join(p))
}
