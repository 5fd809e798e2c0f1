//! The CRI container log format the kubelet reads (`kubectl logs`):
//! `<RFC 3339 nanos> <stdout|stderr> <F|P> <text>` — one line per output line, `P` for a
//! partial line cut at 16 KiB, rotated to `<path>.1` past a size limit.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

/// Lines longer than this are split into partial (`P`) records, as containerd does.
pub(crate) const MAX_LINE: usize = 16 * 1024;
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

pub(crate) struct CriLogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    /// Unterminated tail per stream, waiting for its newline.
    pending: [Vec<u8>; 2],
}

pub(crate) fn timestamp(ts: Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        ts.strftime("%Y-%m-%dT%H:%M:%S"),
        ts.subsec_nanosecond()
    )
}

impl CriLogWriter {
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(CriLogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes: max_bytes.max(1),
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Adds output of `stream`; complete lines are written now, a tail waits for more.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> std::io::Result<()> {
        let slot = stream as usize;
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let mut line = std::mem::take(&mut self.pending[slot]);
                    line.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    self.emit_full(stream, &line)?;
                }
                None => {
                    self.pending[slot].extend_from_slice(data);
                    data = &[];
                }
            }
            while self.pending[slot].len() >= MAX_LINE {
                let rest = self.pending[slot].split_off(MAX_LINE);
                let chunk = std::mem::replace(&mut self.pending[slot], rest);
                self.record(stream, 'P', &chunk)?;
            }
        }
        Ok(())
    }

    fn emit_full(&mut self, stream: Stream, line: &[u8]) -> std::io::Result<()> {
        let mut rest = line;
        while rest.len() > MAX_LINE {
            let (head, tail) = rest.split_at(MAX_LINE);
            self.record(stream, 'P', head)?;
            rest = tail;
        }
        self.record(stream, 'F', rest)
    }

    /// Writes out unterminated tails as full lines: the stream ended.
    pub fn flush_pending(&mut self) -> std::io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let tail = std::mem::take(&mut self.pending[stream as usize]);
            if !tail.is_empty() {
                self.record(stream, 'F', &tail)?;
            }
        }
        self.file.flush()
    }

    fn record(&mut self, stream: Stream, tag: char, text: &[u8]) -> std::io::Result<()> {
        let mut rec = Vec::with_capacity(text.len() + 48);
        rec.extend_from_slice(timestamp(Timestamp::now()).as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.name().as_bytes());
        rec.push(b' ');
        rec.push(tag as u8);
        rec.push(b' ');
        rec.extend_from_slice(text);
        rec.push(b'\n');
        if self.size > 0 && self.size + rec.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&rec)?;
        self.size += rec.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut p = l.splitn(4, ' ');
                let ts = p.next().unwrap();
                assert!(ts.parse::<Timestamp>().is_ok(), "{ts}");
                assert_eq!(ts.len(), "2024-01-02T03:04:05.123456789Z".len());
                (
                    p.next().unwrap().to_owned(),
                    p.next().unwrap().to_owned(),
                    p.next().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn lines_partials_and_tails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = CriLogWriter::open(&path, DEFAULT_LOG_MAX_BYTES).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"lo\nworld\n\ntail").unwrap();
        w.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 10]).unwrap();
        w.write(Stream::Stdout, b"\n").unwrap();
        w.write(Stream::Stderr, b"end").unwrap();
        w.flush_pending().unwrap();
        let r = records(&path);
        let short: Vec<(&str, &str)> = r.iter().map(|(s, t, _)| (s.as_str(), t.as_str())).collect();
        assert_eq!(
            short,
            vec![
                ("stderr", "F"),
                ("stdout", "F"),
                ("stdout", "F"),
                ("stdout", "F"),
                ("stdout", "P"),
                ("stdout", "F"),
                ("stderr", "F"),
            ]
        );
        assert_eq!(r[1].2, "hello");
        assert_eq!(r[3].2, "");
        assert_eq!(r[4].2.len(), MAX_LINE);
        assert!(r[4].2.starts_with("tail"));
        assert_eq!(r[5].2.len(), 14);
        assert_eq!(r[6].2, "end");
    }

    #[test]
    fn rotates_to_dot_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = CriLogWriter::open(&path, 200).unwrap();
        for i in 0..10 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let current = records(&path);
        let old = records(&dir.path().join("0.log.1"));
        assert!(std::fs::metadata(&path).unwrap().len() <= 200);
        assert_eq!(current.last().unwrap().2, "line 9");
        assert!(!old.is_empty());
        assert!(old.len() + current.len() <= 10);
    }
}
