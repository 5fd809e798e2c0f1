//! Watch: a chunked stream of newline-delimited `{"type":…,"object":…}` events, served
//! from the watch cache (or from the store for a resourceVersion older than the cache's
//! window), filtered by namespace, name and selectors. An object that stops matching the
//! selectors is sent as DELETED, one that starts matching as ADDED, as Kubernetes does.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use api::{ResourceInfo, Strategy};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};
use store::{KeyRange, Revision, WatchStream};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::render::{self, Format};
use super::Ctx;
use crate::negotiate::Output;
use crate::registry::{meta, ListParams, Registry};
use crate::status::ApiError;
use crate::watch_cache::{CacheMessage, CachedObject, EventType, Subscription, WatchEvent};

/// Events buffered between the watch task and a slow client connection.
const CLIENT_BUFFER: usize = 256;

/// Which events a watcher receives.
struct Filter {
    prefix: String,
    name: Option<String>,
    params: ListParams,
    strategy: &'static dyn Strategy,
}

impl Filter {
    fn matches(&self, obj: &CachedObject) -> bool {
        if let Some(n) = &self.name {
            if *obj.attrs().name != **n {
                return false;
            }
        }
        self.params.matches_cached(obj, self.strategy)
    }

    /// The event this watcher sees for `ev`, if any.
    fn classify<'e>(&self, ev: &'e WatchEvent) -> Option<(EventType, &'e Arc<CachedObject>)> {
        if !ev.key.starts_with(&self.prefix) {
            return None;
        }
        let now = self.matches(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.matches(p));
        match ev.kind {
            EventType::Added => now.then_some((EventType::Added, &ev.object)),
            EventType::Deleted => (before || now).then_some((EventType::Deleted, &ev.object)),
            EventType::Modified => match (before, now) {
                (true, true) => Some((EventType::Modified, &ev.object)),
                (false, true) => Some((EventType::Added, &ev.object)),
                (true, false) => Some((EventType::Deleted, &ev.object)),
                (false, false) => None,
            },
        }
    }
}

/// Where the events come from.
enum Source {
    Cache(Subscription),
    Store(WatchStream),
}

pub async fn serve(ctx: Ctx) -> Result<Response, ApiError> {
    let mut format = ctx.format()?;
    if format.output == Output::Yaml {
        format.output = Output::Json;
    }
    let strategy = api::strategy::for_resource(&ctx.info);
    let params = ctx.query.list_params(strategy)?;
    let bookmarks = ctx.query.flag("allowWatchBookmarks")?;
    let initial_end = ctx.query.flag("sendInitialEvents")? && bookmarks;
    let max = ctx.state.config.max_watch_timeout;
    let timeout = ctx.query.timeout()?.map_or(max, |t| t.min(max));
    let registry = ctx.state.registry.clone();
    let info = ctx.info.clone();
    let prefix = Registry::list_prefix(&info, ctx.namespace());
    let cacher = registry.cache.cacher(&info.storage_prefix());
    if !cacher.ready().await {
        return Err(ApiError::service_unavailable(
            "the watch cache is not ready",
        ));
    }
    let start = match params.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(meta::parse_resource_version(rv)?),
    };
    let source = match start {
        None => Source::Cache(
            cacher
                .subscribe(&prefix, None)
                .map_err(|_| ApiError::internal("watch cache refused a fresh subscription"))?,
        ),
        Some(rv) => {
            if rv > cacher.revision() {
                registry.wait_for_revision(rv).await?;
            }
            match cacher.subscribe(&prefix, Some(rv)) {
                Ok(sub) => Source::Cache(sub),
                Err(_) => {
                    let target = crate::status::Target {
                        group: info.group,
                        resource: info.plural,
                        name: "",
                    };
                    let stream = registry
                        .store
                        .watch(KeyRange::Prefix(prefix.clone()), Some(rv + 1))
                        .await
                        .map_err(|e| ApiError::from_store(e, target))?;
                    Source::Store(stream)
                }
            }
        }
    };
    let filter = Filter {
        prefix,
        name: ctx.path.name.clone(),
        params,
        strategy,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(CLIENT_BUFFER);
    let writer = EventWriter {
        info,
        format,
        columns: Bytes::from(
            serde_json::to_vec(&render::column_definitions(&ctx.info)).unwrap_or_default(),
        ),
        tx,
    };
    let bookmark_every = bookmarks.then_some(ctx.state.config.bookmark_interval);
    tokio::spawn(run(
        writer,
        filter,
        source,
        timeout,
        bookmark_every,
        initial_end,
        start.unwrap_or(0),
    ));
    let mut resp = (StatusCode::OK, Body::from_stream(ReceiverStream::new(rx))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format.output.content_type()) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

/// Serialises events for one watcher.
struct EventWriter {
    info: ResourceInfo,
    format: Format,
    columns: Bytes,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
}

impl EventWriter {
    fn object_bytes(&self, obj: &CachedObject) -> Bytes {
        let item = render::encode_item(&self.info, obj, self.format);
        match self.format.output {
            Output::Table(v) => {
                let rv = &obj.attrs().resource_version;
                let rv = if rv.is_empty() {
                    Value::Null
                } else {
                    Value::String(rv.to_string())
                };
                let mut out = Vec::with_capacity(item.len() + self.columns.len() + 128);
                out.extend_from_slice(br#"{"kind":"Table","apiVersion":""#);
                out.extend_from_slice(v.api_version().as_bytes());
                out.extend_from_slice(br#"","metadata":{"resourceVersion":"#);
                out.extend_from_slice(&serde_json::to_vec(&rv).unwrap_or_default());
                out.extend_from_slice(br#"},"columnDefinitions":"#);
                out.extend_from_slice(&self.columns);
                out.extend_from_slice(br#","rows":["#);
                out.extend_from_slice(&item);
                out.extend_from_slice(b"]}");
                Bytes::from(out)
            }
            _ => item,
        }
    }

    async fn send_line(&self, kind: &str, object: &[u8]) -> bool {
        let mut line = Vec::with_capacity(object.len() + 32);
        line.extend_from_slice(br#"{"type":""#);
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(br#"","object":"#);
        line.extend_from_slice(object);
        line.extend_from_slice(b"}\n");
        self.tx.send(Ok(Bytes::from(line))).await.is_ok()
    }

    async fn event(&self, kind: EventType, obj: &CachedObject) -> bool {
        self.send_line(kind.as_str(), &self.object_bytes(obj)).await
    }

    async fn bookmark(&self, rev: Revision, initial_events_end: bool) -> bool {
        let mut metadata = json!({"resourceVersion": rev.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = match self.format.output {
            Output::Table(v) => {
                json!({"kind": "Table", "apiVersion": v.api_version(), "metadata": metadata, "columnDefinitions": null, "rows": null})
            }
            Output::PartialMetadata(v) => {
                json!({"kind": "PartialObjectMetadata", "apiVersion": v.api_version(), "metadata": metadata})
            }
            _ => {
                json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": metadata})
            }
        };
        self.send_line("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())
            .await
    }

    async fn error(&self, err: ApiError) {
        let _ = self
            .send_line(
                "ERROR",
                &serde_json::to_vec(&err.to_status()).unwrap_or_default(),
            )
            .await;
    }
}

fn expired(rev: Revision) -> ApiError {
    ApiError::expired(format!(
        "The resourceVersion for the provided watch is too old (last seen {rev}); re-list to continue"
    ))
}

async fn run(
    w: EventWriter,
    filter: Filter,
    source: Source,
    timeout: Duration,
    bookmark_every: Option<Duration>,
    initial_end: bool,
    start: Revision,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut ticker = bookmark_every.map(|d| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut progress = start;
    match source {
        Source::Cache(sub) => {
            progress = progress.max(sub.revision);
            for ev in &sub.initial {
                if let Some((kind, obj)) = filter.classify(ev) {
                    if !w.event(kind, obj).await {
                        return;
                    }
                }
            }
            if initial_end && !w.bookmark(progress, true).await {
                return;
            }
            let mut live = sub.live;
            loop {
                let tick = async {
                    match ticker.as_mut() {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    msg = live.recv() => match msg {
                        Ok(CacheMessage::Event(ev)) => {
                            if ev.revision <= sub.revision {
                                continue;
                            }
                            progress = ev.revision;
                            if let Some((kind, obj)) = filter.classify(&ev) {
                                if !w.event(kind, obj).await {
                                    return;
                                }
                            }
                        }
                        Ok(CacheMessage::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            w.error(expired(progress)).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick => {
                        if !w.bookmark(progress, false).await {
                            return;
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = w.tx.closed() => return,
                }
            }
        }
        Source::Store(mut stream) => loop {
            let tick = async {
                match ticker.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(raw)) => {
                        progress = raw.revision();
                        let Some(ev) = WatchEvent::from_store(&raw) else { continue };
                        if let Some((kind, obj)) = filter.classify(&ev) {
                            if !w.event(kind, obj).await {
                                return;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        let target = crate::status::Target { group: w.info.group, resource: w.info.plural, name: "" };
                        w.error(ApiError::from_store(e, target)).await;
                        return;
                    }
                    None => return,
                },
                _ = tick => {
                    if !w.bookmark(progress, false).await {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = w.tx.closed() => return,
            }
        },
    }
}
