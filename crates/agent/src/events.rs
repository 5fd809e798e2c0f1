//! Events about pods and the node: see the `flotilla-events` crate.

pub use events::*;
