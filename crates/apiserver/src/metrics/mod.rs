//! metrics.k8s.io/v1beta1: NodeMetrics and PodMetrics, what `kubectl top` reads. In
//! Kubernetes metrics-server serves this group behind an APIService; here the API server
//! serves it itself, scraping each node's Summary API (`/stats/summary`) through the
//! node client on demand — no separate process, no scrape loop between requests.
//!
//! - [`discovery`]: the group in `/apis` and its own discovery documents.
//! - [`scrape`]: the Summary's decoding and CPU rates from cumulative counters.
//! - [`quantity`]: CPU and memory written as metrics-server writes them.

// `ApiError` is the crate-wide error (a Status); boxing it is status.rs's call.
#![allow(clippy::result_large_err)]

pub mod discovery;
pub mod quantity;
pub mod scrape;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::proxy::NodeClient;
use crate::registry::{meta, ListParams};
use crate::state::ApiState;
use crate::status::ApiError;
use scrape::{Rates, Summary, Usage};

/// How long one node's Summary may take (its own first scrape waits a sampling window).
const SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone)]
struct Shared {
    state: Arc<ApiState>,
    client: Option<Arc<NodeClient>>,
    rates: Arc<Rates>,
}

/// The group's routes; merged into the API router ahead of its generic dispatch.
pub fn router(state: Arc<ApiState>) -> Router {
    let client = match NodeClient::new(state.clone()) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            tracing::warn!(error = %e, "metrics.k8s.io disabled: no node client");
            None
        }
    };
    let shared = Shared {
        state,
        client,
        rates: Arc::new(Rates::default()),
    };
    let base = "/apis/metrics.k8s.io/v1beta1";
    Router::new()
        .route(
            "/apis/metrics.k8s.io",
            get(|| async { axum::Json(discovery::api_group()) }),
        )
        .route(
            base,
            get(|| async { axum::Json(discovery::api_resource_list()) }),
        )
        .route(&format!("{base}/nodes"), get(list_nodes))
        .route(&format!("{base}/nodes/{{name}}"), get(get_node))
        .route(&format!("{base}/pods"), get(list_all_pods))
        .route(&format!("{base}/namespaces/{{ns}}/pods"), get(list_pods))
        .route(
            &format!("{base}/namespaces/{{ns}}/pods/{{name}}"),
            get(get_pod),
        )
        .with_state(shared)
}

fn respond(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `labelSelector` and `fieldSelector` of the query, checked as for the parent resource.
fn params(state: &ApiState, plural: &str, query: Option<&str>) -> Result<ListParams, ApiError> {
    let info = state
        .catalogue
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("the catalogue has no {plural}")))?;
    let get = |key: &str| {
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let labels = crate::registry::label_selector::LabelSelector::parse(&get("labelSelector"))
        .map_err(|e| ApiError::bad_request(format!("invalid label selector: {e}")))?;
    let fields = crate::registry::field_selector::FieldSelector::parse(
        &get("fieldSelector"),
        api::strategy::for_resource(info),
    )?;
    Ok(ListParams {
        labels,
        fields,
        ..Default::default()
    })
}

async fn objects(
    state: &ApiState,
    plural: &str,
    namespace: Option<&str>,
    params: &ListParams,
) -> Result<Vec<Value>, ApiError> {
    let info = state
        .catalogue
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("the catalogue has no {plural}")))?;
    let list = state.registry.list(info, namespace, params).await?;
    Ok(list.items.iter().map(|o| o.value()).collect())
}

impl Shared {
    fn client(&self) -> Result<&NodeClient, ApiError> {
        self.client
            .as_deref()
            .ok_or_else(|| ApiError::service_unavailable("the API server has no node client"))
    }

    async fn fetch(&self, node: &str) -> Result<Summary, ApiError> {
        // A hung agent must not hold up everyone's `kubectl top`.
        let body = tokio::time::timeout(SCRAPE_TIMEOUT, self.client()?.get(node, "/stats/summary"))
            .await
            .map_err(|_| {
                ApiError::new(504, "Timeout", format!("node {node:?} did not answer"))
            })??;
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::internal(format!("node {node:?} sent a bad summary: {e}")))
    }

    /// Summaries of `nodes`, scraped concurrently; a node that cannot be reached is left
    /// out (its metrics are simply missing, as with metrics-server). Any cgroup seen for
    /// the first time is measured over one more window.
    async fn summaries(&self, nodes: &[String]) -> HashMap<String, Summary> {
        self.rates.forget_stale();
        let first = self.scrape_all(nodes).await;
        let fresh = first.iter().any(|(node, s)| self.has_unmeasured(node, s));
        if !fresh {
            return first;
        }
        tokio::time::sleep(scrape::MIN_WINDOW).await;
        let second = self.scrape_all(nodes).await;
        second.into_iter().collect()
    }

    async fn scrape_all(&self, nodes: &[String]) -> HashMap<String, Summary> {
        let fetches = nodes
            .iter()
            .map(|n| async move { (n.clone(), self.fetch(n).await) });
        let mut out = HashMap::new();
        for (node, result) in futures::future::join_all(fetches).await {
            match result {
                Ok(s) => {
                    out.insert(node, s);
                }
                Err(e) => tracing::debug!(%node, error = %e.message, "scraping a node's stats"),
            }
        }
        out
    }

    /// Records every cgroup's sample; true when one had no earlier sample to measure from.
    fn has_unmeasured(&self, node: &str, s: &Summary) -> bool {
        let mut missing = false;
        if let Some(cpu) = &s.node.cpu {
            missing |= self
                .rates
                .usage(&node_key(node), cpu, s.node.memory.as_ref())
                .is_none();
        }
        for p in &s.pods {
            for c in &p.containers {
                if let Some(cpu) = &c.cpu {
                    missing |= self
                        .rates
                        .usage(
                            &container_key(&p.pod_ref.uid, &c.name),
                            cpu,
                            c.memory.as_ref(),
                        )
                        .is_none();
                }
            }
        }
        missing
    }

    async fn node_metrics(&self, params: &ListParams) -> Result<Vec<Value>, ApiError> {
        let nodes = objects(&self.state, "nodes", None, params).await?;
        let names: Vec<String> = nodes
            .iter()
            .filter_map(|n| meta::name(n).map(str::to_string))
            .collect();
        let summaries = self.summaries(&names).await;
        let mut items = Vec::new();
        for node in &nodes {
            let Some(name) = meta::name(node) else {
                continue;
            };
            let Some(s) = summaries.get(name) else {
                continue;
            };
            let Some(cpu) = &s.node.cpu else { continue };
            let Some(u) = self
                .rates
                .usage(&node_key(name), cpu, s.node.memory.as_ref())
            else {
                continue;
            };
            items.push(json!({
                "kind": "NodeMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": metadata(node, None),
                "timestamp": u.timestamp.to_string(),
                "window": window(&u),
                "usage": usage(&u),
            }));
        }
        Ok(items)
    }

    async fn pod_metrics(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<Vec<Value>, ApiError> {
        let pods = objects(&self.state, "pods", namespace, params).await?;
        let mut nodes: Vec<String> = pods
            .iter()
            .filter_map(|p| meta::str_at(p, "/spec/nodeName").map(str::to_string))
            .collect();
        nodes.sort();
        nodes.dedup();
        let summaries = self.summaries(&nodes).await;
        let by_uid: HashMap<&str, &scrape::PodStats> = summaries
            .values()
            .flat_map(|s| s.pods.iter())
            .map(|p| (p.pod_ref.uid.as_str(), p))
            .collect();
        let mut items = Vec::new();
        for pod in &pods {
            let Some(stats) = meta::uid(pod).and_then(|u| by_uid.get(u)) else {
                continue;
            };
            let mut containers = Vec::new();
            let mut latest: Option<Usage> = None;
            for c in &stats.containers {
                let Some(cpu) = &c.cpu else { continue };
                let key = container_key(&stats.pod_ref.uid, &c.name);
                let Some(u) = self.rates.usage(&key, cpu, c.memory.as_ref()) else {
                    continue;
                };
                containers.push(json!({"name": c.name, "usage": usage(&u)}));
                latest = Some(latest.map_or(u, |l| if u.timestamp > l.timestamp { u } else { l }));
            }
            // metrics-server leaves out pods it has no container figures for.
            let Some(u) = latest else { continue };
            items.push(json!({
                "kind": "PodMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": metadata(pod, meta::namespace(pod)),
                "timestamp": u.timestamp.to_string(),
                "window": window(&u),
                "containers": containers,
            }));
        }
        Ok(items)
    }
}

fn node_key(node: &str) -> String {
    format!("node/{node}")
}

fn container_key(pod_uid: &str, container: &str) -> String {
    format!("pod/{pod_uid}/{container}")
}

/// The object's name, namespace and labels; creationTimestamp is the time of the answer,
/// as metrics-server reports it.
fn metadata(obj: &Value, namespace: Option<&str>) -> Value {
    let labels: BTreeMap<String, Value> = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut m = json!({
        "name": meta::name(obj).unwrap_or_default(),
        "creationTimestamp": meta::now_rfc3339(),
    });
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    if !labels.is_empty() {
        m["labels"] = json!(labels);
    }
    m
}

fn usage(u: &Usage) -> Value {
    json!({"cpu": quantity::cpu(u.nano_cores), "memory": quantity::memory(u.memory_bytes)})
}

/// A metav1.Duration as Go prints it (`1.002s`).
fn window(u: &Usage) -> String {
    let ms = u.window.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", u.window.as_secs_f64())
    }
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{kind}List"),
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": items,
    })
}

fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("{resource}.metrics.k8s.io {name:?} not found"),
    )
}

async fn list_nodes(State(s): State<Shared>, RawQuery(q): RawQuery) -> Response {
    respond(
        async {
            let p = params(&s.state, "nodes", q.as_deref())?;
            Ok(list("NodeMetrics", s.node_metrics(&p).await?))
        }
        .await,
    )
}

async fn get_node(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    respond(
        async {
            let p = ListParams {
                fields: name_selector(&s.state, "nodes", &name)?,
                ..Default::default()
            };
            s.node_metrics(&p)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| not_found("nodes", &name))
        }
        .await,
    )
}

async fn list_all_pods(State(s): State<Shared>, RawQuery(q): RawQuery) -> Response {
    respond(
        async {
            let p = params(&s.state, "pods", q.as_deref())?;
            Ok(list("PodMetrics", s.pod_metrics(None, &p).await?))
        }
        .await,
    )
}

async fn list_pods(
    State(s): State<Shared>,
    Path(ns): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    respond(
        async {
            let p = params(&s.state, "pods", q.as_deref())?;
            Ok(list("PodMetrics", s.pod_metrics(Some(&ns), &p).await?))
        }
        .await,
    )
}

async fn get_pod(State(s): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    respond(
        async {
            let p = ListParams {
                fields: name_selector(&s.state, "pods", &name)?,
                ..Default::default()
            };
            s.pod_metrics(Some(&ns), &p)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| not_found("pods", &name))
        }
        .await,
    )
}

fn name_selector(
    state: &ApiState,
    plural: &str,
    name: &str,
) -> Result<crate::registry::field_selector::FieldSelector, ApiError> {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("fieldSelector", &format!("metadata.name={name}"))
        .finish();
    Ok(params(state, plural, Some(&query))?.fields)
}
