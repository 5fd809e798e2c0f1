//! Streaming a container's log: what is there now (rotated file first), then, when
//! following, new records as the supervisor appends them — across rotations, since the
//! open handle keeps reading the renamed file to its end before the new file is opened —
//! until the container has exited and everything it wrote was sent, or the client left.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use runtime::cri::ContainerState;
use runtime::ContainerRuntime;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::cri::{LogOptions, Printer};
use super::render_all;

/// How often a followed log is checked for new records when there were none.
const POLL: Duration = Duration::from_millis(150);

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

async fn open(path: &Path) -> std::io::Result<Option<tokio::fs::File>> {
    match tokio::fs::File::open(path).await {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends `out` unless empty; false when the client has gone.
async fn send(tx: &Tx, out: Vec<u8>) -> bool {
    out.is_empty() || tx.send(Ok(Bytes::from(out))).await.is_ok()
}

/// Splits off the complete records at the front of `pending`.
fn complete(pending: &mut Vec<u8>) -> Vec<u8> {
    match pending.iter().rposition(|b| *b == b'\n') {
        Some(i) => {
            let rest = pending.split_off(i + 1);
            std::mem::replace(pending, rest)
        }
        None => Vec::new(),
    }
}

/// Prints the complete records at the front of `pending`, leaving a torn tail.
fn print_complete(pending: &mut Vec<u8>, printer: &mut Printer) -> Vec<u8> {
    let mut out = Vec::new();
    for line in complete(pending).split(|b| *b == b'\n') {
        if !line.is_empty() && !printer.exhausted() {
            printer.line(line, &mut out);
        }
    }
    out
}

pub async fn stream(
    path: &Path,
    opts: &LogOptions,
    follow: Option<String>,
    containers: Arc<dyn ContainerRuntime>,
    tx: Tx,
) -> std::io::Result<()> {
    let mut printer = Printer::new(opts);
    // The current file is opened before the rotated one is read: a rotation in between
    // then shows as the rotated file being the very file we hold, which is skipped.
    let mut file = open(path).await?;
    let held = match &file {
        Some(f) => Some(f.metadata().await?.ino()),
        None => None,
    };
    let mut pending = Vec::new();
    match tokio::fs::read(rotated(path)).await {
        Ok(old) => {
            let same = match tokio::fs::metadata(rotated(path)).await {
                Ok(m) => Some(m.ino()) == held,
                Err(_) => false,
            };
            if !same {
                pending = old;
                if !pending.ends_with(b"\n") && !pending.is_empty() {
                    pending.push(b'\n');
                }
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(f) = file.as_mut() {
        f.read_to_end(&mut pending).await?;
    }
    let whole = complete(&mut pending);
    if !send(&tx, render_all(&whole, opts, &mut printer)).await {
        return Ok(());
    }
    let Some(id) = follow else { return Ok(()) };

    let mut buf = vec![0u8; 64 * 1024];
    let mut ending = false;
    loop {
        if printer.exhausted() {
            return Ok(());
        }
        let n = match file.as_mut() {
            Some(f) => f.read(&mut buf).await?,
            None => 0,
        };
        if n > 0 {
            pending.extend_from_slice(&buf[..n]);
            if !send(&tx, print_complete(&mut pending, &mut printer)).await {
                return Ok(());
            }
            continue;
        }
        // At the end of what we hold. A new file at the path means a rotation: the old
        // one has been read to its end, so move over.
        let current_ino = tokio::fs::metadata(path).await.ok().map(|m| m.ino());
        let held_ino = match &file {
            Some(f) => f.metadata().await.ok().map(|m| m.ino()),
            None => None,
        };
        if current_ino.is_some() && current_ino != held_ino {
            // Records may have reached the old file after our last read and before the
            // rename; once renamed it no longer grows, so drain it, then move over.
            if let Some(f) = file.as_mut() {
                let mut rest = Vec::new();
                f.read_to_end(&mut rest).await?;
                pending.extend_from_slice(&rest);
                if !send(&tx, print_complete(&mut pending, &mut printer)).await {
                    return Ok(());
                }
            }
            file = open(path).await?;
            continue;
        }
        if ending {
            return Ok(());
        }
        let exited = match containers.container_status(&id).await {
            Ok(s) => s.state == ContainerState::Exited,
            Err(_) => true,
        };
        if exited {
            // One more pass reads what was written between our last read and the exit.
            ending = true;
            continue;
        }
        tokio::select! {
            () = tx.closed() => return Ok(()),
            () = tokio::time::sleep(POLL) => {}
        }
    }
}
