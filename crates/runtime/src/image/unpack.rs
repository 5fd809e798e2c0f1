//! Layer unpacking: a (possibly compressed) layer tar becomes a directory overlayfs can use
//! as a lower dir. OCI/AUFS whiteouts become overlayfs ones: `.wh.NAME` a 0/0 character
//! device named NAME, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.
//! The uncompressed stream is hashed on the way through and must match the layer's diff ID.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use sha2::{Digest, Sha256};

use crate::cri::RuntimeError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Unpacks the layer blob at `blob` into `dest` (an empty directory), verifying the
/// uncompressed content against `diff_id` (`sha256:…`). Returns the bytes of regular files
/// written. gzip, zstd and plain tar are told apart by their magic bytes, as containerd does.
pub fn unpack_layer(blob: &Path, diff_id: &str, dest: &Path) -> Result<u64, RuntimeError> {
    let file = fs::File::open(blob)
        .map_err(|e| RuntimeError::io(format!("open layer {}", blob.display()), e))?;
    let mut input = BufReader::new(file);
    let magic = input
        .fill_buf()
        .map_err(|e| RuntimeError::io("read layer", e))?
        .to_vec();
    let reader: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(MultiGzDecoder::new(input))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(ruzstd::decoding::StreamingDecoder::new(input).map_err(|e| {
            RuntimeError::Invalid {
                what: "layer".into(),
                message: format!("zstd: {e}"),
            }
        })?)
    } else {
        Box::new(input)
    };
    unpack_stream(reader, diff_id, dest)
}

/// Unpacks an uncompressed tar stream (see [`unpack_layer`]).
pub fn unpack_stream(reader: impl Read, diff_id: &str, dest: &Path) -> Result<u64, RuntimeError> {
    let hashing = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    let mut archive = tar::Archive::new(hashing);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let mut bytes = 0u64;
    let bad = |e: io::Error| RuntimeError::Invalid {
        what: "layer".into(),
        message: format!("tar: {e}"),
    };
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(rel) = clean_path(&path) else {
            // `./` (the layer root itself, common in `tar -C dir .` layers) is the dir we
            // unpack into; anything climbing out of it is refused.
            if path.components().any(|c| c == Component::ParentDir) {
                tracing::warn!(path = %path.display(), "skipping layer entry outside the root");
            }
            continue;
        };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
        if name == OPAQUE_MARKER {
            fs::create_dir_all(&parent)
                .map_err(|e| RuntimeError::io(format!("create {}", parent.display()), e))?;
            xattr::set(&parent, OPAQUE_XATTR, b"y").map_err(|e| {
                RuntimeError::io(format!("set opaque xattr on {}", parent.display()), e)
            })?;
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            // `.wh..wh.*` other than the opaque marker are AUFS bookkeeping (hard-link
            // dirs); they carry nothing a container should see.
            if hidden.starts_with(".wh.") {
                continue;
            }
            fs::create_dir_all(&parent)
                .map_err(|e| RuntimeError::io(format!("create {}", parent.display()), e))?;
            make_whiteout(&parent.join(hidden))?;
        } else {
            if entry.header().entry_type().is_file() {
                bytes += entry.size();
            }
            entry
                .unpack_in(dest)
                .map_err(|e| RuntimeError::io(format!("unpack {}", rel.display()), e))?;
        }
    }
    // tar stops at its end-of-archive blocks; the diff ID covers every byte after them too.
    let mut hashing = archive.into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| RuntimeError::io("read layer", e))?;
    let actual = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
    if actual != diff_id {
        return Err(RuntimeError::Invalid {
            what: "layer".into(),
            message: format!("content digest {actual} does not match diff ID {diff_id}"),
        });
    }
    Ok(bytes)
}

/// An overlayfs whiteout: a character device 0/0 in place of whatever was there.
fn make_whiteout(path: &Path) -> Result<(), RuntimeError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
    .map_err(|e| RuntimeError::io(format!("replace {}", path.display()), e))?;
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
        .map_err(|e| RuntimeError::io(format!("whiteout {}", path.display()), io::Error::from(e)))
}

/// The entry's path relative to the layer root, or None if it would escape it.
fn clean_path(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], u32, u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, mode, uid) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_uid(*uid as u64);
            h.set_gid(*uid as u64);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    fn digest(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("layer");
        fs::create_dir(&dest).expect("mkdir");
        let tar = tar_of(&[
            ("etc/", tar::EntryType::Directory, b"", 0o755, 0),
            ("etc/.wh.group", tar::EntryType::Regular, b"", 0o644, 0),
            ("var/.wh..wh..opq", tar::EntryType::Regular, b"", 0o644, 0),
            ("var/new", tar::EntryType::Regular, b"x", 0o600, 65534),
            ("bin/tool", tar::EntryType::Regular, b"#!", 0o4755, 0),
            (".wh..wh.plnk/1", tar::EntryType::Regular, b"", 0o644, 0),
        ]);
        let n = unpack_stream(&tar[..], &digest(&tar), &dest).expect("unpack");
        assert_eq!(n, 3);
        let wh = fs::symlink_metadata(dest.join("etc/group")).expect("whiteout exists");
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!dest.join("etc/.wh.group").exists());
        assert_eq!(
            xattr::get(dest.join("var"), OPAQUE_XATTR).expect("xattr"),
            Some(b"y".to_vec())
        );
        assert!(!dest.join("var/.wh..wh..opq").exists());
        let new = fs::metadata(dest.join("var/new")).expect("file");
        assert_eq!((new.uid(), new.mode() & 0o7777), (65534, 0o600));
        let tool = fs::metadata(dest.join("bin/tool")).expect("file");
        assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
    }

    #[test]
    fn digest_mismatch_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tar = tar_of(&[("a", tar::EntryType::Regular, b"a", 0o644, 0)]);
        let wrong = digest(b"something else");
        assert!(matches!(
            unpack_stream(&tar[..], &wrong, dir.path()),
            Err(RuntimeError::Invalid { .. })
        ));
    }

    #[test]
    fn gzip_layers_and_escaping_paths() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("layer");
        fs::create_dir(&dest).expect("mkdir");
        // tar::Builder refuses `..`, so write the header name by hand.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(1);
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        raw.extend_from_slice(&[b'x'; 1]);
        raw.resize(1024, 0);
        let mut ok = tar_of(&[("kept", tar::EntryType::Regular, b"k", 0o644, 0)]);
        raw.append(&mut ok);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).expect("gzip");
        let blob = dir.path().join("blob");
        fs::write(&blob, gz.finish().expect("gzip")).expect("write");
        unpack_layer(&blob, &digest(&raw), &dest).expect("unpack");
        assert!(dest.join("kept").exists());
        assert!(!dir.path().join("escape").exists());
    }

    #[test]
    fn zstd_layers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("layer");
        fs::create_dir(&dest).expect("mkdir");
        let tar = tar_of(&[("z/file", tar::EntryType::Regular, b"zstd", 0o644, 0)]);
        let compressed = ruzstd::encoding::compress_to_vec(
            &tar[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let blob = dir.path().join("blob");
        fs::write(&blob, compressed).expect("write");
        unpack_layer(&blob, &digest(&tar), &dest).expect("unpack");
        assert_eq!(fs::read(dest.join("z/file")).expect("read"), b"zstd");
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_path(Path::new("./a/b")), Some(PathBuf::from("a/b")));
        assert_eq!(clean_path(Path::new("/a")), Some(PathBuf::from("a")));
        assert_eq!(clean_path(Path::new("a/../../b")), None);
        assert_eq!(clean_path(Path::new(".")), None);
    }
}
