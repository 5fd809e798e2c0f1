//! `flotilla image import | ls | rm` against a data dir of its own.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use testkit::images::{self, ExtraFile, ImageOptions};

fn flotilla(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("image")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("FLOTILLA_DATA_DIR")
        .output()
        .unwrap()
}

fn stdout_ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn short_id(digest: &str) -> String {
    digest.trim_start_matches("sha256:")[..13].to_string()
}

#[test]
fn import_list_remove() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let oci = dir.path().join("oci.tar");
    let oci_img =
        images::write_oci_archive(&oci, "127.0.0.1:5000/e2e/app:v1", &ImageOptions::default());
    let out = stdout_ok(flotilla(&data, &["import", oci.to_str().unwrap()]));
    assert_eq!(
        out.trim(),
        format!(
            "imported 127.0.0.1:5000/e2e/app:v1 ({})",
            oci_img.config_digest
        )
    );

    let docker = dir.path().join("docker.tar");
    let docker_img = images::write_docker_save_archive(
        &docker,
        "busybox:cli",
        &ImageOptions {
            extra_files: vec![ExtraFile::new("/etc/motd", "hello", 0o644)],
            ..Default::default()
        },
    );
    let out = stdout_ok(flotilla(&data, &["import", docker.to_str().unwrap()]));
    assert!(
        out.contains("imported docker.io/library/busybox:cli"),
        "{out}"
    );

    let ls = stdout_ok(flotilla(&data, &["ls"]));
    let lines: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines[0],
        vec!["IMAGE", "TAG", "IMAGE", "ID", "SIZE"],
        "{ls}"
    );
    assert_eq!(lines.len(), 3, "{ls}");
    assert_eq!(
        lines[1][..3],
        [
            "127.0.0.1:5000/e2e/app",
            "v1",
            short_id(&oci_img.config_digest).as_str()
        ]
    );
    assert_eq!(
        lines[2][..3],
        [
            "docker.io/library/busybox",
            "cli",
            short_id(&docker_img.config_digest).as_str()
        ]
    );
    assert!(lines[1][3].ends_with("MB"), "{ls}");

    let out = stdout_ok(flotilla(&data, &["rm", "busybox:cli"]));
    assert_eq!(out.trim(), "Deleted: busybox:cli");
    let ls = stdout_ok(flotilla(&data, &["ls"]));
    assert!(!ls.contains("busybox"), "{ls}");
    assert!(ls.contains("127.0.0.1:5000/e2e/app"), "{ls}");
    // The second layer went with the image; the shared base stays with the other image.
    assert_eq!(
        std::fs::read_dir(data.join("images/layers"))
            .unwrap()
            .count(),
        1
    );

    // By ID prefix.
    let out = stdout_ok(flotilla(&data, &["rm", &short_id(&oci_img.config_digest)]));
    assert!(out.starts_with("Deleted:"), "{out}");
    assert_eq!(stdout_ok(flotilla(&data, &["ls"])).lines().count(), 1);
}

#[test]
fn errors_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = flotilla(&data, &["rm", "nothing:here"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such image: nothing:here"));

    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"definitely not an archive").unwrap();
    let out = flotilla(&data, &["import", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("importing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = flotilla(
        &data,
        &["import", dir.path().join("missing.tar").to_str().unwrap()],
    );
    assert!(!out.status.success());
}
