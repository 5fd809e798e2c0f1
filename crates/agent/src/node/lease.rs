//! The node lease: `kube-node-lease/<node>`, renewed every few seconds as the node's
//! cheap heartbeat (the node lifecycle controller reads `renewTime`). Owned by the Node, so
//! deleting the Node deletes its Lease.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::{NodeError, LEASE_DURATION_SECONDS, LEASE_NAMESPACE};

pub struct LeaseRenewer {
    api: Api<Lease>,
    node_name: String,
    node_uid: String,
    owner_changed: bool,
}

impl LeaseRenewer {
    pub fn new(client: kube::Client, node_name: &str, node_uid: &str) -> Self {
        LeaseRenewer {
            api: Api::namespaced(client, LEASE_NAMESPACE),
            node_name: node_name.to_string(),
            node_uid: node_uid.to_string(),
            owner_changed: false,
        }
    }

    /// The Lease as a fresh renewal would write it.
    pub fn desired(&self, now: jiff::Timestamp) -> Lease {
        let owner = (!self.node_uid.is_empty()).then(|| {
            vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: self.node_name.clone(),
                uid: self.node_uid.clone(),
                ..Default::default()
            }]
        });
        Lease {
            metadata: ObjectMeta {
                name: Some(self.node_name.clone()),
                namespace: Some(LEASE_NAMESPACE.into()),
                owner_references: owner,
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.node_name.clone()),
                lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                renew_time: Some(MicroTime(now)),
                ..Default::default()
            }),
        }
    }

    /// Points the Lease's owner at a re-registered Node (a new uid); the next renewal
    /// writes it.
    pub fn set_node_uid(&mut self, uid: &str) {
        if uid != self.node_uid {
            self.node_uid = uid.to_string();
            self.owner_changed = true;
        }
    }

    /// Moves `renewTime` to now, creating the Lease when it does not exist (first start,
    /// or someone deleted it).
    pub async fn renew(&mut self) -> Result<Lease, NodeError> {
        let desired = self.desired(jiff::Timestamp::now());
        let mut patch = serde_json::json!({ "spec": desired.spec });
        if self.owner_changed {
            patch["metadata"] =
                serde_json::json!({ "ownerReferences": desired.metadata.owner_references });
        }
        let renewed = self.renew_with(&desired, &patch).await;
        if renewed.is_ok() {
            self.owner_changed = false;
        }
        renewed
    }

    async fn renew_with(
        &self,
        desired: &Lease,
        patch: &serde_json::Value,
    ) -> Result<Lease, NodeError> {
        match self
            .api
            .patch(
                &self.node_name,
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(lease) => Ok(lease),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                match self.api.create(&PostParams::default(), desired).await {
                    Ok(lease) => Ok(lease),
                    // Created meanwhile by our previous incarnation's last request.
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(self
                        .api
                        .patch(
                            &self.node_name,
                            &PatchParams::default(),
                            &Patch::Merge(patch),
                        )
                        .await?),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_held_by_the_node_and_owned_by_it() {
        // A client is needed to build an Api but is never used here.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
            let client = kube::Client::try_from(config).unwrap();
            let r = LeaseRenewer::new(client, "node-a", "uid-1");
            let now = jiff::Timestamp::now();
            let l = r.desired(now);
            assert_eq!(l.metadata.namespace.as_deref(), Some("kube-node-lease"));
            let spec = l.spec.unwrap();
            assert_eq!(spec.holder_identity.as_deref(), Some("node-a"));
            assert_eq!(spec.lease_duration_seconds, Some(40));
            assert_eq!(spec.renew_time, Some(MicroTime(now)));
            let owner = &l.metadata.owner_references.unwrap()[0];
            assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "uid-1"));
        });
    }
}
