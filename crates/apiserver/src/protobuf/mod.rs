//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as kubectl 1.32+ sends
//! for typed creates: the magic `k8s\0`, then a `runtime.Unknown` envelope {1 typeMeta
//! {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType} whose `raw` is the
//! object's own message. [`decode_request_body`] turns it into the Kubernetes JSON a client
//! would have sent, so the rest of the request path sees only JSON.
//!
//! The decoder is driven by a field table generated from the upstream `generated.proto`
//! files (`schema.txt`, made by `gen_schema.py`) rather than compiled message types: the
//! prost bindings (`k8s-pb`) have no JSON form, and converting each of them to k8s-openapi
//! by hand would be far more code than walking the wire format once.

mod schema;
mod time;
mod wire;

use serde_json::Value;

use crate::status::ApiError;
use schema::Schema;

/// The media type kubectl sends protobuf bodies with.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every Kubernetes protobuf payload starts with these four bytes.
const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtobufError {
    #[error("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")]
    MissingMagic,
    #[error("the envelope has no apiVersion and kind")]
    MissingTypeMeta,
    #[error("no protobuf message is known for kind {kind} of {api_version}")]
    UnknownKind { api_version: String, kind: String },
    #[error("unsupported content encoding {0:?}")]
    ContentEncoding(String),
    #[error("malformed protobuf: {0}")]
    Malformed(String),
    #[error("malformed protobuf: truncated value")]
    Truncated,
    #[error("malformed protobuf: field {field} uses the deprecated group encoding")]
    Groups { field: u32 },
    #[error("malformed protobuf: field {field} of {message} has the wrong wire type")]
    WireType {
        message: &'static str,
        field: &'static str,
    },
    #[error("field {field} of {message} is not valid UTF-8")]
    Utf8 {
        message: &'static str,
        field: &'static str,
    },
    #[error("field {field} of {message} is not a finite number")]
    NonFinite {
        message: &'static str,
        field: &'static str,
    },
    #[error("{message} holds invalid JSON: {reason}")]
    RawJson {
        message: &'static str,
        reason: String,
    },
    #[error("IntOrString has unknown type {0}")]
    IntOrStringType(u64),
    #[error("time {seconds}s {nanos}ns is out of range")]
    Time { seconds: i64, nanos: i32 },
    #[error("objects are nested too deeply")]
    TooDeep,
    #[error("message {0} is missing from the schema")]
    UnknownMessage(&'static str),
}

impl From<prost::DecodeError> for ProtobufError {
    fn from(e: prost::DecodeError) -> Self {
        Self::Malformed(e.to_string())
    }
}

impl From<ProtobufError> for ApiError {
    fn from(e: ProtobufError) -> Self {
        ApiError::bad_request(format!("error decoding protobuf request body: {e}"))
    }
}

/// Decodes a protobuf request body into the object's Kubernetes JSON, `apiVersion` and
/// `kind` included.
pub fn decode_request_body(body: &[u8]) -> Result<Value, ProtobufError> {
    decode_envelope(body, 0)
}

/// Whether `content_type` (parameters allowed) names the Kubernetes protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

fn decode_envelope(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let payload = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let envelope = Envelope::parse(payload)?;
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(utf8_lossy(
            envelope.content_encoding,
        )));
    }
    let (Some(api_version), Some(kind)) = (envelope.api_version, envelope.kind) else {
        return Err(ProtobufError::MissingTypeMeta);
    };
    let schema = Schema::builtin();
    let message = schema
        .message_for_kind(&api_version, &kind)
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.clone(),
            kind: kind.clone(),
        })?;
    let mut object = match wire::decode_message(schema, message, envelope.raw, depth + 1)? {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(object))
}

fn utf8_lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A runtime.Unknown, its `raw` borrowed from the body.
#[derive(Default)]
struct Envelope<'a> {
    api_version: Option<String>,
    kind: Option<String>,
    raw: &'a [u8],
    content_encoding: &'a [u8],
}

impl<'a> Envelope<'a> {
    fn parse(payload: &'a [u8]) -> Result<Self, ProtobufError> {
        let mut envelope = Envelope::default();
        for item in wire::fields(payload) {
            match item? {
                (1, wire::Raw::Bytes(type_meta)) => {
                    for item in wire::fields(type_meta) {
                        let (slot, value) = match item? {
                            (1, wire::Raw::Bytes(v)) => (&mut envelope.api_version, v),
                            (2, wire::Raw::Bytes(v)) => (&mut envelope.kind, v),
                            _ => continue,
                        };
                        let text = std::str::from_utf8(value).map_err(|_| ProtobufError::Utf8 {
                            message: "TypeMeta",
                            field: "apiVersion/kind",
                        })?;
                        *slot = Some(text.to_string()).filter(|t| !t.is_empty());
                    }
                }
                (2, wire::Raw::Bytes(raw)) => envelope.raw = raw,
                (3, wire::Raw::Bytes(encoding)) => envelope.content_encoding = encoding,
                _ => {}
            }
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests;
