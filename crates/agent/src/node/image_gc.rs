//! Image garbage collection under disk pressure, as the kubelet's image GC manager: when the
//! data dir's filesystem is more than the policy's high threshold used, images no container
//! uses and none used within the minimum age are removed (least recently used first) until
//! usage is back to the low threshold.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::machine::{self, FsUsage};
use super::NodeError;

/// The kubelet's `--image-gc-high-threshold`, `--image-gc-low-threshold` and
/// `--minimum-image-ttl-duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGcPolicy {
    /// Percent of the disk used above which collection starts; 100 turns it off.
    pub high_percent: u64,
    /// Percent of the disk used collection brings usage down to.
    pub low_percent: u64,
    pub min_age: Duration,
}

impl Default for ImageGcPolicy {
    fn default() -> Self {
        ImageGcPolicy {
            high_percent: 85,
            low_percent: 80,
            min_age: Duration::from_secs(120),
        }
    }
}

impl ImageGcPolicy {
    /// Checks the kubelet's rules: both within 0–100, low below high.
    pub fn validate(&self) -> Result<(), String> {
        if self.high_percent > 100 || self.low_percent > 100 {
            return Err("image GC thresholds are percentages, 0 to 100".into());
        }
        if self.low_percent >= self.high_percent {
            return Err(format!(
                "--image-gc-low-threshold ({}) must be less than --image-gc-high-threshold ({})",
                self.low_percent, self.high_percent
            ));
        }
        Ok(())
    }

    /// Bytes to free to bring usage down to the low threshold, when it is above the high one.
    pub fn bytes_to_free(&self, usage: FsUsage) -> Option<u64> {
        let capacity = usage.capacity_bytes;
        let used = capacity.saturating_sub(usage.available_bytes);
        if capacity == 0 || self.high_percent >= 100 || used * 100 <= capacity * self.high_percent {
            return None;
        }
        Some(used.saturating_sub(capacity * self.low_percent / 100))
    }
}

pub struct ImageGc {
    policy: ImageGcPolicy,
    data_dir: PathBuf,
    images: Option<Arc<dyn runtime::ImageService>>,
    containers: Option<Arc<dyn runtime::ContainerRuntime>>,
}

impl ImageGc {
    pub fn new(
        policy: ImageGcPolicy,
        data_dir: PathBuf,
        images: Option<Arc<dyn runtime::ImageService>>,
        containers: Option<Arc<dyn runtime::ContainerRuntime>>,
    ) -> Self {
        ImageGc {
            policy,
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
        let Some(want) = self.policy.bytes_to_free(usage) else {
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
            .garbage_collect(&in_use, want, self.policy.min_age)
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
        calls: Mutex<Vec<(Vec<String>, u64, Duration)>>,
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
        async fn garbage_collect(
            &self,
            in_use: &[String],
            bytes: u64,
            min_age: Duration,
        ) -> CriResult<u64> {
            self.calls
                .lock()
                .unwrap()
                .push((in_use.to_vec(), bytes, min_age));
            Ok(bytes / 2)
        }
    }

    #[tokio::test]
    async fn only_a_disk_over_the_threshold_asks_the_image_store() {
        let fake = Arc::new(FakeImages::default());
        let policy = ImageGcPolicy::default();
        let gc = ImageGc::new(policy, PathBuf::from("/"), Some(fake.clone()), None);
        let u = |cap, avail| FsUsage {
            capacity_bytes: cap,
            available_bytes: avail,
        };
        assert_eq!(gc.collect_for(u(1000, 500)).await.unwrap(), 0);
        assert!(fake.calls.lock().unwrap().is_empty());
        assert_eq!(gc.collect_for(u(1000, 50)).await.unwrap(), 75);
        assert_eq!(
            fake.calls.lock().unwrap().as_slice(),
            [(Vec::new(), 150, Duration::from_secs(120))]
        );
        // Without an image store there is nothing to do.
        let none = ImageGc::new(policy, PathBuf::from("/"), None, None);
        assert_eq!(none.collect_for(u(1000, 50)).await.unwrap(), 0);
    }

    #[test]
    fn collects_only_above_the_high_threshold_down_to_the_low_one() {
        let u = |cap, avail| FsUsage {
            capacity_bytes: cap,
            available_bytes: avail,
        };
        let p = ImageGcPolicy::default();
        assert_eq!(p.bytes_to_free(u(1000, 200)), None); // 80% used
        assert_eq!(p.bytes_to_free(u(1000, 150)), None); // exactly 85%
        assert_eq!(p.bytes_to_free(u(1000, 100)), Some(100)); // 90% → 80%
        assert_eq!(p.bytes_to_free(u(0, 0)), None);
        let off = ImageGcPolicy {
            high_percent: 100,
            ..p
        };
        assert_eq!(off.bytes_to_free(u(1000, 0)), None, "100 turns it off");
        let eager = ImageGcPolicy {
            high_percent: 50,
            low_percent: 10,
            ..p
        };
        assert_eq!(eager.bytes_to_free(u(1000, 400)), Some(500));
    }

    #[test]
    fn policies_are_checked_like_the_kubelets() {
        let p = ImageGcPolicy::default();
        assert!(p.validate().is_ok());
        let bad = |high, low| ImageGcPolicy {
            high_percent: high,
            low_percent: low,
            ..p
        };
        assert!(bad(101, 80).validate().is_err());
        assert!(bad(70, 80).validate().is_err());
        assert!(bad(80, 80).validate().is_err());
        assert!(bad(100, 99).validate().is_ok());
    }
}
