//! The Kubernetes API server.
//!
//! Request path: TLS ([`server`]) → authentication ([`authn`]) → routing and content
//! negotiation ([`handlers`], [`negotiate`]) → the generic registry ([`registry`]), which
//! applies the kind's strategy and patches ([`patch`]) and reads through the watch cache
//! ([`watch_cache`]) → the store. Discovery and OpenAPI ([`openapi`]) are generated from the
//! resource catalogue. Every failure is a [`status::ApiError`].

pub mod status;

pub use status::ApiError;
