//! Subresources with their own object: `scale` (autoscaling/v1 Scale over a workload's
//! spec.replicas), `binding` (assign a pod to a node) and `eviction` (delete a pod).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Value};

use super::{body, render, Ctx};
use crate::patch::{self, PatchType};
use crate::registry::update::{Preconditions, Transition};
use crate::registry::{meta, DeleteOptions, ObjectRef, Propagation, UpdateMode};
use crate::status::ApiError;

/// A label selector object as the string form Scale.status.selector carries.
fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return String::new() };
    let mut parts = Vec::new();
    if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => parts.push(format!("{key} in ({})", values.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

fn scale_of(obj: &Value) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut metadata = json!({});
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(k) {
            metadata[k] = v.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(obj.pointer("/spec/selector")),
        },
    })
}

async fn current(ctx: &Ctx) -> Result<Value, ApiError> {
    let r = ctx.object_ref();
    let (kv, _) = ctx
        .state
        .registry
        .store
        .get(&r.key(), None)
        .await
        .map_err(|e| ApiError::from_store(e, r.target()))?;
    meta::decode_kv(&kv.ok_or_else(|| ApiError::not_found(r.target()))?)
}

pub async fn get_scale(ctx: Ctx) -> Result<Response, ApiError> {
    let obj = current(&ctx).await?;
    Ok(render::json_value(&scale_of(&obj), StatusCode::OK))
}

fn replicas_of(scale: &Value, ctx: &Ctx) -> Result<i64, ApiError> {
    match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::invalid(
                "autoscaling",
                "Scale",
                ctx.name(),
                &[api::FieldError::invalid(
                    "spec.replicas",
                    v.clone(),
                    "must be greater than or equal to 0",
                )],
            )
        }),
    }
}

async fn set_replicas(
    ctx: &Ctx,
    preconditions: Preconditions,
    mut replicas: impl FnMut(&Value) -> Result<i64, ApiError>,
) -> Result<Response, ApiError> {
    let opts = ctx.write_options()?;
    let (obj, _) = ctx
        .state
        .registry
        .update_object(
            ctx.object_ref(),
            UpdateMode::Main,
            &opts,
            &preconditions,
            false,
            |old| {
                let old = old.cloned().unwrap_or_default();
                let n = replicas(&old)?;
                let mut next = old;
                next["spec"]["replicas"] = json!(n);
                Ok(next)
            },
        )
        .await?;
    Ok(render::json_value(&scale_of(&obj), StatusCode::OK))
}

pub async fn update_scale(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let raw = body::read(body, ctx.state.config.max_body_bytes).await?;
    let (mut scale, _) = body::parse(ctx.header(http::header::CONTENT_TYPE), &raw)?;
    body::check_type_meta(&mut scale, "autoscaling/v1", "Scale")?;
    let n = replicas_of(&scale, &ctx)?;
    let pre = Preconditions {
        uid: None,
        resource_version: meta::resource_version(&scale).map(str::to_string),
    };
    set_replicas(&ctx, pre, |_| Ok(n)).await
}

pub async fn patch_scale(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let raw = body::read(body, ctx.state.config.max_body_bytes).await?;
    let ct = ctx
        .header(http::header::CONTENT_TYPE)
        .unwrap_or_default()
        .to_string();
    let pt =
        PatchType::from_content_type(&ct).ok_or_else(|| ApiError::unsupported_media_type(&ct))?;
    let info = ctx.info.clone();
    let target_name = ctx.name().to_string();
    set_replicas(&ctx, Preconditions::default(), |old| {
        let scale = scale_of(old);
        let target = crate::status::Target {
            group: info.group,
            resource: info.plural,
            name: &target_name,
        };
        let patched = match pt {
            // Scale has no list fields: strategic merge and apply reduce to a merge.
            PatchType::StrategicMerge | PatchType::Apply => {
                patch::apply_patch(PatchType::Merge, &scale, &raw, &info)
            }
            other => patch::apply_patch(other, &scale, &raw, &info),
        }
        .map_err(|e| e.into_api_error(target))?;
        match patched.pointer("/spec/replicas") {
            Some(v) => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    &target_name,
                    &[api::FieldError::invalid(
                        "spec.replicas",
                        v.clone(),
                        "must be greater than or equal to 0",
                    )],
                )
            }),
            None => Ok(0),
        }
    })
    .await
}

fn success(code: StatusCode) -> Response {
    render::json_value(
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code.as_u16()}),
        code,
    )
}

/// Assigns pod `pod` in `ns` to `node`: 409 when it already has a node.
pub async fn bind_pod(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    binding: &Value,
) -> Result<Response, ApiError> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "",
                "Binding",
                pod,
                &[api::FieldError::required("target.name", "")],
            )
        })?
        .to_string();
    let pods = ctx
        .state
        .registry
        .info("", "Pod")
        .cloned()
        .ok_or_else(|| ApiError::internal("the catalogue has no pods"))?;
    let r = ObjectRef::new(&pods, Some(ns), pod);
    let target = r.target();
    let dry_run = ctx.query.dry_run()?;
    ctx.state
        .registry
        .guaranteed_update(r, &Preconditions::default(), dry_run, |mut obj| {
            if meta::deletion_timestamp(&obj).is_some() {
                return Err(ApiError::conflict_with(
                    target,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            if let Some(existing) = meta::str_at(&obj, "/spec/nodeName").filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict_with(
                    target,
                    &format!("pod {pod} is already assigned to node \"{existing}\""),
                ));
            }
            obj["spec"]["nodeName"] = json!(node);
            if let Some(ann) = binding
                .pointer("/metadata/annotations")
                .and_then(Value::as_object)
            {
                let m = meta::metadata_mut(&mut obj);
                let a = m.entry("annotations").or_insert_with(|| json!({}));
                if let Some(a) = a.as_object_mut() {
                    for (k, v) in ann {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
            Ok(Transition::Write(obj))
        })
        .await?;
    Ok(success(StatusCode::CREATED))
}

pub async fn bind(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let raw = body::read(body, ctx.state.config.max_body_bytes).await?;
    let (mut binding, _) = body::parse(ctx.header(http::header::CONTENT_TYPE), &raw)?;
    body::check_type_meta(&mut binding, "v1", "Binding")?;
    let ns = ctx.namespace().unwrap_or_default().to_string();
    let pod = ctx.name().to_string();
    bind_pod(&ctx, &ns, &pod, &binding).await
}

pub async fn evict(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    let raw = body::read(body, ctx.state.config.max_body_bytes).await?;
    let (mut eviction, _) = body::parse(ctx.header(http::header::CONTENT_TYPE), &raw)?;
    let av = eviction
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("policy/v1")
        .to_string();
    if av != "policy/v1" && av != "policy/v1beta1" {
        return Err(ApiError::bad_request(format!(
            "unsupported Eviction apiVersion {av:?}"
        )));
    }
    body::check_type_meta(&mut eviction, &av, "Eviction")?;
    let d = eviction.get("deleteOptions");
    let opts = DeleteOptions {
        grace_period_seconds: d
            .and_then(|d| d.get("gracePeriodSeconds"))
            .and_then(Value::as_i64),
        propagation: d
            .and_then(|d| d.get("propagationPolicy"))
            .and_then(Value::as_str)
            .map(Propagation::parse)
            .transpose()?,
        preconditions: Preconditions {
            uid: d
                .and_then(|d| d.pointer("/preconditions/uid"))
                .and_then(Value::as_str)
                .map(str::to_string),
            resource_version: d
                .and_then(|d| d.pointer("/preconditions/resourceVersion"))
                .and_then(Value::as_str)
                .map(str::to_string),
        },
        dry_run: ctx.query.dry_run()?,
    };
    ctx.state.registry.delete(ctx.object_ref(), &opts).await?;
    Ok(success(StatusCode::CREATED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_carries_the_selector_as_a_string() {
        let d = json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "5"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 2}
        });
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web,tier in (a,b)");
        assert_eq!(s["metadata"]["resourceVersion"], "5");
    }
}
