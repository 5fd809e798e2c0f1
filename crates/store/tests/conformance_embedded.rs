//! The conformance suite against the embedded engine, on a fresh data dir per case.

use std::sync::Arc;

use flotilla_store::{EmbeddedConfig, EmbeddedStore, Store};

async fn fresh() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("flotilla-embedded-")
        .tempdir()
        .expect("create a temp dir");
    let store = EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).expect("open the store");
    (Arc::new(store), dir)
}

flotilla_store::conformance_tests!(fresh);
