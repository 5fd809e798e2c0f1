//! DELETE of one object and of a collection, with DeleteOptions from the body or query.

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Value};

use super::{body, render, status_response, Ctx};
use crate::registry::update::Preconditions;
use crate::registry::{meta, DeleteOptions, DeleteOutcome, Propagation};
use crate::status::ApiError;

/// Kinds whose immediate deletion answers the deleted object rather than a Status, as
/// their kube-apiserver registries do (`ReturnDeletedObject`).
fn returns_deleted_object(info: &api::ResourceInfo) -> bool {
    info.group.is_empty()
        && matches!(
            info.plural,
            "pods" | "services" | "persistentvolumes" | "persistentvolumeclaims" | "namespaces"
        )
}

async fn options(ctx: &Ctx, body: Body) -> Result<DeleteOptions, ApiError> {
    let raw = body::read(body, ctx.state.config.max_body_bytes).await?;
    let from_body: Value = if raw.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        body::parse(ctx.header(http::header::CONTENT_TYPE), &raw)?.0
    };
    let q = &ctx.query;
    let grace = match from_body.get("gracePeriodSeconds") {
        Some(v) if !v.is_null() => Some(
            v.as_i64()
                .ok_or_else(|| ApiError::bad_request("gracePeriodSeconds must be an integer"))?,
        ),
        _ => q
            .get("gracePeriodSeconds")
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid gracePeriodSeconds: {s:?}"))
                })
            })
            .transpose()?,
    };
    let propagation = match from_body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| q.get("propagationPolicy"))
        .filter(|s| !s.is_empty())
    {
        Some(p) => Some(Propagation::parse(p)?),
        None => match from_body
            .get("orphanDependents")
            .and_then(Value::as_bool)
            .or_else(|| q.get("orphanDependents").map(|s| s == "true"))
        {
            Some(true) => Some(Propagation::Orphan),
            Some(false) => Some(Propagation::Background),
            None => None,
        },
    };
    let dry_run = match from_body.get("dryRun").and_then(Value::as_array) {
        Some(list) if list.iter().any(|d| d == "All") => true,
        Some(list) if !list.is_empty() => {
            return Err(ApiError::bad_request(
                "Invalid dry run value; supported values: \"All\"",
            ))
        }
        _ => q.dry_run()?,
    };
    let pre = from_body.get("preconditions");
    let text = |k: &str| {
        pre.and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Ok(DeleteOptions {
        grace_period_seconds: grace,
        propagation,
        preconditions: Preconditions {
            uid: text("uid"),
            resource_version: text("resourceVersion"),
        },
        dry_run,
    })
}

pub async fn delete(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let format = ctx.format()?;
    let opts = options(&ctx, body).await?;
    let outcome = ctx.state.registry.delete(ctx.object_ref(), &opts).await?;
    Ok(match outcome {
        DeleteOutcome::Pending(obj) => render::object(&ctx.info, &obj, format, StatusCode::OK),
        DeleteOutcome::Deleted(obj) if returns_deleted_object(&ctx.info) => {
            render::object(&ctx.info, &obj, format, StatusCode::OK)
        }
        DeleteOutcome::Deleted(obj) => {
            let mut details = json!({
                "name": ctx.name(),
                "kind": ctx.info.plural,
                "uid": meta::uid(&obj).unwrap_or_default(),
            });
            if !ctx.info.group.is_empty() {
                details["group"] = json!(ctx.info.group);
            }
            status_response(json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }))
        }
    })
}

pub async fn delete_collection(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let opts = options(&ctx, body).await?;
    let params = ctx
        .query
        .list_params(api::strategy::for_resource(&ctx.info))?;
    let deleted = ctx
        .state
        .registry
        .delete_collection(&ctx.info, ctx.namespace(), &params, &opts)
        .await?;
    let rv = ctx
        .state
        .registry
        .store
        .current_revision()
        .await
        .map_err(|e| ApiError::service_unavailable(e.to_string()))?;
    Ok(render::json_value(
        &json!({
            "kind": ctx.info.list_kind(),
            "apiVersion": ctx.info.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": deleted,
        }),
        StatusCode::OK,
    ))
}
