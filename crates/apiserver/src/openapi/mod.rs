//! OpenAPI documents generated from the k8s-openapi types: /openapi/v3 and /openapi/v2.
//!
//! `GET /openapi/v3` lists one document per served group-version, each named by the hash
//! of its content; `GET /openapi/v3/apis/apps/v1?hash=…` answers that document. kubectl
//! `explain` reads the schemas, and `apply` reads the patch operations (their
//! group/version/kind, `fieldValidation` parameter and patch content types) to decide on
//! server-side validation and strategic merge patches.

mod cache;
mod document;
pub mod extensions;
mod gnostic;
mod kinds;
mod operation;
mod params;
mod paths;
mod schemas;

use std::sync::Arc;

use api::Catalogue;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;

pub use cache::{Documents, Rendered};

use crate::state::ApiState;
use crate::status::ApiError;

const JSON: &str = "application/json";
/// What kubectl 1.27/1.28 ask /openapi/v2 for (the first is the deprecated spelling).
const V2_PROTOBUF: &[&str] = &[
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
];
const V2_PROTOBUF_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

pub fn router(state: Arc<ApiState>) -> Router {
    router_for(Arc::clone(&state.catalogue))
}

/// The OpenAPI routes for a catalogue; they need nothing else of the server.
pub fn router_for(catalogue: Arc<Catalogue>) -> Router {
    let documents = Arc::new(Documents::new(catalogue));
    Router::new()
        .route("/openapi/v3", get(v3_index))
        .route("/openapi/v3/", get(v3_index))
        .route("/openapi/v3/{*path}", get(v3_document))
        .route("/openapi/v2", get(v2_document))
        .with_state(documents)
}

/// Builds a document off the async runtime: the first build of a large group-version
/// takes tens of milliseconds of CPU.
async fn build<T, F>(documents: &Arc<Documents>, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&Documents) -> T + Send + 'static,
    T: Send + 'static,
{
    let documents = Arc::clone(documents);
    tokio::task::spawn_blocking(move || f(&documents))
        .await
        .map_err(|e| ApiError::internal(format!("building the OpenAPI document failed: {e}")))
}

async fn v3_index(
    State(documents): State<Arc<Documents>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let doc = build(&documents, |d| d.v3_index()).await?;
    Ok(respond(&doc, &headers, JSON, CacheControl::Revalidate))
}

#[derive(Debug, Deserialize)]
struct HashQuery {
    hash: Option<String>,
}

async fn v3_document(
    State(documents): State<Arc<Documents>>,
    Path(path): Path<String>,
    Query(query): Query<HashQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !accepts(&headers, &[JSON]) {
        return Err(ApiError::not_acceptable(
            "only application/json is supported for OpenAPI v3 documents",
        ));
    }
    let lookup = path.clone();
    let Some(doc) = build(&documents, move |d| d.v3(&lookup)).await? else {
        return Err(ApiError::path_not_found(&format!("/openapi/v3/{path}")));
    };
    match query.hash {
        // A stale hash (the document changed) is sent to the current one, as Kubernetes
        // does, so that caches keyed by URL stay right.
        Some(hash) if hash != doc.hash => {
            let location = format!("/openapi/v3/{}?hash={}", path.trim_matches('/'), doc.hash);
            let mut resp = StatusCode::MOVED_PERMANENTLY.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        Some(_) => Ok(respond(&doc, &headers, JSON, CacheControl::Immutable)),
        None => Ok(respond(&doc, &headers, JSON, CacheControl::Revalidate)),
    }
}

async fn v2_document(
    State(documents): State<Arc<Documents>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match preferred(&headers, &[JSON, V2_PROTOBUF[0], V2_PROTOBUF[1]]) {
        Some(JSON) => {
            let doc = build(&documents, |d| d.v2()).await?;
            Ok(respond(&doc, &headers, JSON, CacheControl::Revalidate))
        }
        Some(_) => {
            let doc = build(&documents, |d| d.v2_protobuf()).await?;
            Ok(respond(
                &doc,
                &headers,
                V2_PROTOBUF_CONTENT_TYPE,
                CacheControl::Revalidate,
            ))
        }
        None => Err(ApiError::not_acceptable(
            "the OpenAPI v2 document is served as application/json or application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheControl {
    /// Addressed by content hash: never changes, cache for a year.
    Immutable,
    /// Addressed by name: revalidate with the ETag every time.
    Revalidate,
}

/// Answers a document, or 304 when the client already holds this version.
fn respond(
    doc: &Rendered,
    headers: &HeaderMap,
    content_type: &'static str,
    cache: CacheControl,
) -> Response {
    let etag = doc.etag();
    let mut out = HeaderMap::new();
    out.insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    match cache {
        CacheControl::Immutable => {
            out.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, immutable"),
            );
            if let Some(v) = http_date(jiff::Timestamp::now(), 365) {
                out.insert(header::EXPIRES, v);
            }
        }
        CacheControl::Revalidate => {
            out.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, private"),
            );
        }
    }
    if let Some(v) = http_date(doc.last_modified, 0) {
        out.insert(header::LAST_MODIFIED, v);
    }
    if if_none_match(headers, &doc.hash) {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    (StatusCode::OK, out, doc.body.clone()).into_response()
}

/// An HTTP date `days` after `at`.
fn http_date(at: jiff::Timestamp, days: i64) -> Option<HeaderValue> {
    let when = at
        .checked_add(jiff::SignedDuration::from_hours(24 * days))
        .ok()?;
    let text = when.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string();
    HeaderValue::from_str(&text).ok()
}

/// Whether `If-None-Match` names this hash (strong or weak) or is `*`.
fn if_none_match(headers: &HeaderMap, hash: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"') == hash)
}

/// Whether the Accept header admits one of `offered` (no header accepts anything).
fn accepts(headers: &HeaderMap, offered: &[&'static str]) -> bool {
    preferred(headers, offered).is_some()
}

/// The offered media type the client prefers: clauses are taken by descending quality,
/// then in order; the first clause matching an offer wins, as Kubernetes negotiates.
fn preferred(headers: &HeaderMap, offered: &[&'static str]) -> Option<&'static str> {
    if !headers.contains_key(header::ACCEPT) {
        return offered.first().copied();
    }
    let mut clauses: Vec<(f32, String)> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|clause| {
            let mut parts = clause.split(';').map(str::trim);
            let media = parts.next()?.to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (!media.is_empty() && q > 0.0).then_some((q, media))
        })
        .collect();
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0));
    clauses.iter().find_map(|(_, media)| {
        offered.iter().copied().find(|o| {
            media == "*/*"
                || o == media
                || media
                    .strip_suffix("/*")
                    .is_some_and(|ty| o.split('/').next() == Some(ty))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts(&HeaderMap::new(), &[JSON]));
        assert!(accepts(&with(header::ACCEPT, "application/json"), &[JSON]));
        assert!(accepts(&with(header::ACCEPT, "*/*"), &[JSON]));
        assert!(accepts(
            &with(header::ACCEPT, "application/*;q=0.5"),
            &[JSON]
        ));
        assert!(!accepts(
            &with(
                header::ACCEPT,
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
            ),
            &[JSON]
        ));
        assert!(!accepts(
            &with(header::ACCEPT, "application/json;q=0"),
            &[JSON]
        ));
    }

    #[test]
    fn if_none_match_forms() {
        assert!(if_none_match(&with(header::IF_NONE_MATCH, "\"AB\""), "AB"));
        assert!(if_none_match(
            &with(header::IF_NONE_MATCH, "W/\"AB\""),
            "AB"
        ));
        assert!(if_none_match(
            &with(header::IF_NONE_MATCH, "\"X\", \"AB\""),
            "AB"
        ));
        assert!(if_none_match(&with(header::IF_NONE_MATCH, "*"), "AB"));
        assert!(!if_none_match(&with(header::IF_NONE_MATCH, "\"X\""), "AB"));
        assert!(!if_none_match(&HeaderMap::new(), "AB"));
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        let t: jiff::Timestamp = "2026-11-28T18:00:00Z".parse().expect("timestamp");
        let v = http_date(t, 365).expect("date");
        assert_eq!(v, "Sun, 28 Nov 2027 18:00:00 GMT");
    }
}
