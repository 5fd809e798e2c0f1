//! Reading CRI log records (`<RFC 3339 nanos> <stdout|stderr> <F|P> <text>`) back into what
//! `kubectl logs` prints, with the kubelet's options: timestamps, since, tail and a byte
//! limit.

use jiff::Timestamp;

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The timestamp as written (printed verbatim with `timestamps=true`).
    pub time_text: &'a str,
    pub time: Timestamp,
    pub stream: &'a str,
    /// A partial record is continued by the next one; a full one ends a line.
    pub partial: bool,
    pub text: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed CRI log record: {0}")]
pub struct ParseError(pub String);

/// Parses one record, without its trailing newline.
pub fn parse(line: &[u8]) -> Result<Record<'_>, ParseError> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let (Some(ts), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ParseError(String::from_utf8_lossy(line).into_owned()));
    };
    let text = parts.next().unwrap_or_default();
    let time_text = std::str::from_utf8(ts).map_err(|_| ParseError("timestamp".into()))?;
    let time = time_text
        .parse::<Timestamp>()
        .map_err(|e| ParseError(format!("timestamp {time_text:?}: {e}")))?;
    let stream = match stream {
        b"stdout" => "stdout",
        b"stderr" => "stderr",
        other => {
            return Err(ParseError(format!(
                "stream {:?}",
                String::from_utf8_lossy(other)
            )))
        }
    };
    let partial = match tag {
        b"P" => true,
        b"F" => false,
        other => {
            return Err(ParseError(format!(
                "tag {:?}",
                String::from_utf8_lossy(other)
            )))
        }
    };
    Ok(Record {
        time_text,
        time,
        stream,
        partial,
        text,
    })
}

/// The kubelet's log options (`v1.PodLogOptions` as it reads them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since: Option<Timestamp>,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
}

/// Writes records as `kubectl logs` shows them, enforcing `since` and `limit_bytes`.
pub struct Printer {
    timestamps: bool,
    since: Option<Timestamp>,
    remaining: Option<u64>,
    /// Whether the previous record of each stream was partial: its continuation gets no
    /// second timestamp.
    continuing: [bool; 2],
}

impl Printer {
    pub fn new(opts: &LogOptions) -> Self {
        Self {
            timestamps: opts.timestamps,
            since: opts.since,
            remaining: opts.limit_bytes,
            continuing: [false; 2],
        }
    }

    /// True once `limit_bytes` has been written.
    pub fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Appends the output for one raw line of the file to `out`. Malformed lines are
    /// skipped (a torn write at a crash), as the kubelet does.
    pub fn line(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        let Ok(rec) = parse(raw) else {
            tracing::debug!("skipping a malformed log line");
            return;
        };
        if self.since.is_some_and(|s| rec.time < s) {
            return;
        }
        let slot = usize::from(rec.stream == "stderr");
        let start = out.len();
        if self.timestamps && !self.continuing[slot] {
            out.extend_from_slice(rec.time_text.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(rec.text);
        if !rec.partial {
            out.push(b'\n');
        }
        self.continuing[slot] = rec.partial;
        if let Some(remaining) = self.remaining.as_mut() {
            let written = (out.len() - start) as u64;
            if written > *remaining {
                out.truncate(start + *remaining as usize);
                *remaining = 0;
            } else {
                *remaining -= written;
            }
        }
    }
}

/// The byte offset in `data` where the last `n` lines begin. A line is a full record and
/// the partial records before it.
pub fn tail_offset(data: &[u8], n: u64) -> usize {
    if n == 0 {
        return data.len();
    }
    let mut line_starts = Vec::new();
    let mut at = 0;
    let mut starts_line = true;
    while at < data.len() {
        let end = data[at..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(data.len(), |i| at + i);
        if starts_line {
            line_starts.push(at);
        }
        starts_line = !parse(&data[at..end]).is_ok_and(|r| r.partial);
        at = end + 1;
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if line_starts.len() <= n {
        0
    } else {
        line_starts[line_starts.len() - n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2024-01-02T03:04:05.000000001Z stdout F one\n\
2024-01-02T03:04:06.000000000Z stderr F two\n\
2024-01-02T03:04:07.000000000Z stdout P thr\n\
2024-01-02T03:04:07.100000000Z stdout F ee\n\
2024-01-02T03:04:08.000000000Z stdout F \n";

    fn print(opts: LogOptions, data: &[u8]) -> String {
        let mut p = Printer::new(&opts);
        let mut out = Vec::new();
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            p.line(line, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_records() {
        let r = parse(b"2024-01-02T03:04:05.123456789Z stderr P hello world").unwrap();
        assert_eq!(r.stream, "stderr");
        assert!(r.partial);
        assert_eq!(r.text, b"hello world");
        assert_eq!(r.time.subsec_nanosecond(), 123_456_789);
        let empty = parse(b"2024-01-02T03:04:05Z stdout F").unwrap();
        assert_eq!(empty.text, b"");
        for bad in [
            &b""[..],
            b"x stdout F a",
            b"2024-01-02T03:04:05Z stdin F a",
            b"2024-01-02T03:04:05Z stdout X a",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prints_lines_and_joins_partials() {
        assert_eq!(print(LogOptions::default(), LOG), "one\ntwo\nthree\n\n");
        let with_ts = print(
            LogOptions {
                timestamps: true,
                ..Default::default()
            },
            LOG,
        );
        assert!(with_ts.starts_with("2024-01-02T03:04:05.000000001Z one\n"));
        assert!(
            with_ts.contains("2024-01-02T03:04:07.000000000Z three\n"),
            "{with_ts}"
        );
    }

    #[test]
    fn since_and_limit_bytes() {
        let since = "2024-01-02T03:04:06Z".parse().unwrap();
        assert_eq!(
            print(
                LogOptions {
                    since: Some(since),
                    ..Default::default()
                },
                LOG
            ),
            "two\nthree\n\n"
        );
        assert_eq!(
            print(
                LogOptions {
                    limit_bytes: Some(6),
                    ..Default::default()
                },
                LOG
            ),
            "one\ntw"
        );
    }

    #[test]
    fn tail_counts_whole_lines() {
        assert_eq!(
            print(LogOptions::default(), &LOG[tail_offset(LOG, 1)..]),
            "\n"
        );
        assert_eq!(
            print(LogOptions::default(), &LOG[tail_offset(LOG, 2)..]),
            "three\n\n"
        );
        assert_eq!(
            print(LogOptions::default(), &LOG[tail_offset(LOG, 3)..]),
            "two\nthree\n\n"
        );
        assert_eq!(tail_offset(LOG, 99), 0);
        assert_eq!(tail_offset(LOG, 0), LOG.len());
        assert_eq!(tail_offset(b"", 3), 0);
    }
}
