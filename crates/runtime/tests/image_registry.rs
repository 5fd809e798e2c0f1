//! Pulls from registries that need more than plain anonymous HTTP: TLS with a CA from
//! certs.d, basic auth from pull secrets, and multi-arch indexes.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use flotilla_runtime::cri::{ImageService, PullPolicy, RegistryAuth, RuntimeError};
use flotilla_runtime::image::{ImageStore, ImageStoreConfig};
use testkit::images::{self, ExtraFile, ImageOptions};
use testkit::registry::{Registry, RegistryOptions};

fn store(dir: &Path) -> ImageStore {
    ImageStore::open(ImageStoreConfig {
        root: dir.join("images"),
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_registry_trusted_through_certs_d() {
    let reg = Registry::start_with(&RegistryOptions {
        tls: true,
        ..Default::default()
    });
    let reference = images::push_image_to(&reg, "e2e/tls", "v1", &ImageOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());

    // Without the CA, the loopback host is spoken to over plain HTTP: a TLS server refuses.
    let err = s
        .ensure_image(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::RegistryUnavailable { .. }),
        "{err}"
    );

    let certs = dir.path().join("images/certs.d").join(reg.host());
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), reg.ca_pem().unwrap()).unwrap();
    let img = s
        .ensure_image(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap();
    assert_eq!(
        img.id,
        images::build_image(&ImageOptions::default()).config_digest
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_uses_the_matching_pull_secret() {
    let reg = Registry::start_with(&RegistryOptions {
        basic_auth: Some(("puller".into(), "s3cret".into())),
        ..Default::default()
    });
    let reference =
        images::push_image_to(&reg, "e2e/private", "v1", &ImageOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let secret = |server: &str, password: &str| RegistryAuth {
        server: server.into(),
        username: "puller".into(),
        password: password.into(),
    };

    let err = s
        .ensure_image(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Unauthorized { .. }), "{err}");
    let err = s
        .ensure_image(
            &reference,
            PullPolicy::IfNotPresent,
            &[secret(&reg.host(), "wrong")],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Unauthorized { .. }), "{err}");
    // A secret for another registry is not sent.
    let err = s
        .ensure_image(
            &reference,
            PullPolicy::IfNotPresent,
            &[secret("other.test:5000", "s3cret")],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Unauthorized { .. }), "{err}");

    let img = s
        .ensure_image(
            &reference,
            PullPolicy::IfNotPresent,
            &[
                secret("other.test:5000", "nope"),
                secret(&format!("http://{}/v2/", reg.host()), "s3cret"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(img.layers.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_arch_index_resolves_to_the_host_platform() {
    let reg = Registry::start();
    let host_arch = flotilla_runtime::image::pull::host_arch();
    let variant = |arch: &str| ImageOptions {
        extra_files: vec![ExtraFile::new("/etc/arch", arch, 0o644)],
        ..Default::default()
    };
    let reference = images::push_multiarch(
        &reg.host(),
        "e2e/multi",
        "v1",
        &[
            ("s390x", variant("s390x")),
            (host_arch, variant(host_arch)),
            ("riscv64", variant("riscv64")),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let img = s
        .ensure_image(&reference, PullPolicy::Always, &[])
        .await
        .unwrap();
    assert_eq!(
        img.id,
        images::build_image(&variant(host_arch)).config_digest
    );
    let top = img.layers.last().unwrap();
    assert_eq!(
        std::fs::read_to_string(top.join("etc/arch")).unwrap(),
        host_arch
    );
    // The record keeps the platform manifest; the repo digest is the index's.
    let rec = s.records().into_iter().find(|r| r.id == img.id).unwrap();
    let index_digest = img
        .repo_digest
        .as_deref()
        .unwrap()
        .split('@')
        .nth(1)
        .unwrap();
    let manifest_digest = rec.manifest_digest.clone().unwrap();
    assert_ne!(manifest_digest, index_digest);
    assert!(rec.blobs.contains(&manifest_digest) && rec.blobs.iter().any(|b| b == index_digest));
    // The repo digest is the index's: the tag resolves to it.
    let by_digest = img.repo_digest.clone().unwrap();
    let again = s
        .ensure_image(&by_digest, PullPolicy::Never, &[])
        .await
        .unwrap();
    assert_eq!(again.id, img.id);

    // An index without this platform is a typed not-found, not a panic.
    let foreign = images::push_multiarch(
        &reg.host(),
        "e2e/foreign",
        "v1",
        &[("s390x", variant("s390x"))],
    )
    .await;
    let err = s
        .ensure_image(&foreign, PullPolicy::Always, &[])
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ImageNotFound { .. }), "{err}");
}
