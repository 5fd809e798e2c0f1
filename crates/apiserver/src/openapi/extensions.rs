//! The Kubernetes field extensions that k8s-openapi's types do not carry:
//! `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`. kubectl reads the first two to
//! compute strategic merge patches from the document, so they must agree with the patch
//! metadata the server merges with; both come from one table.

use serde_json::{json, Map, Value};

/// What Kubernetes declares about one field (or, with no field, one type) beyond its
/// schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMetadata {
    /// "merge", "retainKeys" or "merge,retainKeys".
    pub patch_strategy: Option<String>,
    pub patch_merge_key: Option<String>,
    /// "atomic", "set" or "map".
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    /// "atomic" or "granular".
    pub map_type: Option<String>,
}

impl FieldMetadata {
    fn is_empty(&self) -> bool {
        *self == FieldMetadata::default()
    }

    fn apply(&self, schema: &mut Map<String, Value>) {
        let mut set = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                schema.insert(key.to_string(), v);
            }
        };
        set(
            "x-kubernetes-patch-strategy",
            self.patch_strategy.as_ref().map(|s| json!(s)),
        );
        set(
            "x-kubernetes-patch-merge-key",
            self.patch_merge_key.as_ref().map(|s| json!(s)),
        );
        set(
            "x-kubernetes-list-type",
            self.list_type.as_ref().map(|s| json!(s)),
        );
        set(
            "x-kubernetes-list-map-keys",
            (!self.list_map_keys.is_empty()).then(|| json!(self.list_map_keys)),
        );
        set(
            "x-kubernetes-map-type",
            self.map_type.as_ref().map(|s| json!(s)),
        );
    }
}

/// Where field metadata comes from: given a definition name
/// (`io.k8s.api.core.v1.PodSpec`) and a property (`containers`, or `None` for the type
/// itself), what Kubernetes declares about it.
pub trait MetadataSource {
    fn lookup(&self, definition: &str, property: Option<&str>) -> FieldMetadata;
}

/// The patch metadata of the built-in types, kept in `api::patchmeta` (the same table the
/// server's strategic merge patch and server-side apply read).
pub struct BuiltinMetadata;

impl MetadataSource for BuiltinMetadata {
    fn lookup(&self, definition: &str, property: Option<&str>) -> FieldMetadata {
        builtin_lookup(definition, property)
    }
}

fn builtin_lookup(definition: &str, property: Option<&str>) -> FieldMetadata {
    use api::patchmeta::{self, FieldType, ListType};

    let Some(field) = property else {
        return FieldMetadata::default();
    };
    let mut meta = FieldMetadata::default();
    if let Some(info) = patchmeta::field_patch_info(definition, field) {
        meta.patch_strategy = Some(info.strategy.as_str().to_string());
        meta.patch_merge_key = info.merge_key.map(str::to_string);
    }
    match patchmeta::field_type(definition, field) {
        Some(FieldType::List { list_type, .. }) => match list_type {
            ListType::Atomic => meta.list_type = Some("atomic".into()),
            ListType::Set => meta.list_type = Some("set".into()),
            ListType::Map(keys) => {
                meta.list_type = Some("map".into());
                meta.list_map_keys = keys.iter().map(|k| k.to_string()).collect();
            }
        },
        Some(FieldType::AtomicStruct(_)) => meta.map_type = Some("atomic".into()),
        Some(FieldType::Struct(_)) | None => {}
    }
    meta
}

/// Decorates every definition with the built-in field metadata.
pub fn decorate(definitions: &mut Map<String, Value>) {
    decorate_with(definitions, &BuiltinMetadata);
}

/// Decorates every definition (and each of its properties) with what `source` declares.
/// The extensions go on the property schema itself, beside its `type`/`items`/`allOf`,
/// which is where kubectl's strategic merge patch lookup reads them.
pub fn decorate_with(definitions: &mut Map<String, Value>, source: &dyn MetadataSource) {
    for (name, schema) in definitions.iter_mut() {
        let Value::Object(schema) = schema else {
            continue;
        };
        let own = source.lookup(name, None);
        if !own.is_empty() {
            own.apply(schema);
        }
        let Some(Value::Object(properties)) = schema.get_mut("properties") else {
            continue;
        };
        for (property, prop_schema) in properties.iter_mut() {
            let meta = source.lookup(name, Some(property));
            if meta.is_empty() {
                continue;
            }
            if let Value::Object(prop_schema) = prop_schema {
                meta.apply(prop_schema);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table;

    impl MetadataSource for Table {
        fn lookup(&self, definition: &str, property: Option<&str>) -> FieldMetadata {
            match (definition, property) {
                ("io.k8s.api.core.v1.PodSpec", Some("containers")) => FieldMetadata {
                    patch_strategy: Some("merge".into()),
                    patch_merge_key: Some("name".into()),
                    list_type: Some("map".into()),
                    list_map_keys: vec!["name".into()],
                    map_type: None,
                },
                ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", None) => FieldMetadata {
                    map_type: Some("atomic".into()),
                    ..FieldMetadata::default()
                },
                _ => FieldMetadata::default(),
            }
        }
    }

    #[test]
    fn puts_extensions_on_the_property_and_the_type() {
        let mut defs = Map::new();
        defs.insert(
            "io.k8s.api.core.v1.PodSpec".into(),
            json!({"type": "object", "properties": {
                "containers": {"type": "array", "items": {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}},
                "hostname": {"type": "string"},
            }}),
        );
        defs.insert(
            "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector".into(),
            json!({"type": "object"}),
        );
        decorate_with(&mut defs, &Table);
        let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        let hostname = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["hostname"];
        assert_eq!(hostname, &json!({"type": "string"}));
        assert_eq!(
            defs["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["x-kubernetes-map-type"],
            "atomic"
        );
    }

    #[test]
    fn builtin_table_marks_pod_containers() {
        let meta = BuiltinMetadata.lookup("io.k8s.api.core.v1.PodSpec", Some("containers"));
        assert_eq!(meta.patch_merge_key.as_deref(), Some("name"));
        assert_eq!(meta.patch_strategy.as_deref(), Some("merge"));
        assert_eq!(meta.list_type.as_deref(), Some("map"));
        assert_eq!(meta.list_map_keys, vec!["name".to_string()]);
        let none = BuiltinMetadata.lookup("io.k8s.api.core.v1.PodSpec", Some("hostname"));
        assert_eq!(none, FieldMetadata::default());
    }
}
