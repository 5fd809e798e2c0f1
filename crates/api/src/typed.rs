//! Decoding request objects against the typed schema of their kind (k8s-openapi): wrong
//! types are refused, and unknown fields are found for fieldValidation Strict/Warn.
