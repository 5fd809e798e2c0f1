//! Exec and attach over SPDY/3.1 (kubectl 1.29 and older, and any client that falls back):
//! the client opens one stream per channel, named by its `streamType` header, and the
//! Status goes out on the `error` stream (protocol v4.channel.k8s.io).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use runtime::cri::StreamSession;
use runtime::RuntimeError;
use tokio::sync::mpsc;

use super::{bridge, ClientStreams, Options, Sink};
use crate::server::channel::ResizeDecoder;
use crate::server::spdy::{Connection, Stream};

/// The sub-protocols offered in `X-Stream-Protocol-Version` that we speak, best first.
pub const PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];

/// How long the client has to open its streams (the kubelet's stream creation timeout).
const STREAM_CREATION: Duration = Duration::from_secs(30);

/// Runs one session on an upgraded connection.
pub async fn run<F>(conn: Connection, opts: Options, start: F)
where
    F: Future<Output = Result<StreamSession, RuntimeError>> + Send,
{
    let mut conn = conn;
    let wanted = 1
        + usize::from(opts.stream.stdin)
        + usize::from(opts.stream.stdout)
        + usize::from(opts.stream.stderr)
        + usize::from(opts.stream.tty);
    let mut got: Vec<Stream> = Vec::new();
    let collect = async {
        while got.len() < wanted {
            match conn.accept().await {
                Some(s) => got.push(s),
                None => return false,
            }
        }
        true
    };
    match tokio::time::timeout(STREAM_CREATION, collect).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(_) => {
            tracing::debug!(
                wanted,
                got = got.len(),
                "client did not open its streams in time"
            );
            conn.shutdown().await;
            return;
        }
    }
    let mut by_type = |t: &str| {
        got.iter()
            .position(|s| s.headers.get("streamtype") == Some(t))
            .map(|i| got.swap_remove(i))
    };
    let (Some(error), stdin, stdout, stderr, resize) = (
        by_type("error"),
        by_type("stdin"),
        by_type("stdout"),
        by_type("stderr"),
        by_type("resize"),
    ) else {
        tracing::debug!("client opened no error stream");
        conn.shutdown().await;
        return;
    };
    let resize = resize.map(|mut s| {
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut decoder = ResizeDecoder::default();
            while let Some(chunk) = s.data.recv().await {
                for size in decoder.push(&chunk) {
                    if tx.send(size).await.is_err() {
                        return;
                    }
                }
            }
        });
        rx
    });
    let stdin: Option<mpsc::Receiver<Bytes>> = stdin.map(|s| s.data);
    let streams = ClientStreams {
        stdin,
        resize,
        stdout: stdout.map(|s| Sink::Spdy(s.sender)),
        stderr: stderr.map(|s| Sink::Spdy(s.sender)),
        error: Sink::Spdy(error.sender),
    };
    let gone = conn.closed();
    bridge(start.await, streams, gone, &opts.command).await;
    conn.shutdown().await;
}
