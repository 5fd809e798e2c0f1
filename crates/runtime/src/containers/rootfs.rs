//! A container's root filesystem: an overlay of the image's layers with a private upper dir.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::cri::RuntimeError;

/// Mounts `layers` (lowest first, as [`crate::cri::Image::layers`] lists them) read-only
/// beneath a writable `upper` at `target`.
pub(crate) fn mount_overlay(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RuntimeError> {
    if layers.is_empty() {
        return Err(RuntimeError::Invalid {
            what: "image".into(),
            message: "has no layers to mount".into(),
        });
    }
    for dir in [upper, work, target] {
        std::fs::create_dir_all(dir)
            .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
    }
    let data = overlay_options(layers, upper, work)?;
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| {
        RuntimeError::io(
            format!("mounting overlay at {}", target.display()),
            e.into(),
        )
    })
}

fn overlay_options(layers: &[PathBuf], upper: &Path, work: &Path) -> Result<String, RuntimeError> {
    let mut lower = Vec::with_capacity(layers.len());
    // overlayfs stacks lowerdir left-on-top, the reverse of the image's order.
    for layer in layers.iter().rev() {
        let s = layer.to_str().ok_or_else(|| RuntimeError::Invalid {
            what: "layer path".into(),
            message: format!("{} is not UTF-8", layer.display()),
        })?;
        if s.contains([',', ':']) {
            return Err(RuntimeError::Invalid {
                what: "layer path".into(),
                message: format!("{s} contains ',' or ':'"),
            });
        }
        lower.push(s);
    }
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    ))
}

/// Unmounts `target` if something is mounted there; a plain directory is fine.
pub(crate) fn unmount(target: &Path) -> Result<(), RuntimeError> {
    loop {
        match umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue, // stacked mounts: peel until none is left
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                // Something still holds it open; detach so the directory can go.
                return umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).map_err(
                    |e| RuntimeError::io(format!("unmounting {}", target.display()), e.into()),
                );
            }
            Err(e) => {
                return Err(RuntimeError::io(
                    format!("unmounting {}", target.display()),
                    e.into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdir_is_top_first() {
        let layers = vec![PathBuf::from("/l/base"), PathBuf::from("/l/top")];
        let o = overlay_options(&layers, Path::new("/u"), Path::new("/w")).unwrap();
        assert_eq!(o, "lowerdir=/l/top:/l/base,upperdir=/u,workdir=/w");
        assert!(
            overlay_options(&[PathBuf::from("/a:b")], Path::new("/u"), Path::new("/w")).is_err()
        );
        assert!(matches!(
            mount_overlay(&[], Path::new("/u"), Path::new("/w"), Path::new("/t")),
            Err(RuntimeError::Invalid { .. })
        ));
    }
}
