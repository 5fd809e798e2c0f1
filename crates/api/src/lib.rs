//! The API machinery shared by the API server and its clients inside Flotilla:
//! what resources exist ([`catalogue`]), how each kind is defaulted, validated, shown as a
//! table and filtered by field ([`strategy`], [`table`]), how discovery documents look
//! ([`discovery`]), how request objects are decoded against the typed schema ([`typed`]),
//! and which lists merge by which key ([`patchmeta`]).
//!
//! Objects travel as `serde_json::Value` (a JSON object with apiVersion, kind, metadata):
//! one generic registry serves every kind, and the typed `k8s-openapi` structs are used
//! where the schema matters (decoding, validation).

pub mod catalogue;
pub mod discovery;
pub mod field_error;
pub mod patchmeta;
pub mod quantity;
pub mod quota;
pub mod selectors;
pub mod strategies;
pub mod strategy;
pub mod table;
mod tables;
pub mod typed;
pub mod validation;

pub use catalogue::{Catalogue, ResourceInfo, Subresource};
pub use field_error::{FieldError, FieldErrorType};
pub use strategy::Strategy;
