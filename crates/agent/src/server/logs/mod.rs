//! `GET /containerLogs/{ns}/{pod}/{container}`: the container's CRI log file(s) as
//! `kubectl logs` prints them — the rotated `<path>.1` then `<path>` — with follow, tail,
//! since, timestamps, previous and limitBytes.

pub mod cri;
mod follow;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use jiff::Timestamp;
use runtime::ContainerRuntime;

use super::{lookup, ServerError};
use cri::{LogOptions, Printer};

impl LogOptions {
    /// Reads the kubelet's query parameters; a malformed value is a bad request.
    pub fn from_query(query: &str) -> Result<Self, ServerError> {
        let mut o = LogOptions::default();
        let bad = |k: &str, v: &str| ServerError::BadRequest(format!("invalid {k}: {v:?}"));
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let flag = || match v.as_ref() {
                "true" | "1" | "" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(bad(&k, &v)),
            };
            let number = || v.parse::<i64>().map_err(|_| bad(&k, &v));
            match k.as_ref() {
                "follow" => o.follow = flag()?,
                "previous" => o.previous = flag()?,
                "timestamps" => o.timestamps = flag()?,
                "tailLines" => {
                    o.tail_lines = Some(u64::try_from(number()?).map_err(|_| bad(&k, &v))?)
                }
                "limitBytes" => {
                    let n = number()?;
                    if n <= 0 {
                        return Err(bad(&k, &v));
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n = number()?;
                    if n <= 0 {
                        return Err(bad(&k, &v));
                    }
                    let since = Timestamp::now()
                        .checked_sub(jiff::SignedDuration::from_secs(n))
                        .unwrap_or(Timestamp::MIN);
                    o.since = Some(since);
                }
                "sinceTime" => o.since = Some(v.parse().map_err(|_| bad(&k, &v))?),
                _ => {}
            }
        }
        Ok(o)
    }
}

/// Answers a log request.
pub async fn serve(
    containers: Arc<dyn ContainerRuntime>,
    pod_logs_dir: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Result<Response, ServerError> {
    let opts = LogOptions::from_query(query)?;
    let attempts = lookup::attempts(&*containers, namespace, pod, container).await?;
    let Some(current) = attempts.last() else {
        return Err(ServerError::BadRequest(format!(
            "container {container:?} in pod {pod:?} is waiting to start: no log yet"
        )));
    };
    let (path, follow_id) = if opts.previous {
        (previous_log(&attempts, container, pod)?, None)
    } else {
        (
            current.log_path.clone(),
            opts.follow.then(|| current.id.clone()),
        )
    };
    // Only the node's pod logs are served, whatever a runtime record says.
    let contained = path.starts_with(pod_logs_dir)
        && !path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    if !contained {
        return Err(ServerError::Forbidden(format!(
            "the log of container {container:?} is outside the node's pod log directory"
        )));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        if let Err(e) = follow::stream(&path, &opts, follow_id, containers, tx).await {
            tracing::debug!(path = %path.display(), error = %e, "log stream ended");
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder()
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(body)
        .map_err(|e| ServerError::Other(e.to_string()))
}

/// The log of the attempt before the current one: its record if the runtime still has
/// it, else the file the layout gives it (`<restartCount-1>.log` beside the current).
fn previous_log(
    attempts: &[runtime::cri::ContainerStatus],
    container: &str,
    pod: &str,
) -> Result<PathBuf, ServerError> {
    let not_found = || {
        ServerError::BadRequest(format!(
            "previous terminated container {container:?} in pod {pod:?} not found"
        ))
    };
    let current = attempts.last().ok_or_else(not_found)?;
    if attempts.len() >= 2 {
        let prev = &attempts[attempts.len() - 2];
        if prev.log_path.exists() {
            return Ok(prev.log_path.clone());
        }
    }
    let attempt = current.attempt.checked_sub(1).ok_or_else(not_found)?;
    let sibling = current
        .log_path
        .parent()
        .unwrap_or(Path::new("/"))
        .join(format!("{attempt}.log"));
    if sibling.exists() {
        Ok(sibling)
    } else {
        Err(not_found())
    }
}

/// Renders the whole of `data` (complete records only) with the options, tail applied.
pub fn render_all(data: &[u8], opts: &LogOptions, printer: &mut Printer) -> Vec<u8> {
    let start = opts.tail_lines.map_or(0, |n| cri::tail_offset(data, n));
    let mut out = Vec::with_capacity(data.len() - start);
    for line in data[start..].split(|b| *b == b'\n') {
        if line.is_empty() || printer.exhausted() {
            continue;
        }
        printer.line(line, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_options_are_read_and_checked() {
        let o = LogOptions::from_query(
            "follow=true&tailLines=5&timestamps=true&limitBytes=10&previous=false",
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(5), Some(10)));
        let o = LogOptions::from_query("sinceSeconds=60").unwrap();
        let since = o.since.unwrap();
        assert!(
            since < Timestamp::now()
                && since > Timestamp::now() - jiff::SignedDuration::from_secs(120)
        );
        let o = LogOptions::from_query("sinceTime=2024-01-02T03:04:05Z").unwrap();
        assert_eq!(o.since, Some("2024-01-02T03:04:05Z".parse().unwrap()));
        for bad in [
            "tailLines=x",
            "tailLines=-1",
            "limitBytes=0",
            "sinceSeconds=0",
            "follow=maybe",
            "sinceTime=yesterday",
        ] {
            assert!(
                matches!(LogOptions::from_query(bad), Err(ServerError::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
