//! Subresources with their own object: `scale` (autoscaling/v1 Scale over a workload's
//! spec.replicas), `binding` (assign a pod to a node) and `eviction` (delete a pod).

use api::ResourceInfo;
use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Value};

use super::{body, render, Ctx};
use crate::patch::{self, PatchType};
use crate::registry::update::{Preconditions, Transition};
use crate::registry::{meta, DeleteOptions, ObjectRef, Propagation, Registry, UpdateMode};
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

/// Why a pod cannot take a binding (each a 409 Conflict, as the upstream registry answers).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unbindable {
    Deleting,
    Assigned(String),
    Gated,
}

impl Unbindable {
    fn message(&self, pod: &str) -> String {
        match self {
            Unbindable::Deleting => {
                format!("pod {pod} is being deleted, cannot be assigned to a host")
            }
            Unbindable::Assigned(node) => {
                format!("pod {pod} is already assigned to node \"{node}\"")
            }
            Unbindable::Gated => format!("pod {pod} has non-empty .spec.schedulingGates"),
        }
    }
}

/// The binding applied to the stored pod, as kube-apiserver's BindingREST does it:
/// spec.nodeName, the binding's annotations, and condition PodScheduled=True (its
/// lastTransitionTime `now` unless it was True already; reason and message cleared).
fn assign(
    obj: &mut Value,
    node: &str,
    annotations: Option<&Value>,
    now: &str,
) -> Result<(), Unbindable> {
    if meta::deletion_timestamp(obj).is_some() {
        return Err(Unbindable::Deleting);
    }
    if let Some(existing) = meta::str_at(obj, "/spec/nodeName").filter(|n| !n.is_empty()) {
        return Err(Unbindable::Assigned(existing.to_string()));
    }
    if obj
        .pointer("/spec/schedulingGates")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty())
    {
        return Err(Unbindable::Gated);
    }
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    obj["spec"]["nodeName"] = json!(node);
    if let Some(ann) = annotations.and_then(Value::as_object) {
        let m = meta::metadata_mut(obj);
        let a = m.entry("annotations").or_insert_with(|| json!({}));
        if !a.is_object() {
            *a = json!({});
        }
        if let Some(a) = a.as_object_mut() {
            for (k, v) in ann {
                a.insert(k.clone(), v.clone());
            }
        }
    }
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let status = &mut obj["status"];
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    if let Some(conditions) = status["conditions"].as_array_mut() {
        let existing = conditions
            .iter()
            .position(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"));
        let since = existing
            .map(|i| &conditions[i])
            .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now));
        let condition = json!({
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": null,
            "lastTransitionTime": since,
        });
        match existing {
            Some(i) => conditions[i] = condition,
            None => conditions.push(condition),
        }
    }
    Ok(())
}

/// Assigns pod `pod` in `ns` to the binding's target node: 409 when it already has a node,
/// is being deleted or is gated, or when the binding's uid / resourceVersion preconditions
/// do not hold.
///
/// One compare-and-swap read-modify-write of the pod and nothing else: a binding changes
/// only server-decided fields, so the generic update's work (desired-object merge,
/// managedFields, no-op detection, validation of an unchanged spec) is not done here.
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
    if let Some(kind) = binding
        .pointer("/target/kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty() && *k != "Node")
    {
        return Err(ApiError::invalid(
            "",
            "Binding",
            pod,
            &[api::FieldError::invalid(
                "target.kind",
                json!(kind),
                "must be empty or 'Node'",
            )],
        ));
    }
    if let Some(name) = meta::str_at(binding, "/metadata/name").filter(|n| !n.is_empty()) {
        if name != pod {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
    }
    let pods = ctx
        .state
        .registry
        .info("", "Pod")
        .cloned()
        .ok_or_else(|| ApiError::internal("the catalogue has no pods"))?;
    let r = ObjectRef::new(&pods, Some(ns), pod);
    let target = r.target();
    let dry_run = ctx.query.dry_run()?;
    let preconditions = Preconditions {
        uid: meta::str_at(binding, "/metadata/uid")
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        resource_version: meta::str_at(binding, "/metadata/resourceVersion")
            .filter(|v| !v.is_empty())
            .map(str::to_string),
    };
    let annotations = binding.pointer("/metadata/annotations");
    let now = meta::now_rfc3339();
    let suggestion = (!dry_run)
        .then(|| cached_current(&ctx.state.registry, &pods, &r.key()))
        .flatten();
    ctx.state
        .registry
        .guaranteed_update_from(r, &preconditions, dry_run, suggestion, |mut obj| {
            assign(&mut obj, &node, annotations, &now)
                .map_err(|why| ApiError::conflict_with(target, &why.message(pod)))?;
            Ok(Transition::Write(obj))
        })
        .await?;
    Ok(success(StatusCode::CREATED))
}

/// The pod as the watch cache holds it: already parsed, so a binding need not read and
/// parse the store's copy. The scheduler binds pods it just saw through the same cache, so
/// the copy is nearly always current; when it is not, the write's compare-and-swap fails
/// and the update falls back to the store.
fn cached_current(registry: &Registry, pods: &ResourceInfo, key: &str) -> Option<Value> {
    let cacher = registry.cache.cacher(&pods.storage_prefix());
    cacher.get(key).map(|o| o.value())
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
    let mut opts = opts;
    let registry = &ctx.state.registry;
    let r = ctx.object_ref();
    let (pod, _) = registry.read_current(&r.key(), r.target()).await?;
    // The client's preconditions hold before a disruption is taken for this pod.
    opts.preconditions.check(&pod, r)?;
    registry.admit_eviction(&pod, opts.dry_run).await?;
    if !opts.dry_run {
        if let Some(rv) = mark_disruption_target(registry, r, &opts.preconditions).await? {
            // The condition's write moved the resourceVersion the client pinned.
            if opts.preconditions.resource_version.is_some() {
                opts.preconditions.resource_version = Some(rv);
            }
        }
    }
    registry.delete(r, &opts).await?;
    Ok(success(StatusCode::CREATED))
}

/// The condition upstream's eviction gives a pod it deletes, so that its controller (a Job's
/// podFailurePolicy, say) can tell a disruption from a failure.
async fn mark_disruption_target(
    registry: &Registry,
    r: ObjectRef<'_>,
    preconditions: &Preconditions,
) -> Result<Option<String>, ApiError> {
    let now = meta::now_rfc3339();
    let marked = registry
        .guaranteed_update(r, preconditions, false, |mut pod: Value| {
            let phase = pod.pointer("/status/phase").and_then(Value::as_str);
            if matches!(phase, Some("Succeeded" | "Failed")) {
                return Ok(Transition::Unchanged(pod));
            }
            let mut conditions: Vec<Value> = pod
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .filter(|c| c["type"] != "DisruptionTarget")
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            conditions.push(json!({"type": "DisruptionTarget", "status": "True",
                "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
                "lastTransitionTime": now}));
            if !pod["status"].is_object() {
                pod["status"] = json!({});
            }
            pod["status"]["conditions"] = json!(conditions);
            Ok(Transition::Write(pod))
        })
        .await;
    match marked {
        Ok(pod) => Ok(meta::resource_version(&pod).map(str::to_string)),
        Err(e) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::Store;

    fn pending() -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available", "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]}
        })
    }

    /// An API state over a fresh embedded store, with pod `p` in `default` stored and seen
    /// by the watch cache; returns the state, the pod's store key and its cached copy.
    async fn with_cached_pod(
        dir: &std::path::Path,
    ) -> (std::sync::Arc<crate::state::ApiState>, String, Value) {
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(
            store::EmbeddedStore::open(dir, store::EmbeddedConfig::default()).unwrap(),
        );
        let state = crate::state::ApiState::with_config(store.clone(), Default::default())
            .await
            .unwrap();
        let pods = state.registry.info("", "Pod").unwrap().clone();
        let key = ObjectRef::new(&pods, Some("default"), "p").key();
        let kv = store
            .create(&key, serde_json::to_vec(&pending()).unwrap().into())
            .await
            .unwrap();
        let rv = kv.mod_revision.to_string();
        let cached = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                if let Some(v) = cached_current(&state.registry, &pods, &key) {
                    if meta::resource_version(&v) == Some(rv.as_str()) {
                        return v;
                    }
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the watch cache sees the pod");
        (state, key, cached)
    }

    async fn bind_from(
        state: &crate::state::ApiState,
        suggestion: Value,
        preconditions: Preconditions,
    ) -> Result<Value, ApiError> {
        let pods = state.registry.info("", "Pod").unwrap().clone();
        let r = ObjectRef::new(&pods, Some("default"), "p");
        state
            .registry
            .guaranteed_update_from(r, &preconditions, false, Some(suggestion), |mut obj| {
                assign(&mut obj, "n1", None, "2026-11-29T00:00:00Z")
                    .map_err(|why| ApiError::conflict_with(r.target(), &why.message("p")))?;
                Ok(Transition::Write(obj))
            })
            .await
    }

    async fn stored(state: &crate::state::ApiState, key: &str) -> Value {
        let (kv, _) = state.store.get(key, None).await.unwrap();
        meta::decode_kv(&kv.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_current_cached_pod_is_bound_without_reading_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (state, key, mut cached) = with_cached_pod(dir.path()).await;
        // A mark only the cached copy carries: it reaches the store only if the write
        // started from that copy (its resourceVersion is current, so the CAS holds).
        cached["metadata"]["labels"] = json!({"from": "cache"});
        let written = bind_from(&state, cached, Preconditions::default())
            .await
            .unwrap();
        assert_eq!(written["spec"]["nodeName"], "n1");
        let now = stored(&state, &key).await;
        assert_eq!(now["spec"]["nodeName"], "n1");
        assert_eq!(now["metadata"]["labels"]["from"], "cache");
        assert_eq!(
            now["metadata"]["resourceVersion"],
            written["metadata"]["resourceVersion"]
        );
    }

    #[tokio::test]
    async fn a_stale_cached_pod_loses_the_swap_and_the_store_copy_is_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (state, key, cached) = with_cached_pod(dir.path()).await;
        // Someone writes the pod after the cache's copy was taken.
        let mut newer = stored(&state, &key).await;
        let rev: i64 = meta::resource_version(&newer).unwrap().parse().unwrap();
        newer["metadata"]["labels"] = json!({"from": "store"});
        let mut bytes = newer.clone();
        meta::metadata_mut(&mut bytes).remove("resourceVersion");
        state
            .store
            .update(&key, serde_json::to_vec(&bytes).unwrap().into(), rev)
            .await
            .unwrap();
        bind_from(&state, cached, Preconditions::default())
            .await
            .unwrap();
        let now = stored(&state, &key).await;
        assert_eq!(now["spec"]["nodeName"], "n1");
        assert_eq!(
            now["metadata"]["labels"]["from"], "store",
            "the newer write is kept, not overwritten from the stale copy"
        );
    }

    #[tokio::test]
    async fn a_refusal_from_a_stale_copy_is_decided_again_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (state, key, cached) = with_cached_pod(dir.path()).await;
        // The cache's copy still shows a gate and another uid (as if the gate had since
        // been removed); the store's pod takes the binding.
        let mut gated = cached.clone();
        gated["spec"]["schedulingGates"] = json!([{"name": "example.com/wait"}]);
        bind_from(&state, gated, Preconditions::default())
            .await
            .unwrap();
        assert_eq!(stored(&state, &key).await["spec"]["nodeName"], "n1");

        let dir = tempfile::tempdir().unwrap();
        let (state, key, cached) = with_cached_pod(dir.path()).await;
        let mut other_uid = cached.clone();
        other_uid["metadata"]["uid"] = json!("u0");
        let uid = Preconditions {
            uid: Some("u1".into()),
            resource_version: None,
        };
        bind_from(&state, other_uid, uid).await.unwrap();
        assert_eq!(stored(&state, &key).await["spec"]["nodeName"], "n1");
    }

    #[tokio::test]
    async fn a_bound_pod_is_refused_from_the_store_too() {
        let dir = tempfile::tempdir().unwrap();
        let (state, key, cached) = with_cached_pod(dir.path()).await;
        bind_from(&state, cached.clone(), Preconditions::default())
            .await
            .unwrap();
        // The cache's copy may still show the pod unbound: the second binding's swap fails
        // and the store's copy refuses it with 409, as before.
        let err = bind_from(&state, cached, Preconditions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("already assigned to node"),
            "{}",
            err.message
        );
        assert_eq!(stored(&state, &key).await["spec"]["nodeName"], "n1");
    }

    #[test]
    fn binding_sets_node_annotations_and_pod_scheduled() {
        let mut pod = pending();
        let ann = json!({"scheduler.example/why": "best"});
        assign(&mut pod, "n1", Some(&ann), "2026-11-29T00:00:00Z").unwrap();
        assert_eq!(pod["spec"]["nodeName"], "n1");
        assert_eq!(
            pod["metadata"]["annotations"]["scheduler.example/why"],
            "best"
        );
        let conditions = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(
            conditions.len(),
            1,
            "the False condition is replaced, not duplicated"
        );
        assert_eq!(
            conditions[0],
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                   "lastTransitionTime": "2026-11-29T00:00:00Z"})
        );
    }

    #[test]
    fn binding_adds_the_condition_to_a_pod_without_status() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {}});
        assign(&mut pod, "n1", None, "2026-11-29T00:00:00Z").unwrap();
        assert_eq!(pod["status"]["conditions"][0]["type"], "PodScheduled");
        assert_eq!(pod["status"]["conditions"][0]["status"], "True");
    }

    #[test]
    fn a_true_condition_keeps_its_transition_time() {
        let mut pod = pending();
        pod["status"]["conditions"][0]["status"] = json!("True");
        assign(&mut pod, "n1", None, "2026-11-29T00:00:00Z").unwrap();
        assert_eq!(
            pod["status"]["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn bound_deleting_or_gated_pods_refuse_a_binding() {
        let mut bound = pending();
        bound["spec"]["nodeName"] = json!("n0");
        let before = bound.clone();
        let e = assign(&mut bound, "n1", None, "t").unwrap_err();
        assert_eq!(e, Unbindable::Assigned("n0".into()));
        assert_eq!(e.message("p"), "pod p is already assigned to node \"n0\"");
        assert_eq!(bound, before, "a refused binding changes nothing");

        let mut deleting = pending();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-11-29T00:00:00Z");
        assert_eq!(
            assign(&mut deleting, "n1", None, "t").unwrap_err(),
            Unbindable::Deleting
        );

        let mut gated = pending();
        gated["spec"]["schedulingGates"] = json!([{"name": "example.com/wait"}]);
        assert_eq!(
            assign(&mut gated, "n1", None, "t").unwrap_err(),
            Unbindable::Gated
        );
        gated["spec"]["schedulingGates"] = json!([]);
        assert!(
            assign(&mut gated, "n1", None, "t").is_ok(),
            "an empty gate list is no gate"
        );
    }

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
