//! The query parameters of resource requests, checked and typed.

use std::collections::HashMap;
use std::time::Duration;

use api::Strategy;

use crate::registry::field_selector::FieldSelector;
use crate::registry::label_selector::LabelSelector;
use crate::registry::{meta, ListParams, RvMatch};
use crate::status::ApiError;

/// `fieldValidation`: what unknown or duplicate fields in a body do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

#[derive(Debug, Default)]
pub struct Query {
    params: HashMap<String, String>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let params = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self { params }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value for {key}: {other:?}"
            ))),
        }
    }

    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other:?}; supported values: \"All\""
            ))),
        }
    }

    pub fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        match self.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            ))),
        }
    }

    pub fn field_manager(&self, user_agent: Option<&str>) -> Result<String, ApiError> {
        match self.get("fieldManager") {
            Some(m) if m.len() > 128 => Err(ApiError::bad_request(
                "fieldManager: Too long: may not be longer than 128",
            )),
            Some(m) if !m.is_empty() => Ok(m.to_string()),
            _ => Ok(meta::manager_from_user_agent(user_agent)),
        }
    }

    pub fn watch(&self) -> Result<bool, ApiError> {
        self.flag("watch")
    }

    pub fn timeout(&self) -> Result<Option<Duration>, ApiError> {
        self.get("timeoutSeconds")
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {s:?}")))
            })
            .transpose()
    }

    pub fn list_params(&self, strategy: &dyn Strategy) -> Result<ListParams, ApiError> {
        let labels = LabelSelector::parse(self.get("labelSelector").unwrap_or_default())
            .map_err(|e| ApiError::bad_request(format!("invalid label selector: {e}")))?;
        let fields = FieldSelector::parse(self.get("fieldSelector").unwrap_or_default(), strategy)?;
        let limit = match self.get("limit").filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                s.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid limit: {s:?}")))?,
            )
            .filter(|l| *l > 0)
            .and_then(|l| usize::try_from(l).ok()),
        };
        let rv_match = match self.get("resourceVersionMatch").filter(|s| !s.is_empty()) {
            None => None,
            Some("Exact") => Some(RvMatch::Exact),
            Some("NotOlderThan") => Some(RvMatch::NotOlderThan),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                )))
            }
        };
        Ok(ListParams {
            labels,
            fields,
            limit,
            continue_token: self
                .get("continue")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            resource_version: self.get("resourceVersion").map(str::to_string),
            rv_match,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_parameters() {
        let q = Query::parse(Some(
            "dryRun=All&fieldValidation=Strict&labelSelector=app%3Dweb&limit=5&watch=1&timeoutSeconds=3",
        ));
        assert!(q.dry_run().unwrap());
        assert_eq!(q.field_validation().unwrap(), FieldValidation::Strict);
        assert!(q.watch().unwrap());
        assert_eq!(q.timeout().unwrap(), Some(Duration::from_secs(3)));
        let p = q.list_params(&api::strategy::DefaultStrategy).unwrap();
        assert_eq!(p.limit, Some(5));
        assert!(!p.labels.is_empty());
    }

    #[test]
    fn bad_values_are_400() {
        for raw in ["dryRun=Some", "fieldValidation=Loose", "watch=maybe"] {
            let q = Query::parse(Some(raw));
            let err = q
                .dry_run()
                .and_then(|_| q.field_validation())
                .and_then(|_| q.watch())
                .unwrap_err();
            assert_eq!(err.code, 400, "{raw}");
        }
        let q = Query::parse(Some("labelSelector=a%20in%20(b"));
        assert_eq!(
            q.list_params(&api::strategy::DefaultStrategy)
                .unwrap_err()
                .code,
            400
        );
    }
}
