//! What every cluster has from its first start: the system namespaces and the `kubernetes`
//! Service in `default`.

use serde_json::json;

use super::{Registry, WriteOptions};
use crate::status::ApiError;

pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

impl Registry {
    /// Creates what is missing; existing objects are left alone.
    pub async fn ensure_bootstrap_objects(&self) -> Result<(), ApiError> {
        let opts = WriteOptions {
            dry_run: false,
            field_manager: "flotilla-apiserver".into(),
        };
        let ns_info = self
            .info("", "Namespace")
            .cloned()
            .ok_or_else(|| ApiError::internal("the catalogue has no namespaces"))?;
        for ns in SYSTEM_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.create(&ns_info, None, obj, &opts).await {
                Ok(_) => {}
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        let svc_info = self
            .info("", "Service")
            .cloned()
            .ok_or_else(|| ApiError::internal("the catalogue has no services"))?;
        // On a restart the Service exists: creating it again would fail on its own cluster IP
        // (allocated) before reaching AlreadyExists.
        let key = super::ObjectRef::new(&svc_info, Some("default"), "kubernetes").key();
        let (existing, _) = self
            .store
            .get(&key, None)
            .await
            .map_err(|e| ApiError::internal(format!("reading {key}: {e}")))?;
        if existing.is_some() {
            return Ok(());
        }
        let ip = self.config.service_cidr.nth(1).to_string();
        let svc = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"}
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": ip,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                "sessionAffinity": "None"
            }
        });
        match self.create(&svc_info, Some("default"), svc, &opts).await {
            Ok(_) => Ok(()),
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            Err(e) => Err(e),
        }
    }
}
