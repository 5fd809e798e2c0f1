//! Exec and attach over a WebSocket with the channel protocol (kubectl 1.30 and later).

use std::future::Future;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use runtime::cri::StreamSession;
use runtime::RuntimeError;
use tokio::sync::{mpsc, oneshot};

use super::{bridge, ClientStreams, Options, Sink};
use crate::server::channel::{self, Inbound};

/// Runs one session on an accepted WebSocket. `start` begins the exec or attach once the
/// client's streams exist.
pub async fn run<F>(socket: WebSocket, opts: Options, start: F)
where
    F: Future<Output = Result<StreamSession, RuntimeError>> + Send,
{
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if ws_tx.send(Message::Binary(Bytes::from(m))).await.is_err() {
                return;
            }
        }
        let close = CloseFrame {
            code: 1000,
            reason: "".into(),
        };
        let _ = ws_tx.send(Message::Close(Some(close))).await;
    });

    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(64);
    let (resize_tx, resize_rx) = mpsc::channel(8);
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        while let Some(Ok(msg)) = ws_rx.next().await {
            let data = match msg {
                Message::Binary(d) => d,
                Message::Close(_) => break,
                _ => continue,
            };
            match channel::decode(&data) {
                Ok(Inbound::Stdin(b)) => {
                    if let Some(tx) = &stdin_tx {
                        if tx.send(Bytes::from(b)).await.is_err() {
                            stdin_tx = None;
                        }
                    }
                }
                Ok(Inbound::Resize(size)) => {
                    let _ = resize_tx.send(size).await;
                }
                Ok(Inbound::Close(channel::STDIN)) => stdin_tx = None,
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "ignoring a bad channel message"),
            }
        }
        let _ = gone_tx.send(());
    });

    let sink = |channel| Sink::WebSocket {
        channel,
        tx: out_tx.clone(),
    };
    let streams = ClientStreams {
        stdin: opts.stream.stdin.then_some(stdin_rx),
        resize: opts.stream.tty.then_some(resize_rx),
        stdout: opts.stream.stdout.then(|| sink(channel::STDOUT)),
        stderr: opts.stream.stderr.then(|| sink(channel::STDERR)),
        error: sink(channel::ERROR),
    };
    drop(out_tx);
    let gone = async {
        let _ = gone_rx.await;
    };
    bridge(start.await, streams, gone, &opts.command).await;
    // Every sender is gone once the bridge returns: the writer sends the close frame.
    let _ = writer.await;
    reader.abort();
}
