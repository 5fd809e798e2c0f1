//! hostPath: a path of the node, checked against the volume's `type` with the kubelet's
//! messages (`hostPath type check failed: /x is not a directory`).

use std::fs::OpenOptions;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use k8s_openapi::api::core::v1::HostPathVolumeSource;

pub fn check(src: &HostPathVolumeSource) -> Result<(), String> {
    let path = Path::new(&src.path);
    if !path.is_absolute() {
        return Err(format!("hostPath {:?} must be an absolute path", src.path));
    }
    let kind = src.type_.as_deref().unwrap_or("");
    let meta = std::fs::metadata(path).ok();
    let failed = |what: &str| format!("hostPath type check failed: {} is not {what}", src.path);
    let ft = meta.as_ref().map(|m| m.file_type());
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => {
            std::fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", src.path))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("chmod {}: {e}", src.path))
        }
        "DirectoryOrCreate" | "Directory" => match ft {
            Some(t) if t.is_dir() => Ok(()),
            _ => Err(failed("a directory")),
        },
        "FileOrCreate" if meta.is_none() => OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(path)
            .map(drop)
            .map_err(|e| format!("create {}: {e}", src.path)),
        "FileOrCreate" | "File" => match ft {
            Some(t) if t.is_file() => Ok(()),
            _ => Err(failed("a file")),
        },
        "Socket" => match ft {
            Some(t) if t.is_socket() => Ok(()),
            _ => Err(failed("a socket file")),
        },
        "CharDevice" => match ft {
            Some(t) if t.is_char_device() => Ok(()),
            _ => Err(failed("a character device")),
        },
        "BlockDevice" => match ft {
            Some(t) if t.is_block_device() => Ok(()),
            _ => Err(failed("a block device")),
        },
        other => Err(format!("{other} is an invalid volume type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(path: &Path, kind: &str) -> HostPathVolumeSource {
        HostPathVolumeSource {
            path: path.to_string_lossy().into_owned(),
            type_: Some(kind.into()),
        }
    }

    #[test]
    fn type_checks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let file = tmp.path().join("f");
        check(&src(&dir, "DirectoryOrCreate")).unwrap();
        assert!(dir.is_dir());
        check(&src(&dir, "Directory")).unwrap();
        check(&src(&file, "FileOrCreate")).unwrap();
        assert!(file.is_file());
        check(&src(&file, "File")).unwrap();
        assert_eq!(
            check(&src(&file, "Directory")).unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            )
        );
        assert_eq!(
            check(&src(&dir, "File")).unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a file",
                dir.display()
            )
        );
        assert!(check(&src(&tmp.path().join("missing"), "Directory")).is_err());
        assert!(check(&src(&file, "Socket"))
            .unwrap_err()
            .ends_with("is not a socket file"));
        assert!(check(&src(&file, "BlockDevice"))
            .unwrap_err()
            .ends_with("is not a block device"));
        check(&src(Path::new("/dev/null"), "CharDevice")).unwrap();
        assert!(check(&src(&file, "CharDevice"))
            .unwrap_err()
            .ends_with("is not a character device"));
        assert_eq!(
            check(&src(&file, "Pipe")).unwrap_err(),
            "Pipe is an invalid volume type"
        );
        // No type: no check, even for a missing path.
        check(&src(&tmp.path().join("nothing"), "")).unwrap();
        assert!(check(&src(Path::new("relative"), "")).is_err());
    }

    #[test]
    fn socket_check() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        check(&src(&sock, "Socket")).unwrap();
    }
}
