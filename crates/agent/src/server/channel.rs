//! The Kubernetes WebSocket channel protocols (`v4.channel.k8s.io`, `v5.channel.k8s.io`):
//! every binary message starts with a channel byte — 0 stdin, 1 stdout, 2 stderr,
//! 3 error (a metav1.Status), 4 resize (`{"Width":W,"Height":H}`) — and v5 adds 255, a
//! close signal whose payload names the channel the client will send no more on.

use runtime::cri::TerminalSize;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
/// What the server accepts, best first (the server's order decides).
pub const PROTOCOLS: &[&str] = &[V5, V4];

/// A message from the client, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Stdin(Vec<u8>),
    Resize(TerminalSize),
    /// v5: the client closed its side of this channel.
    Close(u8),
    /// Something we do not act on (a channel the server only writes, an empty message).
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad channel message: {0}")]
pub struct ChannelError(pub String);

/// Prefixes `data` with its channel byte.
pub fn encode(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(data.len() + 1);
    m.push(channel);
    m.extend_from_slice(data);
    m
}

pub fn decode(message: &[u8]) -> Result<Inbound, ChannelError> {
    let Some((&channel, data)) = message.split_first() else {
        return Ok(Inbound::Ignored);
    };
    match channel {
        STDIN => Ok(Inbound::Stdin(data.to_vec())),
        RESIZE => parse_resize(data).map(Inbound::Resize),
        CLOSE => data
            .first()
            .map(|c| Inbound::Close(*c))
            .ok_or_else(|| ChannelError("close message without a channel".into())),
        _ => Ok(Inbound::Ignored),
    }
}

#[derive(serde::Deserialize)]
struct Size {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// One resize event as the client sends it.
pub fn parse_resize(data: &[u8]) -> Result<TerminalSize, ChannelError> {
    let s: Size = serde_json::from_slice(data).map_err(|e| ChannelError(e.to_string()))?;
    Ok(TerminalSize {
        width: s.width,
        height: s.height,
    })
}

/// Resize events arrive back to back on a SPDY stream (one JSON object after another);
/// this splits them off as they complete.
#[derive(Default)]
pub struct ResizeDecoder {
    buf: Vec<u8>,
}

impl ResizeDecoder {
    pub fn push(&mut self, data: &[u8]) -> Vec<TerminalSize> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut consumed = 0;
        {
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Size>();
            while let Some(Ok(s)) = it.next() {
                consumed = it.byte_offset();
                out.push(TerminalSize {
                    width: s.width,
                    height: s.height,
                });
            }
        }
        self.buf.drain(..consumed);
        // A client sending garbage cannot make us buffer without end.
        if self.buf.len() > 4096 {
            self.buf.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_channel() {
        assert_eq!(
            decode(&encode(STDIN, b"ls\n")).unwrap(),
            Inbound::Stdin(b"ls\n".to_vec())
        );
        assert_eq!(
            decode(b"\x04{\"Width\":80,\"Height\":24}").unwrap(),
            Inbound::Resize(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(decode(&[CLOSE, STDIN]).unwrap(), Inbound::Close(STDIN));
        assert_eq!(decode(&[]).unwrap(), Inbound::Ignored);
        assert_eq!(decode(&[STDOUT, 1, 2]).unwrap(), Inbound::Ignored);
        assert!(decode(&[CLOSE]).is_err());
        assert!(decode(b"\x04{\"Width\":-1}").is_err());
        assert_eq!(encode(STDERR, b"x"), vec![2, b'x']);
    }

    #[test]
    fn resize_events_split_across_chunks() {
        let mut d = ResizeDecoder::default();
        assert!(d.push(b"{\"Width\":100,").is_empty());
        let got = d.push(b"\"Height\":40}{\"Width\":1,\"Height\":2}{\"Wi");
        assert_eq!(
            got,
            vec![
                TerminalSize {
                    width: 100,
                    height: 40
                },
                TerminalSize {
                    width: 1,
                    height: 2
                }
            ]
        );
        assert_eq!(d.push(b"dth\":3,\"Height\":4}").len(), 1);
    }
}
