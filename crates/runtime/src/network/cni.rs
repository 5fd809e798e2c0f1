//! A small typed CNI client: runs plugin binaries as the CNI spec (1.0.0) prescribes, the
//! way libcni does for containerd. Crates on crates.io (`cni-plugin`) are for writing
//! plugins, not for calling them.
//!
//! A plugin gets its operation in `CNI_*` environment variables and its network
//! configuration on stdin, and answers with a result (ADD) or an error object
//! `{code, msg, details}` on stdout and a non-zero exit.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use crate::cri::RuntimeError;

/// How long one plugin may run before it is killed. Plugins take milliseconds; portmap on a
/// busy iptables may take a second or two.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("plugin {plugin:?} not found in {dir}")]
    PluginNotFound { plugin: String, dir: PathBuf },
    #[error("running {plugin}: {source}")]
    Exec {
        plugin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{plugin} timed out after {timeout:?}")]
    Timeout { plugin: String, timeout: Duration },
    /// The plugin's own error object (CNI spec "Error" result).
    #[error("{plugin} failed (code {code}): {msg}{}", details_suffix(.details))]
    Plugin {
        plugin: String,
        code: u32,
        msg: String,
        details: String,
    },
    #[error("{plugin} exited with {status} and no error object: {stderr}")]
    Failed {
        plugin: String,
        status: String,
        stderr: String,
    },
    #[error("{plugin} printed an unreadable result: {message}")]
    BadResult { plugin: String, message: String },
    #[error("invalid network configuration: {0}")]
    BadConfig(String),
}

/// Spawns `cmd`, retrying briefly while its binary is "text file busy": a plugin just
/// installed (or written by a test) is busy as long as any process still holds it open for
/// writing, which includes a child forked elsewhere in this process before its exec closed
/// the inherited descriptor.
async fn spawn_retrying_busy(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let mut delay = std::time::Duration::from_millis(1);
    for _ in 0..10 {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    cmd.spawn()
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

impl CniError {
    fn plugin(&self) -> &str {
        match self {
            CniError::PluginNotFound { plugin, .. }
            | CniError::Exec { plugin, .. }
            | CniError::Timeout { plugin, .. }
            | CniError::Plugin { plugin, .. }
            | CniError::Failed { plugin, .. }
            | CniError::BadResult { plugin, .. } => plugin,
            CniError::BadConfig(_) => "config",
        }
    }
}

impl From<CniError> for RuntimeError {
    fn from(e: CniError) -> Self {
        RuntimeError::Cni {
            plugin: e.plugin().to_string(),
            message: e.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
        }
    }
}

/// The per-attachment parameters that travel in the environment.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// `CNI_ARGS` pairs; `IgnoreUnknown=1` is always sent first so plugins that do not
    /// know the Kubernetes keys accept them.
    pub args: Vec<(String, String)>,
}

/// The parts of a CNI 1.0 result we use. The raw JSON is kept alongside, since chained
/// plugins and DEL need it verbatim as `prevResult`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Interface {
    pub name: String,
    /// Set for interfaces inside the container's namespace.
    #[serde(default)]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IpConfig {
    /// CIDR notation: `10.244.3.2/24`.
    pub address: String,
    #[serde(default)]
    pub interface: Option<usize>,
}

impl CniResult {
    /// The addresses configured inside the sandbox, in result order (the primary first).
    pub fn sandbox_ips(&self) -> Result<Vec<IpAddr>, String> {
        let mut out = Vec::new();
        for ip in &self.ips {
            let in_sandbox = match ip.interface.and_then(|i| self.interfaces.get(i)) {
                Some(iface) => iface.sandbox.as_deref().is_some_and(|s| !s.is_empty()),
                // No interface index: the address can only be the container's.
                None => true,
            };
            if !in_sandbox {
                continue;
            }
            let addr = ip.address.split('/').next().unwrap_or_default();
            let parsed: IpAddr = addr
                .parse()
                .map_err(|e| format!("address {:?}: {e}", ip.address))?;
            out.push(parsed);
        }
        Ok(out)
    }
}

/// Runs plugins from one directory.
#[derive(Debug, Clone)]
pub struct Client {
    bin_dir: PathBuf,
}

impl Client {
    pub fn new(bin_dir: PathBuf) -> Self {
        Client { bin_dir }
    }

    pub fn plugin_path(&self, plugin: &str) -> Result<PathBuf, CniError> {
        // A type is a file name, never a path: a config must not run arbitrary binaries.
        let valid = !plugin.is_empty()
            && plugin
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            && plugin != "."
            && plugin != "..";
        let path = self.bin_dir.join(plugin);
        if !valid || !path.is_file() {
            return Err(CniError::PluginNotFound {
                plugin: plugin.to_string(),
                dir: self.bin_dir.clone(),
            });
        }
        Ok(path)
    }

    /// ADD through every plugin of a list, each getting the previous one's result, as the
    /// spec's "network configuration list" execution does. Returns the final raw result.
    pub async fn add_list(
        &self,
        list: &Value,
        attachment: &Attachment,
        runtime_config: &Value,
    ) -> Result<Value, CniError> {
        let (name, version, plugins) = split_list(list)?;
        let mut prev: Option<Value> = None;
        for plugin in plugins {
            let conf = plugin_config(plugin, name, version, prev.as_ref(), runtime_config)?;
            let result = self.exec(Command::Add, &conf, attachment).await?;
            prev = Some(result.ok_or_else(|| CniError::BadResult {
                plugin: plugin_type(plugin).unwrap_or_default().to_string(),
                message: "ADD printed no result".to_string(),
            })?);
        }
        prev.ok_or_else(|| CniError::BadConfig("the list has no plugins".to_string()))
    }

    /// DEL through every plugin of a list in reverse order, each with the cached ADD
    /// result. Every plugin is tried even if one fails, so one stuck plugin does not keep
    /// the others' resources; the first error is returned.
    pub async fn del_list(
        &self,
        list: &Value,
        attachment: &Attachment,
        runtime_config: &Value,
        prev_result: Option<&Value>,
    ) -> Result<(), CniError> {
        let (name, version, plugins) = split_list(list)?;
        let mut first_err = None;
        for plugin in plugins.iter().rev() {
            let conf = plugin_config(plugin, name, version, prev_result, runtime_config)?;
            if let Err(e) = self.exec(Command::Del, &conf, attachment).await {
                tracing::warn!(error = %e, container = %attachment.container_id, "CNI DEL");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Runs one plugin with a single, complete plugin configuration.
    pub async fn exec(
        &self,
        command: Command,
        conf: &Value,
        attachment: &Attachment,
    ) -> Result<Option<Value>, CniError> {
        let plugin = plugin_type(conf)?.to_string();
        let path = self.plugin_path(&plugin)?;
        let stdin = serde_json::to_vec(conf).map_err(|e| CniError::BadConfig(e.to_string()))?;

        let mut cmd = tokio::process::Command::new(&path);
        cmd.env_clear()
            .env("PATH", plugin_search_path())
            .env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &attachment.container_id)
            .env("CNI_NETNS", &attachment.netns)
            .env("CNI_IFNAME", &attachment.ifname)
            .env("CNI_PATH", &self.bin_dir)
            .env("CNI_ARGS", cni_args(&attachment.args))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let exec_err = |source| CniError::Exec {
            plugin: plugin.clone(),
            source,
        };
        let mut child = spawn_retrying_busy(&mut cmd).await.map_err(exec_err)?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(&stdin).await.map_err(exec_err)?;
            // Dropping closes stdin: plugins read to EOF.
        }
        let output = tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| CniError::Timeout {
                plugin: plugin.clone(),
                timeout: PLUGIN_TIMEOUT,
            })?
            .map_err(exec_err)?;
        parse_output(
            &plugin,
            output.status.success(),
            &output.status.to_string(),
            &output.stdout,
            &output.stderr,
        )
    }
}

fn parse_output(
    plugin: &str,
    success: bool,
    status: &str,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<Option<Value>, CniError> {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if !success {
        #[derive(Deserialize)]
        struct ErrorObject {
            code: u32,
            #[serde(default)]
            msg: String,
            #[serde(default)]
            details: String,
        }
        return Err(match serde_json::from_str::<ErrorObject>(trimmed) {
            Ok(e) => CniError::Plugin {
                plugin: plugin.to_string(),
                code: e.code,
                msg: e.msg,
                details: e.details,
            },
            Err(_) => CniError::Failed {
                plugin: plugin.to_string(),
                status: status.to_string(),
                stderr: String::from_utf8_lossy(stderr).trim().to_string(),
            },
        });
    }
    if trimmed.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(trimmed)
        .map(Some)
        .map_err(|e| CniError::BadResult {
            plugin: plugin.to_string(),
            message: e.to_string(),
        })
}

fn plugin_type(conf: &Value) -> Result<&str, CniError> {
    conf.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| CniError::BadConfig("a plugin has no \"type\"".to_string()))
}

fn split_list(list: &Value) -> Result<(&str, &str, &Vec<Value>), CniError> {
    let name = list
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| CniError::BadConfig("the list has no \"name\"".to_string()))?;
    let version = list
        .get("cniVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| CniError::BadConfig("the list has no \"cniVersion\"".to_string()))?;
    let plugins = list
        .get("plugins")
        .and_then(Value::as_array)
        .ok_or_else(|| CniError::BadConfig("the list has no \"plugins\"".to_string()))?;
    Ok((name, version, plugins))
}

/// One plugin's configuration as a list hands it over: the list's name and version, the
/// previous result, and only the runtime-config keys the plugin declares as capabilities.
pub fn plugin_config(
    plugin: &Value,
    name: &str,
    version: &str,
    prev_result: Option<&Value>,
    runtime_config: &Value,
) -> Result<Value, CniError> {
    let mut conf: Map<String, Value> = plugin
        .as_object()
        .cloned()
        .ok_or_else(|| CniError::BadConfig("a plugin is not an object".to_string()))?;
    conf.insert("name".to_string(), Value::from(name));
    conf.insert("cniVersion".to_string(), Value::from(version));
    if let Some(prev) = prev_result {
        conf.insert("prevResult".to_string(), prev.clone());
    }
    let mut rc = Map::new();
    if let (Some(caps), Some(given)) = (
        plugin.get("capabilities").and_then(Value::as_object),
        runtime_config.as_object(),
    ) {
        for (cap, enabled) in caps {
            if enabled.as_bool() == Some(true) {
                if let Some(v) = given.get(cap) {
                    rc.insert(cap.clone(), v.clone());
                }
            }
        }
    }
    if !rc.is_empty() {
        conf.insert("runtimeConfig".to_string(), Value::Object(rc));
    }
    Ok(Value::Object(conf))
}

fn cni_args(args: &[(String, String)]) -> String {
    let mut s = String::from("IgnoreUnknown=1");
    for (k, v) in args {
        s.push(';');
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

/// Plugins shell out (portmap runs iptables), so they need a PATH with the sbin dirs even
/// when the agent was started with a minimal one.
fn plugin_search_path() -> String {
    let inherited = std::env::var("PATH").unwrap_or_default();
    let mut parts: Vec<&str> = inherited.split(':').filter(|p| !p.is_empty()).collect();
    for p in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !parts.contains(&p) {
            parts.push(p);
        }
    }
    parts.join(":")
}

/// Whether `dir` holds every plugin in `plugins` (checked at start, so a node without the
/// plugins fails before its first pod).
pub fn check_plugins(dir: &Path, plugins: &[&str]) -> Result<(), CniError> {
    let client = Client::new(dir.to_path_buf());
    for p in plugins {
        client.plugin_path(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn capabilities_filter_runtime_config() {
        let rc = json!({"portMappings": [{"hostPort": 80}], "bandwidth": {}});
        let portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let conf = plugin_config(&portmap, "net", "1.0.0", None, &rc).unwrap();
        assert_eq!(conf["name"], "net");
        assert_eq!(conf["cniVersion"], "1.0.0");
        assert_eq!(
            conf["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 80}]})
        );
        assert!(conf.get("prevResult").is_none());

        let bridge = json!({"type": "bridge"});
        let prev = json!({"ips": []});
        let conf = plugin_config(&bridge, "net", "1.0.0", Some(&prev), &rc).unwrap();
        assert!(conf.get("runtimeConfig").is_none());
        assert_eq!(conf["prevResult"], prev);

        let disabled = json!({"type": "portmap", "capabilities": {"portMappings": false}});
        let conf = plugin_config(&disabled, "net", "1.0.0", None, &rc).unwrap();
        assert!(conf.get("runtimeConfig").is_none());
    }

    #[test]
    fn result_ips_are_the_sandbox_interfaces() {
        let r: CniResult = serde_json::from_value(json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa"},
                {"name": "veth1", "mac": "bb"},
                {"name": "eth0", "mac": "cc", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "10.244.3.1/24", "interface": 0},
                {"address": "10.244.3.7/24", "gateway": "10.244.3.1", "interface": 2},
                {"address": "fd00::7/64", "interface": 2}
            ]
        }))
        .unwrap();
        let ips = r.sandbox_ips().unwrap();
        assert_eq!(
            ips,
            vec![
                "10.244.3.7".parse::<IpAddr>().unwrap(),
                "fd00::7".parse().unwrap()
            ]
        );

        let bad: CniResult =
            serde_json::from_value(json!({"ips": [{"address": "nonsense/24"}]})).unwrap();
        assert!(bad.sandbox_ips().is_err());
    }

    #[test]
    fn error_objects_become_typed_errors() {
        let out = br#"{"cniVersion":"1.0.0","code":7,"msg":"no IP addresses available","details":"range full"}"#;
        match parse_output("host-local", false, "exit status: 1", out, b"") {
            Err(CniError::Plugin {
                code, msg, details, ..
            }) => {
                assert_eq!(code, 7);
                assert_eq!(msg, "no IP addresses available");
                assert_eq!(details, "range full");
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse_output("bridge", false, "exit status: 2", b"garbage", b"boom") {
            Err(CniError::Failed { stderr, .. }) => assert_eq!(stderr, "boom"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse_output("bridge", true, "exit status: 0", b"{not json", b""),
            Err(CniError::BadResult { .. })
        ));
        assert!(matches!(
            parse_output("loopback", true, "exit status: 0", b"  \n", b""),
            Ok(None)
        ));
        let e: RuntimeError = CniError::Plugin {
            plugin: "bridge".into(),
            code: 11,
            msg: "m".into(),
            details: String::new(),
        }
        .into();
        assert!(matches!(e, RuntimeError::Cni { ref plugin, .. } if plugin == "bridge"));
    }

    #[test]
    fn plugin_types_cannot_escape_the_bin_dir() {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::new(dir.path().to_path_buf());
        for bad in ["", "..", "../bin/sh", "/bin/sh", "a/b"] {
            assert!(client.plugin_path(bad).is_err(), "{bad}");
        }
    }

    /// A fake plugin (a shell script) records its environment and stdin, so the exact
    /// protocol — env variables, stdin, chaining, reverse DEL — is checked without root.
    #[tokio::test]
    async fn lists_chain_results_and_delete_in_reverse() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        for name in ["first", "second"] {
            // Both answer the same result; the log shows what each was given.
            let script = format!(
                "#!/bin/sh\nin=$(cat)\necho \"{name} $CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME $CNI_NETNS $CNI_ARGS $in\" >> {log}\n\
                 if [ \"$CNI_COMMAND\" = ADD ]; then echo '{{\"cniVersion\":\"1.0.0\",\"ips\":[{{\"address\":\"10.0.0.2/24\"}}]}}'; fi\n",
                log = log.display()
            );
            let path = dir.path().join(name);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let client = Client::new(dir.path().to_path_buf());
        let list = json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
            {"type": "first"}, {"type": "second", "capabilities": {"portMappings": true}}
        ]});
        let att = Attachment {
            container_id: "abc".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: vec![("K8S_POD_NAME".into(), "p".into())],
        };
        let rc = json!({"portMappings": [{"hostPort": 1}]});
        let result = client.add_list(&list, &att, &rc).await.unwrap();
        let parsed: CniResult = serde_json::from_value(result.clone()).unwrap();
        assert_eq!(
            parsed.sandbox_ips().unwrap(),
            vec!["10.0.0.2".parse::<IpAddr>().unwrap()]
        );
        client
            .del_list(&list, &att, &rc, Some(&result))
            .await
            .unwrap();
        let lines: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0]
            .starts_with("first ADD abc eth0 /run/netns/x IgnoreUnknown=1;K8S_POD_NAME=p {"));
        assert!(!lines[0].contains("runtimeConfig"), "{}", lines[0]);
        assert!(lines[1].starts_with("second ADD"));
        assert!(lines[1].contains("\"prevResult\""), "{}", lines[1]);
        assert!(lines[1].contains("\"runtimeConfig\":{\"portMappings\""));
        assert!(lines[2].starts_with("second DEL"));
        assert!(lines[3].starts_with("first DEL"));
        assert!(lines[3].contains("10.0.0.2/24"), "DEL carries prevResult");
    }

    #[tokio::test]
    async fn failing_plugin_reports_its_error_object() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad");
        std::fs::write(
            &path,
            "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"try again\"}'\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let client = Client::new(dir.path().to_path_buf());
        let att = Attachment {
            container_id: "c".into(),
            netns: "/nonexistent".into(),
            ifname: "eth0".into(),
            args: vec![],
        };
        let err = client
            .exec(Command::Add, &json!({"type": "bad"}), &att)
            .await
            .unwrap_err();
        assert!(matches!(err, CniError::Plugin { code: 11, .. }), "{err}");
        let missing = client
            .exec(Command::Add, &json!({"type": "nope"}), &att)
            .await
            .unwrap_err();
        assert!(matches!(missing, CniError::PluginNotFound { .. }));
    }
}
