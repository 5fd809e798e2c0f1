//! Create-only virtual resources: answered, never stored. Access reviews allow every
//! authenticated user until RBAC is served; `bindings` assigns a pod to a node.

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Value};

use super::{body, render, subresource, Ctx};
use crate::authn::UserInfo;
use crate::status::ApiError;

pub fn is_virtual(info: &api::ResourceInfo) -> bool {
    matches!(
        (info.group, info.plural),
        ("", "bindings")
            | ("authorization.k8s.io", "selfsubjectaccessreviews")
            | ("authorization.k8s.io", "selfsubjectrulesreviews")
            | ("authorization.k8s.io", "subjectaccessreviews")
            | ("authorization.k8s.io", "localsubjectaccessreviews")
            | ("authentication.k8s.io", "selfsubjectreviews")
    )
}

pub async fn create(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let raw = body::read(body, ctx.state.config.max_body_bytes).await?;
    let (mut obj, _) = body::parse(ctx.header(http::header::CONTENT_TYPE), &raw)?;
    body::check_type_meta(&mut obj, &ctx.info.api_version(), ctx.info.kind)?;
    if ctx.info.plural == "bindings" {
        let ns = ctx.namespace().unwrap_or_default().to_string();
        let pod = crate::registry::meta::name(&obj)
            .ok_or_else(|| {
                ApiError::invalid(
                    "",
                    "Binding",
                    "",
                    &[api::FieldError::required("metadata.name", "")],
                )
            })?
            .to_string();
        return subresource::bind_pod(&ctx, &ns, &pod, &obj).await;
    }
    let user = ctx_user(&ctx);
    let status = match ctx.info.plural {
        "selfsubjectrulesreviews" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        "selfsubjectreviews" => json!({
            "userInfo": {"username": user.name, "groups": user.groups},
        }),
        _ => {
            json!({"allowed": true, "reason": "RBAC is not enforced yet: every authenticated user is allowed"})
        }
    };
    obj["status"] = status;
    let meta = crate::registry::meta::metadata_mut(&mut obj);
    meta.insert("creationTimestamp".into(), Value::Null);
    Ok(render::json_value(&obj, StatusCode::CREATED))
}

fn ctx_user(ctx: &Ctx) -> UserInfo {
    ctx.user.clone().unwrap_or(UserInfo {
        name: "system:anonymous".into(),
        groups: vec!["system:unauthenticated".into()],
    })
}
