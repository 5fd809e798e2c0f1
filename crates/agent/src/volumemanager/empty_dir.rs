//! emptyDir: a directory on the node's disk, or a tmpfs for `medium: Memory`. A sizeLimit
//! on disk is not enforced by the filesystem: [`usage_bytes`] measures the volume and the
//! pod worker evicts the pod that exceeds it, as the kubelet's eviction manager does.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use k8s_openapi::api::core::v1::EmptyDirVolumeSource;

use super::fieldpath::parse_quantity_nanos;
use super::mounter;

pub const PLUGIN: &str = "kubernetes.io~empty-dir";

/// Creates (or, for memory, mounts) the volume. World-writable as in Kubernetes, so any
/// container user can write; with an fsGroup, group-owned and setgid.
pub fn setup(
    dir: &Path,
    src: &EmptyDirVolumeSource,
    fs_group: Option<u32>,
    node_memory_bytes: u64,
) -> Result<(), String> {
    let size_limit = size_limit_bytes(src)?;
    if src.medium.as_deref() == Some("Memory") {
        let size = size_limit.filter(|l| *l > 0).unwrap_or(node_memory_bytes);
        mounter::ensure_tmpfs(dir, size, 0o777)
            .map_err(|e| format!("mount tmpfs on {}: {e}", dir.display()))?;
    } else if let Some(m) = src.medium.as_deref().filter(|m| !m.is_empty()) {
        return Err(format!(
            "emptyDir medium {m:?} is not supported on this node"
        ));
    } else {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    let mut mode = 0o777;
    if let Some(gid) = fs_group {
        nix::unistd::chown(dir, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        mode |= 0o2000;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))
}

pub fn size_limit_bytes(src: &EmptyDirVolumeSource) -> Result<Option<u64>, String> {
    src.size_limit
        .as_ref()
        .map(|q| {
            parse_quantity_nanos(&q.0)
                .map(|n| u64::try_from(n.max(0) / 1_000_000_000).unwrap_or(u64::MAX))
                .map_err(|e| e.to_string())
        })
        .transpose()
}

/// Disk usage of a directory tree (allocated blocks, as `du` counts), not crossing into
/// other filesystems and not following symlinks.
pub fn usage_bytes(dir: &Path) -> io::Result<u64> {
    let root = std::fs::symlink_metadata(dir)?;
    let dev = root.dev();
    let mut total = root.blocks() * 512;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != dev {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn disk_dir_is_world_writable_and_measured() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        setup(&dir, &EmptyDirVolumeSource::default(), None, 0).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o777);
        let before = usage_bytes(&dir).unwrap();
        std::fs::write(dir.join("blob"), vec![7u8; 256 * 1024]).unwrap();
        let after = usage_bytes(&dir).unwrap();
        assert!(after >= before + 256 * 1024, "{before} -> {after}");
    }

    #[test]
    fn fs_group_sets_group_and_setgid() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shared");
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        setup(&dir, &EmptyDirVolumeSource::default(), Some(4321), 0).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(meta.gid(), 4321);
        assert_eq!(meta.permissions().mode() & 0o7777, 0o2777);
    }

    #[test]
    fn memory_medium_is_a_sized_tmpfs() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mem");
        let src = EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(Quantity("1Mi".into())),
        };
        setup(&dir, &src, None, 1 << 30).unwrap();
        assert!(mounter::is_mount_point(&dir).unwrap());
        let st = nix::sys::statvfs::statvfs(&dir).unwrap();
        let size = st.blocks() * st.fragment_size();
        mounter::unmount_all_under(tmp.path()).unwrap();
        assert_eq!(size, 1 << 20);
    }

    #[test]
    fn bad_medium_and_limit_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let src = EmptyDirVolumeSource {
            medium: Some("HugePages".into()),
            size_limit: None,
        };
        assert!(setup(&tmp.path().join("x"), &src, None, 0).is_err());
        let src = EmptyDirVolumeSource {
            medium: None,
            size_limit: Some(Quantity("lots".into())),
        };
        assert!(setup(&tmp.path().join("y"), &src, None, 0).is_err());
    }
}
