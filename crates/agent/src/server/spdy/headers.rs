//! SPDY/3 name/value header blocks: the block layout (32-bit counts and lengths, several
//! values of one name joined by NUL) and its compression — one zlib stream per direction
//! for the life of the connection, primed with the SPDY dictionary, each block ending on a
//! sync flush.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::DICTIONARY;
use super::SpdyError;

/// Header names are lower case on the wire; values of one name are joined by NUL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split('\0').next().unwrap_or_default())
    }
}

/// Largest decompressed header block accepted: a peer cannot make us inflate a bomb.
const MAX_BLOCK: usize = 256 * 1024;

pub fn encode_block(headers: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.0.len() as u32).to_be_bytes());
    for (name, value) in &headers.0 {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.to_ascii_lowercase().as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

pub fn decode_block(mut data: &[u8]) -> Result<Headers, SpdyError> {
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], SpdyError> {
        if data.len() < n {
            return Err(SpdyError::Protocol("truncated header block".into()));
        }
        let (head, rest) = data.split_at(n);
        *data = rest;
        Ok(head)
    }
    fn u32_of(data: &mut &[u8]) -> Result<usize, SpdyError> {
        let b = take(data, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    let count = u32_of(&mut data)?;
    // Each entry takes at least 8 bytes: a count beyond that is a lie.
    if count > data.len() / 8 {
        return Err(SpdyError::Protocol(format!(
            "header block claims {count} entries"
        )));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let n = u32_of(&mut data)?;
        let name = take(&mut data, n)?;
        let n = u32_of(&mut data)?;
        let value = take(&mut data, n)?;
        if name.is_empty() {
            return Err(SpdyError::Protocol("empty header name".into()));
        }
        let text = |b: &[u8]| {
            String::from_utf8(b.to_vec())
                .map_err(|_| SpdyError::Protocol("header is not UTF-8".into()))
        };
        headers.push((text(name)?.to_ascii_lowercase(), text(value)?));
    }
    if !data.is_empty() {
        return Err(SpdyError::Protocol("bytes after the header block".into()));
    }
    Ok(Headers(headers))
}

/// The sending side's zlib stream.
pub struct HeaderCompressor(Compress);

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCompressor {
    pub fn new() -> Self {
        let mut c = Compress::new(Compression::default(), true);
        // A fresh stream always accepts a dictionary; failure here would be a zlib bug.
        if let Err(e) = c.set_dictionary(&DICTIONARY) {
            tracing::error!(error = %e, "zlib refused the SPDY dictionary");
        }
        Self(c)
    }

    pub fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let input = encode_block(headers);
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut consumed = 0;
        loop {
            let before = self.0.total_in();
            out.reserve(256);
            self.0
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Protocol(format!("compressing headers: {e}")))?;
            consumed += (self.0.total_in() - before) as usize;
            // Done once all input is in and the flush left spare room in the output.
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's zlib stream.
pub struct HeaderDecompressor(Decompress);

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    pub fn new() -> Self {
        Self(Decompress::new(true))
    }

    pub fn decompress(&mut self, input: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            let before = self.0.total_in();
            out.reserve(1024);
            let result = self
                .0
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.0.total_in() - before) as usize;
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(SpdyError::Protocol("header stream ended".into()))
                }
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| SpdyError::Protocol(format!("header dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(SpdyError::Protocol(format!("inflating headers: {e}"))),
            }
            if out.len() > MAX_BLOCK {
                return Err(SpdyError::Protocol("header block too large".into()));
            }
            if consumed == input.len() && out.len() < out.capacity() {
                return decode_block(&out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Two consecutive blocks of one zlib stream, produced by reference zlib (level 9,
    /// SPDY dictionary, Z_SYNC_FLUSH after each block) — what a Go peer sends.
    #[test]
    fn decodes_blocks_from_reference_zlib() {
        let mut d = HeaderDecompressor::new();
        let first = d
            .decompress(&hex(
                "78f9e3c6a7c202a62346703a2b294a4dcc851625aca9a08006000000ffff",
            ))
            .unwrap();
        assert_eq!(first, Headers::new().with("streamtype", "error"));
        let second = d
            .decompress(&hex(
                "02a54748d15c04ce0516061606409ab308129599a024ce6880a119540e2502000000ffff",
            ))
            .unwrap();
        assert_eq!(second.get("port"), Some("8080"));
        assert_eq!(second.get("requestID"), Some("0"));
        assert_eq!(second.get("streamType"), Some("data"));
    }

    #[test]
    fn round_trips_many_blocks_through_one_stream() {
        let mut c = HeaderCompressor::new();
        let mut d = HeaderDecompressor::new();
        for i in 0..50 {
            let h = Headers::new()
                .with("streamType", if i % 2 == 0 { "stdout" } else { "stdin" })
                .with("x-index", &i.to_string())
                .with("multi", "a\0b");
            let wire = c.compress(&h).unwrap();
            assert_eq!(d.decompress(&wire).unwrap(), h);
        }
        let empty = Headers::new();
        assert_eq!(d.decompress(&c.compress(&empty).unwrap()).unwrap(), empty);
    }

    #[test]
    fn the_first_block_names_the_dictionary() {
        let wire = HeaderCompressor::new().compress(&Headers::new()).unwrap();
        // zlib header with FDICT set, then the dictionary's Adler-32.
        assert_eq!(wire[1] & 0x20, 0x20);
        assert_eq!(&wire[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(HeaderDecompressor::new()
            .decompress(b"not zlib at all")
            .is_err());
        assert!(decode_block(&[0, 0, 0, 9]).is_err());
        assert!(decode_block(&[0, 0, 0, 1, 0, 0, 0, 5, b'a']).is_err());
        assert!(decode_block(&[0xff, 0xff, 0xff, 0xff]).is_err());
        let mut ok = encode_block(&Headers::new().with("a", "b"));
        ok.push(0);
        assert!(decode_block(&ok).is_err());
    }
}
