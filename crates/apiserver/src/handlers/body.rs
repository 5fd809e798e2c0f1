//! Request bodies: size limit, JSON or YAML, apiVersion/kind against the URL, and
//! `fieldValidation` (unknown and duplicate fields refused under Strict, reported as
//! `Warning` headers under Warn).

use api::ResourceInfo;
use axum::body::Body;
use serde_json::{json, Value};

use super::query::FieldValidation;
use crate::negotiate::{self, BodyFormat};
use crate::status::ApiError;

/// A decoded body and the warnings it earned.
pub struct DecodedBody {
    pub object: Value,
    pub warnings: Vec<String>,
}

pub async fn read(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return ApiError::request_entity_too_large(format!(
                    "the request body is larger than the limit of {limit} bytes"
                ));
            }
            source = s.source();
        }
        ApiError::bad_request(format!("reading the request body: {e}"))
    })
}

/// Parses `raw` as `content_type` says, into an object.
pub fn parse(content_type: Option<&str>, raw: &[u8]) -> Result<(Value, BodyFormat), ApiError> {
    // kubectl 1.32+ sends typed creates as protobuf; decoded, they follow the JSON path (the
    // duplicate-field scan finds nothing in protobuf bytes).
    if content_type.is_some_and(crate::protobuf::is_protobuf) {
        return Ok((crate::protobuf::decode_request_body(raw)?, BodyFormat::Json));
    }
    let format = negotiate::body_format(content_type)?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let value = negotiate::decode_body(format, raw)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "error decoding request body: the body must be a JSON or YAML object",
        ));
    }
    Ok((value, format))
}

/// Checks a body meant for `info`'s kind: apiVersion and kind match the URL (filled in
/// when missing), typed decoding, and unknown/duplicate fields per `validation`.
pub fn check_object(
    info: &ResourceInfo,
    mut obj: Value,
    raw: &[u8],
    format: BodyFormat,
    validation: FieldValidation,
) -> Result<DecodedBody, ApiError> {
    check_type_meta(&mut obj, &info.api_version(), info.kind)?;
    let decoded =
        api::typed::decode(info, &obj).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut problems: Vec<String> = Vec::new();
    if validation != FieldValidation::Ignore {
        let duplicates = if format == BodyFormat::Json {
            api::typed::find_duplicate_fields(raw)
        } else if format == BodyFormat::Yaml {
            api::typed::find_duplicate_fields_yaml(raw)
        } else {
            Vec::new()
        };
        problems.extend(
            duplicates
                .into_iter()
                .map(|f| format!("duplicate field \"{f}\"")),
        );
        problems.extend(
            decoded
                .unknown_fields
                .into_iter()
                .map(|f| format!("unknown field \"{f}\"")),
        );
    }
    match validation {
        FieldValidation::Strict if !problems.is_empty() => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            problems.join(", ")
        ))),
        FieldValidation::Warn => Ok(DecodedBody {
            object: obj,
            warnings: problems,
        }),
        _ => Ok(DecodedBody {
            object: obj,
            warnings: Vec::new(),
        }),
    }
}

/// apiVersion and kind of a body must be those the URL names (Kubernetes fills them in
/// when absent).
pub fn check_type_meta(obj: &mut Value, api_version: &str, kind: &str) -> Result<(), ApiError> {
    let got_av = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let got_kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !got_av.is_empty() && got_av != api_version || !got_kind.is_empty() && got_kind != kind {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({got_av}) does not match the expected API version ({api_version})"
        ))
        .with_kind_message(&got_kind, kind));
    }
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(())
}

trait KindMessage {
    fn with_kind_message(self, got: &str, want: &str) -> Self;
}

impl KindMessage for ApiError {
    fn with_kind_message(mut self, got: &str, want: &str) -> Self {
        if !got.is_empty() && got != want {
            self.message =
                format!("the kind in the data ({got}) does not match the expected kind ({want})");
        }
        self
    }
}

/// The `Warning` header value for one warning, as Kubernetes sends it.
pub fn warning_header(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("299 - \"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_meta_is_filled_or_checked() {
        let mut o = json!({"metadata": {"name": "a"}});
        check_type_meta(&mut o, "v1", "Pod").unwrap();
        assert_eq!(o["kind"], "Pod");
        let mut o = json!({"apiVersion": "apps/v1", "kind": "Pod"});
        assert_eq!(check_type_meta(&mut o, "v1", "Pod").unwrap_err().code, 400);
        let mut o = json!({"apiVersion": "v1", "kind": "Service"});
        let e = check_type_meta(&mut o, "v1", "Pod").unwrap_err();
        assert!(e.message.contains("kind in the data (Service)"));
    }

    #[test]
    fn warnings_escape_quotes() {
        assert_eq!(
            warning_header("unknown field \"spec.foo\""),
            r#"299 - "unknown field \"spec.foo\"""#
        );
    }
}
