//! configMap volumes: the ConfigMap's keys (or the chosen `items`) written with the atomic
//! writer, so a changed ConfigMap shows up in place in running containers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath};
use kube::Api;

use super::atomic_writer::{FileProjection, Payload};

pub const PLUGIN: &str = "kubernetes.io~configmap";

/// The default file mode of configMap, secret, downwardAPI and projected volumes.
pub const DEFAULT_MODE: i32 = 0o644;

/// GET a ConfigMap; `None` when it does not exist.
pub async fn get(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<ConfigMap>, kube::Error> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
}

/// Kubernetes' message for a missing ConfigMap (the kubelet's cache names the resource in
/// the singular).
pub fn not_found(name: &str) -> String {
    format!("configmap \"{name}\" not found")
}

/// Every key of `data` and `binaryData` as bytes.
pub fn all_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.entry(k.clone()).or_insert_with(|| v.0.clone());
    }
    out
}

/// Fetches the ConfigMap and builds the volume's files. An optional, missing ConfigMap
/// gives an empty volume.
pub async fn payload(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, String> {
    let cm = get(client, ns, name).await.map_err(|e| e.to_string())?;
    let data = match cm {
        Some(cm) => all_data(&cm),
        None if optional => BTreeMap::new(),
        None => return Err(not_found(name)),
    };
    make_payload(items, &data, default_mode, optional, |k| {
        format!("configmap references non-existent config key: {k}")
    })
}

/// keyToPath projection shared by configMap and secret volumes: every key under its own
/// name, or only the listed items under their paths (a listed key that is missing is an
/// error unless the source is optional).
pub fn make_payload(
    items: Option<&[KeyToPath]>,
    data: &BTreeMap<String, Vec<u8>>,
    default_mode: Option<i32>,
    optional: bool,
    missing_key: impl Fn(&str) -> String,
) -> Result<Payload, String> {
    let default_mode = default_mode.unwrap_or(DEFAULT_MODE);
    let mode = |m: i32| (m as u32) & 0o7777;
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                payload.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode(default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(missing_key(&item.key));
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode(item.mode.unwrap_or(default_mode)),
                    },
                );
            }
        }
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> BTreeMap<String, Vec<u8>> {
        [("a", "1"), ("b", "2")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    #[test]
    fn all_keys_with_default_mode() {
        let p = make_payload(None, &data(), Some(0o400), false, |k| k.into()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p["a"].mode, 0o400);
        let p = make_payload(None, &data(), None, false, |k| k.into()).unwrap();
        assert_eq!(p["b"].mode, 0o644);
    }

    #[test]
    fn items_select_and_rename() {
        let items = [item("a", "conf/a.txt", Some(0o600))];
        let p = make_payload(Some(&items), &data(), None, false, |k| k.into()).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["conf/a.txt"]);
        assert_eq!(p["conf/a.txt"].mode, 0o600);
        assert_eq!(p["conf/a.txt"].data, b"1");
    }

    #[test]
    fn missing_key_fails_unless_optional() {
        let items = [item("zz", "zz", None), item("a", "a", None)];
        let err = make_payload(Some(&items), &data(), None, false, |k| {
            format!("configmap references non-existent config key: {k}")
        })
        .unwrap_err();
        assert_eq!(err, "configmap references non-existent config key: zz");
        let p = make_payload(Some(&items), &data(), None, true, |k| k.into()).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn binary_data_is_included() {
        let cm = ConfigMap {
            data: Some([("t".to_string(), "x".to_string())].into()),
            binary_data: Some([("bin".to_string(), k8s_openapi::ByteString(vec![0, 1, 2]))].into()),
            ..Default::default()
        };
        let d = all_data(&cm);
        assert_eq!(d["bin"], vec![0, 1, 2]);
        assert_eq!(d["t"], b"x");
    }
}
