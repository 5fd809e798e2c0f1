//! Discovery: `/api`, `/apis` (legacy or aggregated, by Accept), `/apis/<group>` and the
//! per-group-version resource lists.

use api::discovery;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::Value;

use super::path::ApiPath;
use crate::negotiate::{negotiate_discovery, DiscoveryOutput};
use crate::state::ApiState;
use crate::status::ApiError;

fn respond(value: &Value, content_type: &str) -> Response {
    let mut resp = (
        StatusCode::OK,
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    // Aggregated discovery varies by Accept; caches must key on it.
    resp.headers_mut()
        .insert(http::header::VARY, HeaderValue::from_static("Accept"));
    resp
}

pub fn serve(
    state: &ApiState,
    path: ApiPath,
    accept: Option<&str>,
    uri_path: &str,
) -> Result<Response, ApiError> {
    let cat = &state.catalogue;
    let legacy = DiscoveryOutput::Legacy.content_type();
    match path {
        ApiPath::CoreVersions | ApiPath::Groups => {
            let core = path == ApiPath::CoreVersions;
            match negotiate_discovery(accept) {
                DiscoveryOutput::Aggregated(f) => {
                    let out = DiscoveryOutput::Aggregated(f);
                    let mut doc = discovery::aggregated(cat, core, f);
                    if !core {
                        crate::metrics::discovery::add_to_aggregated(&mut doc);
                    }
                    Ok(respond(&doc, out.content_type()))
                }
                DiscoveryOutput::Legacy if core => {
                    // The address clients should use is theirs to know; Kubernetes
                    // answers the address it was reached at.
                    Ok(respond(&discovery::api_versions(""), legacy))
                }
                DiscoveryOutput::Legacy => {
                    let mut doc = discovery::api_group_list(cat);
                    crate::metrics::discovery::add_to_group_list(&mut doc);
                    Ok(respond(&doc, legacy))
                }
            }
        }
        ApiPath::Group(g) => discovery::api_group(cat, &g)
            .map(|v| respond(&v, legacy))
            .ok_or_else(|| ApiError::path_not_found(uri_path)),
        ApiPath::GroupVersion { group, version } => {
            discovery::api_resource_list(cat, &group, &version)
                .map(|v| respond(&v, legacy))
                .ok_or_else(|| ApiError::path_not_found(uri_path))
        }
        ApiPath::Resource(_) => Err(ApiError::path_not_found(uri_path)),
    }
}
