//! HTTP routes of the Kubernetes API: discovery and the resource paths under /api and
//! /apis. One fallback route parses the path ([`path`]), finds the resource in the
//! catalogue, checks the verb against what the resource supports, and hands the request
//! to the verb's handler.

// `ApiError` is the crate-wide error (a Status); boxing it is status.rs's call, not each caller's.
#![allow(clippy::result_large_err)]

mod body;
mod delete;
mod discovery;
mod path;
mod query;
mod read;
mod render;
mod reviews;
mod subresource;
mod watch;
mod write;

use std::sync::Arc;

use api::ResourceInfo;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{HeaderMap, HeaderValue, Method};

use crate::negotiate;
use crate::registry::{ObjectRef, WriteOptions};
use crate::state::ApiState;
use crate::status::ApiError;
use path::{ApiPath, ResourcePath};
use query::Query;
use render::{Format, IncludeObject};

pub fn router(state: Arc<ApiState>) -> Router {
    // The subresources a node's agent serves (log, exec, attach, portforward, nodes/proxy)
    // have their own routes, which take precedence over the generic dispatch.
    Router::new()
        .fallback(dispatch)
        .with_state(state.clone())
        .merge(crate::metrics::router(state.clone()))
        .merge(crate::proxy::router(state))
}

async fn dispatch(State(state): State<Arc<ApiState>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match route(state, req).await {
        Ok(resp) => resp,
        Err(e) => {
            if e.code >= 500 {
                tracing::warn!(%method, %path, code = e.code, message = %e.message, "request failed");
            } else {
                tracing::debug!(%method, %path, code = e.code, message = %e.message, "request refused");
            }
            e.into_response()
        }
    }
}

async fn route(state: Arc<ApiState>, req: Request) -> Result<Response, ApiError> {
    let uri_path = req.uri().path().to_string();
    let parsed = path::parse(&uri_path).ok_or_else(|| ApiError::path_not_found(&uri_path))?;
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let rp = match parsed {
        ApiPath::Resource(rp) => rp,
        other => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({uri_path})"
                )));
            }
            return discovery::serve(&state, other, accept.as_deref(), &uri_path);
        }
    };
    let info = resolve(&state, &rp, &uri_path)?;
    let (parts, body) = req.into_parts();
    let ctx = Ctx {
        query: Query::parse(parts.uri.query()),
        user: parts.extensions.get::<crate::authn::UserInfo>().cloned(),
        state,
        info,
        path: rp,
        headers: parts.headers,
        method: parts.method,
    };
    ctx.serve(body).await
}

/// Finds the catalogue entry for a resource path, checking scope and subresource.
fn resolve(state: &ApiState, rp: &ResourcePath, uri_path: &str) -> Result<ResourceInfo, ApiError> {
    let info = state
        .catalogue
        .lookup(&rp.group, &rp.version, &rp.resource)
        .cloned()
        .ok_or_else(|| ApiError::path_not_found(uri_path))?;
    if rp.namespace.is_some() && !info.namespaced {
        return Err(ApiError::path_not_found(uri_path));
    }
    if let Some(sub) = &rp.subresource {
        if info.subresource(sub).is_none() {
            return Err(ApiError::path_not_found(uri_path));
        }
    }
    Ok(info)
}

/// One resource request, parsed.
pub(crate) struct Ctx {
    pub state: Arc<ApiState>,
    pub info: ResourceInfo,
    pub path: ResourcePath,
    pub query: Query,
    pub headers: HeaderMap,
    pub method: Method,
    /// Who is asking (set by the authentication layer; None in-process).
    pub user: Option<crate::authn::UserInfo>,
}

impl Ctx {
    pub fn namespace(&self) -> Option<&str> {
        self.path.namespace.as_deref()
    }

    pub fn name(&self) -> &str {
        self.path.name.as_deref().unwrap_or_default()
    }

    pub fn object_ref(&self) -> ObjectRef<'_> {
        ObjectRef::new(&self.info, self.namespace(), self.name())
    }

    pub fn header(&self, name: http::header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn format(&self) -> Result<Format, ApiError> {
        Ok(Format {
            output: negotiate::negotiate_output(self.header(http::header::ACCEPT))?,
            include: IncludeObject::parse(self.query.get("includeObject"))?,
        })
    }

    pub fn write_options(&self) -> Result<WriteOptions, ApiError> {
        Ok(WriteOptions {
            dry_run: self.query.dry_run()?,
            field_manager: self
                .query
                .field_manager(self.header(http::header::USER_AGENT))?,
        })
    }

    async fn serve(self, body: axum::body::Body) -> Result<Response, ApiError> {
        let sub = self.path.subresource.clone();
        let has_name = self.path.name.is_some();
        // Namespaced objects are reached through their namespace; only lists, watches
        // and collection deletes span all namespaces.
        if self.info.namespaced
            && self.path.namespace.is_none()
            && (has_name || self.method == Method::POST)
        {
            return Err(ApiError::path_not_found(&format!(
                "{} without a namespace",
                self.info.plural
            )));
        }
        let verb = self.verb()?;
        self.check_verb(verb, sub.as_deref())?;
        match (verb, sub.as_deref()) {
            ("get", None | Some("status")) => read::get(self).await,
            ("list", None) => read::list(self).await,
            ("watch", None) => watch::serve(self).await,
            ("create", None) if reviews::is_virtual(&self.info) => {
                reviews::create(self, body).await
            }
            ("create", None) => write::create(self, body).await,
            ("create", Some("binding")) => subresource::bind(self, body).await,
            ("create", Some("eviction")) => subresource::evict(self, body).await,
            ("get", Some("scale")) => subresource::get_scale(self).await,
            ("update", Some("scale")) => subresource::update_scale(self, body).await,
            ("patch", Some("scale")) => subresource::patch_scale(self, body).await,
            ("update", None | Some("status") | Some("finalize")) => write::update(self, body).await,
            ("patch", None | Some("status")) => write::patch(self, body).await,
            ("delete", None) => delete::delete(self, body).await,
            ("deletecollection", None) => delete::delete_collection(self, body).await,
            _ => Err(ApiError::path_not_found(&format!(
                "{} {} is not served",
                self.method, self.info.plural
            ))),
        }
    }

    /// The Kubernetes verb of this request.
    fn verb(&self) -> Result<&'static str, ApiError> {
        let named = self.path.name.is_some();
        let watching = self.path.watch || self.query.watch()?;
        Ok(match self.method {
            Method::GET | Method::HEAD if watching => "watch",
            Method::GET | Method::HEAD if named => "get",
            Method::GET | Method::HEAD => "list",
            Method::POST => "create",
            Method::PUT if named => "update",
            Method::PATCH if named => "patch",
            Method::DELETE if named => "delete",
            Method::DELETE => "deletecollection",
            _ => return Err(self.not_allowed()),
        })
    }

    fn check_verb(&self, verb: &str, sub: Option<&str>) -> Result<(), ApiError> {
        let verbs = match sub {
            None => self.info.verbs,
            Some(s) => self
                .info
                .subresource(s)
                .map(|s| s.verbs)
                .unwrap_or_default(),
        };
        // Watching one object by name is a watch of the collection, narrowed.
        let allowed = verbs.contains(&verb)
            || (sub == Some("finalize") && verb == "update")
            || (sub.is_some() && verb == "create" && verbs.contains(&"create"));
        if allowed {
            Ok(())
        } else {
            Err(self.not_allowed())
        }
    }

    fn not_allowed(&self) -> ApiError {
        ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            self.method, self.info.plural
        ))
    }
}

/// Adds `Warning` headers to a response.
pub(crate) fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&body::warning_header(w)) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    resp
}

/// The response of a verb that answers a Status.
pub(crate) fn status_response(value: serde_json::Value) -> Response {
    render::json_value(&value, http::StatusCode::OK).into_response()
}
