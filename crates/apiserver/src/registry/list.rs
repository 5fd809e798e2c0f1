//! List: label and field selectors, `limit` + `continue`, and the resourceVersion rules —
//! "0" is served from the watch cache, anything else is a consistent read from the store
//! (at an exact revision for `resourceVersionMatch=Exact`).

use std::sync::Arc;
use std::time::Duration;

use api::ResourceInfo;
use store::{ContinueToken, ListOptions, Revision};

use super::field_selector::FieldSelector;
use super::label_selector::LabelSelector;
use super::{meta, Registry};
use crate::status::ApiError;
use crate::watch_cache::CachedObject;

/// How long a read at a future resourceVersion waits before answering 504, as Kubernetes.
pub const FUTURE_RV_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RvMatch {
    Exact,
    NotOlderThan,
}

#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub rv_match: Option<RvMatch>,
}

/// A page of objects.
#[derive(Debug, Clone)]
pub struct ObjectList {
    pub items: Vec<Arc<CachedObject>>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    /// Objects after this page; only known without selectors.
    pub remaining: Option<i64>,
}

impl ListParams {
    fn matches(&self, obj: &serde_json::Value, info: &ResourceInfo) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj, api::strategy::for_resource(info))
    }

    /// As [`Self::matches`] for a cached object: decoded only for a field selector on a
    /// kind-specific field (spec.nodeName, involvedObject.name…).
    pub fn matches_cached(&self, obj: &CachedObject, strategy: &dyn api::Strategy) -> bool {
        let attrs = obj.attrs();
        if !self.labels.matches_attrs(attrs) {
            return false;
        }
        if self.fields.is_generic() {
            self.fields.matches_name(&attrs.name, &attrs.namespace)
        } else {
            self.fields.matches(&obj.value(), strategy)
        }
    }

    fn filtered(&self) -> bool {
        !self.labels.is_empty() || !self.fields.is_empty()
    }
}

impl Registry {
    /// The key prefix of a list: one namespace, or every namespace.
    pub fn list_prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
        match (info.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{}/", info.storage_prefix(), ns),
            _ => info.storage_prefix(),
        }
    }

    pub async fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList, ApiError> {
        let prefix = Self::list_prefix(info, namespace);
        let rv = params.resource_version.as_deref().filter(|s| !s.is_empty());
        if params.continue_token.is_some() && rv.is_some_and(|r| r != "0") {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let revision = match (rv, params.rv_match) {
            (None, Some(_)) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ))
            }
            (Some("0"), Some(RvMatch::Exact)) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
                ))
            }
            (Some("0"), _) if params.continue_token.is_none() => {
                return self.list_from_cache(info, &prefix, params).await
            }
            (Some(rv), Some(RvMatch::Exact)) => Some(meta::parse_resource_version(rv)?),
            (Some(rv), _) if rv != "0" => {
                let want = meta::parse_resource_version(rv)?;
                self.wait_for_revision(want).await?;
                None
            }
            _ => None,
        };
        self.list_from_store(info, &prefix, params, revision).await
    }

    /// Waits (briefly) until the store has reached `want`; 504 "Too large resource
    /// version" otherwise.
    pub async fn wait_for_revision(&self, want: Revision) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + FUTURE_RV_WAIT;
        loop {
            let current = self
                .store
                .current_revision()
                .await
                .map_err(|e| ApiError::service_unavailable(e.to_string()))?;
            if current >= want {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::from_store(
                    store::StoreError::FutureRevision {
                        requested: want,
                        current,
                    },
                    crate::status::Target {
                        group: "",
                        resource: "",
                        name: "",
                    },
                ));
            }
            // The store has no revision notification; a short poll bounds the wait.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn list_from_cache(
        &self,
        info: &ResourceInfo,
        prefix: &str,
        params: &ListParams,
    ) -> Result<ObjectList, ApiError> {
        let cacher = self.cache.cacher(&info.storage_prefix());
        if !cacher.ready().await {
            return Err(ApiError::service_unavailable(
                "the watch cache is not ready",
            ));
        }
        let (objs, revision) = cacher.snapshot(prefix);
        let strategy = api::strategy::for_resource(info);
        let items = objs
            .into_iter()
            .filter(|o| params.matches_cached(o, strategy))
            .collect();
        Ok(ObjectList {
            items,
            revision,
            continue_token: None,
            remaining: None,
        })
    }

    async fn list_from_store(
        &self,
        info: &ResourceInfo,
        prefix: &str,
        params: &ListParams,
        revision: Option<Revision>,
    ) -> Result<ObjectList, ApiError> {
        let target = crate::status::Target {
            group: info.group,
            resource: info.plural,
            name: "",
        };
        let limit = params.limit.filter(|l| *l > 0);
        // With selectors a page of keys may yield few matches: read bigger pages.
        let page = limit.map(|l| if params.filtered() { l.max(500) } else { l });
        let mut items = Vec::new();
        let mut token = params.continue_token.clone();
        let mut list_revision = revision;
        loop {
            let res = self
                .store
                .list(ListOptions {
                    prefix: prefix.to_string(),
                    revision: list_revision,
                    limit: page,
                    continue_token: token.take(),
                })
                .await
                .map_err(|e| ApiError::from_store(e, target))?;
            list_revision = Some(res.revision);
            let count = res.kvs.len();
            for (i, kv) in res.kvs.iter().enumerate() {
                let obj = meta::decode_kv(kv)?;
                if !params.matches(&obj, info) {
                    continue;
                }
                items.push(CachedObject::new(obj));
                if limit.is_some_and(|l| items.len() >= l) {
                    let more_in_page = i + 1 < count;
                    if !more_in_page && res.continue_token.is_none() {
                        return Ok(ObjectList {
                            items,
                            revision: res.revision,
                            continue_token: None,
                            remaining: None,
                        });
                    }
                    let cont = ContinueToken {
                        revision: res.revision,
                        last_key: kv.key.clone(),
                        prefix: prefix.to_string(),
                    }
                    .encode();
                    let remaining =
                        (!params.filtered()).then_some(res.remaining + (count - i - 1) as i64);
                    return Ok(ObjectList {
                        items,
                        revision: res.revision,
                        continue_token: Some(cont),
                        remaining,
                    });
                }
            }
            match res.continue_token {
                Some(next) => token = Some(next),
                None => {
                    return Ok(ObjectList {
                        items,
                        revision: res.revision,
                        continue_token: None,
                        remaining: None,
                    })
                }
            }
        }
    }
}
