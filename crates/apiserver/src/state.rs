//! What every request handler shares.

use std::sync::Arc;

use api::Catalogue;
use store::Store;

pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub catalogue: Arc<Catalogue>,
}

impl ApiState {
    pub async fn new(store: Arc<dyn Store>) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            store,
            catalogue: Arc::new(Catalogue::builtin()),
        }))
    }
}
