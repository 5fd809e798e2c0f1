//! Images: the content-addressed store, pulls from OCI registries, layer unpacking and the
//! overlay lower dirs handed to containers. Implements [`crate::cri::ImageService`].
//!
//! A pull resolves the reference to a manifest (mirrors first, then the registry), fetches
//! the config and each layer blob it lacks (digest-verified), unpacks each layer once into
//! its own directory and records the image. Concurrent pulls of one image or one layer wait
//! for the first instead of downloading twice; removal and garbage collection take the
//! store exclusively so they never delete a layer a pull is about to record.

mod archive;
pub mod content;
pub mod pull;
pub mod records;
pub mod reference;
pub mod rootfs;
pub mod unpack;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use nix::fcntl::{Flock, FlockArg};
use oci_client::manifest::OciDescriptor;
use oci_spec::image::ImageConfiguration;

use crate::cri::{Image, ImageService, PullPolicy, RegistryAuth, RuntimeError};
use content::ContentStore;
use records::{ImageRecord, RecordConfig};

/// Where the store lives and how registries are reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageStoreConfig {
    /// e.g. `DATA_DIR/images`.
    pub root: PathBuf,
    /// Registry host → mirror endpoints (`http://127.0.0.1:5000`), tried in order before
    /// the registry itself.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Hosts reached over plain HTTP (loopback hosts always are).
    pub insecure_registries: Vec<String>,
}

/// The node's image store. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: ImageStoreConfig,
    content: ContentStore,
    records: Mutex<BTreeMap<String, ImageRecord>>,
    /// Pulls and imports hold it shared, removals exclusively.
    removal: tokio::sync::RwLock<()>,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// last-used times are persisted at most this often per image: pod workers look images up
/// on every sync.
const TOUCH_PERSIST_INTERVAL: Duration = Duration::from_secs(60);

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.config.root)
            .finish_non_exhaustive()
    }
}

/// Holds a per-key lock; the key's entry leaves the map with its last holder.
struct KeyGuard {
    store: Arc<Inner>,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = lock(&self.store.inflight);
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ImageStore {
    /// Opens (creating if needed) the store at `config.root` and loads its records.
    pub fn open(config: ImageStoreConfig) -> Result<Self, RuntimeError> {
        let content = ContentStore::open(&config.root)?;
        let records = records::load_all(&content.images_dir())?;
        Ok(ImageStore {
            inner: Arc::new(Inner {
                config,
                content,
                records: Mutex::new(records),
                removal: tokio::sync::RwLock::new(()),
                inflight: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &ImageStoreConfig {
        &self.inner.config
    }

    /// Every image record (all its references), for `flotilla image ls`.
    pub fn records(&self) -> Vec<ImageRecord> {
        lock(&self.inner.records).values().cloned().collect()
    }

    /// Imports an OCI image-layout tar or a `docker save` tar; returns the images in it.
    pub async fn import(&self, archive: &Path) -> Result<Vec<Image>, RuntimeError> {
        archive::import(self, archive).await
    }

    async fn lock_key(&self, key: String) -> KeyGuard {
        let m = lock(&self.inner.inflight)
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = m.lock_owned().await;
        KeyGuard {
            store: self.inner.clone(),
            key,
            guard: Some(guard),
        }
    }

    /// Takes the store-wide lock shared by other processes too (`flotilla image` next to a
    /// running agent): shared for pulls and imports, exclusive for removals, so one process
    /// never sweeps a layer another has unpacked but not yet recorded. Taken after the
    /// in-process `removal` lock, so in-process waiters queue there, not on the flock.
    async fn store_lock(&self, exclusive: bool) -> Result<Flock<std::fs::File>, RuntimeError> {
        let path = self.inner.content.root().join("lock");
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| RuntimeError::io(format!("open {}", path.display()), e))?;
            let arg = if exclusive {
                FlockArg::LockExclusive
            } else {
                FlockArg::LockShared
            };
            Flock::lock(file, arg)
                .map_err(|(_, e)| RuntimeError::io(format!("lock {}", path.display()), e.into()))
        })
        .await
        .map_err(|e| RuntimeError::Other(format!("lock task: {e}")))?
    }

    /// Re-reads the records from disk, where another process (`flotilla image import`,
    /// `rm`) may have changed them. Keeps the newer of the two last-used times: this process
    /// persists them lazily.
    fn refresh(&self) -> Result<(), RuntimeError> {
        let mut on_disk = records::load_all(&self.inner.content.images_dir())?;
        let mut records = lock(&self.inner.records);
        for (id, rec) in on_disk.iter_mut() {
            if let Some(mem) = records.get(id) {
                rec.last_used = rec.last_used.max(mem.last_used);
            }
        }
        *records = on_disk;
        Ok(())
    }

    /// [`Self::find_cached`], re-reading the records once if the image is not known: it may
    /// have been imported by another process.
    /// A cached record whose layers are gone was removed by another process: re-read too.
    fn find(&self, key: &str) -> Option<ImageRecord> {
        if let Some(r) = self.find_cached(key) {
            let content = &self.inner.content;
            let intact = r
                .diff_ids
                .iter()
                .all(|d| content.layer_path(d).is_ok_and(|p| p.is_dir()));
            if intact {
                return Some(r);
            }
        }
        if let Err(e) = self.refresh() {
            tracing::warn!(error = %e, "could not re-read image records");
        }
        self.find_cached(key)
    }

    /// The record `key` names (reference, ID, ID prefix or repo digest).
    fn find_cached(&self, key: &str) -> Option<ImageRecord> {
        let parsed = reference::parse(key).ok();
        let normalized = parsed.as_ref().map(|r| r.whole());
        // `repo:tag@digest` is found by its `repo@digest`.
        let repo_digest = parsed.as_ref().and_then(|r| {
            r.digest()
                .map(|d| format!("{}@{d}", reference::repository_name(r)))
        });
        let records = lock(&self.inner.records);
        records
            .values()
            .find(|r| r.matches(key, normalized.as_deref()))
            .or_else(|| {
                repo_digest
                    .as_ref()
                    .and_then(|d| records.values().find(|r| r.repo_digests.contains(d)))
            })
            .cloned()
    }

    /// Marks the image used now and returns it as `reference` names it.
    fn touch(&self, record: &ImageRecord, reference: Option<&str>) -> Image {
        let now = jiff::Timestamp::now();
        let mut records = lock(&self.inner.records);
        if let Some(r) = records.get_mut(&record.id) {
            let stale = now.duration_since(r.last_used).unsigned_abs() > TOUCH_PERSIST_INTERVAL;
            r.last_used = now;
            if stale {
                if let Err(e) = records::save(&self.inner.content, r) {
                    tracing::warn!(image = %r.id, error = %e, "could not persist last-used time");
                }
            }
        }
        record.to_image(&self.inner.content, reference)
    }

    async fn pull(
        &self,
        r: &oci_client::Reference,
        auth: &[RegistryAuth],
    ) -> Result<Image, RuntimeError> {
        let name = r.whole();
        let _shared = self.inner.removal.read().await;
        let _flock = self.store_lock(false).await?;
        let resolved = pull::resolve(&self.inner.config, r, auth).await?;
        tracing::debug!(image = %name, endpoint = %resolved.endpoint.host, digest = %resolved.manifest_digest, "resolved");
        let config_desc = resolved.manifest.config.clone();
        let config_bytes = self.ensure_registry_blob(&resolved, &config_desc).await?;
        let config = parse_config(&name, &config_bytes)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != resolved.manifest.layers.len() {
            return Err(RuntimeError::Invalid {
                what: format!("image {name}"),
                message: format!(
                    "config lists {} layers, manifest {}",
                    diff_ids.len(),
                    resolved.manifest.layers.len()
                ),
            });
        }
        let layer_jobs = resolved
            .manifest
            .layers
            .iter()
            .zip(&diff_ids)
            .map(|(desc, diff_id)| self.ensure_registry_layer(&resolved, desc, diff_id));
        let sizes = futures::future::try_join_all(layer_jobs).await?;
        let content = &self.inner.content;
        content.write_blob(&resolved.top_digest, &resolved.top_bytes)?;
        content.write_blob(&resolved.manifest_digest, &resolved.manifest_bytes)?;
        let mut blobs = vec![
            resolved.top_digest.clone(),
            resolved.manifest_digest.clone(),
            config_desc.digest.clone(),
        ];
        blobs.extend(
            resolved
                .manifest
                .layers
                .iter()
                .filter(|l| content.has_blob(&l.digest))
                .map(|l| l.digest.clone()),
        );
        let record = self.commit(ImageRecord {
            id: config_desc.digest.clone(),
            references: if r.tag().is_some() {
                vec![name.clone()]
            } else {
                vec![]
            },
            repo_digests: vec![format!(
                "{}@{}",
                reference::repository_name(r),
                resolved.top_digest
            )],
            manifest_digest: Some(resolved.manifest_digest.clone()),
            blobs,
            diff_ids,
            config: record_config(&config),
            size: sizes.iter().sum(),
            last_used: jiff::Timestamp::now(),
        })?;
        Ok(record.to_image(&self.inner.content, Some(&name)))
    }

    /// The blob's bytes, downloading it first if the store lacks it.
    async fn ensure_registry_blob(
        &self,
        resolved: &pull::Resolved,
        desc: &OciDescriptor,
    ) -> Result<Vec<u8>, RuntimeError> {
        self.download_blob(resolved, desc).await?;
        self.inner.content.read_blob(&desc.digest)
    }

    async fn download_blob(
        &self,
        resolved: &pull::Resolved,
        desc: &OciDescriptor,
    ) -> Result<PathBuf, RuntimeError> {
        let content = &self.inner.content;
        let path = content.blob_path(&desc.digest)?;
        let _g = self.lock_key(format!("blob {}", desc.digest)).await;
        if path.is_file() {
            return Ok(path);
        }
        let tmp = content.temp_path("download");
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| RuntimeError::io("create download file", e))?;
        let fetched = pull::fetch_blob(resolved, desc, &mut file).await;
        let synced = file.sync_all().await;
        drop(file);
        if let Err(e) = fetched {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        synced.map_err(|e| RuntimeError::io("sync download", e))?;
        content.publish_blob(&tmp, &desc.digest)
    }

    /// Unpacks the layer unless already there; downloads its blob only when needed.
    async fn ensure_registry_layer(
        &self,
        resolved: &pull::Resolved,
        desc: &OciDescriptor,
        diff_id: &str,
    ) -> Result<u64, RuntimeError> {
        let layer = self.inner.content.layer_path(diff_id)?;
        if layer.is_dir() {
            return dir_size(layer).await;
        }
        let blob = self.download_blob(resolved, desc).await?;
        self.ensure_unpacked(diff_id, &blob).await
    }

    /// Unpacks `blob` as layer `diff_id` once: into a temp dir, then renamed into place.
    /// Returns the layer's size.
    async fn ensure_unpacked(&self, diff_id: &str, blob: &Path) -> Result<u64, RuntimeError> {
        let content = &self.inner.content;
        let layer = content.layer_path(diff_id)?;
        let _g = self.lock_key(format!("layer {diff_id}")).await;
        if !layer.is_dir() {
            let tmp = content.temp_path("layer");
            let (blob, diff, t, dst) = (
                blob.to_path_buf(),
                diff_id.to_string(),
                tmp.clone(),
                layer.clone(),
            );
            let result = tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&t).map_err(|e| RuntimeError::io("create layer dir", e))?;
                unpack::unpack_layer(&blob, &diff, &t)?;
                std::fs::rename(&t, &dst)
                    .map_err(|e| RuntimeError::io(format!("store layer {diff}"), e))
            })
            .await
            .map_err(|e| RuntimeError::Other(format!("unpack task: {e}")))?;
            if let Err(e) = result {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
            tracing::debug!(layer = %diff_id, "unpacked");
        }
        dir_size(layer).await
    }

    /// Records an image: merges with an existing record of the same ID and moves its
    /// references away from any other image.
    fn commit(&self, new: ImageRecord) -> Result<ImageRecord, RuntimeError> {
        let content = &self.inner.content;
        let mut records = lock(&self.inner.records);
        for other in records.values_mut().filter(|o| o.id != new.id) {
            let before = other.references.len();
            other.references.retain(|r| !new.references.contains(r));
            if other.references.len() != before {
                records::save(content, other)?;
            }
        }
        let merged = match records.get(&new.id) {
            Some(old) => {
                let mut m = new.clone();
                m.references.extend(
                    old.references
                        .iter()
                        .filter(|r| !new.references.contains(r))
                        .cloned(),
                );
                m.repo_digests.extend(
                    old.repo_digests
                        .iter()
                        .filter(|d| !new.repo_digests.contains(d))
                        .cloned(),
                );
                let blobs: BTreeSet<String> = old.blobs.iter().chain(&new.blobs).cloned().collect();
                m.blobs = blobs.into_iter().collect();
                m
            }
            None => new,
        };
        records::save(content, &merged)?;
        records.insert(merged.id.clone(), merged.clone());
        Ok(merged)
    }

    /// Deletes a record and every layer and blob no remaining image uses. Returns the layer
    /// bytes freed. Caller holds the removal lock exclusively.
    async fn delete_record(&self, id: &str) -> Result<u64, RuntimeError> {
        let content = &self.inner.content;
        let (gone, used_layers, used_blobs) = {
            let mut records = lock(&self.inner.records);
            let Some(gone) = records.remove(id) else {
                return Ok(0);
            };
            records::delete(content, id)?;
            let layers: BTreeSet<String> =
                records.values().flat_map(|r| r.diff_ids.clone()).collect();
            let blobs: BTreeSet<String> = records.values().flat_map(|r| r.blobs.clone()).collect();
            (gone, layers, blobs)
        };
        let mut freed = 0;
        for diff_id in gone.diff_ids.iter().filter(|d| !used_layers.contains(*d)) {
            let path = content.layer_path(diff_id)?;
            if path.is_dir() {
                freed += dir_size(path).await?;
            }
            content.remove_layer(diff_id)?;
        }
        for blob in gone.blobs.iter().filter(|b| !used_blobs.contains(*b)) {
            content.remove_blob(blob)?;
        }
        tracing::info!(image = %gone.id, references = ?gone.references, freed, "removed image");
        Ok(freed)
    }
}

impl ImageStore {
    /// Removes layers and blobs no record mentions: what a pull that failed half-way (or a
    /// crash before its record was written) left behind. Returns the layer bytes freed.
    /// Caller holds the removal lock exclusively, so no pull is between unpack and record.
    async fn sweep_orphans(&self) -> Result<u64, RuntimeError> {
        let content = &self.inner.content;
        let (layers, blobs): (BTreeSet<String>, BTreeSet<String>) = {
            let records = lock(&self.inner.records);
            (
                records.values().flat_map(|r| r.diff_ids.clone()).collect(),
                records.values().flat_map(|r| r.blobs.clone()).collect(),
            )
        };
        let hexes = |dir: PathBuf| -> Vec<String> {
            std::fs::read_dir(dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut freed = 0;
        for hex in hexes(content.root().join("layers")) {
            let diff_id = format!("sha256:{hex}");
            if layers.contains(&diff_id) || content::digest_hex(&diff_id).is_err() {
                continue;
            }
            freed += dir_size(content.layer_path(&diff_id)?).await?;
            content.remove_layer(&diff_id)?;
            tracing::info!(layer = %diff_id, "removed unreferenced layer");
        }
        for hex in hexes(content.root().join("blobs/sha256")) {
            let digest = format!("sha256:{hex}");
            if !blobs.contains(&digest) && content::digest_hex(&digest).is_ok() {
                content.remove_blob(&digest)?;
            }
        }
        Ok(freed)
    }
}

fn parse_config(image: &str, bytes: &[u8]) -> Result<ImageConfiguration, RuntimeError> {
    ImageConfiguration::from_reader(bytes).map_err(|e| RuntimeError::Invalid {
        what: format!("image config of {image}"),
        message: e.to_string(),
    })
}

fn record_config(c: &ImageConfiguration) -> RecordConfig {
    let Some(cfg) = c.config() else {
        return RecordConfig::default();
    };
    RecordConfig {
        entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
        cmd: cfg.cmd().clone().unwrap_or_default(),
        env: cfg.env().clone().unwrap_or_default(),
        working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
        user: cfg.user().clone().filter(|u| !u.is_empty()),
    }
}

/// Bytes of the regular files under `dir` (what the layer costs on disk, near enough).
async fn dir_size(dir: PathBuf) -> Result<u64, RuntimeError> {
    tokio::task::spawn_blocking(move || {
        let mut total = 0u64;
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d)
                .map_err(|e| RuntimeError::io(format!("read {}", d.display()), e))?;
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    stack.push(entry.path());
                } else if meta.is_file() {
                    total += meta.len();
                }
            }
        }
        Ok(total)
    })
    .await
    .map_err(|e| RuntimeError::Other(format!("size task: {e}")))?
}

#[async_trait]
impl ImageService for ImageStore {
    async fn ensure_image(
        &self,
        reference: &str,
        policy: PullPolicy,
        auth: &[RegistryAuth],
    ) -> Result<Image, RuntimeError> {
        let r = reference::parse(reference)?;
        let name = r.whole();
        // A digest names immutable content: present means current, whatever the policy.
        let check_local = policy != PullPolicy::Always || r.digest().is_some();
        if check_local {
            if let Some(rec) = self.find(&name) {
                return Ok(self.touch(&rec, Some(&name)));
            }
        }
        if policy == PullPolicy::Never {
            return Err(RuntimeError::ImageNeverPull(reference.to_string()));
        }
        // One pull per reference at a time; whoever waited finds the image present.
        let _g = self.lock_key(format!("pull {name}")).await;
        if policy != PullPolicy::Always {
            if let Some(rec) = self.find(&name) {
                return Ok(self.touch(&rec, Some(&name)));
            }
        }
        self.pull(&r, auth).await
    }

    async fn image_status(&self, reference: &str) -> Result<Option<Image>, RuntimeError> {
        let name = reference::normalize(reference).ok();
        Ok(self.find(reference).map(|rec| {
            rec.to_image(
                &self.inner.content,
                name.as_deref()
                    .filter(|n| rec.references.iter().any(|r| r == n)),
            )
        }))
    }

    async fn list_images(&self) -> Result<Vec<Image>, RuntimeError> {
        self.refresh()?;
        Ok(lock(&self.inner.records)
            .values()
            .map(|r| r.to_image(&self.inner.content, None))
            .collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        let _exclusive = self.inner.removal.write().await;
        let _flock = self.store_lock(true).await?;
        self.refresh()?;
        if let Some(rec) = self.find_cached(reference) {
            self.delete_record(&rec.id).await?;
        }
        Ok(())
    }

    async fn garbage_collect(
        &self,
        in_use: &[String],
        bytes_to_free: u64,
        min_age: std::time::Duration,
    ) -> Result<u64, RuntimeError> {
        let _exclusive = self.inner.removal.write().await;
        let _flock = self.store_lock(true).await?;
        self.refresh()?;
        let keep: BTreeSet<String> = in_use
            .iter()
            .filter_map(|k| self.find_cached(k).map(|r| r.id))
            .collect();
        let now = jiff::Timestamp::now();
        // A last use in the future (the clock stepped back) is as recent as can be.
        let min_age = jiff::SignedDuration::try_from(min_age).unwrap_or(jiff::SignedDuration::MAX);
        let old_enough = |r: &ImageRecord| now.duration_since(r.last_used) >= min_age;
        let mut candidates: Vec<ImageRecord> = lock(&self.inner.records)
            .values()
            .filter(|r| !keep.contains(&r.id) && old_enough(r))
            .cloned()
            .collect();
        candidates.sort_by_key(|r| r.last_used);
        let mut freed = self.sweep_orphans().await?;
        for rec in candidates {
            if freed >= bytes_to_free {
                break;
            }
            freed += self.delete_record(&rec.id).await?;
        }
        Ok(freed)
    }
}
