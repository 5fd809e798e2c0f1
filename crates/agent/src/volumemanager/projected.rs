//! projected volumes: configMap, secret and downwardAPI sources merged into one directory.
//!
//! `serviceAccountToken` and `clusterTrustBundle` sources are skipped (with a log line):
//! this cluster has no TokenRequest API or trust bundles yet, and skipping keeps the rest
//! of the volume (the usual kube-root-ca.crt and namespace files) usable.

use k8s_openapi::api::core::v1::{Pod, ProjectedVolumeSource};

use super::atomic_writer::Payload;
use super::fieldpath::NodeAllocatable;
use super::{configmap, downward_api, secret};

pub const PLUGIN: &str = "kubernetes.io~projected";

pub async fn payload(
    client: &kube::Client,
    pod: &Pod,
    ns: &str,
    src: &ProjectedVolumeSource,
    node: &NodeAllocatable,
) -> Result<Payload, String> {
    let mode = src.default_mode;
    let mut payload = Payload::new();
    for source in src.sources.iter().flatten() {
        let part = if let Some(cm) = &source.config_map {
            configmap::payload(
                client,
                ns,
                &cm.name,
                cm.items.as_deref(),
                mode,
                cm.optional.unwrap_or(false),
            )
            .await?
        } else if let Some(s) = &source.secret {
            secret::payload(
                client,
                ns,
                &s.name,
                s.items.as_deref(),
                mode,
                s.optional.unwrap_or(false),
            )
            .await?
        } else if let Some(d) = &source.downward_api {
            downward_api::payload(pod, d.items.as_deref().unwrap_or_default(), mode, node)?
        } else {
            tracing::debug!(
                pod = ?pod.metadata.name,
                "projected volume source skipped (serviceAccountToken/clusterTrustBundle are not served)"
            );
            continue;
        };
        payload.extend(part);
    }
    Ok(payload)
}
