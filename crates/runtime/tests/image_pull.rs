//! The image store against a real registry (Distribution 2.8 on loopback) and real archives.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_runtime::cri::{ImageService, PullPolicy, RuntimeError};
use flotilla_runtime::image::{ImageStore, ImageStoreConfig};
use testkit::images::{self, ExtraFile, ImageOptions};
use testkit::registry::Registry;

fn store(dir: &Path) -> ImageStore {
    ImageStore::open(ImageStoreConfig {
        root: dir.join("images"),
        ..Default::default()
    })
    .unwrap()
}

/// How many times the registry served `GET …/blobs/<digest>` (its access log).
fn blob_gets(reg: &Registry, digest: &str) -> usize {
    reg.log()
        .lines()
        .filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{digest}")))
        .count()
}

fn layer_dirs(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("images/layers"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_then_repull_downloads_nothing() {
    let reg = Registry::start();
    let reference = images::push_busybox(&reg.host(), "e2e/busybox", "v1").await;
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());

    let img = s
        .ensure_image(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    let built = images::build_image(&ImageOptions::default());
    assert_eq!(img.id, built.config_digest);
    assert_eq!(img.reference, reference);
    assert_eq!(img.config.cmd, vec!["sh".to_string()]);
    assert_eq!(img.config.env, vec![images::DEFAULT_PATH.to_string()]);
    assert!(img
        .repo_digest
        .as_deref()
        .unwrap()
        .starts_with(&format!("{}/e2e/busybox@sha256:", reg.host())));
    assert_eq!(img.layers.len(), 1);
    let busybox = std::fs::metadata(img.layers[0].join("bin/busybox")).unwrap();
    assert_eq!(busybox.mode() & 0o777, 0o755);
    assert!(std::fs::symlink_metadata(img.layers[0].join("bin/sh"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::metadata(img.layers[0].join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert!(img.size >= busybox.len());
    let layer_inode = std::fs::metadata(&img.layers[0]).unwrap().ino();
    let digest = &images::base_layer().gzip_digest;
    assert_eq!(blob_gets(&reg, digest), 1);

    // Always re-resolves the tag but finds every layer present.
    let again = s
        .ensure_image(&reference, PullPolicy::Always, &[])
        .await
        .unwrap();
    assert_eq!(again.id, img.id);
    assert_eq!(
        std::fs::metadata(&again.layers[0]).unwrap().ino(),
        layer_inode
    );
    assert_eq!(
        blob_gets(&reg, digest),
        1,
        "re-pull downloaded the layer again"
    );
    assert_eq!(s.list_images().await.unwrap().len(), 1);

    // A fresh store on the same root sees the image (records are on disk).
    drop(s);
    let reopened = store(dir.path());
    let status = reopened.image_status(&reference).await.unwrap().unwrap();
    assert_eq!(status.id, img.id);
    assert_eq!(status.layers, img.layers);
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_policies() {
    let reg = Registry::start();
    let reference = images::push_busybox(&reg.host(), "e2e/policy", "v1").await;
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());

    let err = s
        .ensure_image(&reference, PullPolicy::Never, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::ImageNeverPull(ref r) if r == &reference),
        "{err}"
    );
    let first = s
        .ensure_image(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    assert_eq!(
        s.ensure_image(&reference, PullPolicy::Never, &[])
            .await
            .unwrap()
            .id,
        first.id
    );

    // The tag moves: Always follows it, IfNotPresent keeps what is there.
    let moved = images::push_image(
        &reg.host(),
        "e2e/policy",
        "v1",
        &ImageOptions {
            extra_files: vec![ExtraFile::new("/etc/motd", "v2", 0o644)],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(moved, reference);
    let kept = s
        .ensure_image(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    assert_eq!(kept.id, first.id);
    let newer = s
        .ensure_image(&reference, PullPolicy::Always, &[])
        .await
        .unwrap();
    assert_ne!(newer.id, first.id);
    assert_eq!(newer.layers.len(), 2);
    assert_eq!(
        std::fs::read_to_string(newer.layers[1].join("etc/motd")).unwrap(),
        "v2"
    );
    // The old image lost its tag but is still there, by ID.
    let old = s.image_status(&first.id).await.unwrap().unwrap();
    assert_ne!(old.reference, reference);
    assert_eq!(
        s.image_status(&reference).await.unwrap().unwrap().id,
        newer.id
    );

    // With the registry gone, present images still resolve without Always.
    drop(reg);
    assert_eq!(
        s.ensure_image(&reference, PullPolicy::IfNotPresent, &[])
            .await
            .unwrap()
            .id,
        newer.id
    );
    let err = s
        .ensure_image(&reference, PullPolicy::Always, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::RegistryUnavailable { .. }),
        "{err}"
    );

    // By digest: present content needs no registry even with Always.
    let by_digest = newer.repo_digest.clone().unwrap();
    assert_eq!(
        s.ensure_image(&by_digest, PullPolicy::Always, &[])
            .await
            .unwrap()
            .id,
        newer.id
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_images_and_registries_fail_with_their_kind() {
    let reg = Registry::start();
    images::push_busybox(&reg.host(), "e2e/present", "v1").await;
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());

    for missing in [
        format!("{}/e2e/present:nope", reg.host()),
        format!("{}/e2e/absent:v1", reg.host()),
    ] {
        let err = s
            .ensure_image(&missing, PullPolicy::IfNotPresent, &[])
            .await
            .unwrap_err();
        assert!(
            matches!(err, RuntimeError::ImageNotFound { .. }),
            "{missing}: {err}"
        );
    }

    let closed = testkit::free_port();
    let start = Instant::now();
    let err = s
        .ensure_image(
            &format!("127.0.0.1:{closed}/x/y:1"),
            PullPolicy::IfNotPresent,
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::RegistryUnavailable { .. }),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );

    let err = s
        .ensure_image("Bad Ref", PullPolicy::Always, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::InvalidImageReference { .. }),
        "{err}"
    );
    assert!(s.list_images().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_serves_a_registry_name() {
    let reg = Registry::start();
    images::push_busybox(&reg.host(), "lib/busybox", "v1").await;
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", testkit::free_port());
    let mut mirrors = BTreeMap::new();
    // A dead mirror first: the next one must be tried.
    mirrors.insert("mirror.test".to_string(), vec![dead, reg.url()]);
    let s = ImageStore::open(ImageStoreConfig {
        root: dir.path().join("images"),
        mirrors,
        insecure_registries: vec![],
    })
    .unwrap();
    let img = s
        .ensure_image("mirror.test/lib/busybox:v1", PullPolicy::Always, &[])
        .await
        .unwrap();
    assert_eq!(img.reference, "mirror.test/lib/busybox:v1");
    assert_eq!(
        img.id,
        images::build_image(&ImageOptions::default()).config_digest
    );
    assert!(img
        .repo_digest
        .unwrap()
        .starts_with("mirror.test/lib/busybox@sha256:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_download_once() {
    let reg = Registry::start();
    let opts = ImageOptions {
        extra_files: vec![ExtraFile::new("/data/blob", vec![7u8; 256 * 1024], 0o600)],
        ..Default::default()
    };
    let reference = images::push_image(&reg.host(), "e2e/concurrent", "v1", &opts).await;
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let pulls = (0..6).map(|_| {
        let s = s.clone();
        let r = reference.clone();
        tokio::spawn(async move { s.ensure_image(&r, PullPolicy::IfNotPresent, &[]).await })
    });
    let results = futures::future::join_all(pulls).await;
    let ids: std::collections::BTreeSet<String> = results
        .into_iter()
        .map(|r| r.unwrap().unwrap().id)
        .collect();
    assert_eq!(ids.len(), 1);
    let built = images::build_image(&opts);
    for layer in &built.layers {
        assert_eq!(
            blob_gets(&reg, &layer.gzip_digest),
            1,
            "layer fetched more than once"
        );
    }
    assert_eq!(layer_dirs(dir.path()), 2);
    assert_eq!(
        std::fs::read_dir(dir.path().join("images/tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn whiteouts_hide_lower_files_in_the_rootfs() {
    let reg = Registry::start();
    let opts = ImageOptions {
        whiteouts: vec!["/etc/group".into()],
        opaque_dirs: vec!["/bin".into()],
        extra_files: vec![ExtraFile::new("/bin/only", "x", 0o755)],
        ..Default::default()
    };
    let reference = images::push_image(&reg.host(), "e2e/whiteout", "v1", &opts).await;
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let img = s
        .ensure_image(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    let wh = std::fs::symlink_metadata(img.layers[1].join("etc/group")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);

    let c = dir.path().join("c");
    let target = c.join("rootfs");
    flotilla_runtime::image::rootfs::mount_overlay(
        &img.layers,
        &c.join("upper"),
        &c.join("work"),
        &target,
    )
    .unwrap();
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = flotilla_runtime::image::rootfs::unmount(self.0);
        }
    }
    let _guard = Unmount(&target);
    assert!(target.join("etc/passwd").exists());
    assert!(
        !target.join("etc/group").exists(),
        "whiteout did not hide /etc/group"
    );
    let bin: Vec<String> = std::fs::read_dir(target.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        bin,
        vec!["only".to_string()],
        "opaque /bin still shows lower entries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn import_both_archive_formats() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let oci = dir.path().join("oci.tar");
    let built =
        images::write_oci_archive(&oci, "docker.io/library/busybox:oci", &Default::default());
    let got = s.import(&oci).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].reference, "docker.io/library/busybox:oci");
    assert_eq!(got[0].id, built.config_digest);
    assert!(got[0].layers[0].join("bin/busybox").is_file());

    let docker = dir.path().join("docker.tar");
    let opts = ImageOptions {
        cmd: Some(vec!["sleep".into(), "3600".into()]),
        ..Default::default()
    };
    let built = images::write_docker_save_archive(&docker, "busybox:saved", &opts);
    let got = s.import(&docker).await.unwrap();
    assert_eq!(got[0].reference, "docker.io/library/busybox:saved");
    assert_eq!(got[0].id, built.config_digest);
    assert_eq!(
        got[0].config.cmd,
        vec!["sleep".to_string(), "3600".to_string()]
    );
    // Both images share the one busybox layer, unpacked once.
    assert_eq!(layer_dirs(dir.path()), 1);
    let found = s
        .ensure_image("busybox:saved", PullPolicy::Never, &[])
        .await
        .unwrap();
    assert_eq!(found.id, built.config_digest);

    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").unwrap();
    assert!(s.import(&junk).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_and_garbage_collect_keep_shared_layers() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let a = dir.path().join("a.tar");
    images::write_oci_archive(&a, "example.test/a:1", &Default::default());
    let b = dir.path().join("b.tar");
    let b_opts = ImageOptions {
        extra_files: vec![ExtraFile::new("/b", "b", 0o644)],
        ..Default::default()
    };
    images::write_oci_archive(&b, "example.test/b:1", &b_opts);
    let c = dir.path().join("c.tar");
    let c_opts = ImageOptions {
        extra_files: vec![ExtraFile::new("/c", "c", 0o644)],
        ..Default::default()
    };
    images::write_oci_archive(&c, "example.test/c:1", &c_opts);
    let img_a = s.import(&a).await.unwrap().remove(0);
    let img_b = s.import(&b).await.unwrap().remove(0);
    let img_c = s.import(&c).await.unwrap().remove(0);
    assert_eq!(layer_dirs(dir.path()), 3);

    s.remove_image("example.test/b:1").await.unwrap();
    assert!(s.image_status("example.test/b:1").await.unwrap().is_none());
    assert!(!img_b.layers[1].exists());
    assert!(img_b.layers[0].exists(), "shared base layer removed with b");
    s.remove_image("example.test/b:1").await.unwrap();

    // Images used within the minimum age are spared, in use or not.
    let freed = s
        .garbage_collect(&[], u64::MAX, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(freed, 0);
    assert_eq!(s.list_images().await.unwrap().len(), 2);

    // a is in use; c is the only candidate and goes, a stays untouched.
    let freed = s
        .garbage_collect(&["example.test/a:1".to_string()], u64::MAX, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        freed > 0 && freed < img_c.size,
        "freed {freed} of {}",
        img_c.size
    );
    assert!(s.image_status("example.test/c:1").await.unwrap().is_none());
    assert!(img_a.layers[0].exists());
    assert_eq!(s.list_images().await.unwrap().len(), 1);

    // Nothing in use: a goes, and with it the last layer and every blob.
    let freed = s.garbage_collect(&[], 1, Duration::ZERO).await.unwrap();
    assert_eq!(freed, img_a.size);
    assert_eq!(layer_dirs(dir.path()), 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("images/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(s.garbage_collect(&[], 1, Duration::ZERO).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_collection_sweeps_what_failed_pulls_left() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let a = dir.path().join("a.tar");
    images::write_oci_archive(&a, "example.test/kept:1", &Default::default());
    let kept = s.import(&a).await.unwrap().remove(0);
    // A layer unpacked and a blob downloaded by a pull whose record was never written.
    let orphan_layer = dir.path().join(format!("images/layers/{}", "1".repeat(64)));
    std::fs::create_dir_all(orphan_layer.join("usr")).unwrap();
    std::fs::write(orphan_layer.join("usr/data"), vec![0u8; 1000]).unwrap();
    let orphan_blob = dir
        .path()
        .join(format!("images/blobs/sha256/{}", "2".repeat(64)));
    std::fs::write(&orphan_blob, b"partial pull").unwrap();

    let freed = s
        .garbage_collect(&["example.test/kept:1".to_string()], 0, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(freed, 1000);
    assert!(!orphan_layer.exists() && !orphan_blob.exists());
    assert!(kept.layers[0].join("bin/busybox").exists());
    assert_eq!(
        s.image_status("example.test/kept:1")
            .await
            .unwrap()
            .unwrap()
            .id,
        kept.id
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_process_imports_and_removes_under_a_running_store() {
    let dir = tempfile::tempdir().unwrap();
    let agent = store(dir.path());
    assert!(agent.list_images().await.unwrap().is_empty());
    // `flotilla image import` opens its own store on the same root.
    let cli = store(dir.path());
    let a = dir.path().join("a.tar");
    images::write_oci_archive(&a, "example.test/side:1", &Default::default());
    let imported = cli.import(&a).await.unwrap().remove(0);

    let seen = agent
        .ensure_image("example.test/side:1", PullPolicy::Never, &[])
        .await
        .unwrap();
    assert_eq!(seen.id, imported.id);
    assert_eq!(agent.list_images().await.unwrap().len(), 1);
    // The agent's garbage collection must not sweep the other process's layers.
    agent
        .garbage_collect(
            &["example.test/side:1".to_string()],
            u64::MAX,
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(imported.layers[0].join("bin/busybox").exists());

    cli.remove_image("example.test/side:1").await.unwrap();
    let err = agent
        .ensure_image("example.test/side:1", PullPolicy::Never, &[])
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ImageNeverPull(_)), "{err}");
    assert!(agent.list_images().await.unwrap().is_empty());
}
