//! The server side of one SPDY/3.1 connection: a reader task that answers each stream the
//! client opens (SYN_REPLY) and routes its DATA to the stream's channel, and a writer task
//! that owns the write half and the header compressor, so frames from every stream go out
//! whole and in order.
//!
//! Flow control is not enforced, like the Go implementation kubectl and the kubelet use
//! (moby/spdystream ignores WINDOW_UPDATE): channels between the tasks bound the memory a
//! stream can take instead.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::frame::{Codec, Frame, FLAG_FIN, MAX_PAYLOAD};
use super::headers::Headers;
use super::SpdyError;

/// Chunks buffered per stream before the reader waits for its consumer.
const STREAM_BUFFER: usize = 64;
/// Largest DATA frame we write (what spdystream and the kubelet write as well).
const DATA_CHUNK: usize = 32 * 1024;

enum Out {
    Frame(Frame),
    Shutdown(oneshot::Sender<()>),
}

/// A stream the client opened.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    /// DATA from the client; ends at its FIN or RST_STREAM, or when the connection ends.
    pub data: mpsc::Receiver<Bytes>,
    pub sender: StreamSender,
}

/// Writes to one stream.
#[derive(Clone)]
pub struct StreamSender {
    id: u32,
    out: mpsc::Sender<Out>,
}

impl StreamSender {
    pub async fn send(&self, data: &[u8]) -> Result<(), SpdyError> {
        for chunk in data.chunks(DATA_CHUNK.min(MAX_PAYLOAD)) {
            self.frame(Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: Bytes::copy_from_slice(chunk),
            })
            .await?;
        }
        Ok(())
    }

    /// Half-closes our side of the stream (an empty DATA frame with FIN).
    pub async fn finish(&self) -> Result<(), SpdyError> {
        self.frame(Frame::Data {
            stream_id: self.id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await
    }

    pub async fn reset(&self, status: u32) -> Result<(), SpdyError> {
        self.frame(Frame::RstStream {
            stream_id: self.id,
            status,
        })
        .await
    }

    async fn frame(&self, f: Frame) -> Result<(), SpdyError> {
        self.out
            .send(Out::Frame(f))
            .await
            .map_err(|_| SpdyError::Closed)
    }
}

/// One SPDY connection, server side.
pub struct Connection {
    incoming: mpsc::Receiver<Stream>,
    out: mpsc::Sender<Out>,
    closed: watch::Receiver<bool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Connection {
    pub fn new<T>(io: T) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(256);
        let (incoming_tx, incoming) = mpsc::channel(16);
        let (closed_tx, closed) = watch::channel(false);
        tokio::spawn(write_loop(write, out_rx));
        let reader = tokio::spawn(read_loop(read, out_tx.clone(), incoming_tx, closed_tx));
        Self {
            incoming,
            out: out_tx,
            closed,
            reader,
        }
    }

    /// The next stream the client opens; None once the connection is gone.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.incoming.recv().await
    }

    /// Resolves once the client's side has ended (EOF, GOAWAY or a protocol error).
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.clone();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Says GOAWAY, flushes everything written so far and closes the connection.
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.out.send(Out::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.reader.abort();
    }
}

async fn write_loop<W: AsyncWrite + Send>(write: W, mut rx: mpsc::Receiver<Out>) {
    tokio::pin!(write);
    let mut codec = Codec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        let mut ack = None;
        let mut item = Some(first);
        // Frames queued meanwhile go out in the same write.
        while let Some(it) = item.take() {
            let frame = match it {
                Out::Frame(f) => f,
                Out::Shutdown(a) => {
                    ack = Some(a);
                    Frame::GoAway {
                        last_good_stream_id: 0,
                        status: 0,
                    }
                }
            };
            if let Err(e) = codec.encode(&frame, &mut buf) {
                tracing::debug!(error = %e, "dropping an unencodable frame");
            }
            if ack.is_none() && buf.len() < 256 * 1024 {
                item = rx.try_recv().ok();
            }
        }
        let written = write.write_all(&buf).await.is_ok() && write.flush().await.is_ok();
        buf.clear();
        if !written || ack.is_some() {
            if written {
                let _ = write.shutdown().await;
            } else {
                tracing::debug!("SPDY connection closed while writing");
            }
            if let Some(a) = ack {
                let _ = a.send(());
            }
            return;
        }
    }
    let _ = write.shutdown().await;
}

async fn read_loop<R: AsyncRead + Send>(
    read: R,
    out: mpsc::Sender<Out>,
    incoming: mpsc::Sender<Stream>,
    closed: watch::Sender<bool>,
) {
    tokio::pin!(read);
    let mut codec = Codec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut streams: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    'conn: loop {
        loop {
            let frame = match codec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY protocol error");
                    let _ = out
                        .send(Out::Frame(Frame::GoAway {
                            last_good_stream_id: 0,
                            status: 1,
                        }))
                        .await;
                    break 'conn;
                }
            };
            match frame {
                Frame::SynStream {
                    stream_id,
                    flags,
                    headers,
                    ..
                } => {
                    let reply = Frame::SynReply {
                        stream_id,
                        flags: 0,
                        headers: Headers::new(),
                    };
                    if out.send(Out::Frame(reply)).await.is_err() {
                        break 'conn;
                    }
                    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                    if flags & FLAG_FIN == 0 {
                        streams.insert(stream_id, tx);
                    }
                    let stream = Stream {
                        id: stream_id,
                        headers,
                        data: rx,
                        sender: StreamSender {
                            id: stream_id,
                            out: out.clone(),
                        },
                    };
                    if incoming.send(stream).await.is_err() {
                        tracing::debug!(stream_id, "stream opened after the handler finished");
                    }
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    if let Some(tx) = streams.get(&stream_id) {
                        if !data.is_empty() && tx.send(data).await.is_err() {
                            streams.remove(&stream_id);
                        }
                    }
                    if flags & FLAG_FIN != 0 {
                        streams.remove(&stream_id);
                    }
                }
                Frame::Headers {
                    stream_id, flags, ..
                } if flags & FLAG_FIN != 0 => {
                    streams.remove(&stream_id);
                }
                Frame::RstStream { stream_id, .. } => {
                    streams.remove(&stream_id);
                }
                Frame::Ping { id } => {
                    let _ = out.send(Out::Frame(Frame::Ping { id })).await;
                }
                Frame::GoAway { .. } => break 'conn,
                _ => {}
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(streams);
    let _ = closed.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client over an in-memory pipe, speaking through its own codec.
    struct Client {
        io: tokio::io::DuplexStream,
        codec: Codec,
        buf: BytesMut,
    }

    impl Client {
        async fn send(&mut self, f: Frame) {
            let mut out = BytesMut::new();
            self.codec.encode(&f, &mut out).unwrap();
            // Written in small pieces to exercise reassembly.
            for piece in out.chunks(3) {
                self.io.write_all(piece).await.unwrap();
            }
        }

        async fn recv(&mut self) -> Option<Frame> {
            loop {
                if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                    return Some(f);
                }
                if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        }
    }

    fn syn(id: u32, kind: &str, flags: u8) -> Frame {
        Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags,
            headers: Headers::new().with("streamType", kind),
        }
    }

    #[tokio::test]
    async fn streams_are_answered_and_carry_data_both_ways() {
        let (a, b) = tokio::io::duplex(1024);
        let mut conn = Connection::new(a);
        let mut client = Client {
            io: b,
            codec: Codec::new(),
            buf: BytesMut::new(),
        };
        client.send(syn(1, "stdin", 0)).await;
        client.send(syn(3, "error", FLAG_FIN)).await;
        let mut stdin = conn.accept().await.unwrap();
        assert_eq!(stdin.headers.get("streamtype"), Some("stdin"));
        let mut error = conn.accept().await.unwrap();
        assert_eq!((error.id, error.data.recv().await), (3, None));
        assert!(matches!(
            client.recv().await,
            Some(Frame::SynReply { stream_id: 1, .. })
        ));
        assert!(matches!(
            client.recv().await,
            Some(Frame::SynReply { stream_id: 3, .. })
        ));

        client
            .send(Frame::Data {
                stream_id: 1,
                flags: 0,
                data: Bytes::from_static(b"abc"),
            })
            .await;
        client.send(Frame::Ping { id: 7 }).await;
        client
            .send(Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"def"),
            })
            .await;
        assert_eq!(stdin.data.recv().await.unwrap(), "abc");
        assert_eq!(stdin.data.recv().await.unwrap(), "def");
        assert_eq!(stdin.data.recv().await, None);
        assert_eq!(client.recv().await, Some(Frame::Ping { id: 7 }));

        let big = vec![7u8; 100_000];
        error.sender.send(&big).await.unwrap();
        error.sender.finish().await.unwrap();
        let mut got = Vec::new();
        loop {
            match client.recv().await.unwrap() {
                Frame::Data {
                    stream_id: 3,
                    flags,
                    data,
                } => {
                    assert!(data.len() <= DATA_CHUNK);
                    got.extend_from_slice(&data);
                    if flags & FLAG_FIN != 0 {
                        break;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, big);
        conn.shutdown().await;
        assert!(matches!(client.recv().await, Some(Frame::GoAway { .. })));
        assert_eq!(client.recv().await, None);
    }

    #[tokio::test]
    async fn closing_the_client_ends_every_stream_and_signals_closed() {
        let (a, b) = tokio::io::duplex(1024);
        let mut conn = Connection::new(a);
        let mut client = Client {
            io: b,
            codec: Codec::new(),
            buf: BytesMut::new(),
        };
        client.send(syn(1, "stdout", 0)).await;
        let mut s = conn.accept().await.unwrap();
        let closed = conn.closed();
        drop(client);
        closed.await;
        assert_eq!(s.data.recv().await, None);
        assert!(conn.accept().await.is_none());
    }

    #[tokio::test]
    async fn garbage_ends_the_connection_with_goaway() {
        let (a, mut b) = tokio::io::duplex(1024);
        let conn = Connection::new(a);
        b.write_all(&[0x80, 9, 0, 1, 0, 0, 0, 0]).await.unwrap();
        conn.closed().await;
        let mut buf = BytesMut::new();
        b.read_buf(&mut buf).await.unwrap();
        assert!(matches!(
            Codec::new().decode(&mut buf).unwrap(),
            Some(Frame::GoAway { status: 1, .. })
        ));
    }
}
