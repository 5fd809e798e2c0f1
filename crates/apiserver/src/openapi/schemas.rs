//! The schema half of an OpenAPI document: every definition one group-version needs,
//! generated from the k8s-openapi types with schemars, then marked with the
//! group/version/kind each top-level definition describes and decorated with the
//! Kubernetes field extensions.

use api::{ResourceInfo, Subresource};
use schemars::generate::SchemaSettings;
use schemars::transform::RemoveRefSiblings;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use super::extensions;
use super::kinds::{self, Meta};

/// The two OpenAPI dialects Kubernetes serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAPI 3.0: `#/components/schemas/`, a `$ref` with siblings wrapped in `allOf`.
    V3,
    /// Swagger 2.0: `#/definitions/`, `$ref` kept beside its description as Kubernetes does.
    V2,
}

impl Dialect {
    fn definitions_path(self) -> &'static str {
        match self {
            Dialect::V3 => "/components/schemas",
            Dialect::V2 => "/definitions",
        }
    }

    /// A `$ref` to the named definition.
    pub fn reference(self, definition: &str) -> Value {
        json!({ "$ref": format!("#{}/{definition}", self.definitions_path()) })
    }

    /// A reference carrying a description: wrapped in `allOf` in OpenAPI 3.0, where a
    /// `$ref`'s siblings are ignored.
    fn described_reference(self, definition: &str, description: &str) -> Value {
        match self {
            Dialect::V3 => json!({
                "description": description,
                "allOf": [self.reference(definition)],
            }),
            Dialect::V2 => {
                let mut r = self.reference(definition);
                r["description"] = json!(description);
                r
            }
        }
    }

    fn generator(self) -> SchemaGenerator {
        SchemaSettings::openapi3()
            .with(|s| {
                s.meta_schema = None;
                s.definitions_path = self.definitions_path().into();
                if self == Dialect::V2 {
                    s.transforms.retain(|t| !t.is::<RemoveRefSiblings>());
                }
            })
            .into_generator()
    }
}

/// A group/version/kind as the `x-kubernetes-group-version-kind` extension spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        }
    }

    pub fn to_value(&self) -> Value {
        json!({ "group": self.group, "version": self.version, "kind": self.kind })
    }
}

/// The definition names an operation's request and response bodies point at.
#[derive(Debug, Clone)]
pub struct KindNames {
    pub object: String,
    pub list: String,
}

/// Collects the definitions of one document.
pub struct SchemaBuilder {
    dialect: Dialect,
    generator: SchemaGenerator,
    /// (definition, gvk) pairs to mark once generation is done.
    marks: Vec<(String, Gvk)>,
}

impl SchemaBuilder {
    pub fn new(dialect: Dialect) -> Self {
        let mut generator = dialect.generator();
        // Every document answers errors, deletes and watches with these.
        Meta::status(&mut generator);
        Meta::delete_options(&mut generator);
        Meta::watch_event(&mut generator);
        Meta::patch(&mut generator);
        Self {
            dialect,
            generator,
            marks: vec![Gvk::new("", "v1", "Status")]
                .into_iter()
                .map(|g| ("io.k8s.apimachinery.pkg.apis.meta.v1.Status".to_string(), g))
                .collect(),
        }
    }

    /// Adds the kind's definition (generated from its type, or an open object schema for a
    /// kind k8s-openapi does not know) and returns its definition name.
    pub fn add_kind(&mut self, group: &str, version: &str, kind: &str) -> String {
        let name = match kinds::lookup(group, version, kind) {
            Some(known) => {
                (known.subschema)(&mut self.generator);
                (known.definition)().into_owned()
            }
            None => {
                let name = untyped_definition_name(group, version, kind);
                if !self.generator.definitions().contains_key(&name) {
                    tracing::debug!(group, version, kind, "no typed schema; serving an open one");
                    let schema = self.untyped_schema(kind);
                    self.generator
                        .definitions_mut()
                        .insert(name.clone(), schema);
                }
                name
            }
        };
        self.mark(&name, Gvk::new(group, version, kind));
        name
    }

    /// Adds a served resource: its kind and its list kind.
    pub fn add_resource(&mut self, r: &ResourceInfo) -> KindNames {
        let object = self.add_kind(r.group, r.version, r.kind);
        let list = format!("{object}List");
        if !self.generator.definitions().contains_key(&list) {
            let schema = self.list_schema(r.kind, &object);
            self.generator
                .definitions_mut()
                .insert(list.clone(), schema);
        }
        self.mark(&list, Gvk::new(r.group, r.version, &r.list_kind()));
        KindNames { object, list }
    }

    /// Adds the kind a subresource speaks, when it is an object with a schema (not the
    /// options of a streaming subresource such as exec).
    pub fn add_subresource(&mut self, sub: &Subresource) -> Option<String> {
        kinds::lookup(sub.group, sub.version, sub.kind)?;
        Some(self.add_kind(sub.group, sub.version, sub.kind))
    }

    /// Marks the generic meta kinds as belonging to the document's group-version too, as
    /// they are registered in every group-version.
    pub fn add_meta_kinds(&mut self, group: &str, version: &str) {
        self.mark(
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
            Gvk::new(group, version, "DeleteOptions"),
        );
        self.mark(
            "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
            Gvk::new(group, version, "WatchEvent"),
        );
    }

    /// Adds the APIResourceList the group-version root answers.
    pub fn add_api_resource_list(&mut self) -> String {
        Meta::api_resource_list(&mut self.generator);
        let name = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList".to_string();
        self.mark(&name, Gvk::new("", "v1", "APIResourceList"));
        name
    }

    fn mark(&mut self, definition: &str, gvk: Gvk) {
        let entry = (definition.to_string(), gvk);
        if !self.marks.contains(&entry) {
            self.marks.push(entry);
        }
    }

    /// The finished definitions: transformed for the dialect, marked and decorated.
    pub fn finish(mut self) -> Map<String, Value> {
        let mut definitions = self.generator.take_definitions(true);
        for (name, gvk) in &self.marks {
            let Some(Value::Object(schema)) = definitions.get_mut(name) else {
                continue;
            };
            unrequire_metadata(schema);
            let list = schema
                .entry("x-kubernetes-group-version-kind")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = list {
                let v = gvk.to_value();
                if !items.contains(&v) {
                    items.push(v);
                }
            }
        }
        extensions::decorate(&mut definitions);
        definitions
    }

    fn type_meta_properties(&self) -> Map<String, Value> {
        let mut props = Map::new();
        props.insert(
            "apiVersion".into(),
            json!({
                "description": "APIVersion defines the versioned schema of this representation of an object: the group and version the server serves it at.",
                "type": "string",
            }),
        );
        props.insert(
            "kind".into(),
            json!({
                "description": "Kind is the REST resource this object represents, in CamelCase; servers infer it from the endpoint a request reaches.",
                "type": "string",
            }),
        );
        props
    }

    fn list_schema(&mut self, kind: &str, item_definition: &str) -> Value {
        Meta::list_meta(&mut self.generator);
        let mut props = self.type_meta_properties();
        props.insert(
            "items".into(),
            json!({
                "description": format!("items is the list of {kind} objects."),
                "type": "array",
                "items": self.dialect.reference(item_definition),
            }),
        );
        props.insert(
            "metadata".into(),
            self.dialect.described_reference(
                "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
                "Standard list metadata: resourceVersion and the continue token for paging.",
            ),
        );
        json!({
            "description": format!("{kind}List is a list of {kind} objects."),
            "type": "object",
            "properties": props,
            "required": ["items"],
        })
    }

    fn untyped_schema(&mut self, kind: &str) -> Value {
        Meta::object_meta(&mut self.generator);
        let mut props = self.type_meta_properties();
        props.insert(
            "metadata".into(),
            self.dialect.described_reference(
                "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                "Standard object's metadata.",
            ),
        );
        json!({
            "description": format!("{kind} is served without a typed schema; any fields are kept."),
            "type": "object",
            "properties": props,
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

/// k8s-openapi lists `metadata` as required on every kind because its Rust field is not
/// optional; Kubernetes does not, and `kubectl explain` would print `-required-` for it.
fn unrequire_metadata(schema: &mut Map<String, Value>) {
    let Some(Value::Array(required)) = schema.get_mut("required") else {
        return;
    };
    required.retain(|r| r != "metadata");
    if required.is_empty() {
        schema.remove("required");
    }
}

/// The definition name of a kind without a typed schema, in the reverse-domain form
/// Kubernetes gives custom resources (`io.k8s.metrics.v1beta1.PodMetrics`).
fn untyped_definition_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').filter(|p| !p.is_empty()).collect();
    parts.reverse();
    if parts.is_empty() {
        parts.push("io.k8s.api.core");
    }
    format!("{}.{version}.{kind}", parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_kind_brings_its_references() {
        let mut b = SchemaBuilder::new(Dialect::V3);
        let name = b.add_kind("apps", "v1", "Deployment");
        assert_eq!(name, "io.k8s.api.apps.v1.Deployment");
        let defs = b.finish();
        assert!(defs.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert!(defs.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        assert_eq!(
            defs[&name]["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        // OpenAPI 3.0 ignores a $ref's siblings, so the description moves beside an allOf.
        let spec = &defs[&name]["properties"]["spec"];
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(spec["description"].is_string());
        assert!(
            defs[&name].get("required").is_none(),
            "metadata is optional"
        );
        let spec_required = &defs["io.k8s.api.apps.v1.DeploymentSpec"]["required"];
        assert_eq!(spec_required, &json!(["selector", "template"]));
    }

    #[test]
    fn swagger_keeps_ref_beside_description() {
        let mut b = SchemaBuilder::new(Dialect::V2);
        let name = b.add_kind("apps", "v1", "Deployment");
        let defs = b.finish();
        let spec = &defs[&name]["properties"]["spec"];
        assert_eq!(
            spec["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(spec["description"].is_string());
    }

    #[test]
    fn unknown_kind_gets_an_open_schema() {
        let mut b = SchemaBuilder::new(Dialect::V3);
        let name = b.add_kind("metrics.k8s.io", "v1beta1", "PodMetrics");
        assert_eq!(name, "io.k8s.metrics.v1beta1.PodMetrics");
        let defs = b.finish();
        assert_eq!(defs[&name]["x-kubernetes-preserve-unknown-fields"], true);
        assert_eq!(
            defs[&name]["x-kubernetes-group-version-kind"][0]["kind"],
            "PodMetrics"
        );
    }
}
