//! Writes kubeconfig files: the admin one the server leaves in its data directory.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use serde::Serialize;

/// What a kubeconfig for one cluster and one certificate-authenticated user holds.
pub struct ClientConfig<'a> {
    pub cluster: &'a str,
    pub user: &'a str,
    pub server: &'a str,
    pub ca_pem: &'a str,
    pub client_cert_pem: &'a str,
    pub client_key_pem: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: [Named<'a, Cluster>; 1],
    users: [Named<'a, User>; 1],
    contexts: [Named<'a, ContextEntry<'a>>; 1],
    current_context: &'a str,
    preferences: Empty,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    value: T,
}

#[derive(Serialize)]
struct Cluster {
    cluster: ClusterFields,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterFields {
    server: String,
    certificate_authority_data: String,
}

#[derive(Serialize)]
struct User {
    user: UserFields,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct UserFields {
    client_certificate_data: String,
    client_key_data: String,
}

#[derive(Serialize)]
struct ContextEntry<'a> {
    context: ContextFields<'a>,
}

#[derive(Serialize)]
struct ContextFields<'a> {
    cluster: &'a str,
    user: &'a str,
}

pub fn render(c: &ClientConfig<'_>) -> anyhow::Result<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let doc = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: [Named {
            name: c.cluster,
            value: Cluster {
                cluster: ClusterFields {
                    server: c.server.to_string(),
                    certificate_authority_data: b64(c.ca_pem),
                },
            },
        }],
        users: [Named {
            name: c.user,
            value: User {
                user: UserFields {
                    client_certificate_data: b64(c.client_cert_pem),
                    client_key_data: b64(c.client_key_pem),
                },
            },
        }],
        contexts: [Named {
            name: c.cluster,
            value: ContextEntry {
                context: ContextFields {
                    cluster: c.cluster,
                    user: c.user,
                },
            },
        }],
        current_context: c.cluster,
        preferences: Empty {},
    };
    serde_yaml::to_string(&doc).context("rendering the kubeconfig")
}

/// Writes the kubeconfig with mode 0600: it holds a private key.
pub fn write(path: &Path, c: &ClientConfig<'_>) -> anyhow::Result<()> {
    let text = render(c)?;
    apiserver::pki::write_atomic(path, text.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_fields_kubectl_reads() {
        let text = render(&ClientConfig {
            cluster: "default",
            user: "admin",
            server: "https://127.0.0.1:6443",
            ca_pem: "CA",
            client_cert_pem: "CERT",
            client_key_pem: "KEY",
        })
        .unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Config");
        assert_eq!(v["current-context"], "default");
        let cluster = &v["clusters"][0];
        assert_eq!(cluster["name"], "default");
        assert_eq!(cluster["cluster"]["server"], "https://127.0.0.1:6443");
        assert_eq!(cluster["cluster"]["certificate-authority-data"], "Q0E=");
        assert_eq!(v["users"][0]["user"]["client-certificate-data"], "Q0VSVA==");
        assert_eq!(v["users"][0]["user"]["client-key-data"], "S0VZ");
        assert_eq!(v["contexts"][0]["context"]["user"], "admin");
    }
}
