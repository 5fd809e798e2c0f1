//! subPath: a path inside a volume that a container mounts instead of the whole volume.
//! It must stay inside the volume even through symlinks (the check Kubernetes added for
//! CVE-2017-1002101); a missing subPath is created as a directory with the volume's mode.
//! The resolved file is bind-mounted, so subPath mounts of configMap-style volumes see no
//! later updates, as in Kubernetes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

pub fn resolve(volume: &Path, sub_path: &str) -> Result<PathBuf, String> {
    let rel = Path::new(sub_path);
    if rel.is_absolute() {
        return Err(format!("subPath {sub_path:?} must be a relative path"));
    }
    if rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("subPath {sub_path:?} must not contain '..'"));
    }
    let base = std::fs::canonicalize(volume)
        .map_err(|e| format!("volume path {}: {e}", volume.display()))?;
    let joined = base.join(rel);
    if std::fs::symlink_metadata(&joined).is_err() {
        let mode = std::fs::metadata(&base)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o755);
        std::fs::create_dir_all(&joined)
            .map_err(|e| format!("create subPath {}: {e}", joined.display()))?;
        std::fs::set_permissions(&joined, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod subPath {}: {e}", joined.display()))?;
    }
    let resolved =
        std::fs::canonicalize(&joined).map_err(|e| format!("subPath {}: {e}", joined.display()))?;
    if !resolved.starts_with(&base) {
        return Err(format!(
            "subpath {:?} not within volume path {:?}",
            resolved.display().to_string(),
            base.display().to_string()
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_creates_and_confines() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).unwrap();
        let p = resolve(&vol, "a/b").unwrap();
        assert!(p.is_dir());
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o777
        );
        std::fs::write(vol.join("file"), "x").unwrap();
        assert!(resolve(&vol, "file").unwrap().is_file());
        assert!(resolve(&vol, "../escape").is_err());
        assert!(resolve(&vol, "/etc").is_err());
        std::os::unix::fs::symlink("/etc", vol.join("evil")).unwrap();
        let err = resolve(&vol, "evil").unwrap_err();
        assert!(err.contains("not within volume path"), "{err}");
        std::os::unix::fs::symlink("file", vol.join("ok")).unwrap();
        assert!(resolve(&vol, "ok").unwrap().ends_with("file"));
    }
}
