//! Port-forward (`/portForward/{ns}/{pod}`): over SPDY, each forwarded connection is a
//! pair of streams the client opens — `streamType: error` and `streamType: data`, tied by
//! `requestID` and naming the `port` — and the data stream is spliced to a TCP connection
//! to 127.0.0.1:port inside the pod's network namespace. kubectl 1.31+ first tries the same
//! SPDY bytes tunnelled in WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`).

use std::collections::HashMap;
use std::path::PathBuf;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::spdy::{Connection, Stream};

/// `X-Stream-Protocol-Version` of SPDY port-forward.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket sub-protocol that tunnels it.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Where forwarded connections go.
#[derive(Debug, Clone)]
pub struct Target {
    pub pod: String,
    /// The pod's network namespace; None for a hostNetwork pod.
    pub netns: Option<PathBuf>,
}

impl Target {
    async fn connect(&self, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        match &self.netns {
            Some(ns) => runtime::network::connect_in_netns(ns, port).await,
            None => tokio::net::TcpStream::connect(("127.0.0.1", port)).await,
        }
    }
}

#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
}

/// Serves one port-forward connection until the client closes it.
pub async fn run(mut conn: Connection, target: Target) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = conn.accept().await {
        let Some(request) = stream.headers.get("requestid").map(str::to_string) else {
            tracing::debug!("port-forward stream without requestID");
            let _ = stream
                .sender
                .reset(super::spdy::frame::RST_PROTOCOL_ERROR)
                .await;
            continue;
        };
        let pair = pairs.entry(request.clone()).or_default();
        match stream.headers.get("streamtype") {
            Some("error") => pair.error = Some(stream),
            Some("data") => pair.data = Some(stream),
            other => {
                tracing::debug!(?other, "unknown port-forward stream type");
                let _ = stream
                    .sender
                    .reset(super::spdy::frame::RST_PROTOCOL_ERROR)
                    .await;
                continue;
            }
        }
        if pair.error.is_some() && pair.data.is_some() {
            if let Some(Pair {
                error: Some(error),
                data: Some(data),
            }) = pairs.remove(&request)
            {
                tokio::spawn(forward(target.clone(), error, data));
            }
        }
    }
    conn.shutdown().await;
}

async fn forward(target: Target, error: Stream, data: Stream) {
    let port = data
        .headers
        .get("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0);
    let result = match port {
        Some(port) => target.connect(port).await.map(|tcp| (port, tcp)),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid port {:?}", data.headers.get("port")),
        )),
    };
    let (port, tcp) = match result {
        Ok(ok) => ok,
        Err(e) => {
            let message = format!(
                "error forwarding port {} to pod {}: {e}",
                data.headers.get("port").unwrap_or_default(),
                target.pod
            );
            tracing::debug!(%message);
            let _ = error.sender.send(message.as_bytes()).await;
            let _ = error.sender.finish().await;
            let _ = data.sender.finish().await;
            return;
        }
    };
    let Stream {
        data: mut from_client,
        sender,
        ..
    } = data;
    let (mut read, mut write) = tcp.into_split();
    // Client → pod until the client half-closes; not awaited, the pod may close first.
    tokio::spawn(async move {
        while let Some(chunk) = from_client.recv().await {
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = write.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match read.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if sender.send(&buf[..n]).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::debug!(port, error = %e, "reading from the pod");
                break;
            }
        }
    }
    let _ = sender.finish().await;
    let _ = error.sender.finish().await;
}

/// Turns a WebSocket that tunnels SPDY into a byte stream.
pub fn tunnel(socket: WebSocket) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut read, mut write) = tokio::io::split(theirs);
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws_rx.next().await {
            match msg {
                Message::Binary(b) if write.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = write.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if ws_tx.send(msg).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = ws_tx.send(Message::Close(None)).await;
    });
    ours
}
