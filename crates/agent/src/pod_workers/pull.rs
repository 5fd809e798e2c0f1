//! Image pulls for a container (the kubelet's image manager): pull policy, credentials from
//! imagePullSecrets, Pulling/Pulled/Failed/BackOff events and the ErrImagePull →
//! ImagePullBackOff waiting reasons.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::Api;
use runtime::cri::{Image, PullPolicy, RegistryAuth};
use runtime::RuntimeError;

use super::actions::Waiting;
use super::backoff::Backoff;
use crate::events::{EventRecorder, EventType};

/// The policy the pod asks for, with Kubernetes' default: Always for `:latest` or an
/// untagged reference, IfNotPresent otherwise.
pub fn pull_policy(c: &Container) -> PullPolicy {
    match c.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        _ => {
            let image = c.image.as_deref().unwrap_or_default();
            if image.contains('@') {
                return PullPolicy::IfNotPresent;
            }
            let last = image.rsplit('/').next().unwrap_or(image);
            match last.split_once(':') {
                Some((_, "latest")) | None => PullPolicy::Always,
                Some(_) => PullPolicy::IfNotPresent,
            }
        }
    }
}

/// Credentials from a `.dockerconfigjson` or `.dockercfg` document.
pub fn parse_docker_config(data: &[u8], legacy: bool) -> Vec<RegistryAuth> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return Vec::new();
    };
    let auths = if legacy { Some(&v) } else { v.get("auths") };
    let Some(map) = auths.and_then(|a| a.as_object()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (server, entry) in map {
        let mut username = entry
            .get("username")
            .and_then(|u| u.as_str())
            .unwrap_or_default()
            .to_string();
        let mut password = entry
            .get("password")
            .and_then(|u| u.as_str())
            .unwrap_or_default()
            .to_string();
        if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(auth) {
                if let Some((u, p)) = String::from_utf8_lossy(&raw).split_once(':') {
                    username = u.to_string();
                    password = p.to_string();
                }
            }
        }
        let host = server
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .trim_end_matches("/v2")
            .to_string();
        out.push(RegistryAuth {
            server: host,
            username,
            password,
        });
    }
    out
}

pub async fn pull_secrets(
    client: &kube::Client,
    pod: &Pod,
    recorder: &EventRecorder,
) -> Vec<RegistryAuth> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    let refs = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    for r in refs {
        let name = r.name;
        match api.get_opt(&name).await {
            Ok(Some(secret)) => {
                let data = secret.data.unwrap_or_default();
                if let Some(d) = data.get(".dockerconfigjson") {
                    out.extend(parse_docker_config(&d.0, false));
                } else if let Some(d) = data.get(".dockercfg") {
                    out.extend(parse_docker_config(&d.0, true));
                }
            }
            Ok(None) | Err(_) => recorder.pod_event(
                pod,
                None,
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                format!("Unable to retrieve some image pull secrets ({name}); attempting to pull the image may not succeed."),
            ),
        }
    }
    out
}

/// Remembers failed pulls per image so a pod does not hammer a registry.
#[derive(Default)]
pub struct PullBackoff {
    backoff: Backoff,
    failed_at: HashMap<String, SystemTime>,
}

pub struct PullContext<'a> {
    pub images: &'a dyn runtime::ImageService,
    pub recorder: &'a EventRecorder,
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub field_path: String,
    pub auth: &'a [RegistryAuth],
}

pub async fn ensure_image(p: &PullContext<'_>, state: &mut PullBackoff) -> Result<Image, Waiting> {
    let image = p.container.image.clone().unwrap_or_default();
    let event = |t: EventType, reason: &str, msg: String| {
        p.recorder
            .pod_event(p.pod, Some(p.field_path.clone()), t, reason, msg)
    };
    if image.is_empty() {
        return Err(Waiting {
            reason: "InvalidImageName".into(),
            message: "container image is empty".into(),
        });
    }
    let policy = pull_policy(p.container);
    if policy != PullPolicy::Always {
        if let Ok(Some(found)) = p.images.image_status(&image).await {
            event(
                EventType::Normal,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            );
            return Ok(found);
        }
    }
    let now = SystemTime::now();
    if let Some(failed) = state.failed_at.get(&image) {
        if state.backoff.remaining(&image, *failed, now).is_some() {
            event(
                EventType::Normal,
                "BackOff",
                format!("Back-off pulling image \"{image}\""),
            );
            event(
                EventType::Warning,
                "Failed",
                "Error: ImagePullBackOff".to_string(),
            );
            return Err(Waiting {
                reason: "ImagePullBackOff".into(),
                message: format!("Back-off pulling image \"{image}\""),
            });
        }
    }
    if policy != PullPolicy::Never {
        event(
            EventType::Normal,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
    }
    let started = Instant::now();
    match p.images.ensure_image(&image, policy, p.auth).await {
        Ok(found) => {
            state.backoff.reset(&image);
            state.failed_at.remove(&image);
            if policy != PullPolicy::Never {
                event(
                    EventType::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {:.3}s. Image size: {} bytes.",
                        started.elapsed().as_secs_f64(),
                        found.size
                    ),
                );
            }
            Ok(found)
        }
        Err(e) => {
            let reason = match &e {
                RuntimeError::ImageNeverPull(_) => "ErrImageNeverPull",
                RuntimeError::InvalidImageReference { .. } => "InvalidImageName",
                _ => "ErrImagePull",
            };
            let message = match &e {
                RuntimeError::ImageNeverPull(_) => e.to_string(),
                _ => format!("failed to pull and unpack image \"{image}\": {e}"),
            };
            if reason == "ErrImagePull" {
                state.backoff.next(&image, now);
                state.failed_at.insert(image.clone(), now);
                event(
                    EventType::Warning,
                    "Failed",
                    format!("Failed to pull image \"{image}\": {e}"),
                );
            } else {
                event(EventType::Warning, reason, message.clone());
            }
            event(EventType::Warning, "Failed", format!("Error: {reason}"));
            Err(Waiting {
                reason: reason.into(),
                message,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn default_policies() {
        assert_eq!(pull_policy(&c("busybox", None)), PullPolicy::Always);
        assert_eq!(pull_policy(&c("busybox:latest", None)), PullPolicy::Always);
        assert_eq!(
            pull_policy(&c("127.0.0.1:5000/busybox", None)),
            PullPolicy::Always
        );
        assert_eq!(
            pull_policy(&c("127.0.0.1:5000/busybox:1.36", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            pull_policy(&c("busybox@sha256:00", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(pull_policy(&c("busybox", Some("Never"))), PullPolicy::Never);
    }

    #[test]
    fn docker_config_forms() {
        let json = br#"{"auths":{"https://reg.test:5000/v1/":{"auth":"dTpw"},"other.test":{"username":"a","password":"b"}}}"#;
        let mut got = parse_docker_config(json, false);
        got.sort_by(|a, b| a.server.cmp(&b.server));
        assert_eq!(
            got[0],
            RegistryAuth {
                server: "other.test".into(),
                username: "a".into(),
                password: "b".into()
            }
        );
        assert_eq!(
            got[1],
            RegistryAuth {
                server: "reg.test:5000".into(),
                username: "u".into(),
                password: "p".into()
            }
        );
        let legacy = br#"{"reg.test":{"auth":"dTpw"}}"#;
        assert_eq!(parse_docker_config(legacy, true).len(), 1);
        assert!(parse_docker_config(b"not json", false).is_empty());
    }
}
