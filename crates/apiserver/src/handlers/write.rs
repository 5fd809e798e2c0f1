//! POST (create), PUT (update, status, finalize) and PATCH (json, merge, strategic merge,
//! server-side apply).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Value};

use super::body::{self, DecodedBody};
use super::{render, with_warnings, Ctx, Format};
use crate::negotiate::BodyFormat;
use crate::patch::{self, ApplyOptions, PatchType};
use crate::registry::update::Preconditions;
use crate::registry::{meta, UpdateMode};
use crate::status::ApiError;
use api::ResourceInfo;

async fn read_object(ctx: &Ctx, body: Body) -> Result<DecodedBody, ApiError> {
    let validation = ctx.query.field_validation()?;
    let raw = body::read(body, ctx.state.config.max_body_bytes).await?;
    let (obj, format) = body::parse(ctx.header(http::header::CONTENT_TYPE), &raw)?;
    body::check_object(&ctx.info, obj, &raw, format, validation)
}

/// The namespace in a body must be the URL's (it is filled in when absent).
fn check_namespace(ctx: &Ctx, obj: &Value) -> Result<(), ApiError> {
    if let (Some(url_ns), Some(body_ns)) = (ctx.namespace(), meta::namespace(obj)) {
        if ctx.info.namespaced && url_ns != body_ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

pub async fn create(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let format = ctx.format()?;
    let opts = ctx.write_options()?;
    let decoded = read_object(&ctx, body).await?;
    check_namespace(&ctx, &decoded.object)?;
    let created = ctx
        .state
        .registry
        .create(&ctx.info, ctx.namespace(), decoded.object, &opts)
        .await?;
    Ok(with_warnings(
        render::object(&ctx.info, &created, format, StatusCode::CREATED),
        &decoded.warnings,
    ))
}

fn mode_of(ctx: &Ctx) -> UpdateMode {
    match ctx.path.subresource.as_deref() {
        Some("status") => UpdateMode::Status,
        _ => UpdateMode::Main,
    }
}

pub async fn update(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let format = ctx.format()?;
    let opts = ctx.write_options()?;
    let decoded = read_object(&ctx, body).await?;
    let mut obj = decoded.object;
    check_namespace(&ctx, &obj)?;
    match meta::name(&obj) {
        None => {
            meta::metadata_mut(&mut obj).insert("name".into(), json!(ctx.name()));
        }
        Some(n) if n != ctx.name() => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                ctx.name()
            )))
        }
        Some(_) => {}
    }
    let preconditions = Preconditions {
        uid: meta::uid(&obj)
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        resource_version: meta::resource_version(&obj).map(str::to_string),
    };
    let strategy = api::strategy::for_resource(&ctx.info);
    if preconditions.resource_version.is_none() && !strategy.allow_unconditional_update() {
        return Err(ApiError::invalid(
            ctx.info.group,
            ctx.info.kind,
            ctx.name(),
            &[api::FieldError::invalid(
                "metadata.resourceVersion",
                json!(""),
                "must be specified for an update",
            )],
        ));
    }
    let finalize = ctx.path.subresource.as_deref() == Some("finalize");
    let (result, created) = ctx
        .state
        .registry
        .update_object(
            ctx.object_ref(),
            mode_of(&ctx),
            &opts,
            &preconditions,
            strategy.allow_create_on_update() && ctx.path.subresource.is_none(),
            |old| match (finalize, old) {
                // finalize changes spec.finalizers and nothing else.
                (true, Some(old)) => {
                    let mut next = old.clone();
                    next["spec"]["finalizers"] = obj
                        .pointer("/spec/finalizers")
                        .cloned()
                        .unwrap_or_else(|| json!([]));
                    Ok(next)
                }
                _ => Ok(obj.clone()),
            },
        )
        .await?;
    Ok(upserted(
        &ctx.info,
        &result,
        format,
        created,
        &decoded.warnings,
    ))
}

pub async fn patch(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let format = ctx.format()?;
    let opts = ctx.write_options()?;
    let validation = ctx.query.field_validation()?;
    let content_type = ctx
        .header(http::header::CONTENT_TYPE)
        .unwrap_or_default()
        .to_string();
    let patch_type = PatchType::from_content_type(&content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
    let raw = body::read(body, ctx.state.config.max_body_bytes).await?;
    let force = ctx.query.flag("force")?;
    let applied = if patch_type == PatchType::Apply {
        if ctx.query.get("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(
                "PATCH /apply requests require a fieldManager: metav1.PatchOptions.FieldManager is required for apply requests",
            ));
        }
        let (mut obj, _) = body::parse(Some("application/yaml"), &raw)?;
        body::check_type_meta(&mut obj, &ctx.info.api_version(), ctx.info.kind)?;
        if meta::name(&obj).is_some_and(|n| n != ctx.name()) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                meta::name(&obj).unwrap_or_default(),
                ctx.name()
            )));
        }
        check_namespace(&ctx, &obj)?;
        Some(obj)
    } else {
        if force {
            return Err(ApiError::bad_request(
                "force may only be set for apply patches",
            ));
        }
        None
    };
    let info = ctx.info.clone();
    let target = ctx.object_ref().target();
    let url_name = ctx.name().to_string();
    let mut warnings: Vec<String> = Vec::new();
    let manager = opts.field_manager.clone();
    let (result, created) = ctx
        .state
        .registry
        .update_object(
            ctx.object_ref(),
            mode_of(&ctx),
            &opts,
            &Preconditions::default(),
            applied.is_some(),
            |old| {
                let mut patched = match (&applied, old) {
                    (Some(a), live) => patch::server_side_apply(
                        live,
                        a,
                        &ApplyOptions {
                            field_manager: &manager,
                            force,
                        },
                        &info,
                    ),
                    (None, Some(old)) => patch::apply_patch(patch_type, old, &raw, &info),
                    (None, None) => return Err(ApiError::not_found(target)),
                }
                .map_err(|e| e.into_api_error(target))?;
                body::check_type_meta(&mut patched, &info.api_version(), info.kind)?;
                if meta::name(&patched).is_none() {
                    meta::metadata_mut(&mut patched).insert("name".into(), json!(url_name));
                }
                let checked =
                    body::check_object(&info, patched, b"", BodyFormat::Yaml, validation)?;
                warnings = checked.warnings;
                Ok(checked.object)
            },
        )
        .await?;
    Ok(upserted(&ctx.info, &result, format, created, &warnings))
}

/// The answer to a write that may have created its object: 201 when it did, 200 otherwise.
fn upserted(
    info: &ResourceInfo,
    obj: &Value,
    format: Format,
    created: bool,
    warnings: &[String],
) -> Response {
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    with_warnings(render::object(info, obj, format, code), warnings)
}
