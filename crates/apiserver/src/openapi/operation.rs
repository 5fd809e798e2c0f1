//! One API operation (method, id, parameters, bodies, responses and the Kubernetes
//! extensions), built up and then rendered in either OpenAPI dialect.

use serde_json::{json, Map, Value};

use super::params::Param;
use super::schemas::{Dialect, Gvk};

pub const OBJECT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
pub const WATCHABLE_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];
pub const TEXT_TYPES: &[&str] = &["text/plain", "application/json", "application/yaml"];
pub const ANY_TYPE: &[&str] = &["*/*"];
/// `kubectl apply` computes strategic merge patches only when the patch operation lists
/// the strategic type, and server-side apply sends apply-patch+yaml.
pub const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// What a body or response carries.
#[derive(Debug, Clone)]
pub enum Payload {
    Definition(String),
    Text,
}

impl Payload {
    pub fn of(definition: &str) -> Self {
        Payload::Definition(definition.to_string())
    }

    fn schema(&self, dialect: Dialect) -> Value {
        match self {
            Payload::Definition(name) => dialect.reference(name),
            Payload::Text => json!({ "type": "string" }),
        }
    }
}

#[derive(Debug, Clone)]
struct Body {
    payload: Payload,
    content_types: &'static [&'static str],
}

#[derive(Debug, Clone, Copy)]
pub enum Code {
    Ok,
    Created,
    Accepted,
}

impl Code {
    fn status(self) -> (&'static str, &'static str) {
        match self {
            Code::Ok => ("200", "OK"),
            Code::Created => ("201", "Created"),
            Code::Accepted => ("202", "Accepted"),
        }
    }
}

/// One operation before it is rendered in a dialect.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: &'static str,
    id: String,
    description: String,
    /// `x-kubernetes-action` and `x-kubernetes-group-version-kind`; absent on the
    /// group-version root.
    kubernetes: Option<(&'static str, Gvk)>,
    params: Vec<Param>,
    body: Option<Body>,
    responses: Vec<Code>,
    payload: Payload,
    produces: &'static [&'static str],
}

impl Operation {
    /// An operation answering 200 with `payload` as JSON, YAML or protobuf.
    pub fn new(method: &'static str, id: String, description: String, payload: Payload) -> Self {
        Self {
            method,
            id,
            description,
            kubernetes: None,
            params: Vec::new(),
            body: None,
            responses: vec![Code::Ok],
            payload,
            produces: OBJECT_TYPES,
        }
    }

    pub fn action(mut self, action: &'static str, gvk: &Gvk) -> Self {
        self.kubernetes = Some((action, gvk.clone()));
        self
    }

    pub fn query(mut self, params: &[Param]) -> Self {
        self.params = params.to_vec();
        self
    }

    pub fn body(mut self, payload: Payload, content_types: &'static [&'static str]) -> Self {
        self.body = Some(Body {
            payload,
            content_types,
        });
        self
    }

    pub fn responses(mut self, codes: &[Code]) -> Self {
        self.responses = codes.to_vec();
        self
    }

    pub fn produces(mut self, types: &'static [&'static str]) -> Self {
        self.produces = types;
        self
    }

    /// The same operation under another id (for the proxy-with-path variants).
    pub fn with_id_suffix(mut self, suffix: &str) -> Self {
        self.id.push_str(suffix);
        self
    }

    pub fn render(&self, dialect: Dialect, tag: &str) -> Value {
        let mut op = Map::new();
        op.insert("description".into(), json!(self.description));
        op.insert("operationId".into(), json!(self.id));
        op.insert("tags".into(), json!([tag]));
        let mut parameters: Vec<Value> = self.params.iter().map(|p| p.render(dialect)).collect();
        if let Some(body) = &self.body {
            let schema = body.payload.schema(dialect);
            match dialect {
                Dialect::V3 => {
                    op.insert(
                        "requestBody".into(),
                        json!({ "content": content(body.content_types, &schema), "required": true }),
                    );
                }
                Dialect::V2 => {
                    parameters.insert(
                        0,
                        json!({ "name": "body", "in": "body", "required": true, "schema": schema }),
                    );
                    op.insert("consumes".into(), json!(body.content_types));
                }
            }
        }
        if !parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(parameters));
        }
        let schema = self.payload.schema(dialect);
        let mut responses = Map::new();
        for code in &self.responses {
            let (status, description) = code.status();
            let rendered = match dialect {
                Dialect::V3 => {
                    json!({ "description": description, "content": content(self.produces, &schema) })
                }
                Dialect::V2 => json!({ "description": description, "schema": schema }),
            };
            responses.insert(status.into(), rendered);
        }
        responses.insert("401".into(), json!({ "description": "Unauthorized" }));
        op.insert("responses".into(), Value::Object(responses));
        if dialect == Dialect::V2 {
            op.insert("produces".into(), json!(self.produces));
            op.insert("schemes".into(), json!(["https"]));
        }
        if let Some((action, gvk)) = &self.kubernetes {
            op.insert("x-kubernetes-action".into(), json!(action));
            op.insert("x-kubernetes-group-version-kind".into(), gvk.to_value());
        }
        Value::Object(op)
    }
}

fn content(types: &[&str], schema: &Value) -> Map<String, Value> {
    types
        .iter()
        .map(|t| (t.to_string(), json!({ "schema": schema })))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::params;

    fn patch() -> Operation {
        Operation::new(
            "patch",
            "patchAppsV1NamespacedDeployment".into(),
            "partially update".into(),
            Payload::of("io.k8s.api.apps.v1.Deployment"),
        )
        .action("patch", &Gvk::new("apps", "v1", "Deployment"))
        .query(params::PATCH)
        .body(
            Payload::of("io.k8s.apimachinery.pkg.apis.meta.v1.Patch"),
            PATCH_TYPES,
        )
        .responses(&[Code::Ok, Code::Created])
    }

    #[test]
    fn renders_openapi_3() {
        let op = patch().render(Dialect::V3, "apps_v1");
        assert_eq!(op["x-kubernetes-action"], "patch");
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(
            op["requestBody"]["content"]["application/strategic-merge-patch+json"]["schema"]
                ["$ref"]
                .is_string()
        );
        assert!(op["responses"]["201"]["content"]["application/json"].is_object());
        assert_eq!(op["responses"]["401"]["description"], "Unauthorized");
    }

    #[test]
    fn renders_swagger_2() {
        let op = patch().render(Dialect::V2, "apps_v1");
        assert_eq!(op["parameters"][0]["in"], "body");
        assert_eq!(op["consumes"][3], "application/strategic-merge-patch+json");
        assert_eq!(
            op["responses"]["200"]["schema"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
    }
}
