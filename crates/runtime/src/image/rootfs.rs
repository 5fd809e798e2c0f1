//! A container's root filesystem: the image's unpacked layers as overlayfs lower dirs, with
//! a per-container upper (writable) dir. The layers themselves are never written to.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::cri::RuntimeError;

/// Mounts overlayfs at `target`: `layers` are the image's layers LOWEST first (as
/// [`crate::cri::Image::layers`] lists them); overlayfs wants the top layer first in
/// `lowerdir`, so the order is reversed here. Creates `upper`, `work` and `target` if missing.
/// `upper` and `work` must be on the same filesystem.
pub fn mount_overlay(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RuntimeError> {
    let options = overlay_options(layers, upper, work)?;
    for dir in [upper, work, target] {
        std::fs::create_dir_all(dir)
            .map_err(|e| RuntimeError::io(format!("create {}", dir.display()), e))?;
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| {
        RuntimeError::io(
            format!("mount overlay on {} ({options})", target.display()),
            e.into(),
        )
    })
}

/// Unmounts `target`. Idempotent: a target that is not mounted (or does not exist) is fine.
/// A busy mount is detached lazily so removal never wedges on a stray open file.
pub fn unmount(target: &Path) -> Result<(), RuntimeError> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) => Ok(()),
            Err(e) => Err(RuntimeError::io(
                format!("unmount {}", target.display()),
                e.into(),
            )),
        },
        Err(e) => Err(RuntimeError::io(
            format!("unmount {}", target.display()),
            e.into(),
        )),
    }
}

fn overlay_options(layers: &[PathBuf], upper: &Path, work: &Path) -> Result<String, RuntimeError> {
    if layers.is_empty() {
        return Err(RuntimeError::Invalid {
            what: "rootfs".into(),
            message: "an image needs at least one layer".into(),
        });
    }
    let mut lower = Vec::with_capacity(layers.len());
    for dir in layers.iter().rev() {
        lower.push(option_path(dir)?);
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        option_path(upper)?,
        option_path(work)?
    );
    // The kernel copies mount data into one page; longer option strings are cut off.
    if options.len() >= 4096 {
        return Err(RuntimeError::Invalid {
            what: "rootfs".into(),
            message: format!(
                "overlay options for {} layers exceed one page ({} bytes)",
                layers.len(),
                options.len()
            ),
        });
    }
    Ok(options)
}

/// `:` separates lower dirs and `,` separates options: such paths cannot be expressed.
fn option_path(p: &Path) -> Result<String, RuntimeError> {
    let s = p.to_str().ok_or_else(|| RuntimeError::Invalid {
        what: "rootfs path".into(),
        message: format!("{} is not UTF-8", p.display()),
    })?;
    if s.contains([':', ',']) || s.is_empty() {
        return Err(RuntimeError::Invalid {
            what: "rootfs path".into(),
            message: format!("{s:?} cannot be an overlay option"),
        });
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdir_lists_top_layer_first() {
        let layers = vec![PathBuf::from("/l/base"), PathBuf::from("/l/top")];
        let o =
            overlay_options(&layers, Path::new("/c/upper"), Path::new("/c/work")).expect("options");
        assert_eq!(
            o,
            "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"
        );
    }

    #[test]
    fn bad_paths_are_typed_errors() {
        let up = Path::new("/u");
        let w = Path::new("/w");
        assert!(matches!(
            overlay_options(&[], up, w),
            Err(RuntimeError::Invalid { .. })
        ));
        assert!(matches!(
            overlay_options(&[PathBuf::from("/a:b")], up, w),
            Err(RuntimeError::Invalid { .. })
        ));
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/var/lib/flotilla/images/layers/{i:064}")))
            .collect();
        assert!(matches!(
            overlay_options(&many, up, w),
            Err(RuntimeError::Invalid { .. })
        ));
    }

    #[test]
    fn mounts_layers_with_upper_on_top_and_unmounts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("base");
        let top = dir.path().join("top");
        std::fs::create_dir_all(&base).expect("mkdir");
        std::fs::create_dir_all(&top).expect("mkdir");
        std::fs::write(base.join("a"), "base").expect("write");
        std::fs::write(base.join("b"), "base").expect("write");
        std::fs::write(top.join("a"), "top").expect("write");
        let target = dir.path().join("rootfs");
        let upper = dir.path().join("upper");
        mount_overlay(
            &[base.clone(), top],
            &upper,
            &dir.path().join("work"),
            &target,
        )
        .expect("mount");
        struct Guard(PathBuf);
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = unmount(&self.0);
            }
        }
        let _guard = Guard(target.clone());
        assert_eq!(
            std::fs::read_to_string(target.join("a")).expect("read"),
            "top"
        );
        assert_eq!(
            std::fs::read_to_string(target.join("b")).expect("read"),
            "base"
        );
        std::fs::write(target.join("c"), "new").expect("write through overlay");
        assert!(upper.join("c").exists(), "writes land in the upper dir");
        assert!(!base.join("c").exists(), "layers stay untouched");
        unmount(&target).expect("unmount");
        assert!(!target.join("a").exists());
        unmount(&target).expect("second unmount is a no-op");
    }
}
