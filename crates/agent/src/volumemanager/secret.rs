//! secret volumes: like configMap volumes, on a tmpfs so secret bytes never reach the
//! node's disk.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{KeyToPath, Secret};
use kube::Api;

use super::atomic_writer::Payload;
use super::configmap::make_payload;

pub const PLUGIN: &str = "kubernetes.io~secret";

pub async fn get(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<Secret>, kube::Error> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
}

pub fn not_found(name: &str) -> String {
    format!("secret \"{name}\" not found")
}

/// `data` merged with `stringData` (which an API server normally folds into data already).
pub fn all_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

pub async fn payload(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, String> {
    let secret = get(client, ns, name).await.map_err(|e| e.to_string())?;
    let data = match secret {
        Some(s) => all_data(&s),
        None if optional => BTreeMap::new(),
        None => return Err(not_found(name)),
    };
    make_payload(items, &data, default_mode, optional, |k| {
        format!("references non-existent secret key: {k}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_wins_over_data() {
        let s = Secret {
            data: Some(
                [
                    ("a".to_string(), k8s_openapi::ByteString(b"old".to_vec())),
                    ("b".to_string(), k8s_openapi::ByteString(b"keep".to_vec())),
                ]
                .into(),
            ),
            string_data: Some([("a".to_string(), "new".to_string())].into()),
            ..Default::default()
        };
        let d = all_data(&s);
        assert_eq!(d["a"], b"new");
        assert_eq!(d["b"], b"keep");
    }
}
