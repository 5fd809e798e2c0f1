//! Content negotiation: which representation a client asked for in `Accept` (plain JSON,
//! YAML, a server-side Table, PartialObjectMetadata, aggregated discovery), and which format
//! a request body is in (`Content-Type`).
//!
//! Kubernetes answers the FIRST acceptable media type in the client's order, so a client
//! that lists v2beta1 before plain JSON gets v2beta1 and one that lists only v2beta1 never
//! gets v2.

// `ApiError` is the crate-wide error (a Status); boxing it is status.rs's call, not each caller's.
#![allow(clippy::result_large_err)]

use api::discovery::AggregatedFormat;

use crate::status::ApiError;

/// The meta.k8s.io version a Table or PartialObjectMetadata was asked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaVersion {
    V1,
    V1Beta1,
}

impl MetaVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            MetaVersion::V1 => "meta.k8s.io/v1",
            MetaVersion::V1Beta1 => "meta.k8s.io/v1beta1",
        }
    }

    fn param(self) -> &'static str {
        match self {
            MetaVersion::V1 => "v1",
            MetaVersion::V1Beta1 => "v1beta1",
        }
    }
}

/// The representation of a resource response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    Json,
    Yaml,
    Table(MetaVersion),
    /// PartialObjectMetadata for one object, PartialObjectMetadataList for a list.
    PartialMetadata(MetaVersion),
}

impl Output {
    /// The Content-Type of a response in this representation.
    pub fn content_type(self) -> String {
        match self {
            Output::Json => "application/json".into(),
            Output::Yaml => "application/yaml".into(),
            Output::Table(v) => format!("application/json;as=Table;v={};g=meta.k8s.io", v.param()),
            Output::PartialMetadata(v) => format!(
                "application/json;as=PartialObjectMetadata;v={};g=meta.k8s.io",
                v.param()
            ),
        }
    }
}

/// The representation of a discovery response (`/api`, `/apis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryOutput {
    Legacy,
    Aggregated(AggregatedFormat),
}

impl DiscoveryOutput {
    pub fn content_type(self) -> &'static str {
        match self {
            DiscoveryOutput::Legacy => "application/json",
            DiscoveryOutput::Aggregated(AggregatedFormat::V2) => {
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            }
            DiscoveryOutput::Aggregated(AggregatedFormat::V2Beta1) => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }
}

/// One entry of an Accept header.
#[derive(Debug, Default)]
struct MediaRange<'a> {
    essence: &'a str,
    group: Option<&'a str>,
    version: Option<&'a str>,
    as_kind: Option<&'a str>,
}

fn media_ranges(accept: &str) -> impl Iterator<Item = MediaRange<'_>> {
    accept.split(',').filter_map(|entry| {
        let mut parts = entry.split(';').map(str::trim);
        let essence = parts.next().filter(|e| !e.is_empty())?;
        let mut range = MediaRange {
            essence,
            ..MediaRange::default()
        };
        for param in parts {
            let Some((k, v)) = param.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"');
            match k.trim() {
                "g" => range.group = Some(v),
                "v" => range.version = Some(v),
                "as" => range.as_kind = Some(v),
                _ => {}
            }
        }
        Some(range)
    })
}

fn is_json(essence: &str) -> bool {
    matches!(essence, "application/json" | "application/*" | "*/*")
}

fn meta_version(range: &MediaRange<'_>) -> Option<MetaVersion> {
    if range.group != Some("meta.k8s.io") {
        return None;
    }
    match range.version {
        Some("v1") => Some(MetaVersion::V1),
        Some("v1beta1") => Some(MetaVersion::V1Beta1),
        _ => None,
    }
}

/// Picks the representation of a resource response from the Accept header.
pub fn negotiate_output(accept: Option<&str>) -> Result<Output, ApiError> {
    let accept = match accept.map(str::trim) {
        None | Some("") => return Ok(Output::Json),
        Some(a) => a,
    };
    for range in media_ranges(accept) {
        let json = is_json(range.essence);
        match range.as_kind {
            None if json => return Ok(Output::Json),
            None if matches!(range.essence, "application/yaml" | "text/yaml") => {
                return Ok(Output::Yaml)
            }
            Some("Table") if json => {
                if let Some(v) = meta_version(&range) {
                    return Ok(Output::Table(v));
                }
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList") if json => {
                if let Some(v) = meta_version(&range) {
                    return Ok(Output::PartialMetadata(v));
                }
            }
            _ => {}
        }
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io (got {accept:?})"
    )))
}

/// Picks the discovery representation: aggregated v2 or v2beta1 when asked for, in the
/// client's order, else the legacy documents.
pub fn negotiate_discovery(accept: Option<&str>) -> DiscoveryOutput {
    let Some(accept) = accept else {
        return DiscoveryOutput::Legacy;
    };
    for range in media_ranges(accept) {
        if range.as_kind == Some("APIGroupDiscoveryList")
            && range.group == Some("apidiscovery.k8s.io")
            && is_json(range.essence)
        {
            match range.version {
                Some("v2") => return DiscoveryOutput::Aggregated(AggregatedFormat::V2),
                Some("v2beta1") => return DiscoveryOutput::Aggregated(AggregatedFormat::V2Beta1),
                _ => continue,
            }
        }
        if range.as_kind.is_none() && is_json(range.essence) {
            return DiscoveryOutput::Legacy;
        }
    }
    DiscoveryOutput::Legacy
}

/// The format of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
}

/// The body format named by a Content-Type; anything unknown is 415. Protobuf bodies never
/// get here: `handlers::body::parse` decodes them to JSON first.
pub fn body_format(content_type: Option<&str>) -> Result<BodyFormat, ApiError> {
    let Some(ct) = content_type else {
        return Ok(BodyFormat::Json);
    };
    let essence = ct.split(';').next().map(str::trim).unwrap_or_default();
    match essence {
        "" | "application/json" => Ok(BodyFormat::Json),
        "application/yaml" | "text/yaml" | "application/x-yaml" => Ok(BodyFormat::Yaml),
        _ => Err(ApiError::unsupported_media_type(ct)),
    }
}

/// Parses a request body into a JSON value.
pub fn decode_body(format: BodyFormat, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let value: serde_json::Value = match format {
        BodyFormat::Json => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "error decoding request body: couldn't get version/kind; json parse error: {e}"
            ))
        })?,
        BodyFormat::Yaml => serde_yaml::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("error decoding request body: yaml: {e}"))
        })?,
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_a_v1_table() {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            negotiate_output(Some(accept)).unwrap(),
            Output::Table(MetaVersion::V1)
        );
    }

    #[test]
    fn protobuf_first_falls_back_to_json() {
        let accept = "application/vnd.kubernetes.protobuf,application/json";
        assert_eq!(negotiate_output(Some(accept)).unwrap(), Output::Json);
        assert_eq!(
            negotiate_output(Some("application/vnd.kubernetes.protobuf"))
                .unwrap_err()
                .code,
            406
        );
    }

    #[test]
    fn discovery_answers_the_first_acceptable_type() {
        let new = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            negotiate_discovery(Some(new)),
            DiscoveryOutput::Aggregated(AggregatedFormat::V2)
        );
        let old = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            negotiate_discovery(Some(old)),
            DiscoveryOutput::Aggregated(AggregatedFormat::V2Beta1)
        );
        assert_eq!(
            negotiate_discovery(Some("application/json")),
            DiscoveryOutput::Legacy
        );
    }

    #[test]
    fn protobuf_bodies_are_unsupported_for_now() {
        assert_eq!(
            body_format(Some("application/vnd.kubernetes.protobuf"))
                .unwrap_err()
                .code,
            415
        );
        assert_eq!(
            body_format(Some("application/yaml")).unwrap(),
            BodyFormat::Yaml
        );
    }
}
