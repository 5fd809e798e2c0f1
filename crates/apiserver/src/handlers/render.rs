//! Writing objects and lists in the negotiated representation: plain JSON, YAML, a
//! meta.k8s.io Table (server-side printing) or PartialObjectMetadata. Each object's
//! encoding is cached on the shared [`CachedObject`], so a list or a thousand watchers
//! serialise it once per representation.

use api::ResourceInfo;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};

use crate::negotiate::{MetaVersion, Output};
use crate::registry::ObjectList;
use crate::status::ApiError;
use crate::watch_cache::CachedObject;

/// `includeObject` of a Table request: what each row's `object` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        match s {
            None | Some("") | Some("Metadata") => Ok(Self::Metadata),
            Some("None") => Ok(Self::None),
            Some("Object") => Ok(Self::Object),
            Some(other) => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"Object\", \"Metadata\", \"None\""
            ))),
        }
    }
}

/// The full representation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub output: Output,
    pub include: IncludeObject,
}

impl Format {
    /// The cache slot of one object's encoding in this format (see
    /// [`crate::watch_cache::ENCODING_SLOTS`]).
    fn slot(self) -> usize {
        let v = |m: MetaVersion| match m {
            MetaVersion::V1 => 0,
            MetaVersion::V1Beta1 => 1,
        };
        match self.output {
            Output::Json | Output::Yaml => 0,
            Output::PartialMetadata(m) => 1 + v(m),
            Output::Table(m) => {
                let inc = match self.include {
                    IncludeObject::None => 0,
                    IncludeObject::Metadata => 1,
                    IncludeObject::Object => 2,
                };
                3 + v(m) * 3 + inc
            }
        }
    }
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

pub fn partial_metadata(obj: &Value, version: MetaVersion) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": version.api_version(),
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn table_row(
    info: &ResourceInfo,
    obj: &Value,
    version: MetaVersion,
    include: IncludeObject,
) -> Value {
    let cells = api::table::printer_for(info).cells(obj, jiff::Timestamp::now());
    let mut row = json!({"cells": cells});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => row["object"] = partial_metadata(obj, version),
        IncludeObject::Object => row["object"] = obj.clone(),
    }
    row
}

pub fn column_definitions(info: &ResourceInfo) -> Value {
    Value::Array(
        api::table::printer_for(info)
            .columns()
            .into_iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// One object's bytes in `format`: the object, its PartialObjectMetadata, or its Table row.
fn encode_value(info: &ResourceInfo, obj: &Value, format: Format) -> Bytes {
    match format.output {
        Output::Table(m) => to_bytes(&table_row(info, obj, m, format.include)),
        Output::PartialMetadata(m) => to_bytes(&partial_metadata(obj, m)),
        Output::Json | Output::Yaml => to_bytes(obj),
    }
}

/// As [`encode_value`] for a cached object.
pub fn encode_item(info: &ResourceInfo, obj: &CachedObject, format: Format) -> Bytes {
    match format.output {
        // Table rows hold ages ("5m", "(2m ago)") computed against the current time, so
        // they are rendered per request; only time-independent encodings are cached.
        Output::Table(_) => encode_value(info, &obj.value(), format),
        Output::PartialMetadata(_) => obj.encoded(format.slot(), |v| encode_value(info, v, format)),
        // The cache holds the object as its JSON.
        Output::Json | Output::Yaml => obj.json().clone(),
    }
}

/// A Table with the given rows (already encoded).
pub fn table_bytes(
    info: &ResourceInfo,
    version: MetaVersion,
    list_meta: &Value,
    rows: &[Bytes],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + rows.iter().map(Bytes::len).sum::<usize>());
    out.extend_from_slice(br#"{"kind":"Table","apiVersion":""#);
    out.extend_from_slice(version.api_version().as_bytes());
    out.extend_from_slice(br#"","metadata":"#);
    out.extend_from_slice(&to_bytes(list_meta));
    out.extend_from_slice(br#","columnDefinitions":"#);
    out.extend_from_slice(&to_bytes(&column_definitions(info)));
    out.extend_from_slice(br#","rows":["#);
    join_into(&mut out, rows);
    out.extend_from_slice(b"]}");
    out
}

fn join_into(out: &mut Vec<u8>, items: &[Bytes]) {
    for (i, b) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b);
    }
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

fn finish(status: StatusCode, output: Output, json: Vec<u8>) -> Response {
    if output == Output::Yaml {
        let yaml = serde_json::from_slice::<Value>(&json)
            .ok()
            .and_then(|v| serde_yaml::to_string(&v).ok())
            .unwrap_or_default();
        return respond(status, "application/yaml", yaml.into_bytes());
    }
    respond(status, &output.content_type(), json)
}

/// One object, in `format`.
pub fn object(info: &ResourceInfo, obj: &Value, format: Format, status: StatusCode) -> Response {
    let body = match format.output {
        Output::Table(v) => {
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            let list_meta = json!({"resourceVersion": rv});
            table_bytes(info, v, &list_meta, &[encode_value(info, obj, format)])
        }
        _ => encode_value(info, obj, format).to_vec(),
    };
    finish(status, format.output, body)
}

/// Plain JSON, whatever was negotiated (Status objects, reviews, Scale).
pub fn json_value(value: &Value, status: StatusCode) -> Response {
    respond(
        status,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

/// A list, in `format`.
pub fn list(info: &ResourceInfo, list: &ObjectList, format: Format) -> Response {
    let mut list_meta = json!({"resourceVersion": list.revision.to_string()});
    if let Some(c) = &list.continue_token {
        list_meta["continue"] = json!(c);
    }
    if let Some(r) = list.remaining.filter(|r| *r > 0) {
        list_meta["remainingItemCount"] = json!(r);
    }
    let items: Vec<Bytes> = list
        .items
        .iter()
        .map(|o| encode_item(info, o, format))
        .collect();
    let body = match format.output {
        Output::Table(v) => table_bytes(info, v, &list_meta, &items),
        Output::Json | Output::Yaml | Output::PartialMetadata(_) => {
            let (kind, api_version) = match format.output {
                Output::PartialMetadata(v) => (
                    "PartialObjectMetadataList".to_string(),
                    v.api_version().to_string(),
                ),
                _ => (info.list_kind(), info.api_version()),
            };
            let mut out = Vec::with_capacity(128 + items.iter().map(Bytes::len).sum::<usize>());
            out.extend_from_slice(&to_bytes(
                &json!({"kind": kind, "apiVersion": api_version, "metadata": list_meta}),
            ));
            // Re-open the object to append the items array without re-encoding them.
            out.pop();
            out.extend_from_slice(br#","items":["#);
            join_into(&mut out, &items);
            out.extend_from_slice(b"]}");
            out
        }
    };
    finish(StatusCode::OK, format.output, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_and_in_range() {
        let mut seen = std::collections::HashSet::new();
        for output in [
            Output::Json,
            Output::PartialMetadata(MetaVersion::V1),
            Output::PartialMetadata(MetaVersion::V1Beta1),
            Output::Table(MetaVersion::V1),
            Output::Table(MetaVersion::V1Beta1),
        ] {
            for include in [
                IncludeObject::None,
                IncludeObject::Metadata,
                IncludeObject::Object,
            ] {
                let f = Format { output, include };
                assert!(f.slot() < crate::watch_cache::ENCODING_SLOTS);
                if matches!(output, Output::Table(_)) {
                    assert!(seen.insert(f.slot()));
                }
            }
        }
    }
}
