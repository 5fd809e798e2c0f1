//! The Kubernetes API server.
//!
//! Request path: TLS ([`server`]) → authentication ([`authn`]) → routing and content
//! negotiation ([`handlers`]) → the generic registry, which applies the kind's strategy and
//! patches ([`patch`]) and reads through the watch cache → the store. Discovery and OpenAPI
//! ([`openapi`]) are generated from the resource catalogue. Every failure is a
//! [`status::ApiError`].

pub mod authn;
pub mod config;
pub mod handlers;
pub mod metrics;
pub mod negotiate;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod protobuf;
pub mod proxy;
pub mod registry;
pub mod server;
pub mod state;
pub mod status;
pub mod watch_cache;

pub use state::ApiState;
pub use status::ApiError;
