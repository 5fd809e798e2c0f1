//! A cursor over the patch metadata of [`api::patchmeta`]: where a walk through an object is
//! in the type graph, and what the field under it says about merging.

use api::patchmeta::{self, FieldType, ListType, PatchInfo, PatchStrategy};
use api::ResourceInfo;
use serde_json::Value;

/// The root definition of the object being patched; None for kinds without metadata.
#[derive(Debug, Clone, Default)]
pub(crate) struct Schema {
    root: Option<String>,
}

impl Schema {
    pub(crate) fn for_resource(info: &ResourceInfo) -> Self {
        Self {
            root: patchmeta::root_definition(info.group, info.version, info.kind),
        }
    }

    /// The schema named by an object's own `apiVersion` and `kind`.
    pub(crate) fn for_object(obj: &Value) -> Self {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        Self {
            root: patchmeta::root_definition(group, version, kind),
        }
    }

    pub(crate) fn cursor(&self) -> Cursor<'_> {
        Cursor(self.root.as_deref())
    }
}

/// A position in the type graph: the definition of the object being walked, if known.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cursor<'a>(Option<&'a str>);

impl<'a> Cursor<'a> {
    /// The field `name` of the object at this position.
    pub(crate) fn field(self, name: &str) -> Field {
        match self.0 {
            Some(def) => Field {
                ty: patchmeta::field_type(def, name),
                patch: patchmeta::field_patch_info(def, name),
            },
            None => Field::default(),
        }
    }
}

/// What the metadata says about one field.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Field {
    pub(crate) ty: Option<FieldType>,
    pub(crate) patch: Option<PatchInfo>,
}

impl Field {
    /// The position of the field's value (of its items, for a list).
    pub(crate) fn child(&self) -> Cursor<'static> {
        Cursor(self.ty.and_then(FieldType::definition))
    }

    pub(crate) fn strategy(&self) -> Option<PatchStrategy> {
        self.patch.map(|p| p.strategy)
    }

    pub(crate) fn merges_list(&self) -> bool {
        self.strategy().is_some_and(PatchStrategy::merges)
    }

    pub(crate) fn replaces(&self) -> bool {
        self.strategy() == Some(PatchStrategy::Replace)
    }

    pub(crate) fn merge_key(&self) -> Option<&'static str> {
        self.patch.and_then(|p| p.merge_key)
    }

    /// How server-side apply identifies the items of this list (atomic when unknown).
    pub(crate) fn list_type(&self) -> ListType {
        match self.ty {
            Some(FieldType::List { list_type, .. }) => list_type,
            _ => ListType::Atomic,
        }
    }

    /// Whether server-side apply owns this object as one value.
    pub(crate) fn atomic_struct(&self) -> bool {
        matches!(self.ty, Some(FieldType::AtomicStruct(_)))
    }
}
