//! GET of one object and of a collection.

use axum::response::Response;
use http::StatusCode;

use super::{render, Ctx};
use crate::registry::meta;
use crate::status::ApiError;

pub async fn get(ctx: Ctx) -> Result<Response, ApiError> {
    let format = ctx.format()?;
    let r = ctx.object_ref();
    let (kv, _) = ctx
        .state
        .registry
        .store
        .get(&r.key(), None)
        .await
        .map_err(|e| ApiError::from_store(e, r.target()))?;
    let kv = kv.ok_or_else(|| ApiError::not_found(r.target()))?;
    let obj = meta::decode_kv(&kv)?;
    Ok(render::object(&ctx.info, &obj, format, StatusCode::OK))
}

pub async fn list(ctx: Ctx) -> Result<Response, ApiError> {
    let format = ctx.format()?;
    let params = ctx
        .query
        .list_params(api::strategy::for_resource(&ctx.info))?;
    let list = ctx
        .state
        .registry
        .list(&ctx.info, ctx.namespace(), &params)
        .await?;
    Ok(render::list(&ctx.info, &list, format))
}
