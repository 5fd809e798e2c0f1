//! Image garbage collection under disk pressure, as the kubelet's image GC manager: when the
//! data dir's filesystem is more than [`HIGH_THRESHOLD_PERCENT`] used, images no container
//! uses are removed (least recently used first) until usage is back to
//! [`LOW_THRESHOLD_PERCENT`].

use std::path::PathBuf;
use std::sync::Arc;

use super::machine::{self, FsUsage};
use super::NodeError;

pub const HIGH_THRESHOLD_PERCENT: u64 = 85;
pub const LOW_THRESHOLD_PERCENT: u64 = 80;

pub struct ImageGc {
    data_dir: PathBuf,
    images: Option<Arc<dyn runtime::ImageService>>,
    containers: Option<Arc<dyn runtime::ContainerRuntime>>,
}

/// Bytes to free to bring usage down to the low threshold, when it is above the high one.
pub fn bytes_to_free(usage: FsUsage) -> Option<u64> {
    let capacity = usage.capacity_bytes;
    let used = capacity.saturating_sub(usage.available_bytes);
    if capacity == 0 || used * 100 <= capacity * HIGH_THRESHOLD_PERCENT {
        return None;
    }
    Some(used.saturating_sub(capacity * LOW_THRESHOLD_PERCENT / 100))
}

impl ImageGc {
    pub fn new(
        data_dir: PathBuf,
        images: Option<Arc<dyn runtime::ImageService>>,
        containers: Option<Arc<dyn runtime::ContainerRuntime>>,
    ) -> Self {
        ImageGc {
            data_dir,
            images,
            containers,
        }
    }

    /// Collects if the data dir's disk is over the high threshold; returns the bytes freed.
    pub async fn maybe_collect(&self) -> Result<u64, NodeError> {
        if self.images.is_none() {
            return Ok(0);
        }
        self.collect_for(machine::fs_usage(&self.data_dir)?).await
    }

    /// Collects as [`Self::maybe_collect`] would at disk usage `usage`.
    pub async fn collect_for(&self, usage: FsUsage) -> Result<u64, NodeError> {
        let Some(images) = &self.images else {
            return Ok(0);
        };
        let Some(want) = bytes_to_free(usage) else {
            return Ok(0);
        };
        // Every container still on the node pins its image, running or not (its restart
        // or `logs --previous` may need it), as in the kubelet.
        let mut in_use = Vec::new();
        if let Some(containers) = &self.containers {
            let list = containers
                .list_containers()
                .await
                .map_err(|e| NodeError::Machine(format!("listing containers: {e}")))?;
            for c in list {
                in_use.push(c.image_ref);
                in_use.push(c.image_id);
            }
        }
        in_use.sort();
        in_use.dedup();
        let freed = images
            .garbage_collect(&in_use, want)
            .await
            .map_err(|e| NodeError::Machine(format!("image garbage collection: {e}")))?;
        tracing::info!(
            used_percent = usage.used_percent(),
            wanted = want,
            freed,
            "image garbage collection"
        );
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::cri::{Image, PullPolicy, RegistryAuth, Result as CriResult, RuntimeError};
    use std::sync::Mutex;

    /// Records garbage_collect calls; nothing else is used by the GC.
    #[derive(Default)]
    struct FakeImages {
        calls: Mutex<Vec<(Vec<String>, u64)>>,
    }

    #[async_trait::async_trait]
    impl runtime::ImageService for FakeImages {
        async fn ensure_image(
            &self,
            r: &str,
            _: PullPolicy,
            _: &[RegistryAuth],
        ) -> CriResult<Image> {
            Err(RuntimeError::NotFound(r.into()))
        }
        async fn image_status(&self, _: &str) -> CriResult<Option<Image>> {
            Ok(None)
        }
        async fn list_images(&self) -> CriResult<Vec<Image>> {
            Ok(Vec::new())
        }
        async fn remove_image(&self, _: &str) -> CriResult<()> {
            Ok(())
        }
        async fn garbage_collect(&self, in_use: &[String], bytes: u64) -> CriResult<u64> {
            self.calls.lock().unwrap().push((in_use.to_vec(), bytes));
            Ok(bytes / 2)
        }
    }

    #[tokio::test]
    async fn only_a_disk_over_the_threshold_asks_the_image_store() {
        let fake = Arc::new(FakeImages::default());
        let gc = ImageGc::new(PathBuf::from("/"), Some(fake.clone()), None);
        let u = |cap, avail| FsUsage {
            capacity_bytes: cap,
            available_bytes: avail,
        };
        assert_eq!(gc.collect_for(u(1000, 500)).await.unwrap(), 0);
        assert!(fake.calls.lock().unwrap().is_empty());
        assert_eq!(gc.collect_for(u(1000, 50)).await.unwrap(), 75);
        assert_eq!(fake.calls.lock().unwrap().as_slice(), [(Vec::new(), 150)]);
        // Without an image store there is nothing to do.
        let none = ImageGc::new(PathBuf::from("/"), None, None);
        assert_eq!(none.collect_for(u(1000, 50)).await.unwrap(), 0);
    }

    #[test]
    fn collects_only_above_the_high_threshold_down_to_the_low_one() {
        let u = |cap, avail| FsUsage {
            capacity_bytes: cap,
            available_bytes: avail,
        };
        assert_eq!(bytes_to_free(u(1000, 200)), None); // 80% used
        assert_eq!(bytes_to_free(u(1000, 150)), None); // exactly 85%
        assert_eq!(bytes_to_free(u(1000, 100)), Some(100)); // 90% → 80%
        assert_eq!(bytes_to_free(u(0, 0)), None);
    }
}
