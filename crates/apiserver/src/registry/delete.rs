//! Delete and deletecollection: preconditions, graceful pod deletion, finalizers,
//! propagation policy and the namespace lifecycle's first step (Terminating).

use serde_json::{json, Value};
use store::StoreError;

use super::update::{Preconditions, Transition};
use super::{create::is_service, meta, ListParams, ObjectRef, Registry};
use crate::status::ApiError;

/// Kubernetes' default grace period of a pod without `terminationGracePeriodSeconds`.
const DEFAULT_POD_GRACE: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "Orphan" => Ok(Self::Orphan),
            "Background" => Ok(Self::Background),
            "Foreground" => Ok(Self::Foreground),
            other => Err(ApiError::bad_request(format!(
                "DeleteOptions.propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            ))),
        }
    }
}

/// DeleteOptions, from the body or the query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub preconditions: Preconditions,
    pub dry_run: bool,
}

#[derive(Debug, Clone)]
pub enum DeleteOutcome {
    /// The object is gone; this was its last state.
    Deleted(Value),
    /// The object stays until its finalizers or its node let go (deletionTimestamp set).
    Pending(Value),
}

impl Registry {
    pub async fn delete(
        &self,
        r: ObjectRef<'_>,
        opts: &DeleteOptions,
    ) -> Result<DeleteOutcome, ApiError> {
        if let Some(g) = opts.grace_period_seconds {
            if g < 0 {
                return Err(ApiError::invalid(
                    r.info.group,
                    r.info.kind,
                    r.name,
                    &[api::FieldError::invalid(
                        "gracePeriodSeconds",
                        json!(g),
                        "must be greater than or equal to 0",
                    )],
                ));
            }
        }
        let key = r.key();
        loop {
            let (old, revision) = self.read_current(&key, r.target()).await?;
            opts.preconditions.check(&old, r)?;
            let decision = decide(r, old, opts);
            let (transition, pending) = match decision {
                Transition::Delete(v) => (Transition::Delete(v), false),
                other => (other, true),
            };
            if opts.dry_run {
                return Ok(match transition {
                    Transition::Delete(v) => DeleteOutcome::Deleted(v),
                    Transition::Write(v) | Transition::Unchanged(v) => DeleteOutcome::Pending(v),
                });
            }
            let result = match transition {
                Transition::Unchanged(v) => return Ok(DeleteOutcome::Pending(v)),
                Transition::Write(v) => self.write_at(&key, revision, v).await?,
                Transition::Delete(v) => self.delete_at(&key, revision, v).await,
            };
            match result {
                Ok(v) if pending => return Ok(DeleteOutcome::Pending(v)),
                Ok(v) => {
                    if is_service(r.info) {
                        self.release_service(&v).await;
                    }
                    return Ok(DeleteOutcome::Deleted(v));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, r.target())),
            }
        }
    }

    /// Deletes every object the list parameters select; returns those it deleted or marked.
    pub async fn delete_collection(
        &self,
        info: &api::ResourceInfo,
        namespace: Option<&str>,
        params: &ListParams,
        opts: &DeleteOptions,
    ) -> Result<Vec<Value>, ApiError> {
        let list = self.list(info, namespace, params).await?;
        let mut out = Vec::with_capacity(list.items.len());
        for item in list.items {
            let attrs = item.attrs();
            let ns = Some(&*attrs.namespace).filter(|n| !n.is_empty());
            let r = ObjectRef::new(info, ns, &attrs.name);
            match self.delete(r, opts).await {
                Ok(DeleteOutcome::Deleted(v) | DeleteOutcome::Pending(v)) => out.push(v),
                // Deleted by someone else meanwhile: that is what was asked.
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// What deleting `old` with `opts` does.
fn decide(r: ObjectRef<'_>, mut old: Value, opts: &DeleteOptions) -> Transition {
    let is_namespace = r.info.group.is_empty() && r.info.plural == "namespaces";
    if is_namespace {
        if meta::deletion_timestamp(&old).is_some() {
            return Transition::Unchanged(old);
        }
        meta::metadata_mut(&mut old).insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
        meta::metadata_mut(&mut old).insert("deletionGracePeriodSeconds".into(), json!(0));
        old["status"] = json!({"phase": "Terminating"});
        return Transition::Write(old);
    }
    let mut finalizers = meta::finalizers(&old);
    let already_deleting = meta::deletion_timestamp(&old).is_some();
    let mut changed = false;
    if !already_deleting {
        let extra = match opts.propagation {
            Some(Propagation::Foreground) => Some("foregroundDeletion"),
            Some(Propagation::Orphan) => Some("orphan"),
            _ => None,
        };
        if let Some(f) = extra {
            if !finalizers.iter().any(|x| x == f) {
                finalizers.push(f.to_string());
                changed = true;
            }
        }
    }
    let is_pod = r.info.group.is_empty() && r.info.plural == "pods";
    let bound = meta::str_at(&old, "/spec/nodeName").is_some_and(|n| !n.is_empty());
    let grace = if is_pod && bound {
        opts.grace_period_seconds.unwrap_or_else(|| {
            old.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(DEFAULT_POD_GRACE)
        })
    } else {
        0
    };
    let current_grace = old
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    if finalizers.is_empty() && grace == 0 {
        return Transition::Delete(old);
    }
    meta::set_finalizers(&mut old, &finalizers);
    // A second delete may shorten a pending grace period, never lengthen it.
    let shorten = current_grace.is_none_or(|c| grace < c);
    if !already_deleting || shorten {
        let m = meta::metadata_mut(&mut old);
        m.insert("deletionTimestamp".into(), json!(meta::rfc3339_in(grace)));
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        changed = true;
    }
    if changed {
        Transition::Write(old)
    } else {
        Transition::Unchanged(old)
    }
}
