//! Assembles whole documents: one OpenAPI 3.0 document per group-version, and the single
//! Swagger 2.0 document covering every group-version.

use api::{Catalogue, ResourceInfo};
use serde_json::{json, Value};

use super::paths::PathBuilder;
use super::schemas::{Dialect, SchemaBuilder};

/// A served group-version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupVersion {
    pub group: &'static str,
    pub version: &'static str,
}

impl GroupVersion {
    /// The document's key under /openapi/v3: "api/v1" or "apis/apps/v1".
    pub fn path(&self) -> String {
        if self.group.is_empty() {
            format!("api/{}", self.version)
        } else {
            format!("apis/{}/{}", self.group, self.version)
        }
    }

    fn serves(&self, r: &ResourceInfo) -> bool {
        r.group == self.group && r.version == self.version
    }
}

/// Every group-version the catalogue serves, core first.
pub fn group_versions(catalogue: &Catalogue) -> Vec<GroupVersion> {
    catalogue
        .groups()
        .into_iter()
        .flat_map(|(group, versions)| {
            versions
                .into_iter()
                .map(move |version| GroupVersion { group, version })
        })
        .collect()
}

fn security_scheme() -> Value {
    json!({
        "BearerToken": {
            "description": "Bearer Token authentication",
            "type": "apiKey",
            "name": "authorization",
            "in": "header",
        }
    })
}

/// Adds one group-version's definitions and paths to the builders.
fn add_group_version(
    catalogue: &Catalogue,
    gv: GroupVersion,
    schemas: &mut SchemaBuilder,
    paths: &mut PathBuilder,
) {
    schemas.add_meta_kinds(gv.group, gv.version);
    let resource_list = schemas.add_api_resource_list();
    paths.add_root(&resource_list);
    for r in catalogue.iter().filter(|r| gv.serves(r)) {
        let names = schemas.add_resource(r);
        let subresources: Vec<_> = r
            .subresources
            .iter()
            .map(|s| (s, schemas.add_subresource(s)))
            .collect();
        paths.add_resource(r, &names, &subresources);
    }
}

/// The OpenAPI 3.0 document of one group-version.
pub fn v3(catalogue: &Catalogue, gv: GroupVersion) -> Value {
    let mut schemas = SchemaBuilder::new(Dialect::V3);
    let mut paths = PathBuilder::new(Dialect::V3, gv.group, gv.version);
    add_group_version(catalogue, gv, &mut schemas, &mut paths);
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "unversioned" },
        "paths": paths.finish(),
        "components": {
            "schemas": schemas.finish(),
            "securitySchemes": security_scheme(),
        },
        "security": [{ "BearerToken": [] }],
    })
}

/// The Swagger 2.0 document of every group-version.
pub fn v2(catalogue: &Catalogue) -> Value {
    let mut schemas = SchemaBuilder::new(Dialect::V2);
    let mut all_paths = serde_json::Map::new();
    for gv in group_versions(catalogue) {
        let mut paths = PathBuilder::new(Dialect::V2, gv.group, gv.version);
        add_group_version(catalogue, gv, &mut schemas, &mut paths);
        all_paths.extend(paths.finish());
    }
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": "unversioned" },
        "paths": all_paths,
        "definitions": schemas.finish(),
        "securityDefinitions": security_scheme(),
        "security": [{ "BearerToken": [] }],
    })
}
