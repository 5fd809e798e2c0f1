//! A pod spec's container turned into the runtime's ContainerConfig (the kubelet's
//! kuberuntime_container: argv merging with $(VAR) expansion, env, user, resources).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use runtime::cri::{self, ContainerConfig, Image, ImageConfig, Mount, SecurityConfig};

use super::qos;

/// Annotations the agent keeps on its containers so statuses survive agent restarts.
pub const ANNOTATION_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const ANNOTATION_TERMINATION_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";
pub const LABEL_INIT: &str = "io.flotilla.container.init";

/// Expands `$(VAR)` references from `env` as Kubernetes does: `$$` is a literal `$`, an
/// undefined or malformed reference stays as written.
pub fn expand(input: &str, env: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match env.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
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

/// command replaces the image's Entrypoint (and drops its Cmd); args replace Cmd.
pub fn argv(c: &Container, image: &ImageConfig, env: &[String]) -> Vec<String> {
    let vars: HashMap<&str, &str> = env.iter().filter_map(|kv| kv.split_once('=')).collect();
    let command: Vec<String> = c.command.clone().unwrap_or_default();
    let args: Vec<String> = c.args.clone().unwrap_or_default();
    let expand_all = |v: &[String]| v.iter().map(|s| expand(s, &vars)).collect::<Vec<_>>();
    if !command.is_empty() {
        let mut v = expand_all(&command);
        v.extend(expand_all(&args));
        v
    } else if !args.is_empty() {
        let mut v = image.entrypoint.clone();
        v.extend(expand_all(&args));
        v
    } else {
        let mut v = image.entrypoint.clone();
        v.extend(image.cmd.iter().cloned());
        v
    }
}

/// The image's env with the pod's on top: a name set by both keeps its place from the image
/// and the pod's value.
pub fn merge_env(image: &[String], pod: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(image.len() + pod.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for kv in image.iter().chain(pod) {
        let name = kv
            .split_once('=')
            .map_or(kv.as_str(), |(n, _)| n)
            .to_string();
        match index.get(&name) {
            Some(&i) => out[i] = kv.clone(),
            None => {
                index.insert(name, out.len());
                out.push(kv.clone());
            }
        }
    }
    out
}

/// Container securityContext over the pod's; the image's numeric user when neither says.
pub fn security(pod: &Pod, c: &Container, image: &ImageConfig) -> SecurityConfig {
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let csc = c.security_context.clone().unwrap_or_default();
    let (image_uid, image_gid) = image_user(image.user.as_deref());
    let run_as_user = csc
        .run_as_user
        .or(psc.run_as_user)
        .and_then(|u| u32::try_from(u).ok())
        .or(image_uid);
    let run_as_group = csc
        .run_as_group
        .or(psc.run_as_group)
        .and_then(|g| u32::try_from(g).ok())
        .or(image_gid);
    let mut groups: Vec<u32> = psc
        .supplemental_groups
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|g| u32::try_from(g).ok())
        .collect();
    if let Some(fs) = psc.fs_group.and_then(|g| u32::try_from(g).ok()) {
        if !groups.contains(&fs) {
            groups.push(fs);
        }
    }
    let caps = csc.capabilities.clone().unwrap_or_default();
    SecurityConfig {
        privileged: csc.privileged.unwrap_or(false),
        run_as_user,
        run_as_group,
        supplemental_groups: groups,
        capabilities_add: caps.add.unwrap_or_default(),
        capabilities_drop: caps.drop.unwrap_or_default(),
        readonly_rootfs: csc.read_only_root_filesystem.unwrap_or(false),
        no_new_privileges: csc.allow_privilege_escalation == Some(false),
    }
}

/// `uid`, `uid:gid` are used; a user name would need the image's /etc/passwd, which the
/// runtime resolves (it has the rootfs), so it yields None here.
fn image_user(user: Option<&str>) -> (Option<u32>, Option<u32>) {
    let Some(u) = user.filter(|u| !u.is_empty()) else {
        return (None, None);
    };
    let (user, group) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    (user.parse().ok(), group.and_then(|g| g.parse().ok()))
}

/// `<pod_logs_dir>/<ns>_<name>_<uid>`: the pod's log directory.
pub fn pod_log_dir(pod_logs_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    pod_logs_dir.join(format!("{namespace}_{name}_{uid}"))
}

pub struct ContainerInputs<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub init: bool,
    pub attempt: u32,
    pub image: Image,
    /// The pod's resolved env for this container (envvars::container_env).
    pub pod_env: Vec<String>,
    pub mounts: Vec<Mount>,
    pub pod_log_dir: &'a Path,
}

pub fn container_config(i: ContainerInputs<'_>) -> ContainerConfig {
    let meta = &i.pod.metadata;
    let c = i.container;
    let env = merge_env(&i.image.config.env, &i.pod_env);
    let args = argv(c, &i.image.config, &env);
    let mut labels = BTreeMap::new();
    labels.insert(
        cri::LABEL_POD_UID.to_string(),
        meta.uid.clone().unwrap_or_default(),
    );
    labels.insert(
        cri::LABEL_POD_NAME.to_string(),
        meta.name.clone().unwrap_or_default(),
    );
    labels.insert(
        cri::LABEL_POD_NAMESPACE.to_string(),
        meta.namespace.clone().unwrap_or_default(),
    );
    labels.insert(cri::LABEL_CONTAINER_NAME.to_string(), c.name.clone());
    if i.init {
        labels.insert(LABEL_INIT.to_string(), "true".to_string());
    }
    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_RESTART_COUNT.to_string(), i.attempt.to_string());
    if let Some(g) = i
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
    {
        annotations.insert(ANNOTATION_TERMINATION_GRACE.to_string(), g.to_string());
    }
    let termination_path = c
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".to_string());
    let termination_message_path = i
        .mounts
        .iter()
        .find(|m| m.container_path == termination_path)
        .map(|m| m.host_path.clone());
    ContainerConfig {
        name: c.name.clone(),
        attempt: i.attempt,
        args,
        env,
        working_dir: c
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .or_else(|| i.image.config.working_dir.clone()),
        tty: c.tty.unwrap_or(false),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        security: security(i.pod, c, &i.image.config),
        resources: qos::container_resources(c),
        log_path: i
            .pod_log_dir
            .join(&c.name)
            .join(format!("{}.log", i.attempt)),
        termination_message_path,
        mounts: i.mounts,
        image: i.image,
        labels,
        annotations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn expansion_rules() {
        let e = env(&[("A", "1"), ("B", "two")]);
        assert_eq!(expand("$(A)-$(B)", &e), "1-two");
        assert_eq!(expand("$$(A)", &e), "$(A)");
        assert_eq!(expand("$(MISSING)", &e), "$(MISSING)");
        assert_eq!(expand("$(A", &e), "$(A");
        assert_eq!(expand("cost $5", &e), "cost $5");
        assert_eq!(expand("$", &e), "$");
    }

    fn image(ep: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: ep.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn c(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        Container {
            name: "c".into(),
            command: command.map(v),
            args: args.map(v),
            ..Default::default()
        }
    }

    #[test]
    fn argv_rules() {
        let img = image(&["/ep"], &["cmd1"]);
        let e = vec!["X=42".to_string()];
        assert_eq!(argv(&c(None, None), &img, &e), ["/ep", "cmd1"]);
        assert_eq!(argv(&c(None, Some(&["a$(X)"])), &img, &e), ["/ep", "a42"]);
        assert_eq!(argv(&c(Some(&["sh"]), None), &img, &e), ["sh"]);
        assert_eq!(
            argv(
                &c(Some(&["sh", "-c"]), Some(&["echo $(X) $$(X)"])),
                &img,
                &e
            ),
            ["sh", "-c", "echo 42 $(X)"]
        );
    }

    #[test]
    fn pod_env_overrides_image_env_in_place() {
        let image = vec!["PATH=/bin".to_string(), "A=img".to_string()];
        let pod = vec!["B=1".to_string(), "A=pod".to_string()];
        assert_eq!(merge_env(&image, &pod), ["PATH=/bin", "A=pod", "B=1"]);
    }

    #[test]
    fn user_precedence() {
        use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec, SecurityContext};
        let mut pod = Pod {
            spec: Some(PodSpec {
                security_context: Some(PodSecurityContext {
                    run_as_user: Some(1000),
                    fs_group: Some(2000),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let img = ImageConfig {
            user: Some("7:8".into()),
            ..Default::default()
        };
        let mut ctr = c(None, None);
        let s = security(&pod, &ctr, &img);
        assert_eq!((s.run_as_user, s.run_as_group), (Some(1000), Some(8)));
        assert_eq!(s.supplemental_groups, [2000]);
        ctr.security_context = Some(SecurityContext {
            run_as_user: Some(5),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        });
        let s = security(&pod, &ctr, &img);
        assert_eq!(s.run_as_user, Some(5));
        assert!(s.no_new_privileges);
        pod.spec = None;
        let s = security(&pod, &c(None, None), &img);
        assert_eq!(s.run_as_user, Some(7));
        let named = ImageConfig {
            user: Some("nobody".into()),
            ..Default::default()
        };
        assert_eq!(security(&pod, &c(None, None), &named).run_as_user, None);
    }
}
