//! SPDY/3.1, the multiplexing kubectl uses for port-forward (every version) and for exec
//! and attach before WebSockets (1.29 and older): framing ([`frame`]), compressed header
//! blocks ([`headers`], primed with the specification's [`dictionary`]) and the server
//! side of a connection ([`session`]).

pub mod dictionary;
pub mod frame;
pub mod headers;
pub mod session;

pub use headers::Headers;
pub use session::{Connection, Stream, StreamSender};

/// The `Upgrade` token of an HTTP request that switches to SPDY.
pub const UPGRADE_TOKEN: &str = "SPDY/3.1";

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    #[error("the SPDY connection is closed")]
    Closed,
}
