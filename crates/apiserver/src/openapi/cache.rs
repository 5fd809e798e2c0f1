//! Documents are built once, on first use, per group-version (a client that needs apps/v1
//! never pays for the rest), and kept with the content hash that names them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use api::Catalogue;
use bytes::Bytes;
use jiff::Timestamp;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

use super::document::{self, GroupVersion};
use super::gnostic;

/// A serialised document and its identity.
#[derive(Debug)]
pub struct Rendered {
    pub body: Bytes,
    /// Upper-case hex SHA-512 of the body, as kube-apiserver computes it; the `hash` query
    /// parameter and the ETag.
    pub hash: String,
    pub last_modified: Timestamp,
}

impl Rendered {
    fn new(body: Vec<u8>) -> Self {
        let digest = Sha512::digest(&body);
        let mut hash = String::with_capacity(digest.len() * 2);
        for byte in digest {
            hash.push_str(&format!("{byte:02X}"));
        }
        Self {
            body: Bytes::from(body),
            hash,
            last_modified: Timestamp::now(),
        }
    }

    /// Another encoding of the same document keeps its hash, as Kubernetes keys both by the
    /// JSON's.
    fn encoded_as(&self, body: Vec<u8>) -> Self {
        Self {
            body: Bytes::from(body),
            hash: self.hash.clone(),
            last_modified: self.last_modified,
        }
    }

    fn from_json(value: &Value) -> Self {
        // Serialising a Value only fails for non-string map keys, which a Value cannot have.
        Self::new(serde_json::to_vec(value).expect("a JSON value serialises"))
    }

    /// The ETag header value.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.hash)
    }
}

/// Every OpenAPI document of one catalogue.
pub struct Documents {
    catalogue: Arc<Catalogue>,
    group_versions: Vec<GroupVersion>,
    by_path: HashMap<String, usize>,
    v3: Vec<OnceLock<Arc<Rendered>>>,
    v3_index: OnceLock<Arc<Rendered>>,
    v2: OnceLock<SwaggerDocument>,
}

/// The Swagger 2.0 document in both encodings.
struct SwaggerDocument {
    json: Arc<Rendered>,
    protobuf: Arc<Rendered>,
}

impl Documents {
    pub fn new(catalogue: Arc<Catalogue>) -> Self {
        let group_versions = document::group_versions(&catalogue);
        let by_path = group_versions
            .iter()
            .enumerate()
            .map(|(i, gv)| (gv.path(), i))
            .collect();
        let v3 = group_versions.iter().map(|_| OnceLock::new()).collect();
        Self {
            catalogue,
            group_versions,
            by_path,
            v3,
            v3_index: OnceLock::new(),
            v2: OnceLock::new(),
        }
    }

    /// The served group-versions' document keys ("api/v1", "apis/apps/v1", ...).
    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        self.group_versions.iter().map(GroupVersion::path)
    }

    /// The OpenAPI 3.0 document at `path` ("apis/apps/v1"), or None when no such
    /// group-version is served.
    pub fn v3(&self, path: &str) -> Option<Arc<Rendered>> {
        let index = *self.by_path.get(path.trim_matches('/'))?;
        let gv = *self.group_versions.get(index)?;
        let cell = self.v3.get(index)?;
        Some(Arc::clone(cell.get_or_init(|| {
            let started = Instant::now();
            let rendered = Rendered::from_json(&document::v3(&self.catalogue, gv));
            tracing::info!(
                document = %gv.path(),
                bytes = rendered.body.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "built OpenAPI v3 document"
            );
            Arc::new(rendered)
        })))
    }

    /// `{"paths": {"apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=…"}}}`.
    /// Naming each document by its hash means building all of them once.
    pub fn v3_index(&self) -> Arc<Rendered> {
        Arc::clone(self.v3_index.get_or_init(|| {
            let mut paths = serde_json::Map::new();
            for path in self.paths() {
                if let Some(doc) = self.v3(&path) {
                    let url = format!("/openapi/v3/{path}?hash={}", doc.hash);
                    paths.insert(path, json!({ "serverRelativeURL": url }));
                }
            }
            Arc::new(Rendered::from_json(&json!({ "paths": paths })))
        }))
    }

    fn swagger(&self) -> &SwaggerDocument {
        self.v2.get_or_init(|| {
            let started = Instant::now();
            let value = document::v2(&self.catalogue);
            let json = Rendered::from_json(&value);
            let protobuf = json.encoded_as(gnostic::encode(&value));
            tracing::info!(
                json_bytes = json.body.len(),
                protobuf_bytes = protobuf.body.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "built OpenAPI v2 document"
            );
            SwaggerDocument {
                json: Arc::new(json),
                protobuf: Arc::new(protobuf),
            }
        })
    }

    /// The Swagger 2.0 document of every group-version, as JSON.
    pub fn v2(&self) -> Arc<Rendered> {
        Arc::clone(&self.swagger().json)
    }

    /// The same document in gnostic's protobuf encoding.
    pub fn v2_protobuf(&self) -> Arc<Rendered> {
        Arc::clone(&self.swagger().protobuf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_upper_case_sha512() {
        let r = Rendered::new(b"abc".to_vec());
        assert_eq!(r.hash.len(), 128);
        assert!(r.hash.starts_with("DDAF35A193617ABA"));
        assert_eq!(r.etag(), format!("\"{}\"", r.hash));
    }

    #[test]
    fn documents_are_built_once() {
        let docs = Documents::new(Arc::new(Catalogue::builtin()));
        let a = docs.v3("apis/apps/v1").expect("apps/v1 served");
        let b = docs.v3("/apis/apps/v1/").expect("apps/v1 served");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(docs.v3("apis/nope/v1").is_none());
    }
}
