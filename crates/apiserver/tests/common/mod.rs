//! An in-process API server over a fresh embedded store in a temp dir, driven through the
//! router with `tower::ServiceExt::oneshot` (no TLS, no sockets).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use flotilla_apiserver::state::{ApiConfig, ApiState};
use futures::StreamExt;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use store::{EmbeddedConfig, EmbeddedStore, Store};
use tempfile::TempDir;
use tower::ServiceExt;

pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

pub struct Cluster {
    pub app: Router,
    pub state: Arc<ApiState>,
    pub store: Arc<dyn Store>,
    _dir: TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Cluster {
    pub async fn start() -> Self {
        Self::with_config(ApiConfig::default()).await
    }

    pub async fn with_config(config: ApiConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).expect("store"));
        let state = ApiState::with_config(store.clone(), config)
            .await
            .expect("api state");
        Self {
            app: flotilla_apiserver::handlers::router(state.clone()),
            state,
            store,
            _dir: dir,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        content_type: &str,
        accept: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut b = Request::builder().method(method).uri(uri);
        if body.is_some() {
            b = b.header("content-type", content_type);
        }
        if let Some(a) = accept {
            b = b.header("accept", a);
        }
        let req = b
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .expect("request");
        self.send(req).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, "", None, None).await
    }

    pub async fn get_as(&self, uri: &str, accept: &str) -> Reply {
        self.call(Method::GET, uri, "", Some(accept), None).await
    }

    pub async fn post(&self, uri: &str, body: &Value) -> Reply {
        self.call(
            Method::POST,
            uri,
            "application/json",
            None,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn put(&self, uri: &str, body: &Value) -> Reply {
        self.call(
            Method::PUT,
            uri,
            "application/json",
            None,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn patch(&self, uri: &str, content_type: &str, body: &str) -> Reply {
        self.call(
            Method::PATCH,
            uri,
            content_type,
            None,
            Some(body.as_bytes().to_vec()),
        )
        .await
    }

    pub async fn delete(&self, uri: &str, body: Option<&Value>) -> Reply {
        self.call(
            Method::DELETE,
            uri,
            "application/json",
            None,
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    /// Starts a watch; events are read with [`WatchReader::next`].
    pub async fn watch(&self, uri: &str, accept: Option<&str>) -> WatchReader {
        let mut b = Request::builder().method(Method::GET).uri(uri);
        if let Some(a) = accept {
            b = b.header("accept", a);
        }
        let resp = self
            .app
            .clone()
            .oneshot(b.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        WatchReader {
            status,
            stream: Box::pin(resp.into_body().into_data_stream()),
            buf: Vec::new(),
        }
    }

    pub async fn create_namespace(&self, name: &str) {
        let r = self
            .post(
                "/api/v1/namespaces",
                &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
}

type DataStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, axum::Error>> + Send>>;

pub struct WatchReader {
    pub status: StatusCode,
    stream: DataStream,
    buf: Vec<u8>,
}

impl WatchReader {
    /// The next event, or None when the stream ends or `within` passes first.
    pub async fn next_within(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).expect("event is JSON"));
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }

    /// The next event within 10 s; panics otherwise.
    pub async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("a watch event within 10s")
    }

    /// The next event that is not a BOOKMARK.
    pub async fn next_change(&mut self) -> Value {
        loop {
            let e = self.next().await;
            if e["type"] != "BOOKMARK" {
                return e;
            }
        }
    }
}

/// Polls `check` until it returns Some or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn configmap(name: &str, labels: Value) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"}
    })
}

pub fn pod(name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })
}
