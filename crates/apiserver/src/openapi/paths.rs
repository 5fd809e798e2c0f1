//! The path half of an OpenAPI document: one operation per resource, verb and scope, with
//! the operation ids, actions and group/version/kind extensions kubectl reads.

use api::{ResourceInfo, Subresource};
use serde_json::{json, Map, Value};

use super::params::{self, Param};
use super::schemas::{Dialect, Gvk, KindNames};

const OBJECT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const WATCHABLE_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];
const TEXT_TYPES: &[&str] = &["text/plain", "application/json", "application/yaml"];
const ANY_TYPE: &[&str] = &["*/*"];
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
enum Payload {
    Definition(String),
    Text,
}

#[derive(Debug, Clone)]
struct Body {
    payload: Payload,
    content_types: &'static [&'static str],
}

#[derive(Debug, Clone)]
struct Response {
    code: u16,
    description: &'static str,
    payload: Payload,
}

/// One operation before it is rendered in a dialect.
#[derive(Debug, Clone)]
struct Operation {
    method: &'static str,
    id: String,
    description: String,
    action: &'static str,
    gvk: Gvk,
    params: Vec<Param>,
    body: Option<Body>,
    responses: Vec<Response>,
    produces: &'static [&'static str],
}

impl Operation {
    fn render(&self, dialect: Dialect, tag: &str) -> Value {
        let mut op = Map::new();
        op.insert("description".into(), json!(self.description));
        op.insert("operationId".into(), json!(self.id));
        op.insert("tags".into(), json!([tag]));
        let mut parameters: Vec<Value> = self.params.iter().map(|p| p.render(dialect)).collect();
        match (dialect, &self.body) {
            (Dialect::V3, Some(body)) => {
                let schema = payload_schema(dialect, &body.payload);
                let content: Map<String, Value> = body
                    .content_types
                    .iter()
                    .map(|t| (t.to_string(), json!({ "schema": schema })))
                    .collect();
                op.insert(
                    "requestBody".into(),
                    json!({ "content": content, "required": true }),
                );
            }
            (Dialect::V2, Some(body)) => {
                parameters.insert(
                    0,
                    json!({
                        "name": "body",
                        "in": "body",
                        "required": true,
                        "schema": payload_schema(dialect, &body.payload),
                    }),
                );
                op.insert("consumes".into(), json!(body.content_types));
            }
            (_, None) => {}
        }
        if !parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(parameters));
        }
        let mut responses = Map::new();
        for r in &self.responses {
            let schema = payload_schema(dialect, &r.payload);
            let rendered = match dialect {
                Dialect::V3 => {
                    let content: Map<String, Value> = self
                        .produces
                        .iter()
                        .map(|t| (t.to_string(), json!({ "schema": schema })))
                        .collect();
                    json!({ "description": r.description, "content": content })
                }
                Dialect::V2 => json!({ "description": r.description, "schema": schema }),
            };
            responses.insert(r.code.to_string(), rendered);
        }
        responses.insert("401".into(), json!({ "description": "Unauthorized" }));
        op.insert("responses".into(), Value::Object(responses));
        if dialect == Dialect::V2 {
            op.insert("produces".into(), json!(self.produces));
            op.insert("schemes".into(), json!(["https"]));
        }
        op.insert("x-kubernetes-action".into(), json!(self.action));
        op.insert(
            "x-kubernetes-group-version-kind".into(),
            self.gvk.to_value(),
        );
        Value::Object(op)
    }
}

fn payload_schema(dialect: Dialect, payload: &Payload) -> Value {
    match payload {
        Payload::Definition(name) => dialect.reference(name),
        Payload::Text => json!({ "type": "string" }),
    }
}

/// "AppsV1", "CoreV1", "RbacAuthorizationV1": how operation ids name a group-version.
pub fn group_version_ident(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.strip_suffix(".k8s.io").unwrap_or(group)
    };
    let mut out: String = group.split(['.', '-']).map(capitalise).collect();
    out.push_str(&capitalise(version));
    out
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The tag operations are grouped under: "core_v1", "apps_v1", "rbacAuthorization_v1".
fn tag(group: &str, version: &str) -> String {
    let ident = group_version_ident(group, version);
    let group_part = ident.strip_suffix(&capitalise(version)).unwrap_or(&ident);
    let mut chars = group_part.chars();
    let lowered: String = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("{lowered}_{version}")
}

/// Collects the paths of one group-version.
pub struct PathBuilder {
    dialect: Dialect,
    group: String,
    version: String,
    ident: String,
    tag: String,
    paths: Map<String, Value>,
}

/// The definition names shared by every group-version's operations.
pub struct Shared {
    pub status: String,
    pub delete_options: String,
    pub watch_event: String,
    pub patch: String,
}

impl Shared {
    pub fn new() -> Self {
        let meta = "io.k8s.apimachinery.pkg.apis.meta.v1";
        Self {
            status: format!("{meta}.Status"),
            delete_options: format!("{meta}.DeleteOptions"),
            watch_event: format!("{meta}.WatchEvent"),
            patch: format!("{meta}.Patch"),
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

impl PathBuilder {
    pub fn new(dialect: Dialect, group: &str, version: &str) -> Self {
        Self {
            dialect,
            group: group.to_string(),
            version: version.to_string(),
            ident: group_version_ident(group, version),
            tag: tag(group, version),
            paths: Map::new(),
        }
    }

    /// "/api/v1" or "/apis/apps/v1".
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The group-version root, answering its APIResourceList.
    pub fn add_root(&mut self, api_resource_list: &str) {
        let op = json!({
            "description": "get available resources",
            "operationId": format!("get{}APIResources", self.ident),
            "tags": [self.tag],
            "responses": self.render_responses(
                &[Response { code: 200, description: "OK", payload: Payload::Definition(api_resource_list.to_string()) }],
                OBJECT_TYPES,
            ),
        });
        let mut item = Map::new();
        item.insert("get".into(), op);
        if self.dialect == Dialect::V2 {
            if let Some(get) = item.get_mut("get") {
                get["produces"] = json!(OBJECT_TYPES);
                get["consumes"] = json!(OBJECT_TYPES);
                get["schemes"] = json!(["https"]);
            }
        }
        self.paths
            .insert(format!("{}/", self.prefix()), Value::Object(item));
    }

    fn render_responses(&self, responses: &[Response], produces: &'static [&'static str]) -> Value {
        let op = Operation {
            method: "get",
            id: String::new(),
            description: String::new(),
            action: "get",
            gvk: Gvk::new("", "", ""),
            params: Vec::new(),
            body: None,
            responses: responses.to_vec(),
            produces,
        };
        op.render(self.dialect, &self.tag)["responses"].take()
    }

    /// Every operation of one resource and its subresources.
    pub fn add_resource(
        &mut self,
        r: &ResourceInfo,
        names: &KindNames,
        subresources: &[(&Subresource, Option<String>)],
        shared: &Shared,
    ) {
        let gvk = Gvk::new(r.group, r.version, r.kind);
        let has = |verb: &str| r.verbs.contains(&verb);
        let prefix = self.prefix();
        let (scope, scoped_prefix, scope_params) = if r.namespaced {
            (
                "Namespaced",
                format!("{prefix}/namespaces/{{namespace}}"),
                vec![namespace_param()],
            )
        } else {
            ("", prefix.clone(), Vec::new())
        };
        let kind = format!("{scope}{}", r.kind);
        let object = Payload::Definition(names.object.clone());
        let list = Payload::Definition(names.list.clone());
        let event = Payload::Definition(shared.watch_event.clone());
        let status = Payload::Definition(shared.status.clone());

        let mut collection = Vec::new();
        if has("list") {
            collection.push(self.op(
                "get",
                "list",
                &kind,
                "list",
                format!("list or watch objects of kind {}", r.kind),
                &gvk,
                params::LIST,
                None,
                vec![ok(list.clone())],
                WATCHABLE_TYPES,
            ));
        }
        if has("create") {
            collection.push(self.op(
                "post",
                "create",
                &kind,
                "post",
                format!("create a {}", r.kind),
                &gvk,
                params::CREATE,
                Some(Body {
                    payload: object.clone(),
                    content_types: ANY_TYPE,
                }),
                vec![
                    ok(object.clone()),
                    created(object.clone()),
                    accepted(object.clone()),
                ],
                OBJECT_TYPES,
            ));
        }
        if has("deletecollection") {
            let id_kind = format!("Collection{kind}");
            collection.push(self.op(
                "delete",
                "delete",
                &id_kind,
                "deletecollection",
                format!("delete collection of {}", r.kind),
                &gvk,
                params::DELETE_COLLECTION,
                Some(Body {
                    payload: Payload::Definition(shared.delete_options.clone()),
                    content_types: ANY_TYPE,
                }),
                vec![ok(status.clone())],
                OBJECT_TYPES,
            ));
        }
        self.insert(
            format!("{scoped_prefix}/{}", r.plural),
            &scope_params,
            collection,
        );

        let mut named_params = vec![name_param(r.kind)];
        named_params.extend(scope_params.iter().copied());
        let mut item = Vec::new();
        if has("get") {
            item.push(self.op(
                "get",
                "read",
                &kind,
                "get",
                format!("read the specified {}", r.kind),
                &gvk,
                &[],
                None,
                vec![ok(object.clone())],
                OBJECT_TYPES,
            ));
        }
        if has("update") {
            item.push(self.op(
                "put",
                "replace",
                &kind,
                "put",
                format!("replace the specified {}", r.kind),
                &gvk,
                params::UPDATE,
                Some(Body {
                    payload: object.clone(),
                    content_types: ANY_TYPE,
                }),
                vec![ok(object.clone()), created(object.clone())],
                OBJECT_TYPES,
            ));
        }
        if has("patch") {
            item.push(self.op(
                "patch",
                "patch",
                &kind,
                "patch",
                format!("partially update the specified {}", r.kind),
                &gvk,
                params::PATCH,
                Some(Body {
                    payload: Payload::Definition(shared.patch.clone()),
                    content_types: PATCH_TYPES,
                }),
                vec![ok(object.clone()), created(object.clone())],
                OBJECT_TYPES,
            ));
        }
        if has("delete") {
            item.push(self.op(
                "delete",
                "delete",
                &kind,
                "delete",
                format!("delete a {}", r.kind),
                &gvk,
                params::DELETE,
                Some(Body {
                    payload: Payload::Definition(shared.delete_options.clone()),
                    content_types: ANY_TYPE,
                }),
                vec![ok(object.clone()), accepted(object.clone())],
                OBJECT_TYPES,
            ));
        }
        self.insert(
            format!("{scoped_prefix}/{}/{{name}}", r.plural),
            &named_params,
            item,
        );

        if has("watch") {
            let watch_list = self.op("get", "watch", &format!("{kind}List"), "watchlist",
                format!("watch individual changes to a list of {}. deprecated: use the 'watch' parameter with a list operation instead.", r.kind),
                &gvk, params::LIST, None, vec![ok(event.clone())], WATCHABLE_TYPES);
            self.insert(
                format!(
                    "{prefix}/watch{}/{}",
                    scoped_prefix.strip_prefix(&prefix).unwrap_or(""),
                    r.plural
                ),
                &scope_params,
                vec![watch_list],
            );
            let watch_one = self.op("get", "watch", &kind, "watch",
                format!("watch changes to an object of kind {}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter.", r.kind),
                &gvk, params::LIST, None, vec![ok(event.clone())], WATCHABLE_TYPES);
            self.insert(
                format!(
                    "{prefix}/watch{}/{}/{{name}}",
                    scoped_prefix.strip_prefix(&prefix).unwrap_or(""),
                    r.plural
                ),
                &named_params,
                vec![watch_one],
            );
        }
        if r.namespaced {
            // Listing and watching across every namespace.
            if has("list") {
                let op = self.op(
                    "get",
                    "list",
                    &format!("{}ForAllNamespaces", r.kind),
                    "list",
                    format!("list or watch objects of kind {}", r.kind),
                    &gvk,
                    params::LIST,
                    None,
                    vec![ok(list.clone())],
                    WATCHABLE_TYPES,
                );
                self.insert(format!("{prefix}/{}", r.plural), &[], vec![op]);
            }
            if has("watch") {
                let op = self.op("get", "watch", &format!("{}ListForAllNamespaces", r.kind), "watchlist",
                    format!("watch individual changes to a list of {}. deprecated: use the 'watch' parameter with a list operation instead.", r.kind),
                    &gvk, params::LIST, None, vec![ok(event)], WATCHABLE_TYPES);
                self.insert(format!("{prefix}/watch/{}", r.plural), &[], vec![op]);
            }
        }

        for (sub, definition) in subresources {
            self.add_subresource(
                r,
                &kind,
                &scoped_prefix,
                &named_params,
                sub,
                definition.as_deref(),
            );
        }
    }

    fn add_subresource(
        &mut self,
        r: &ResourceInfo,
        kind: &str,
        scoped_prefix: &str,
        named_params: &[Param],
        sub: &Subresource,
        definition: Option<&str>,
    ) {
        let gvk = Gvk::new(sub.group, sub.version, sub.kind);
        let id_kind = format!("{kind}{}", capitalise(sub.name));
        let path = format!("{scoped_prefix}/{}/{{name}}/{}", r.plural, sub.name);
        let streaming: Option<&'static [Param]> = match sub.name {
            "exec" => Some(params::EXEC),
            "attach" => Some(params::ATTACH),
            "portforward" => Some(params::PORT_FORWARD),
            "proxy" => Some(params::PROXY),
            _ => None,
        };
        if let Some(query) = streaming {
            let ops: Vec<Operation> = sub
                .verbs
                .iter()
                .filter_map(|verb| http_method(verb))
                .map(|method| {
                    let method_ident = capitalise(method);
                    Operation {
                        method,
                        id: format!("connect{}{method_ident}{id_kind}", self.ident),
                        description: format!(
                            "connect {method_ident} requests to {} of {}",
                            sub.name, r.kind
                        ),
                        action: "connect",
                        gvk: gvk.clone(),
                        params: query.to_vec(),
                        body: None,
                        responses: vec![ok(Payload::Text)],
                        produces: &["*/*"],
                    }
                })
                .collect();
            if sub.name == "proxy" {
                let mut with_path = named_params.to_vec();
                with_path.push(Param::path("path", "path to the resource"));
                let nested: Vec<Operation> = ops
                    .iter()
                    .cloned()
                    .map(|mut op| {
                        op.id.push_str("WithPath");
                        op
                    })
                    .collect();
                self.insert(format!("{path}/{{path}}"), &with_path, nested);
            }
            self.insert(path, named_params, ops);
            return;
        }
        if sub.name == "log" {
            let op = Operation {
                method: "get",
                id: format!("read{}{id_kind}", self.ident),
                description: format!("read log of the specified {}", r.kind),
                action: "get",
                gvk: Gvk::new(r.group, r.version, r.kind),
                params: params::LOG.to_vec(),
                body: None,
                responses: vec![ok(Payload::Text)],
                produces: TEXT_TYPES,
            };
            self.insert(path, named_params, vec![op]);
            return;
        }
        let Some(definition) = definition else {
            tracing::debug!(
                resource = r.plural,
                subresource = sub.name,
                "subresource without a schema"
            );
            return;
        };
        let object = Payload::Definition(definition.to_string());
        let mut ops = Vec::new();
        for verb in sub.verbs {
            let op = match *verb {
                "get" => self.op(
                    "get",
                    "read",
                    &id_kind,
                    "get",
                    format!("read {} of the specified {}", sub.name, r.kind),
                    &gvk,
                    &[],
                    None,
                    vec![ok(object.clone())],
                    OBJECT_TYPES,
                ),
                "update" => self.op(
                    "put",
                    "replace",
                    &id_kind,
                    "put",
                    format!("replace {} of the specified {}", sub.name, r.kind),
                    &gvk,
                    params::UPDATE,
                    Some(Body {
                        payload: object.clone(),
                        content_types: ANY_TYPE,
                    }),
                    vec![ok(object.clone()), created(object.clone())],
                    OBJECT_TYPES,
                ),
                "patch" => self.op(
                    "patch",
                    "patch",
                    &id_kind,
                    "patch",
                    format!("partially update {} of the specified {}", sub.name, r.kind),
                    &gvk,
                    params::PATCH,
                    Some(Body {
                        payload: Payload::Definition(
                            "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
                        ),
                        content_types: PATCH_TYPES,
                    }),
                    vec![ok(object.clone()), created(object.clone())],
                    OBJECT_TYPES,
                ),
                "create" => self.op(
                    "post",
                    "create",
                    &id_kind,
                    "post",
                    format!("create {} of a {}", sub.name, r.kind),
                    &gvk,
                    params::CREATE,
                    Some(Body {
                        payload: object.clone(),
                        content_types: ANY_TYPE,
                    }),
                    vec![
                        ok(object.clone()),
                        created(object.clone()),
                        accepted(object.clone()),
                    ],
                    OBJECT_TYPES,
                ),
                _ => continue,
            };
            ops.push(op);
        }
        self.insert(path, named_params, ops);
    }

    #[allow(clippy::too_many_arguments)]
    fn op(
        &self,
        method: &'static str,
        verb: &str,
        kind_ident: &str,
        action: &'static str,
        description: String,
        gvk: &Gvk,
        query: &[Param],
        body: Option<Body>,
        responses: Vec<Response>,
        produces: &'static [&'static str],
    ) -> Operation {
        Operation {
            method,
            id: format!("{verb}{}{kind_ident}", self.ident),
            description,
            action,
            gvk: gvk.clone(),
            params: query.to_vec(),
            body,
            responses,
            produces,
        }
    }

    fn insert(&mut self, path: String, path_params: &[Param], ops: Vec<Operation>) {
        if ops.is_empty() {
            return;
        }
        let mut item = Map::new();
        for op in &ops {
            item.insert(op.method.into(), op.render(self.dialect, &self.tag));
        }
        let mut shared: Vec<Value> = path_params.iter().map(|p| p.render(self.dialect)).collect();
        shared.push(params::PRETTY.render(self.dialect));
        item.insert("parameters".into(), Value::Array(shared));
        self.paths.insert(path, Value::Object(item));
    }

    pub fn finish(self) -> Map<String, Value> {
        self.paths
    }
}

fn http_method(verb: &str) -> Option<&'static str> {
    Some(match verb {
        "get" => "get",
        "create" => "post",
        "update" => "put",
        "patch" => "patch",
        "delete" => "delete",
        _ => return None,
    })
}

fn namespace_param() -> Param {
    Param::path(
        "namespace",
        "object name and auth scope, such as for teams and projects",
    )
}

fn name_param(_kind: &str) -> Param {
    Param::path("name", "name of the object")
}

fn ok(payload: Payload) -> Response {
    Response {
        code: 200,
        description: "OK",
        payload,
    }
}

fn created(payload: Payload) -> Response {
    Response {
        code: 201,
        description: "Created",
        payload,
    }
}

fn accepted(payload: Payload) -> Response {
    Response {
        code: 202,
        description: "Accepted",
        payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_kubernetes() {
        assert_eq!(group_version_ident("", "v1"), "CoreV1");
        assert_eq!(group_version_ident("apps", "v1"), "AppsV1");
        assert_eq!(
            group_version_ident("rbac.authorization.k8s.io", "v1"),
            "RbacAuthorizationV1"
        );
        assert_eq!(tag("", "v1"), "core_v1");
        assert_eq!(tag("networking.k8s.io", "v1"), "networking_v1");
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
    }
}
