//! The CronJob controller: schedule, concurrencyPolicy, history limits.
//!
//! PLACEHOLDER seam: the owner replaces this body with the real controller.

use std::future::Future;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let _ = client;
    shutdown.await;
    Ok(())
}
