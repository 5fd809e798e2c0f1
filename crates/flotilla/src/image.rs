//! `flotilla image`: the node's image store (see docs/commands/image.md).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use runtime::cri::ImageService;
use runtime::image::records::ImageRecord;
use runtime::image::{ImageStore, ImageStoreConfig};

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Import an image archive: an OCI image layout tar or a `docker save` tar.
    Import {
        /// The archive file.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the images present on this node.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove images by reference or ID; their layers go when no other image uses them.
    Rm {
        /// References (`busybox`, `127.0.0.1:5000/app:v1`) or image IDs (prefixes of 12+ hex).
        #[arg(required = true)]
        images: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The agent's data dir; images live in DATA_DIR/images.
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = "/var/lib/flotilla")]
    data_dir: PathBuf,
}

impl StoreArgs {
    fn open(&self) -> anyhow::Result<ImageStore> {
        let root = self.data_dir.join("images");
        ImageStore::open(ImageStoreConfig {
            root: root.clone(),
            ..Default::default()
        })
        .with_context(|| format!("opening the image store at {}", root.display()))
    }
}

pub fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        match cmd {
            ImageCommand::Import { file, store } => {
                let s = store.open()?;
                let images = s
                    .import(&file)
                    .await
                    .with_context(|| format!("importing {}", file.display()))?;
                for img in images {
                    println!("imported {} ({})", img.reference, img.id);
                }
                Ok(())
            }
            ImageCommand::Ls { store } => {
                let s = store.open()?;
                print!("{}", table(&s.records()));
                Ok(())
            }
            ImageCommand::Rm { images, store } => {
                let s = store.open()?;
                let mut missing = Vec::new();
                for r in &images {
                    match s.image_status(r).await? {
                        Some(img) => {
                            s.remove_image(&img.id).await?;
                            println!("Deleted: {r}");
                        }
                        None => missing.push(r.as_str()),
                    }
                }
                if !missing.is_empty() {
                    anyhow::bail!("no such image: {}", missing.join(", "));
                }
                Ok(())
            }
        }
    })
}

/// `crictl images`' table: one row per reference, `<none>` for untagged images.
fn table(records: &[ImageRecord]) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    for r in records {
        let id: String =
            r.id.trim_start_matches("sha256:")
                .chars()
                .take(13)
                .collect();
        let size = human_size(r.size);
        let names: Vec<(String, String)> = if r.references.is_empty() {
            match r.repo_digests.first() {
                Some(d) => vec![(
                    d.split('@').next().unwrap_or(d).to_string(),
                    "<none>".into(),
                )],
                None => vec![("<none>".into(), "<none>".into())],
            }
        } else {
            r.references.iter().map(|n| split_tag(n)).collect()
        };
        for (repo, tag) in names {
            rows.push([repo, tag, id.clone(), size.clone()]);
        }
    }
    rows.sort();
    let header = [
        "IMAGE".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "SIZE".into(),
    ];
    let mut widths = header.each_ref().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}   {:<w1$}   {:<w2$}   {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `repo:tag` → (repo, tag); a digest reference has tag `<none>`.
fn split_tag(reference: &str) -> (String, String) {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rsplit_once(':') {
        // A colon before the last slash is a registry port, not a tag.
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (name.to_string(), "<none>".into()),
    }
}

/// Decimal units with four significant digits, as Docker and crictl print sizes (`2.032MB`).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(2_031_616), "2.032MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(123_456_789), "123.5MB");
    }

    #[test]
    fn tags_split_after_ports() {
        assert_eq!(
            split_tag("127.0.0.1:5000/a/b:v1"),
            ("127.0.0.1:5000/a/b".to_string(), "v1".to_string())
        );
        assert_eq!(
            split_tag(&format!(
                "docker.io/library/busybox@sha256:{}",
                "a".repeat(64)
            )),
            (
                "docker.io/library/busybox".to_string(),
                "<none>".to_string()
            )
        );
    }

    #[test]
    fn table_lists_every_reference() {
        // Built from JSON: the CLI does not depend on the time crate the record uses.
        let r: ImageRecord = serde_json::from_value(serde_json::json!({
            "id": format!("sha256:{}", "0123456789abcdef".repeat(4)),
            "references": ["docker.io/library/busybox:latest", "docker.io/library/busybox:1.36"],
            "diff_ids": [],
            "config": {},
            "size": 2_031_616,
            "last_used": "1970-01-01T00:00:00Z",
        }))
        .unwrap();
        let t = table(&[r]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("IMAGE") && lines[0].contains("IMAGE ID"));
        assert!(lines[1].contains("1.36") && lines[1].contains("0123456789abc"));
        assert!(lines[2].contains("latest") && lines[2].ends_with("2.032MB"));
    }
}
