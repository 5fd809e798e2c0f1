//! Test images built at test time from the host's busybox-static (never pulled from a public
//! registry): pushed to a local [`crate::registry::Registry`] or written as archives.
//!
//! Layers are deterministic (fixed mtimes, gzip without a timestamp), so the same options
//! give the same digests in every test and process.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use flate2::write::GzEncoder;
use flate2::Compression;
use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer,
};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::registry::Registry;

/// The host's busybox (Debian's busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";
/// The PATH the image config sets.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const MTIME: u64 = 1_700_000_000;

/// A file added to the image in a second layer on top of busybox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    /// Absolute path in the image (`/etc/motd`); parent directories are created.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

impl ExtraFile {
    pub fn new(path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        ExtraFile {
            path: path.to_string(),
            contents: contents.into(),
            mode,
        }
    }
}

/// Variants of the busybox image. `Default` is plain busybox with `Cmd ["sh"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageOptions {
    /// Files for a second layer (none: the image has one layer).
    pub extra_files: Vec<ExtraFile>,
    /// Paths deleted by the second layer with `.wh.` whiteouts (e.g. `/etc/group`).
    pub whiteouts: Vec<String>,
    /// Directories made opaque by the second layer (`.wh..wh..opq`): lower contents hidden.
    pub opaque_dirs: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    /// Defaults to `["sh"]`.
    pub cmd: Option<Vec<String>>,
    /// Appended after `PATH=…`.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// Layers as plain tar instead of gzip (registry pushes only; archives follow their format).
    pub uncompressed: bool,
}

/// One layer: its uncompressed tar and its gzip form.
#[derive(Debug, Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub gzip: Vec<u8>,
    /// `sha256:` of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
    /// `sha256:` of the gzip blob.
    pub gzip_digest: String,
}

/// An image ready to push or archive.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub layers: Vec<Layer>,
    /// The OCI image config JSON.
    pub config: Vec<u8>,
    /// `sha256:` of `config`: the image ID.
    pub config_digest: String,
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn make_layer(tar: Vec<u8>) -> Layer {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&tar).expect("gzip in memory");
    let gzip = gz.finish().expect("gzip in memory");
    Layer {
        diff_id: sha256(&tar),
        gzip_digest: sha256(&gzip),
        tar,
        gzip,
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(size);
    h
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) {
    let mut h = header(tar::EntryType::Directory, mode, 0);
    b.append_data(
        &mut h,
        format!("{}/", path.trim_matches('/')),
        std::io::empty(),
    )
    .expect("tar dir");
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, path.trim_start_matches('/'), data)
        .expect("tar file");
}

fn add_symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, path.trim_start_matches('/'), target)
        .expect("tar symlink");
}

/// The applets `busybox --list` prints, without `busybox` itself.
pub fn busybox_applets() -> Vec<String> {
    let out = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("run busybox --list");
    assert!(out.status.success(), "busybox --list failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(String::from)
        .collect()
}

/// The busybox base layer, built once per process.
pub fn base_layer() -> &'static Layer {
    static BASE: OnceLock<Layer> = OnceLock::new();
    BASE.get_or_init(|| {
        let busybox = fs::read(BUSYBOX).expect("read /bin/busybox (busybox-static)");
        let mut b = tar::Builder::new(Vec::new());
        for (dir, mode) in [
            ("bin", 0o755),
            ("etc", 0o755),
            ("root", 0o700),
            ("tmp", 0o1777),
            ("usr", 0o755),
            ("var", 0o755),
        ] {
            add_dir(&mut b, dir, mode);
        }
        add_file(&mut b, "bin/busybox", &busybox, 0o755);
        for applet in busybox_applets() {
            add_symlink(&mut b, &format!("bin/{applet}"), "busybox");
        }
        add_file(
            &mut b,
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        );
        add_file(&mut b, "etc/group", b"root:x:0:\nnobody:x:65534:\n", 0o644);
        make_layer(b.into_inner().expect("finish tar"))
    })
}

fn extra_layer(opts: &ImageOptions) -> Option<Layer> {
    if opts.extra_files.is_empty() && opts.whiteouts.is_empty() && opts.opaque_dirs.is_empty() {
        return None;
    }
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    let mut parents = |b: &mut tar::Builder<Vec<u8>>, path: &str| {
        let p = Path::new(path.trim_start_matches('/'));
        let mut acc = std::path::PathBuf::new();
        for c in p.parent().into_iter().flat_map(|p| p.components()) {
            acc.push(c);
            let s = acc.to_string_lossy().to_string();
            if dirs.insert(s.clone()) {
                add_dir(b, &s, 0o755);
            }
        }
    };
    for d in &opts.opaque_dirs {
        let d = d.trim_matches('/');
        parents(&mut b, &format!("{d}/.wh..wh..opq"));
        add_file(&mut b, &format!("{d}/.wh..wh..opq"), b"", 0o644);
    }
    for w in &opts.whiteouts {
        let p = Path::new(w.trim_start_matches('/'));
        let name = p
            .file_name()
            .expect("whiteout path has a name")
            .to_string_lossy();
        let wh = match p.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => format!("{}/.wh.{name}", parent.display()),
            None => format!(".wh.{name}"),
        };
        parents(&mut b, &wh);
        add_file(&mut b, &wh, b"", 0o644);
    }
    for f in &opts.extra_files {
        parents(&mut b, &f.path);
        add_file(&mut b, &f.path, &f.contents, f.mode);
    }
    Some(make_layer(b.into_inner().expect("finish tar")))
}

/// Builds the image `opts` describes.
pub fn build_image(opts: &ImageOptions) -> BuiltImage {
    let mut layers = vec![base_layer().clone()];
    layers.extend(extra_layer(opts));
    let mut env = vec![DEFAULT_PATH.to_string()];
    env.extend(opts.env.iter().cloned());
    let mut config = serde_json::Map::new();
    config.insert("Env".into(), json!(env));
    config.insert(
        "Cmd".into(),
        json!(opts.cmd.clone().unwrap_or_else(|| vec!["sh".into()])),
    );
    if let Some(e) = &opts.entrypoint {
        config.insert("Entrypoint".into(), json!(e));
    }
    if let Some(w) = &opts.working_dir {
        config.insert("WorkingDir".into(), json!(w));
    }
    if let Some(u) = &opts.user {
        config.insert("User".into(), json!(u));
    }
    let doc = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": config,
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        },
        "history": layers.iter().map(|_| json!({"created_by": "flotilla-testkit"})).collect::<Vec<_>>(),
    });
    let config = serde_json::to_vec(&doc).expect("config JSON");
    BuiltImage {
        config_digest: sha256(&config),
        config,
        layers,
    }
}

/// Pushes plain busybox as `registry_host/repo:tag` and returns that reference.
pub async fn push_busybox(registry_host: &str, repo: &str, tag: &str) -> String {
    push_image(registry_host, repo, tag, &ImageOptions::default()).await
}

/// Blocking [`push_busybox`]; callable from sync tests and from inside a runtime.
pub fn push_busybox_blocking(registry_host: &str, repo: &str, tag: &str) -> String {
    push_image_blocking(registry_host, repo, tag, &ImageOptions::default())
}

/// Blocking [`push_image`], run on a thread of its own so it works inside a runtime too.
pub fn push_image_blocking(
    registry_host: &str,
    repo: &str,
    tag: &str,
    opts: &ImageOptions,
) -> String {
    let (host, repo, tag, opts) = (
        registry_host.to_string(),
        repo.to_string(),
        tag.to_string(),
        opts.clone(),
    );
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(push_image(&host, &repo, &tag, &opts))
    })
    .join()
    .expect("push thread panicked")
}

/// Builds the image `opts` describes and pushes it (plain HTTP, anonymous) as
/// `registry_host/repo:tag`. Returns the full reference.
pub async fn push_image(registry_host: &str, repo: &str, tag: &str, opts: &ImageOptions) -> String {
    push(
        registry_host,
        repo,
        tag,
        opts,
        None,
        &RegistryAuth::Anonymous,
    )
    .await
}

/// [`push_image`] to a [`Registry`] started with TLS and/or basic auth: trusts its CA and
/// sends its credentials.
pub async fn push_image_to(
    registry: &Registry,
    repo: &str,
    tag: &str,
    opts: &ImageOptions,
) -> String {
    let auth = match registry.basic_auth() {
        Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
        None => RegistryAuth::Anonymous,
    };
    push(&registry.host(), repo, tag, opts, registry.ca_pem(), &auth).await
}

async fn push(
    registry_host: &str,
    repo: &str,
    tag: &str,
    opts: &ImageOptions,
    ca_pem: Option<&str>,
    auth: &RegistryAuth,
) -> String {
    let image = build_image(opts);
    let reference = format!("{registry_host}/{repo}:{tag}");
    let parsed: Reference = reference.parse().expect("test image reference");
    let client = Client::try_from(ClientConfig {
        protocol: if ca_pem.is_some() {
            ClientProtocol::Https
        } else {
            ClientProtocol::Http
        },
        extra_root_certificates: ca_pem
            .map(|pem| Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.as_bytes().to_vec(),
            })
            .into_iter()
            .collect(),
        ..Default::default()
    })
    .expect("registry client");
    let layers: Vec<ImageLayer> = image
        .layers
        .iter()
        .map(|l| {
            if opts.uncompressed {
                ImageLayer::oci_v1(l.tar.clone(), None)
            } else {
                ImageLayer::oci_v1_gzip(l.gzip.clone(), None)
            }
        })
        .collect();
    let config = Config::oci_v1(image.config.clone(), None);
    let manifest = OciImageManifest::build(&layers, &config, None);
    client
        .push(&parsed, &layers, config, auth, Some(manifest))
        .await
        .unwrap_or_else(|e| panic!("push {reference}: {e}"));
    reference
}

/// Pushes one image per `(architecture, options)` (tagged `tag-ARCH`), then an OCI index
/// for linux/ARCH of each as `registry_host/repo:tag` (plain HTTP). Returns the reference
/// of the index.
pub async fn push_multiarch(
    registry_host: &str,
    repo: &str,
    tag: &str,
    variants: &[(&str, ImageOptions)],
) -> String {
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let mut entries = Vec::new();
    for (arch, opts) in variants {
        let single = push_image(registry_host, repo, &format!("{tag}-{arch}"), opts).await;
        let (bytes, digest) = client
            .pull_manifest_raw(
                &single.parse().expect("reference"),
                &RegistryAuth::Anonymous,
                &[oci_client::manifest::OCI_IMAGE_MEDIA_TYPE],
            )
            .await
            .unwrap_or_else(|e| panic!("read back {single}: {e}"));
        entries.push(oci_client::manifest::ImageIndexEntry {
            media_type: oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_string(),
            digest,
            size: bytes.len() as i64,
            platform: Some(oci_client::manifest::Platform {
                architecture: arch.to_string(),
                os: "linux".into(),
                os_version: None,
                os_features: None,
                variant: None,
                features: None,
            }),
            annotations: None,
        });
    }
    let reference = format!("{registry_host}/{repo}:{tag}");
    let index = oci_client::manifest::OciImageIndex {
        schema_version: 2,
        media_type: Some(oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()),
        manifests: entries,
        artifact_type: None,
        annotations: None,
    };
    client
        .push_manifest_list(
            &reference.parse().expect("reference"),
            &RegistryAuth::Anonymous,
            index,
        )
        .await
        .unwrap_or_else(|e| panic!("push index {reference}: {e}"));
    reference
}

fn tar_append(b: &mut tar::Builder<fs::File>, path: &str, data: &[u8]) {
    let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
    b.append_data(&mut h, path, data).expect("write archive");
}

fn tar_dir(b: &mut tar::Builder<fs::File>, path: &str) {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, path, std::io::empty())
        .expect("write archive");
}

/// Writes the image as an OCI image-layout tar (`oci-layout`, `index.json`, `blobs/sha256/…`,
/// gzip layers). `name` is the full reference (`docker.io/library/busybox:latest`), recorded
/// as `io.containerd.image.name`, with its tag as `org.opencontainers.image.ref.name`.
/// Returns the image (for its digests).
pub fn write_oci_archive(path: &Path, name: &str, opts: &ImageOptions) -> BuiltImage {
    let image = build_image(opts);
    let layers: Vec<ImageLayer> = image
        .layers
        .iter()
        .map(|l| ImageLayer::oci_v1_gzip(l.gzip.clone(), None))
        .collect();
    let manifest =
        OciImageManifest::build(&layers, &Config::oci_v1(image.config.clone(), None), None);
    let manifest = serde_json::to_vec(&manifest).expect("manifest JSON");
    let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    let mut annotations = BTreeMap::new();
    annotations.insert("io.containerd.image.name", name.to_string());
    annotations.insert("org.opencontainers.image.ref.name", tag.to_string());
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(&manifest),
            "size": manifest.len(),
            "annotations": annotations,
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    });
    let file = fs::File::create(path).expect("create OCI archive");
    let mut b = tar::Builder::new(file);
    tar_append(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    tar_append(
        &mut b,
        "index.json",
        &serde_json::to_vec(&index).expect("index JSON"),
    );
    tar_dir(&mut b, "blobs/");
    tar_dir(&mut b, "blobs/sha256/");
    let mut blob = |data: &[u8]| {
        let d = sha256(data);
        let hex = d.trim_start_matches("sha256:");
        tar_append(&mut b, &format!("blobs/sha256/{hex}"), data);
    };
    blob(&manifest);
    blob(&image.config);
    for l in &image.layers {
        blob(&l.gzip);
    }
    b.into_inner()
        .and_then(|mut f| f.flush())
        .expect("finish OCI archive");
    image
}

/// Writes the image as `docker save` does: `manifest.json` with `RepoTags`, the config as
/// `<hex>.json`, each layer as an uncompressed `<diffid-hex>/layer.tar`.
/// `repo_tag` is how docker names it (`busybox:latest`, `127.0.0.1:5000/x:y`).
pub fn write_docker_save_archive(path: &Path, repo_tag: &str, opts: &ImageOptions) -> BuiltImage {
    let image = build_image(opts);
    let config_hex = image
        .config_digest
        .trim_start_matches("sha256:")
        .to_string();
    let layer_paths: Vec<String> = image
        .layers
        .iter()
        .map(|l| format!("{}/layer.tar", l.diff_id.trim_start_matches("sha256:")))
        .collect();
    let manifest = json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [repo_tag],
        "Layers": layer_paths,
    }]);
    let file = fs::File::create(path).expect("create docker archive");
    let mut b = tar::Builder::new(file);
    for (l, p) in image.layers.iter().zip(&layer_paths) {
        let dir = p.trim_end_matches("layer.tar");
        tar_dir(&mut b, dir);
        tar_append(&mut b, &format!("{dir}VERSION"), b"1.0");
        tar_append(&mut b, p, &l.tar);
    }
    tar_append(&mut b, &format!("{config_hex}.json"), &image.config);
    tar_append(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("manifest JSON"),
    );
    b.into_inner()
        .and_then(|mut f| f.flush())
        .expect("finish docker archive");
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.path().expect("path").to_string_lossy().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn base_layer_has_busybox_applets_and_users() {
        let l = base_layer();
        let names = entries(&l.tar);
        let has = |n: &str| names.iter().any(|(p, _)| p == n);
        assert!(has("bin/busybox"));
        for applet in ["sh", "sleep", "cat", "echo", "ls", "wget", "id"] {
            assert!(has(&format!("bin/{applet}")), "missing applet {applet}");
        }
        assert!(has("etc/passwd") && has("etc/group") && has("tmp/"));
        assert_eq!(l.diff_id, sha256(&l.tar));
        // Deterministic: the same bytes every build.
        let again = build_image(&ImageOptions::default());
        assert_eq!(again.layers[0].gzip_digest, l.gzip_digest);
    }

    #[test]
    fn options_shape_config_and_second_layer() {
        let img = build_image(&ImageOptions {
            extra_files: vec![ExtraFile::new("/srv/www/index.html", "hi", 0o644)],
            whiteouts: vec!["/etc/group".into()],
            opaque_dirs: vec!["/var".into()],
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            env: vec!["A=1".into()],
            working_dir: Some("/srv".into()),
            user: Some("65534:65534".into()),
            ..Default::default()
        });
        assert_eq!(img.layers.len(), 2);
        let names = entries(&img.layers[1].tar);
        let has = |n: &str| names.iter().any(|(p, _)| p == n);
        assert!(has("srv/www/index.html") && has("etc/.wh.group") && has("var/.wh..wh..opq"));
        let cfg: serde_json::Value = serde_json::from_slice(&img.config).expect("json");
        assert_eq!(cfg["config"]["Entrypoint"], json!(["/bin/sh", "-c"]));
        assert_eq!(cfg["config"]["Env"][1], "A=1");
        assert_eq!(cfg["config"]["WorkingDir"], "/srv");
        assert_eq!(cfg["config"]["User"], "65534:65534");
        assert_eq!(cfg["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn archives_have_their_formats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let oci = dir.path().join("oci.tar");
        let img = write_oci_archive(&oci, "docker.io/library/busybox:1.36", &Default::default());
        let names = entries(&fs::read(&oci).expect("read"));
        let has = |n: &str| names.iter().any(|(p, _)| p == n);
        assert!(has("oci-layout") && has("index.json"));
        let hex = img.config_digest.trim_start_matches("sha256:");
        assert!(has(&format!("blobs/sha256/{hex}")));

        let docker = dir.path().join("docker.tar");
        let img = write_docker_save_archive(&docker, "busybox:latest", &Default::default());
        let names = entries(&fs::read(&docker).expect("read"));
        let has = |n: &str| names.iter().any(|(p, _)| p == n);
        assert!(has("manifest.json") && has(&format!("{hex}.json")));
        let diff = img.layers[0].diff_id.trim_start_matches("sha256:");
        assert!(has(&format!("{diff}/layer.tar")));
    }

    #[test]
    fn push_to_local_registry() {
        let reg = crate::registry::Registry::start();
        let r = push_busybox_blocking(&reg.host(), "testkit/busybox", "v1");
        assert_eq!(r, format!("{}/testkit/busybox:v1", reg.host()));
        // The registry serves the manifest back by tag.
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        });
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let (manifest, _digest) = rt
            .block_on(
                client
                    .pull_image_manifest(&r.parse().expect("reference"), &RegistryAuth::Anonymous),
            )
            .expect("pull manifest");
        assert_eq!(
            manifest.config.digest,
            build_image(&Default::default()).config_digest
        );
        assert_eq!(manifest.layers[0].digest, base_layer().gzip_digest);
    }
}
