//! A container's environment, resolved as the kubelet does (makeEnvironmentVariables):
//! `envFrom` sources first, then `env` entries (later definitions of a name override
//! earlier ones, in place), then service links for names not already set. `$(VAR)` in an
//! `env[].value` expands from the variables defined before it and from service links;
//! `$$` escapes a dollar; an unresolvable reference stays verbatim.

use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret, Service};
use kube::api::{Api, ListParams};

use crate::volumemanager::fieldpath::{self, FieldContext, FieldPathError, NodeAllocatable};
use crate::volumemanager::{
    config_map_data, config_map_not_found, get_config_map, get_secret, secret_data,
    secret_not_found,
};

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// `configmap "x" not found`
    #[error("{}", config_map_not_found(.0))]
    ConfigMapNotFound(String),
    /// `secret "x" not found`
    #[error("{}", secret_not_found(.0))]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("env var {name:?}: {source}")]
    Field {
        name: String,
        source: FieldPathError,
    },
    /// The API could not be read (the kubelet then fails the container start and retries).
    #[error("{0}")]
    Api(String),
}

impl EnvError {
    /// The container waiting reason the kubelet reports for this failure.
    pub fn reason(&self) -> &'static str {
        "CreateContainerConfigError"
    }
}

pub struct EnvContext {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub pod_ip: Option<IpAddr>,
    pub pod_ips: Vec<IpAddr>,
    pub service_account: Option<String>,
}

/// The container's env (NAME=value), Kubernetes' order and $(VAR) expansion.
pub async fn container_env(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    ctx: &EnvContext,
) -> Result<Vec<String>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let service_env = service_env(client, ns, links).await?;
    let mut sources = Sources {
        client,
        ns,
        config_maps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut env = OrderedEnv::default();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let data = if let Some(r) = &from.config_map_ref {
            match sources.config_map(&r.name).await? {
                Some(cm) => config_map_data(cm),
                None if r.optional.unwrap_or(false) => continue,
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
        } else if let Some(r) = &from.secret_ref {
            match sources.secret(&r.name).await? {
                Some(s) => secret_data(s),
                None if r.optional.unwrap_or(false) => continue,
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            let name = format!("{prefix}{k}");
            if !is_env_var_name(&name) {
                // The kubelet skips these and reports InvalidEnvironmentVariableNames.
                tracing::warn!(pod = ?pod.metadata.name, %name, "skipping invalid environment variable name");
                continue;
            }
            env.set(name, String::from_utf8_lossy(&v).into_owned());
        }
    }

    let node = NodeAllocatable::detect();
    let pod_ips = pod_ip_strings(ctx);
    let field_ctx = FieldContext {
        node_ip: Some(ctx.node_ip.to_string()),
        pod_ips: &pod_ips,
    };
    for var in container.env.iter().flatten() {
        let value = match resolve_var(
            var,
            pod,
            container,
            &field_ctx,
            &node,
            ctx,
            &env,
            &service_env,
        )? {
            Some(v) => v,
            None => match &var.value_from {
                Some(from) => {
                    if let Some(r) = &from.config_map_key_ref {
                        let optional = r.optional.unwrap_or(false);
                        let Some(cm) = sources.config_map(&r.name).await? else {
                            if optional {
                                continue;
                            }
                            return Err(EnvError::ConfigMapNotFound(r.name.clone()));
                        };
                        match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                            Some(v) => v.clone(),
                            None if optional => continue,
                            None => {
                                return Err(EnvError::ConfigMapKeyNotFound {
                                    key: r.key.clone(),
                                    namespace: ns.into(),
                                    name: r.name.clone(),
                                })
                            }
                        }
                    } else if let Some(r) = &from.secret_key_ref {
                        let optional = r.optional.unwrap_or(false);
                        let Some(s) = sources.secret(&r.name).await? else {
                            if optional {
                                continue;
                            }
                            return Err(EnvError::SecretNotFound(r.name.clone()));
                        };
                        match secret_data(s).remove(&r.key) {
                            Some(v) => String::from_utf8_lossy(&v).into_owned(),
                            None if optional => continue,
                            None => {
                                return Err(EnvError::SecretKeyNotFound {
                                    key: r.key.clone(),
                                    namespace: ns.into(),
                                    name: r.name.clone(),
                                })
                            }
                        }
                    } else {
                        String::new()
                    }
                }
                None => String::new(),
            },
        };
        env.set(var.name.clone(), value);
    }

    let mut out: Vec<String> = env.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for (k, v) in &service_env {
        if !env.index.contains_key(k) {
            out.push(format!("{k}={v}"));
        }
    }
    Ok(out)
}

/// The env vars of `container` that need no API read (values and downward API fields),
/// with pod IPs from the pod's status — for subPathExpr, resolved without the API.
pub(crate) fn local_env(pod: &Pod, container: &Container) -> Vec<String> {
    let status = pod.status.as_ref();
    let pod_ips: Vec<String> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|v| v.iter().map(|p| p.ip.clone()).collect())
        .unwrap_or_default();
    let field_ctx = FieldContext {
        node_ip: status.and_then(|s| s.host_ip.clone()),
        pod_ips: &pod_ips,
    };
    let ctx = EnvContext {
        node_name: String::new(),
        node_ip: IpAddr::from([0, 0, 0, 0]),
        pod_ip: None,
        pod_ips: Vec::new(),
        service_account: None,
    };
    let node = NodeAllocatable::detect();
    let mut env = OrderedEnv::default();
    for var in container.env.iter().flatten() {
        if let Ok(Some(v)) = resolve_var(var, pod, container, &field_ctx, &node, &ctx, &env, &[]) {
            env.set(var.name.clone(), v);
        }
    }
    env.vars
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// A value, fieldRef or resourceFieldRef; `None` for configMap/secret key refs.
#[allow(clippy::too_many_arguments)]
fn resolve_var(
    var: &EnvVar,
    pod: &Pod,
    container: &Container,
    field_ctx: &FieldContext,
    node: &NodeAllocatable,
    ctx: &EnvContext,
    env: &OrderedEnv,
    service_env: &[(String, String)],
) -> Result<Option<String>, EnvError> {
    let field_err = |source| EnvError::Field {
        name: var.name.clone(),
        source,
    };
    if let Some(value) = var.value.as_deref().filter(|v| !v.is_empty()) {
        return Ok(Some(expand(value, |name| {
            env.get(name)
                .or_else(|| {
                    service_env
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_str())
                })
                .map(str::to_string)
        })));
    }
    let Some(from) = &var.value_from else {
        return Ok(Some(String::new()));
    };
    if let Some(f) = &from.field_ref {
        if f.field_path == "spec.serviceAccountName" {
            let from_spec = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone());
            if let Some(sa) = from_spec.or_else(|| ctx.service_account.clone()) {
                return Ok(Some(sa));
            }
        }
        if f.field_path == "spec.nodeName" && !ctx.node_name.is_empty() {
            return Ok(Some(ctx.node_name.clone()));
        }
        return fieldpath::field_value(pod, &f.field_path, field_ctx)
            .map(Some)
            .map_err(field_err);
    }
    if let Some(r) = &from.resource_field_ref {
        return fieldpath::resource_value(pod, Some(container), r, node)
            .map(Some)
            .map_err(field_err);
    }
    Ok(None)
}

fn pod_ip_strings(ctx: &EnvContext) -> Vec<String> {
    let mut ips: Vec<String> = ctx.pod_ips.iter().map(IpAddr::to_string).collect();
    if ips.is_empty() {
        ips.extend(ctx.pod_ip.map(|ip| ip.to_string()));
    }
    ips
}

/// Names in definition order; redefinition replaces the value where the name first was.
#[derive(Default)]
struct OrderedEnv {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl OrderedEnv {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.vars[i].1.as_str())
    }
}

/// ConfigMaps and Secrets read once per resolution.
struct Sources<'a> {
    client: &'a kube::Client,
    ns: &'a str,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Sources<'_> {
    async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, EnvError> {
        if !self.config_maps.contains_key(name) {
            let cm = get_config_map(self.client, self.ns, name)
                .await
                .map_err(|e| EnvError::Api(e.to_string()))?;
            self.config_maps.insert(name.to_string(), cm);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, EnvError> {
        if !self.secrets.contains_key(name) {
            let s = get_secret(self.client, self.ns, name)
                .await
                .map_err(|e| EnvError::Api(e.to_string()))?;
            self.secrets.insert(name.to_string(), s);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

/// Kubernetes' expansion of `$(VAR)`: `lookup` returning `None` leaves the reference as
/// written; `$$` is a literal `$`; a `$` before anything else is kept.
pub fn expand(input: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if after.is_empty() {
            out.push('$');
            rest = after;
            break;
        }
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(close) => {
                    let name = &inner[..close];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[close + 1..];
                }
                None => {
                    // An unclosed reference is kept verbatim.
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Kubernetes' relaxed env var names (RelaxedEnvironmentVariableValidation, on by default
/// since 1.32): printable ASCII without `=`.
fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

/// Service links: `kubernetes` from the default namespace always, and, unless disabled,
/// every service with a cluster IP in the pod's namespace — sorted by service name.
async fn service_env(
    client: &kube::Client,
    ns: &str,
    links: bool,
) -> Result<Vec<(String, String)>, EnvError> {
    let api_err = |e: kube::Error| EnvError::Api(format!("services have not yet been read: {e}"));
    let mut services: Vec<Service> = Vec::new();
    if let Some(master) = Api::<Service>::namespaced(client.clone(), "default")
        .get_opt("kubernetes")
        .await
        .map_err(api_err)?
    {
        services.push(master);
    }
    if links {
        let list = Api::<Service>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map_err(api_err)?;
        for s in list.items {
            let name = s.metadata.name.as_deref().unwrap_or_default();
            let is_master = name == "kubernetes";
            if !(is_master
                && services
                    .iter()
                    .any(|m| m.metadata.name.as_deref() == Some("kubernetes")))
            {
                services.push(s);
            }
        }
    }
    services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(services.iter().flat_map(service_vars).collect())
}

fn env_name(s: &str) -> String {
    s.to_ascii_uppercase().replace('-', "_")
}

/// FOO_SERVICE_HOST/PORT, FOO_SERVICE_PORT_<NAME> and the Docker link variables.
fn service_vars(svc: &Service) -> Vec<(String, String)> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let ip = spec.cluster_ip.as_deref().unwrap_or("");
    if ip.is_empty() || ip == "None" {
        return Vec::new();
    }
    let ports = spec.ports.as_deref().unwrap_or_default();
    let prefix = env_name(svc.metadata.name.as_deref().unwrap_or_default());
    let mut out = vec![(format!("{prefix}_SERVICE_HOST"), ip.to_string())];
    let Some(first) = ports.first() else {
        return out;
    };
    let port_var = format!("{prefix}_SERVICE_PORT");
    out.push((port_var.clone(), first.port.to_string()));
    for p in ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((format!("{port_var}_{}", env_name(name)), p.port.to_string()));
        }
    }
    let host = match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{ip}]"),
        _ => ip.to_string(),
    };
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        let lower = proto.to_ascii_lowercase();
        let url = format!("{lower}://{host}:{}", p.port);
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_ascii_uppercase());
        out.push((format!("{pp}_PROTO"), lower.clone()));
        out.push((format!("{pp}_PORT"), p.port.to_string()));
        out.push((format!("{pp}_ADDR"), ip.to_string()));
        out.push((pp, url));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumemanager::testing::FakeApi;
    use serde_json::json;

    fn ctx() -> EnvContext {
        EnvContext {
            node_name: "node-1".into(),
            node_ip: "192.168.1.10".parse().unwrap(),
            pod_ip: Some("10.244.9.7".parse().unwrap()),
            pod_ips: vec![],
            service_account: Some("default".into()),
        }
    }

    fn pod(container: serde_json::Value, extra_spec: serde_json::Value) -> Pod {
        let mut spec = json!({"containers": [container]});
        for (k, v) in extra_spec.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "ns", "uid": "u-1",
                         "labels": {"app": "web"}},
            "spec": spec
        }))
        .unwrap()
    }

    async fn env_of(api: &FakeApi, pod: &Pod) -> Result<Vec<String>, EnvError> {
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        container_env(&api.client(), pod, &c, &ctx()).await
    }

    fn fixtures() -> FakeApi {
        let api = FakeApi::default();
        api.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "cfg", "namespace": "ns"},
                       "data": {"MODE": "prod", "LEVEL": "3", "bad=key": "x"}}));
        api.put(json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "creds", "namespace": "ns"},
                       "data": {"PASSWORD": "aHVudGVyMg=="}}));
        api
    }

    #[test]
    fn expansion_rules() {
        let look = |n: &str| match n {
            "A" => Some("alpha".to_string()),
            _ => None,
        };
        assert_eq!(expand("$(A)-$(A)", look), "alpha-alpha");
        assert_eq!(expand("$(B)", look), "$(B)");
        assert_eq!(expand("$$(A)", look), "$(A)");
        assert_eq!(expand("$$$(A)", look), "$alpha");
        assert_eq!(expand("cost: $5", look), "cost: $5");
        assert_eq!(expand("trailing $", look), "trailing $");
        assert_eq!(expand("$(A", look), "$(A");
        assert_eq!(expand("héllo $(A) wörld", look), "héllo alpha wörld");
        assert_eq!(expand("", look), "");
    }

    #[test]
    fn env_var_names() {
        assert!(is_env_var_name("FOO_1"));
        assert!(is_env_var_name("my.var-name"));
        assert!(is_env_var_name("1FOO"));
        assert!(is_env_var_name("with space"));
        assert!(!is_env_var_name("a=b"));
        assert!(!is_env_var_name("tab\there"));
        assert!(!is_env_var_name("é"));
        assert!(!is_env_var_name(""));
    }

    #[tokio::test]
    async fn order_sources_and_expansion() {
        let api = fixtures();
        let p = pod(
            json!({"name": "c", "image": "busybox",
                "envFrom": [{"configMapRef": {"name": "cfg"}},
                            {"secretRef": {"name": "creds"}, "prefix": "DB_"}],
                "env": [
                    {"name": "GREETING", "value": "hello $(MODE) $$(MODE) $(NOPE)"},
                    {"name": "LEVEL", "value": "override"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                    {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "LATER", "value": "$(POD_NAME)/$(S)"},
                    {"name": "EMPTY"}
                ],
                "resources": {"limits": {"memory": "128Mi"}}}),
            json!({"enableServiceLinks": false}),
        );
        let env = env_of(&api, &p).await.unwrap();
        assert_eq!(
            env,
            [
                "LEVEL=override",
                "MODE=prod",
                "DB_PASSWORD=hunter2",
                "GREETING=hello prod $(MODE) $(NOPE)",
                "POD_NAME=web-1",
                "APP=web",
                "POD_IP=10.244.9.7",
                "HOST_IP=192.168.1.10",
                "NODE=node-1",
                "SA=default",
                "K=prod",
                "S=hunter2",
                "MEM=128",
                "LATER=web-1/hunter2",
                "EMPTY=",
            ]
        );
    }

    #[tokio::test]
    async fn missing_and_optional_refs() {
        let api = fixtures();
        let run = |env: serde_json::Value, env_from: serde_json::Value| {
            pod(
                json!({"name": "c", "image": "i", "env": env, "envFrom": env_from}),
                json!({"enableServiceLinks": false}),
            )
        };
        let err = env_of(
            &api,
            &run(json!([]), json!([{"configMapRef": {"name": "x"}}])),
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "configmap \"x\" not found");
        assert_eq!(err.reason(), "CreateContainerConfigError");
        let err = env_of(&api, &run(json!([]), json!([{"secretRef": {"name": "y"}}])))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "secret \"y\" not found");
        let err = env_of(
            &api,
            &run(json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]), json!([])),
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "couldn't find key k in ConfigMap ns/cfg");
        let err = env_of(
            &api,
            &run(json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]), json!([])),
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "couldn't find key k in Secret ns/creds");

        let env = env_of(
            &api,
            &run(
                json!([
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k", "optional": true}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                    {"name": "C", "value": "c"}
                ]),
                json!([{"configMapRef": {"name": "absent", "optional": true}}]),
            ),
        )
        .await
        .unwrap();
        assert_eq!(env, ["C=c"]);
    }

    #[tokio::test]
    async fn service_links() {
        let api = fixtures();
        api.put(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}));
        api.put(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "redis-master", "namespace": "ns"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [
                {"port": 6379},
                {"name": "metrics", "port": 9121, "protocol": "TCP"}]}}));
        api.put(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "headless", "namespace": "ns"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
        let p = pod(
            json!({"name": "c", "image": "i",
                           "env": [{"name": "REDIS_MASTER_SERVICE_HOST", "value": "mine"},
                                   {"name": "URL", "value": "$(REDIS_MASTER_PORT)"}]}),
            json!({}),
        );
        let env = env_of(&api, &p).await.unwrap();
        let has = |s: &str| env.iter().any(|e| e == s);
        assert!(has("KUBERNETES_SERVICE_HOST=10.96.0.1"), "{env:?}");
        assert!(has("KUBERNETES_SERVICE_PORT=443"));
        assert!(has("KUBERNETES_SERVICE_PORT_HTTPS=443"));
        assert!(has("KUBERNETES_PORT=tcp://10.96.0.1:443"));
        assert!(has("KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443"));
        assert!(has("KUBERNETES_PORT_443_TCP_PROTO=tcp"));
        assert!(has("KUBERNETES_PORT_443_TCP_PORT=443"));
        assert!(has("KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1"));
        assert!(has("REDIS_MASTER_SERVICE_PORT=6379"));
        assert!(has("REDIS_MASTER_SERVICE_PORT_METRICS=9121"));
        assert!(has("REDIS_MASTER_PORT_9121_TCP_ADDR=10.96.0.20"));
        // The container's own definition wins over a service link, which can be expanded.
        assert!(has("REDIS_MASTER_SERVICE_HOST=mine"));
        assert!(!has("REDIS_MASTER_SERVICE_HOST=10.96.0.20"));
        assert!(has("URL=tcp://10.96.0.20:6379"));
        assert!(!env.iter().any(|e| e.starts_with("HEADLESS_")));

        // enableServiceLinks: false keeps only the master service.
        let p = pod(
            json!({"name": "c", "image": "i"}),
            json!({"enableServiceLinks": false}),
        );
        let env = env_of(&api, &p).await.unwrap();
        assert!(env.iter().any(|e| e == "KUBERNETES_SERVICE_HOST=10.96.0.1"));
        assert!(!env.iter().any(|e| e.starts_with("REDIS_")));
    }

    #[test]
    fn ipv6_service_link() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "v6"},
            "spec": {"clusterIP": "fd00::10", "ports": [{"port": 80, "protocol": "UDP"}]}}))
        .unwrap();
        let vars = service_vars(&svc);
        assert!(vars.contains(&("V6_PORT".into(), "udp://[fd00::10]:80".into())));
        assert!(vars.contains(&("V6_PORT_80_UDP_PROTO".into(), "udp".into())));
    }

    #[test]
    fn local_env_for_sub_path_expr() {
        let p = pod(
            json!({"name": "c", "image": "i", "env": [
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "DIR", "value": "logs/$(POD)"},
                {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}),
            json!({}),
        );
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        assert_eq!(local_env(&p, &c), ["POD=web-1", "DIR=logs/web-1"]);
    }
}
