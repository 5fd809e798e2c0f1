//! The pod subresources the agent serves: find the pod and its node, pick and check the
//! container as kube-apiserver does, and translate the path to the kubelet's.

use axum::extract::Request;
use axum::response::Response;
use serde_json::Value;

use super::{upgrade, Shared};
use crate::registry::{meta, ObjectRef};
use crate::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Log,
    Exec,
    Attach,
    PortForward,
}

pub async fn forward(
    s: &Shared,
    kind: Kind,
    ns: &str,
    name: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let client = s.client()?;
    let pod = read_pod(s, ns, name).await?;
    let query = req.uri().query().unwrap_or_default().to_string();
    let target = agent_path(kind, ns, name, &pod, &query)?;
    let node = node_of(&pod, name)?;
    upgrade::forward(client, &node, &target, req).await
}

async fn read_pod(s: &Shared, ns: &str, name: &str) -> Result<Value, ApiError> {
    let info = s
        .state
        .catalogue
        .lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("the catalogue has no pods"))?;
    let r = ObjectRef::new(info, Some(ns), name);
    let (kv, _) = s
        .state
        .registry
        .store
        .get(&r.key(), None)
        .await
        .map_err(|e| ApiError::from_store(e, r.target()))?;
    meta::decode_kv(&kv.ok_or_else(|| ApiError::not_found(r.target()))?)
}

fn node_of(pod: &Value, name: &str) -> Result<String, ApiError> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))
}

/// The kubelet path for the request, with the query the kubelet reads.
fn agent_path(
    kind: Kind,
    ns: &str,
    name: &str,
    pod: &Value,
    query: &str,
) -> Result<String, ApiError> {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let seg = |s: &str| -> String {
        form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    if kind == Kind::PortForward {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        return Ok(format!("/portForward/{}/{}{q}", seg(ns), seg(name)));
    }
    let requested = params
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty());
    let container = pick_container(pod, name, requested)?;
    if kind == Kind::Exec && !params.iter().any(|(k, _)| k == "command") {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let rest: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, _)| k != "container")
        .collect();
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &rest {
        q.append_pair(k, v);
    }
    let q = q.finish();
    let q = if q.is_empty() { q } else { format!("?{q}") };
    let base = match kind {
        Kind::Log => "containerLogs",
        Kind::Exec => "exec",
        Kind::Attach => "attach",
        Kind::PortForward => "portForward",
    };
    Ok(format!(
        "/{base}/{}/{}/{}{q}",
        seg(ns),
        seg(name),
        seg(&container)
    ))
}

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// kube-apiserver's rules: the named container must be one of the pod's (init, app or
/// ephemeral); without a name, a pod with exactly one container means that one.
fn pick_container(pod: &Value, name: &str, requested: Option<&str>) -> Result<String, ApiError> {
    let containers = names(pod, "containers");
    let init = names(pod, "initContainers");
    let ephemeral = names(pod, "ephemeralContainers");
    match requested {
        Some(c) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c)
            {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"spec": {"nodeName": "n1",
            "initContainers": [{"name": "setup"}],
            "containers": [{"name": "app"}, {"name": "side car"}]}})
    }

    #[test]
    fn a_named_container_is_checked_against_the_pod() {
        let p = agent_path(
            Kind::Log,
            "ns",
            "web",
            &pod(),
            "container=app&follow=true&tailLines=3",
        )
        .unwrap();
        assert_eq!(p, "/containerLogs/ns/web/app?follow=true&tailLines=3");
        let p = agent_path(Kind::Log, "ns", "web", &pod(), "container=setup").unwrap();
        assert_eq!(p, "/containerLogs/ns/web/setup");
        let e = agent_path(Kind::Log, "ns", "web", &pod(), "container=x").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "container x is not valid for pod web")
        );
    }

    #[test]
    fn without_a_name_only_a_single_container_pod_has_a_default() {
        let e = agent_path(Kind::Exec, "ns", "web", &pod(), "command=ls").unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message.contains("choose one of: [app side car]"),
            "{}",
            e.message
        );
        let one = json!({"spec": {"containers": [{"name": "only"}]}});
        let p = agent_path(
            Kind::Exec,
            "ns",
            "web",
            &one,
            "command=sh&command=-c&command=exit%203&stdout=true",
        )
        .unwrap();
        assert_eq!(
            p,
            "/exec/ns/web/only?command=sh&command=-c&command=exit+3&stdout=true"
        );
    }

    #[test]
    fn exec_needs_a_command_and_names_are_escaped() {
        let e = agent_path(Kind::Exec, "ns", "web", &pod(), "container=app").unwrap_err();
        assert_eq!(e.code, 400);
        let p = agent_path(
            Kind::Attach,
            "ns",
            "web",
            &pod(),
            "container=side%20car&stdin=true",
        )
        .unwrap();
        assert_eq!(p, "/attach/ns/web/side%20car?stdin=true");
        let p = agent_path(Kind::PortForward, "ns", "web", &pod(), "ports=80").unwrap();
        assert_eq!(p, "/portForward/ns/web?ports=80");
    }

    #[test]
    fn a_pod_without_a_node_is_a_bad_request() {
        let e = node_of(&json!({"spec": {}}), "web").unwrap_err();
        assert_eq!(e.message, "pod web does not have a host assigned");
        assert_eq!(node_of(&pod(), "web").unwrap(), "n1");
    }
}
