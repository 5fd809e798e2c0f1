//! SPDY/3.1 framing: control frames (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING,
//! GOAWAY, HEADERS, WINDOW_UPDATE) and DATA frames, read from a byte buffer that may hold
//! any fragment of the stream, and written whole. Header blocks go through the
//! connection's compressor ([`super::headers`]), so a codec belongs to one connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::headers::{HeaderCompressor, HeaderDecompressor, Headers};
use super::SpdyError;

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// Largest payload a frame's 24-bit length can carry.
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_CANCEL: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// (flags, id, value) triples.
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame of a type this implementation does not use; skipped, as the
    /// specification asks.
    Unknown {
        frame_type: u16,
    },
}

/// Reads and writes frames of one connection.
#[derive(Default)]
pub struct Codec {
    compressor: HeaderCompressor,
    decompressor: HeaderDecompressor,
}

impl Codec {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one whole frame off the front of `buf`; None when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let length = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
        if buf.len() < 8 + length {
            buf.reserve(8 + length - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(8 + length).freeze();
        let first = frame.get_u32();
        let flags = frame.get_u8();
        frame.advance(3);
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: first & 0x7fff_ffff,
                flags,
                data: frame,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Protocol(format!("SPDY version {version}")));
        }
        let kind = (first & 0xffff) as u16;
        let need = |n: usize, frame: &Bytes| {
            if frame.len() < n {
                Err(SpdyError::Protocol(format!(
                    "control frame {kind} too short"
                )))
            } else {
                Ok(())
            }
        };
        let decoded = match kind {
            SYN_STREAM => {
                need(10, &frame)?;
                let stream_id = frame.get_u32() & 0x7fff_ffff;
                let associated_to = frame.get_u32() & 0x7fff_ffff;
                let priority = frame.get_u8() >> 5;
                frame.advance(1); // slot
                let headers = self.decompressor.decompress(&frame)?;
                nonzero(stream_id)?;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    flags,
                    headers,
                }
            }
            SYN_REPLY | HEADERS => {
                need(4, &frame)?;
                let stream_id = frame.get_u32() & 0x7fff_ffff;
                let headers = self.decompressor.decompress(&frame)?;
                nonzero(stream_id)?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                need(8, &frame)?;
                Frame::RstStream {
                    stream_id: frame.get_u32() & 0x7fff_ffff,
                    status: frame.get_u32(),
                }
            }
            SETTINGS => {
                need(4, &frame)?;
                let count = frame.get_u32() as usize;
                if count > frame.len() / 8 {
                    return Err(SpdyError::Protocol("SETTINGS count too large".into()));
                }
                let entries = (0..count)
                    .map(|_| {
                        let id = frame.get_u32();
                        ((id >> 24) as u8, id & 0x00ff_ffff, frame.get_u32())
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need(4, &frame)?;
                Frame::Ping {
                    id: frame.get_u32(),
                }
            }
            GOAWAY => {
                need(8, &frame)?;
                Frame::GoAway {
                    last_good_stream_id: frame.get_u32() & 0x7fff_ffff,
                    status: frame.get_u32(),
                }
            }
            WINDOW_UPDATE => {
                need(8, &frame)?;
                Frame::WindowUpdate {
                    stream_id: frame.get_u32() & 0x7fff_ffff,
                    delta: frame.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown { frame_type: other },
        };
        Ok(Some(decoded))
    }

    /// Appends `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        let mut payload = BytesMut::new();
        let (kind, flags) = match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(SpdyError::Protocol("DATA frame too large".into()));
                }
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u8(*flags);
                put_u24(out, data.len());
                out.extend_from_slice(data);
                return Ok(());
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.put_u32(associated_to & 0x7fff_ffff);
                payload.put_u8((priority & 0x7) << 5);
                payload.put_u8(0);
                payload.extend_from_slice(&self.compressor.compress(headers)?);
                (SYN_STREAM, *flags)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.extend_from_slice(&self.compressor.compress(headers)?);
                (SYN_REPLY, *flags)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.extend_from_slice(&self.compressor.compress(headers)?);
                (HEADERS, *flags)
            }
            Frame::RstStream { stream_id, status } => {
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.put_u32(*status);
                (RST_STREAM, 0)
            }
            Frame::Settings { flags, entries } => {
                payload.put_u32(entries.len() as u32);
                for (f, id, value) in entries {
                    payload.put_u32((u32::from(*f) << 24) | (id & 0x00ff_ffff));
                    payload.put_u32(*value);
                }
                (SETTINGS, *flags)
            }
            Frame::Ping { id } => {
                payload.put_u32(*id);
                (PING, 0)
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                payload.put_u32(last_good_stream_id & 0x7fff_ffff);
                payload.put_u32(*status);
                (GOAWAY, 0)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.put_u32(delta & 0x7fff_ffff);
                (WINDOW_UPDATE, 0)
            }
            Frame::Unknown { frame_type } => {
                return Err(SpdyError::Protocol(format!(
                    "cannot write control frame type {frame_type}"
                )))
            }
        };
        if payload.len() > MAX_PAYLOAD {
            return Err(SpdyError::Protocol("control frame too large".into()));
        }
        out.put_u16(0x8000 | VERSION);
        out.put_u16(kind);
        out.put_u8(flags);
        put_u24(out, payload.len());
        out.extend_from_slice(&payload);
        Ok(())
    }
}

fn put_u24(out: &mut BytesMut, n: usize) {
    out.put_u8((n >> 16) as u8);
    out.put_u8((n >> 8) as u8);
    out.put_u8(n as u8);
}

fn nonzero(stream_id: u32) -> Result<(), SpdyError> {
    if stream_id == 0 {
        Err(SpdyError::Protocol("stream id 0".into()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_kinds() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                flags: FLAG_FIN,
                headers: Headers::new().with("streamtype", "error"),
            },
            Frame::SynReply {
                stream_id: 3,
                flags: 0,
                headers: Headers::new(),
            },
            Frame::Headers {
                stream_id: 3,
                flags: FLAG_FIN,
                headers: Headers::new().with("a", "b\0c"),
            },
            Frame::RstStream {
                stream_id: 5,
                status: RST_CANCEL,
            },
            Frame::Settings {
                flags: 1,
                entries: vec![(1, 7, 65536), (0, 4, 100)],
            },
            Frame::Ping { id: 2 },
            Frame::GoAway {
                last_good_stream_id: 9,
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 4096,
            },
            Frame::Data {
                stream_id: 7,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 7,
                flags: 0,
                data: Bytes::new(),
            },
        ]
    }

    #[test]
    fn every_frame_kind_round_trips() {
        let (mut tx, mut rx) = (Codec::new(), Codec::new());
        let mut wire = BytesMut::new();
        for f in all_kinds() {
            tx.encode(&f, &mut wire).unwrap();
        }
        for want in all_kinds() {
            assert_eq!(rx.decode(&mut wire).unwrap(), Some(want));
        }
        assert!(wire.is_empty());
        assert_eq!(rx.decode(&mut wire).unwrap(), None);
    }

    /// Byte layouts worked out by hand from the specification's frame diagrams.
    #[test]
    fn known_layouts() {
        let mut c = Codec::new();
        let mut out = BytesMut::new();
        c.encode(&Frame::Ping { id: 0x0102_0304 }, &mut out)
            .unwrap();
        assert_eq!(&out[..], &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 1, 2, 3, 4]);
        out.clear();
        let data = Frame::Data {
            stream_id: 5,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"ab"),
        };
        c.encode(&data, &mut out).unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 5, 1, 0, 0, 2, b'a', b'b']);
        out.clear();
        let rst = Frame::RstStream {
            stream_id: 3,
            status: RST_CANCEL,
        };
        c.encode(&rst, &mut out).unwrap();
        assert_eq!(
            &out[..],
            &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5]
        );
        let mut wire = BytesMut::from(
            &[
                0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 1, 0, 0, 0x80, 3, 0, 0xff, 0, 0, 0, 1, 9,
            ][..],
        );
        let mut r = Codec::new();
        assert_eq!(
            r.decode(&mut wire).unwrap(),
            Some(Frame::WindowUpdate {
                stream_id: 1,
                delta: 65536
            })
        );
        assert_eq!(
            r.decode(&mut wire).unwrap(),
            Some(Frame::Unknown { frame_type: 0xff })
        );
    }

    #[test]
    fn a_syn_stream_from_reference_zlib_decodes() {
        // SYN_STREAM id 1, priority 0, flags 0, headers {streamtype: error} compressed by
        // reference zlib with the SPDY dictionary.
        let block = [
            0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0xa6, 0x23, 0x46, 0x70, 0x3a, 0x2b, 0x29,
            0x4a, 0x4d, 0xcc, 0x85, 0x16, 0x25, 0xac, 0xa9, 0xa0, 0x80, 0x06, 0x00, 0x00, 0x00,
            0xff, 0xff,
        ];
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&[0x80, 3, 0, 1, 0, 0, 0, (10 + block.len()) as u8]);
        wire.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        wire.extend_from_slice(&block);
        match Codec::new().decode(&mut wire).unwrap() {
            Some(Frame::SynStream {
                stream_id, headers, ..
            }) => {
                assert_eq!(stream_id, 1);
                assert_eq!(headers.get("streamType"), Some("error"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let cases: &[&[u8]] = &[
            &[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1], // SPDY/2
            &[0x80, 3, 0, 3, 0, 0, 0, 2, 0, 0],       // short RST_STREAM
            &[0x80, 3, 0, 1, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], // no header block
            &[0x80, 3, 0, 4, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff], // SETTINGS count
        ];
        for case in cases {
            let mut wire = BytesMut::from(*case);
            assert!(Codec::new().decode(&mut wire).is_err(), "{case:?}");
        }
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let id = 1u32..0x7fff_ffff;
        let headers = proptest::collection::vec(("[a-z][a-z0-9-]{0,12}", "[ -~]{0,20}"), 0..5)
            .prop_map(Headers);
        prop_oneof![
            (
                id.clone(),
                any::<u8>(),
                proptest::collection::vec(any::<u8>(), 0..3000)
            )
                .prop_map(|(stream_id, flags, d)| Frame::Data {
                    stream_id,
                    flags,
                    data: Bytes::from(d)
                }),
            (id.clone(), 0u8..8, 0u8..4, headers.clone()).prop_map(
                |(stream_id, priority, flags, headers)| Frame::SynStream {
                    stream_id,
                    associated_to: 0,
                    priority,
                    flags,
                    headers
                }
            ),
            (id.clone(), 0u8..2, headers).prop_map(|(stream_id, flags, headers)| {
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers,
                }
            }),
            (id.clone(), 1u32..12)
                .prop_map(|(stream_id, status)| Frame::RstStream { stream_id, status }),
            any::<u32>().prop_map(|id| Frame::Ping { id }),
            (id, 1u32..0x7fff_ffff)
                .prop_map(|(stream_id, delta)| Frame::WindowUpdate { stream_id, delta }),
        ]
    }

    proptest! {
        /// Any sequence of frames, cut into arbitrary fragments, decodes to itself.
        #[test]
        fn fragmented_streams_decode_to_the_frames_sent(
            frames in proptest::collection::vec(arb_frame(), 1..12),
            cuts in proptest::collection::vec(1usize..700, 1..40),
        ) {
            let (mut tx, mut rx) = (Codec::new(), Codec::new());
            let mut wire = BytesMut::new();
            for f in &frames {
                tx.encode(f, &mut wire).unwrap();
            }
            let mut wire = wire.freeze();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut cut = cuts.iter().cycle();
            while !wire.is_empty() {
                let n = (*cut.next().unwrap()).min(wire.len());
                buf.extend_from_slice(&wire.split_to(n));
                while let Some(f) = rx.decode(&mut buf).unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(got, frames);
        }

        /// Random bytes never panic the decoder.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut c = Codec::new();
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = c.decode(&mut buf) {}
        }
    }
}
