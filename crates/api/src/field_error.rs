//! Field-level validation errors, as Kubernetes' `field.Error`. The API server turns a list
//! of them into a 422 Invalid Status whose `details.causes` carry one cause per error.

/// Kubernetes' `field.ErrorType`; `reason()` is the cause's `reason` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
    Immutable,
}

impl FieldErrorType {
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Invalid | FieldErrorType::Immutable => "FieldValueInvalid",
            FieldErrorType::NotSupported => "FieldValueNotSupported",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::Forbidden => "FieldValueForbidden",
            FieldErrorType::TooLong => "FieldValueTooLong",
            FieldErrorType::TooMany => "FieldValueTooMany",
            FieldErrorType::NotFound => "FieldValueNotFound",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    /// The JSON path of the field, as Kubernetes prints it: `spec.containers[0].image`.
    pub field: String,
    /// The offending value, when there is one to show.
    pub value: Option<serde_json::Value>,
    /// The explanation, without the field name.
    pub detail: String,
}

impl FieldError {
    pub fn new(kind: FieldErrorType, field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Required, field, detail)
    }

    pub fn invalid(
        field: impl Into<String>,
        value: serde_json::Value,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            value: Some(value),
            ..Self::new(FieldErrorType::Invalid, field, detail)
        }
    }

    pub fn immutable(field: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Immutable, field, "field is immutable")
    }

    /// The text Kubernetes prints for one error, e.g.
    /// `spec.containers[0].image: Required value`.
    pub fn message(&self) -> String {
        let what = match self.kind {
            FieldErrorType::Required => "Required value".to_string(),
            FieldErrorType::Invalid | FieldErrorType::Immutable => match &self.value {
                Some(v) => format!("Invalid value: {v}"),
                None => "Invalid value".to_string(),
            },
            FieldErrorType::NotSupported => match &self.value {
                Some(v) => format!("Unsupported value: {v}"),
                None => "Unsupported value".to_string(),
            },
            FieldErrorType::Duplicate => match &self.value {
                Some(v) => format!("Duplicate value: {v}"),
                None => "Duplicate value".to_string(),
            },
            FieldErrorType::Forbidden => "Forbidden".to_string(),
            FieldErrorType::TooLong => "Too long".to_string(),
            FieldErrorType::TooMany => "Too many".to_string(),
            FieldErrorType::NotFound => "Not found".to_string(),
        };
        if self.detail.is_empty() {
            format!("{}: {what}", self.field)
        } else {
            format!("{}: {what}: {}", self.field, self.detail)
        }
    }
}
