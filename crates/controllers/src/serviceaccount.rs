//! The ServiceAccount controller: a `default` ServiceAccount in every namespace that is not
//! being deleted, created for new namespaces and recreated when deleted, as
//! kube-controller-manager's serviceaccount controller does. (Tokens come with RBAC.)
//!
//! Keyed on Namespaces and woken by changes to ServiceAccounts named `default`, so a
//! deletion is answered at once and the initial list covers anything missed while down.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::replicaset::is_namespace_terminating;
use crate::runner::{drive, RetryBackoff};

/// The ServiceAccounts every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNTS: [&str; 1] = ["default"];
/// A periodic resync, so that nothing is left waiting on a lost event.
const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

struct Context {
    client: kube::Client,
    backoff: RetryBackoff<Namespace>,
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let ctx = Arc::new(Context {
        client: client.clone(),
        backoff: RetryBackoff::new(),
    });
    let controller = Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ServiceAccount>::all(client),
        watcher::Config::default(),
        |sa: ServiceAccount| {
            let wanted = DEFAULT_SERVICE_ACCOUNTS.contains(&sa.name_any().as_str());
            sa.metadata
                .namespace
                .filter(|_| wanted)
                .map(|ns| ObjectRef::<Namespace>::new(&ns))
        },
    );
    drive(
        "serviceaccount",
        controller,
        shutdown,
        reconcile,
        error_policy,
        ctx,
    )
    .await;
    Ok(())
}

fn error_policy(ns: Arc<Namespace>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.backoff.failed(&ns, err)
}

/// Whether the namespace is being deleted: no new objects go into it.
pub fn is_terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

/// The ServiceAccounts to create: the default ones that `existing` lacks, none in a
/// terminating namespace.
pub fn missing(ns: &Namespace, existing: &[String]) -> Vec<&'static str> {
    if is_terminating(ns) {
        return Vec::new();
    }
    DEFAULT_SERVICE_ACCOUNTS
        .into_iter()
        .filter(|name| !existing.iter().any(|e| e == name))
        .collect()
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = ns.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut existing = Vec::new();
    if !is_terminating(&ns) {
        for name in DEFAULT_SERVICE_ACCOUNTS {
            if api.get_opt(name).await?.is_some() {
                existing.push(name.to_string());
            }
        }
    }
    for name in missing(&ns, &existing) {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) if is_namespace_terminating(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.backoff.succeeded(&ns);
    Ok(Action::requeue(RESYNC))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn ns(v: serde_json::Value) -> Namespace {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn creates_the_default_account_unless_terminating() {
        let active = ns(json!({"metadata": {"name": "a"}, "status": {"phase": "Active"}}));
        assert_eq!(missing(&active, &[]), ["default"]);
        assert!(missing(&active, &["default".into()]).is_empty());
        let terminating =
            ns(json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}}));
        assert!(missing(&terminating, &[]).is_empty());
        let deleted = ns(json!({"metadata": {"name": "a",
            "deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        assert!(missing(&deleted, &[]).is_empty());
    }
}
