//! An in-memory stand-in for the API server in unit tests: GETs of stored objects by URL
//! path, 404 Status otherwise. Objects can be replaced while a test runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

#[derive(Clone, Default)]
pub struct FakeApi {
    objects: Arc<Mutex<HashMap<String, Value>>>,
}

impl FakeApi {
    /// Stores `obj` at its canonical path (core/v1 kinds only).
    pub fn put(&self, obj: Value) {
        let kind = obj["kind"].as_str().unwrap().to_lowercase();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let path = match obj["metadata"]["namespace"].as_str() {
            Some(ns) => format!("/api/v1/namespaces/{ns}/{kind}s/{name}"),
            None => format!("/api/v1/{kind}s/{name}"),
        };
        self.objects.lock().unwrap().insert(path, obj);
    }

    pub fn client(&self) -> kube::Client {
        let objects = self.objects.clone();
        let router = axum::Router::new().fallback(move |uri: http::Uri| {
            let objects = objects.clone();
            async move {
                let path = uri.path().to_string();
                let map = objects.lock().unwrap();
                let (status, body) = if let Some(obj) = map.get(&path) {
                    (200, obj.clone())
                } else if path.ends_with('s') && path.split('/').count() == 6 {
                    // A namespaced list: /api/v1/namespaces/<ns>/<kind>s
                    let items: Vec<Value> = map
                        .iter()
                        .filter(|(p, _)| p.starts_with(&format!("{path}/")))
                        .map(|(_, v)| v.clone())
                        .collect();
                    (200, json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}))
                } else {
                    let name = path.rsplit('/').next().unwrap_or_default();
                    (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "message": format!("{name:?} not found"), "reason": "NotFound", "code": 404}),
                    )
                };
                (
                    http::StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/json")],
                    serde_json::to_vec(&body).unwrap(),
                )
            }
        });
        kube::Client::new(router, "default")
    }
}
