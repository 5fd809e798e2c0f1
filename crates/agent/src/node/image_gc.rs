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

    /// Collects if the disk is over the high threshold; returns the bytes freed.
    pub async fn maybe_collect(&self) -> Result<u64, NodeError> {
        let Some(images) = &self.images else {
            return Ok(0);
        };
        let usage = machine::fs_usage(&self.data_dir)?;
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
