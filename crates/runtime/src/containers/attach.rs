//! Attach: the supervisor owns the container's stdio, so `kubectl attach` reaches it over
//! the supervisor's unix socket `root/<id>/attach.sock`.
//!
//! Framing both ways: one kind byte, a big-endian u32 length, the payload. The client opens
//! with HELLO (JSON [`StreamOptions`]); the supervisor sends STDOUT/STDERR data and EXIT (i32
//! BE) when the container ends; the client sends STDIN, RESIZE (u16 width, u16 height) and
//! CLOSE_STDIN.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::cri::{RuntimeError, StreamOptions, StreamSession, TerminalSize};

pub(crate) const HELLO: u8 = 0;
pub(crate) const STDIN: u8 = 1;
pub(crate) const STDOUT: u8 = 2;
pub(crate) const STDERR: u8 = 3;
pub(crate) const RESIZE: u8 = 4;
pub(crate) const CLOSE_STDIN: u8 = 5;
pub(crate) const EXIT: u8 = 6;

const MAX_FRAME: usize = 1 << 20;

pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// None at a clean end of stream.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "attach frame too large",
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[0], payload)))
}

/// What a supervisor hands each attach client.
#[derive(Clone)]
pub(crate) struct AttachHub {
    /// (STDOUT|STDERR|EXIT, payload) for every client.
    pub output: broadcast::Sender<(u8, Bytes)>,
    /// Data for the container's stdin; None closes it.
    pub stdin: Option<mpsc::Sender<Option<Bytes>>>,
    pub pty: Option<Arc<OwnedFd>>,
    pub stdin_once: bool,
}

/// Serves one attach client until it leaves or the container exits.
pub(crate) async fn serve_client(hub: AttachHub, stream: UnixStream) {
    let (mut rd, mut wr) = stream.into_split();
    let opts: StreamOptions = match read_frame(&mut rd).await {
        Ok(Some((HELLO, payload))) => match serde_json::from_slice::<HelloOptions>(&payload) {
            Ok(h) => h.into(),
            Err(_) => return,
        },
        _ => return,
    };
    let mut output = hub.output.subscribe();
    let writer = tokio::spawn(async move {
        loop {
            match output.recv().await {
                Ok((kind, data)) => {
                    let wanted = match kind {
                        STDOUT => opts.stdout,
                        STDERR => opts.stderr,
                        _ => true,
                    };
                    if wanted && write_frame(&mut wr, kind, &data).await.is_err() {
                        return;
                    }
                    if kind == EXIT {
                        return;
                    }
                }
                // A slow client misses output rather than stalling the container.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    while let Ok(Some((kind, payload))) = read_frame(&mut rd).await {
        match kind {
            STDIN if opts.stdin => {
                if let Some(tx) = &hub.stdin {
                    let _ = tx.send(Some(Bytes::from(payload))).await;
                }
            }
            CLOSE_STDIN => break,
            RESIZE if payload.len() == 4 => {
                if let Some(pty) = &hub.pty {
                    let width = u16::from_be_bytes([payload[0], payload[1]]);
                    let height = u16::from_be_bytes([payload[2], payload[3]]);
                    let _ = super::fdio::set_winsize(pty.as_ref(), width, height);
                }
            }
            _ => {}
        }
    }
    // stdinOnce: the container's stdin closes when the first attached client detaches.
    if opts.stdin && hub.stdin_once {
        if let Some(tx) = &hub.stdin {
            let _ = tx.send(None).await;
        }
    }
    writer.abort();
}

#[derive(serde::Serialize, serde::Deserialize)]
struct HelloOptions {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl From<HelloOptions> for StreamOptions {
    fn from(h: HelloOptions) -> Self {
        StreamOptions {
            stdin: h.stdin,
            stdout: h.stdout,
            stderr: h.stderr,
            tty: h.tty,
        }
    }
}

/// Connects to a supervisor's attach socket and turns the framed connection into a
/// [`StreamSession`].
pub(crate) async fn connect(
    socket: &Path,
    opts: StreamOptions,
) -> Result<StreamSession, RuntimeError> {
    let stream = super::connect_unix(socket).await?;
    let (mut rd, mut wr) = stream.into_split();
    let hello = serde_json::to_vec(&HelloOptions {
        stdin: opts.stdin,
        stdout: opts.stdout,
        stderr: opts.stderr && !opts.tty,
        tty: opts.tty,
    })
    .map_err(|e| RuntimeError::Other(format!("attach hello: {e}")))?;
    write_frame(&mut wr, HELLO, &hello)
        .await
        .map_err(|e| RuntimeError::io("attach: sending hello", e))?;

    let (frames_tx, mut frames_rx) = mpsc::channel::<(u8, Vec<u8>)>(16);
    // Our write half stays open while the session lives: the supervisor takes its EOF for
    // a detach, and an attach without stdin or a terminal has nothing else to write.
    let (hold_tx, hold_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        while let Some((kind, payload)) = frames_rx.recv().await {
            if write_frame(&mut wr, kind, &payload).await.is_err() {
                return;
            }
        }
        let _ = hold_rx.await;
    });

    let stdin = if opts.stdin {
        let (user, mut ours) = tokio::io::duplex(64 * 1024);
        let tx = frames_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match ours.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send((STDIN, buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send((CLOSE_STDIN, Vec::new())).await;
        });
        Some(Box::pin(user) as crate::cri::BoxedWriter)
    } else {
        None
    };
    let resize = if opts.tty {
        let (tx, mut rx) = mpsc::channel::<TerminalSize>(4);
        let frames = frames_tx.clone();
        tokio::spawn(async move {
            while let Some(size) = rx.recv().await {
                let mut p = size.width.to_be_bytes().to_vec();
                p.extend_from_slice(&size.height.to_be_bytes());
                if frames.send((RESIZE, p)).await.is_err() {
                    return;
                }
            }
        });
        Some(tx)
    } else {
        None
    };
    drop(frames_tx);

    let (out_user, mut out_ours) = tokio::io::duplex(64 * 1024);
    let (err_user, mut err_ours) = tokio::io::duplex(64 * 1024);
    let (exit_tx, exit_rx) = oneshot::channel::<Option<i32>>();
    tokio::spawn(async move {
        let mut code = None;
        while let Ok(Some((kind, payload))) = read_frame(&mut rd).await {
            match kind {
                STDOUT => {
                    // A reader the caller dropped must not hide the exit that follows.
                    let _ = out_ours.write_all(&payload).await;
                }
                STDERR => {
                    // A reader the caller dropped must not hide the exit that follows.
                    let _ = err_ours.write_all(&payload).await;
                }
                EXIT if payload.len() == 4 => {
                    code = Some(i32::from_be_bytes([
                        payload[0], payload[1], payload[2], payload[3],
                    ]));
                    break;
                }
                _ => {}
            }
        }
        let _ = exit_tx.send(code);
    });
    let exit = exit_rx
        .map(move |r| {
            drop(hold_tx);
            Ok(r.ok().flatten().unwrap_or(0))
        })
        .boxed();
    Ok(StreamSession {
        stdin,
        stdout: opts
            .stdout
            .then(|| Box::pin(out_user) as crate::cri::BoxedReader),
        stderr: (opts.stderr && !opts.tty).then(|| Box::pin(err_user) as crate::cri::BoxedReader),
        resize,
        exit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bound() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, STDOUT, b"hi").await.unwrap();
        write_frame(&mut a, EXIT, &3i32.to_be_bytes())
            .await
            .unwrap();
        drop(a);
        assert_eq!(
            read_frame(&mut b).await.unwrap(),
            Some((STDOUT, b"hi".to_vec()))
        );
        assert_eq!(
            read_frame(&mut b).await.unwrap(),
            Some((EXIT, vec![0, 0, 0, 3]))
        );
        assert_eq!(read_frame(&mut b).await.unwrap(), None);

        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[STDIN, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
        assert!(read_frame(&mut b).await.is_err());
    }
}
