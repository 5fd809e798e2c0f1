//! The path half of an OpenAPI document: one operation per resource, verb and scope, with
//! the operation ids, actions and group/version/kind extensions kubectl reads.

use api::{ResourceInfo, Subresource};
use serde_json::{Map, Value};

use super::operation::{
    Code, Operation, Payload, ANY_TYPE, PATCH_TYPES, TEXT_TYPES, WATCHABLE_TYPES,
};
use super::params::{self, Param};
use super::schemas::{Dialect, Gvk, KindNames};

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

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

/// Where one resource's paths live and how its operations are named.
struct Scope<'a> {
    r: &'a ResourceInfo,
    gvk: Gvk,
    /// "NamespacedDeployment" or "Node": the kind as operation ids spell it.
    kind_ident: String,
    /// "/apis/apps/v1/namespaces/{namespace}" or "/api/v1".
    scoped_prefix: String,
    /// The path parameters of the collection path.
    collection_params: Vec<Param>,
    /// The path parameters of the object path.
    object_params: Vec<Param>,
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
        let op = Operation::new(
            "get",
            format!("get{}APIResources", self.ident),
            "get available resources".into(),
            Payload::of(api_resource_list),
        );
        self.insert(format!("{}/", self.prefix()), &[], vec![op]);
    }

    fn id(&self, verb: &str, kind_ident: &str) -> String {
        format!("{verb}{}{kind_ident}", self.ident)
    }

    /// Every operation of one resource and its subresources.
    pub fn add_resource(
        &mut self,
        r: &ResourceInfo,
        names: &KindNames,
        subresources: &[(&Subresource, Option<String>)],
    ) {
        let prefix = self.prefix();
        let namespace = Param::path(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        );
        let name = Param::path("name", "name of the object");
        let scope = if r.namespaced {
            Scope {
                r,
                gvk: Gvk::new(r.group, r.version, r.kind),
                kind_ident: format!("Namespaced{}", r.kind),
                scoped_prefix: format!("{prefix}/namespaces/{{namespace}}"),
                collection_params: vec![namespace],
                object_params: vec![name, namespace],
            }
        } else {
            Scope {
                r,
                gvk: Gvk::new(r.group, r.version, r.kind),
                kind_ident: r.kind.to_string(),
                scoped_prefix: prefix.clone(),
                collection_params: Vec::new(),
                object_params: vec![name],
            }
        };
        self.add_collection(&scope, names);
        self.add_object(&scope, names);
        self.add_watches(&scope);
        for (sub, definition) in subresources {
            self.add_subresource(&scope, sub, definition.as_deref());
        }
    }

    /// `…/<plural>`: list, create, deletecollection.
    fn add_collection(&mut self, s: &Scope<'_>, names: &KindNames) {
        let (r, gvk, k) = (s.r, &s.gvk, &s.kind_ident);
        let has = |verb: &str| r.verbs.contains(&verb);
        let mut ops = Vec::new();
        if has("list") {
            ops.push(self.list(s, names, k));
        }
        if has("create") {
            ops.push(
                Operation::new(
                    "post",
                    self.id("create", k),
                    format!("create a {}", r.kind),
                    Payload::of(&names.object),
                )
                .action("post", gvk)
                .query(params::CREATE)
                .body(Payload::of(&names.object), ANY_TYPE)
                .responses(&[Code::Ok, Code::Created, Code::Accepted]),
            );
        }
        if has("deletecollection") {
            ops.push(
                Operation::new(
                    "delete",
                    self.id("delete", &format!("Collection{k}")),
                    format!("delete collection of {}", r.kind),
                    Payload::of(&format!("{META}.Status")),
                )
                .action("deletecollection", gvk)
                .query(params::DELETE_COLLECTION)
                .body(Payload::of(&format!("{META}.DeleteOptions")), ANY_TYPE),
            );
        }
        let path = format!("{}/{}", s.scoped_prefix, r.plural);
        self.insert(path, &s.collection_params, ops);
        if r.namespaced && has("list") {
            // Listing across every namespace.
            let op = self.list(s, names, &format!("{}ForAllNamespaces", r.kind));
            self.insert(format!("{}/{}", self.prefix(), r.plural), &[], vec![op]);
        }
    }

    fn list(&self, s: &Scope<'_>, names: &KindNames, kind_ident: &str) -> Operation {
        Operation::new(
            "get",
            self.id("list", kind_ident),
            format!("list or watch objects of kind {}", s.r.kind),
            Payload::of(&names.list),
        )
        .action("list", &s.gvk)
        .query(params::LIST)
        .produces(WATCHABLE_TYPES)
    }

    /// `…/<plural>/{name}`: read, replace, patch, delete.
    fn add_object(&mut self, s: &Scope<'_>, names: &KindNames) {
        let (r, gvk, k) = (s.r, &s.gvk, &s.kind_ident);
        let has = |verb: &str| r.verbs.contains(&verb);
        let object = || Payload::of(&names.object);
        let mut ops = Vec::new();
        if has("get") {
            ops.push(
                Operation::new(
                    "get",
                    self.id("read", k),
                    format!("read the specified {}", r.kind),
                    object(),
                )
                .action("get", gvk),
            );
        }
        if has("update") {
            ops.push(self.replace(
                k,
                format!("replace the specified {}", r.kind),
                gvk,
                &names.object,
            ));
        }
        if has("patch") {
            ops.push(self.patch(
                k,
                format!("partially update the specified {}", r.kind),
                gvk,
                &names.object,
            ));
        }
        if has("delete") {
            ops.push(
                Operation::new(
                    "delete",
                    self.id("delete", k),
                    format!("delete a {}", r.kind),
                    object(),
                )
                .action("delete", gvk)
                .query(params::DELETE)
                .body(Payload::of(&format!("{META}.DeleteOptions")), ANY_TYPE)
                .responses(&[Code::Ok, Code::Accepted]),
            );
        }
        let path = format!("{}/{}/{{name}}", s.scoped_prefix, r.plural);
        self.insert(path, &s.object_params, ops);
    }

    fn replace(
        &self,
        kind_ident: &str,
        description: String,
        gvk: &Gvk,
        definition: &str,
    ) -> Operation {
        Operation::new(
            "put",
            self.id("replace", kind_ident),
            description,
            Payload::of(definition),
        )
        .action("put", gvk)
        .query(params::UPDATE)
        .body(Payload::of(definition), ANY_TYPE)
        .responses(&[Code::Ok, Code::Created])
    }

    fn patch(
        &self,
        kind_ident: &str,
        description: String,
        gvk: &Gvk,
        definition: &str,
    ) -> Operation {
        Operation::new(
            "patch",
            self.id("patch", kind_ident),
            description,
            Payload::of(definition),
        )
        .action("patch", gvk)
        .query(params::PATCH)
        .body(Payload::of(&format!("{META}.Patch")), PATCH_TYPES)
        .responses(&[Code::Ok, Code::Created])
    }

    /// The deprecated `/watch/…` paths, which clients of old still use.
    fn add_watches(&mut self, s: &Scope<'_>) {
        let r = s.r;
        if !r.verbs.contains(&"watch") {
            return;
        }
        let prefix = self.prefix();
        let scoped = s.scoped_prefix.strip_prefix(&prefix).unwrap_or("");
        let event = || Payload::of(&format!("{META}.WatchEvent"));
        let watch_list = |id: String| {
            Operation::new(
                "get",
                id,
                format!(
                    "watch individual changes to a list of {}. deprecated: use the 'watch' parameter with a list operation instead.",
                    r.kind
                ),
                event(),
            )
            .action("watchlist", &s.gvk)
            .query(params::LIST)
            .produces(WATCHABLE_TYPES)
        };
        let list = watch_list(self.id("watch", &format!("{}List", s.kind_ident)));
        self.insert(
            format!("{prefix}/watch{scoped}/{}", r.plural),
            &s.collection_params,
            vec![list],
        );
        let one = Operation::new(
            "get",
            self.id("watch", &s.kind_ident),
            format!(
                "watch changes to an object of kind {}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter.",
                r.kind
            ),
            event(),
        )
        .action("watch", &s.gvk)
        .query(params::LIST)
        .produces(WATCHABLE_TYPES);
        self.insert(
            format!("{prefix}/watch{scoped}/{}/{{name}}", r.plural),
            &s.object_params,
            vec![one],
        );
        if r.namespaced {
            let all = watch_list(self.id("watch", &format!("{}ListForAllNamespaces", r.kind)));
            self.insert(format!("{prefix}/watch/{}", r.plural), &[], vec![all]);
        }
    }

    fn add_subresource(&mut self, s: &Scope<'_>, sub: &Subresource, definition: Option<&str>) {
        let r = s.r;
        let gvk = Gvk::new(sub.group, sub.version, sub.kind);
        let k = format!("{}{}", s.kind_ident, capitalise(sub.name));
        let path = format!("{}/{}/{{name}}/{}", s.scoped_prefix, r.plural, sub.name);
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
                    Operation::new(
                        method,
                        self.id("connect", &format!("{method_ident}{k}")),
                        format!(
                            "connect {method_ident} requests to {} of {}",
                            sub.name, r.kind
                        ),
                        Payload::Text,
                    )
                    .action("connect", &gvk)
                    .query(query)
                    .produces(&["*/*"])
                })
                .collect();
            if sub.name == "proxy" {
                let mut with_path = s.object_params.clone();
                with_path.push(Param::path("path", "path to the resource"));
                let nested = ops
                    .iter()
                    .cloned()
                    .map(|op| op.with_id_suffix("WithPath"))
                    .collect();
                self.insert(format!("{path}/{{path}}"), &with_path, nested);
            }
            self.insert(path, &s.object_params, ops);
            return;
        }
        if sub.name == "log" {
            let op = Operation::new(
                "get",
                self.id("read", &k),
                format!("read log of the specified {}", r.kind),
                Payload::Text,
            )
            .action("get", &s.gvk)
            .query(params::LOG)
            .produces(TEXT_TYPES);
            self.insert(path, &s.object_params, vec![op]);
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
        let mut ops = Vec::new();
        for verb in sub.verbs {
            let what = format!("{} of the specified {}", sub.name, r.kind);
            ops.push(match *verb {
                "get" => Operation::new(
                    "get",
                    self.id("read", &k),
                    format!("read {what}"),
                    Payload::of(definition),
                )
                .action("get", &gvk),
                "update" => self.replace(&k, format!("replace {what}"), &gvk, definition),
                "patch" => self.patch(&k, format!("partially update {what}"), &gvk, definition),
                "create" => Operation::new(
                    "post",
                    self.id("create", &k),
                    format!("create {} of a {}", sub.name, r.kind),
                    Payload::of(definition),
                )
                .action("post", &gvk)
                .query(params::CREATE)
                .body(Payload::of(definition), ANY_TYPE)
                .responses(&[Code::Ok, Code::Created, Code::Accepted]),
                _ => continue,
            });
        }
        self.insert(path, &s.object_params, ops);
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
