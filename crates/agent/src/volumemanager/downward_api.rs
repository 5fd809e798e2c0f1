//! downwardAPI volumes: pod fields (labels, annotations, name, namespace, uid) and
//! container resources as files, rewritten atomically when labels or annotations change.

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, Pod};

use super::atomic_writer::{validate_path, FileProjection, Payload};
use super::configmap::DEFAULT_MODE;
use super::fieldpath::{field_value, resource_value, FieldContext, NodeAllocatable};

pub const PLUGIN: &str = "kubernetes.io~downward-api";

pub fn payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    node: &NodeAllocatable,
) -> Result<Payload, String> {
    let default_mode = default_mode.unwrap_or(DEFAULT_MODE);
    let ctx = FieldContext {
        node_ip: None,
        pod_ips: &[],
    };
    let mut payload = Payload::new();
    for item in items {
        let path = item.path.trim_end_matches('/').to_string();
        validate_path(&path).map_err(|e| e.to_string())?;
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, &f.field_path, &ctx).map_err(|e| e.to_string())?
        } else if let Some(r) = &item.resource_field_ref {
            resource_value(pod, None, r, node).map_err(|e| e.to_string())?
        } else {
            return Err(format!("downwardAPI item {:?} selects nothing", item.path));
        };
        payload.insert(
            path,
            FileProjection {
                data: value.into_bytes(),
                mode: (item.mode.unwrap_or(default_mode) as u32) & 0o7777,
            },
        );
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ObjectFieldSelector, PodSpec, ResourceFieldSelector, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn field(path: &str, field: &str) -> DownwardAPIVolumeFile {
        DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector {
                field_path: field.into(),
                api_version: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fields_and_resources() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        pod.metadata.namespace = Some("ns".into());
        pod.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        pod.spec = Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    limits: Some([("memory".to_string(), Quantity("32Mi".into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        let items = vec![
            field("name", "metadata.name"),
            field("labels", "metadata.labels"),
            DownwardAPIVolumeFile {
                path: "mem".into(),
                resource_field_ref: Some(ResourceFieldSelector {
                    container_name: Some("c".into()),
                    resource: "limits.memory".into(),
                    divisor: Some(Quantity("1Mi".into())),
                }),
                mode: Some(0o600),
                ..Default::default()
            },
        ];
        let node = NodeAllocatable {
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            ephemeral_storage_bytes: 1 << 30,
        };
        let p = payload(&pod, &items, None, &node).unwrap();
        assert_eq!(p["name"].data, b"p");
        assert_eq!(p["labels"].data, b"app=\"web\"");
        assert_eq!(p["mem"].data, b"32");
        assert_eq!(p["mem"].mode, 0o600);
        assert_eq!(p["name"].mode, 0o644);
        assert!(payload(&pod, &[field("../x", "metadata.name")], None, &node).is_err());
        assert!(payload(&pod, &[field("x", "spec.bogus")], None, &node).is_err());
    }
}
