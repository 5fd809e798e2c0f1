//! The volume manager: a pod's volumes on the node (emptyDir, hostPath, configMap, secret,
//! downwardAPI, projected, persistentVolumeClaim), laid out as the kubelet does:
//! `<root>/<pod uid>/volumes/<plugin>/<volume name>` (e.g. `kubernetes.io~empty-dir`), and
//! `<root>/<pod uid>/containers/<container>/termination-log`.
//!
//! configMap, secret, downwardAPI and projected volumes go through the [`atomic_writer`];
//! [`VolumeManager::setup_pod`] is called on every pod sync (the pod worker resyncs every
//! 10 s), which re-reads their sources and swaps new contents in place. Containers bind-mount
//! the volume directory, so they see the change without a restart.
//!
//! emptyDir `sizeLimit` on disk: [`VolumeManager::size_limit_violations`] measures usage;
//! the pod worker evicts an offending pod (reason `Evicted`) as the kubelet's eviction
//! manager does. Memory-backed emptyDirs are tmpfs mounts of that size, which the kernel
//! enforces.
//!
//! PersistentVolumeClaims resolve to their bound PersistentVolume's `hostPath`/`local`
//! directory, mounted directly (no staging bind mount); fsGroup is not applied to them.

pub mod atomic_writer;
mod configmap;
mod downward_api;
mod empty_dir;
pub(crate) mod fieldpath;
mod host_path;
pub mod local_path;
mod local_pvc;
mod mounter;
mod projected;
mod secret;
mod subpath;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use runtime::cri::{Mount, MountPropagation};

use self::atomic_writer::{Ownership, Payload};
use self::fieldpath::NodeAllocatable;

pub(crate) use self::configmap::{
    all_data as config_map_data, get as get_config_map, not_found as config_map_not_found,
};
pub(crate) use self::secret::{
    all_data as secret_data, get as get_secret, not_found as secret_not_found,
};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A volume could not be prepared (missing ConfigMap/Secret or key, hostPath type check,
    /// mount failure). The kubelet reports it as a `FailedMount` event and retries; the pod
    /// stays ContainerCreating.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
    SetUp { volume: String, message: String },
    /// The PersistentVolumeClaim is missing or not bound yet: the pod waits.
    #[error("volume \"{volume}\" is waiting for its claim: {message}")]
    ClaimNotReady { volume: String, message: String },
    /// A volumeMount cannot be honoured (unknown volume, bad subPath, propagation not
    /// allowed): `CreateContainerConfigError`.
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    InvalidPod(String),
    #[error("{op} {path}: {message}")]
    Io {
        op: &'static str,
        path: PathBuf,
        message: String,
    },
}

impl VolumeError {
    /// The kubelet's reason for this failure: the event reason for setup problems, the
    /// container waiting reason for mount problems.
    pub fn reason(&self) -> &'static str {
        match self {
            VolumeError::SetUp { .. }
            | VolumeError::ClaimNotReady { .. }
            | VolumeError::Io { .. } => "FailedMount",
            VolumeError::Config(_) | VolumeError::InvalidPod(_) => "CreateContainerConfigError",
        }
    }
}

/// An emptyDir on disk holding more than its sizeLimit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeLimitViolation {
    pub volume: String,
    pub used_bytes: u64,
    pub limit: String,
}

impl SizeLimitViolation {
    /// The kubelet's eviction message.
    pub fn message(&self) -> String {
        format!(
            "Usage of EmptyDir volume \"{}\" exceeds the limit \"{}\". ",
            self.volume, self.limit
        )
    }
}

/// volume name → (host path, read-only) of a pod's resolved claims.
type ClaimMounts = HashMap<String, (PathBuf, bool)>;

pub struct VolumeManager {
    root: PathBuf,
    client: kube::Client,
    node: NodeAllocatable,
    /// pod uid → volume name → (host path, read-only): claims resolved by setup_pod, so
    /// that container_mounts needs no API call.
    claims: Mutex<HashMap<String, ClaimMounts>>,
}

const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

impl VolumeManager {
    /// `root` = DATA_DIR/pods.
    pub fn new(root: PathBuf, client: kube::Client) -> Self {
        VolumeManager {
            root,
            client,
            node: NodeAllocatable::detect(),
            claims: Mutex::new(HashMap::new()),
        }
    }

    fn pod_dir(&self, uid: &str) -> Result<PathBuf, VolumeError> {
        if uid.is_empty() || uid == "." || uid == ".." || uid.contains('/') {
            return Err(VolumeError::InvalidPod(format!("invalid pod uid {uid:?}")));
        }
        Ok(self.root.join(uid))
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, HashMap<String, ClaimMounts>> {
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prepares every volume of the pod (idempotent), and on later calls refreshes
    /// configMap/secret/downwardAPI/projected contents in place and atomically.
    pub async fn setup_pod(&self, pod: &Pod) -> Result<(), VolumeError> {
        let uid = pod_uid(pod)?;
        let pod_dir = self.pod_dir(uid)?;
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let spec = pod.spec.as_ref();
        let fs_group = spec
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group)
            .map(|g| {
                u32::try_from(g)
                    .map_err(|_| VolumeError::InvalidPod(format!("invalid fsGroup {g}")))
            })
            .transpose()?;
        let owner = Ownership { gid: fs_group };
        std::fs::create_dir_all(pod_dir.join("volumes")).map_err(|e| VolumeError::Io {
            op: "mkdir",
            path: pod_dir.join("volumes"),
            message: e.to_string(),
        })?;
        for vol in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
            let fail = |message: String| VolumeError::SetUp {
                volume: vol.name.clone(),
                message,
            };
            let dir = |plugin: &str| pod_dir.join("volumes").join(plugin).join(&vol.name);
            let write = |dir: PathBuf, payload: Payload| -> Result<(), VolumeError> {
                atomic_writer::write(&dir, &payload, owner)
                    .map(drop)
                    .map_err(|e| fail(e.to_string()))
            };
            if let Some(src) = &vol.empty_dir {
                let memory = u64::try_from(self.node.memory_bytes).unwrap_or(0);
                empty_dir::setup(&dir(empty_dir::PLUGIN), src, fs_group, memory).map_err(fail)?;
            } else if let Some(src) = &vol.host_path {
                host_path::check(src).map_err(fail)?;
            } else if let Some(src) = &vol.config_map {
                let payload = configmap::payload(
                    &self.client,
                    ns,
                    &src.name,
                    src.items.as_deref(),
                    src.default_mode,
                    src.optional.unwrap_or(false),
                )
                .await
                .map_err(fail)?;
                write(dir(configmap::PLUGIN), payload)?;
            } else if let Some(src) = &vol.secret {
                let name = src.secret_name.as_deref().unwrap_or_default();
                let payload = secret::payload(
                    &self.client,
                    ns,
                    name,
                    src.items.as_deref(),
                    src.default_mode,
                    src.optional.unwrap_or(false),
                )
                .await
                .map_err(fail)?;
                let target = dir(secret::PLUGIN);
                mounter::ensure_tmpfs(&target, 0, 0o755)
                    .map_err(|e| fail(format!("mount tmpfs on {}: {e}", target.display())))?;
                write(target, payload)?;
            } else if let Some(src) = &vol.downward_api {
                let items = src.items.as_deref().unwrap_or_default();
                let payload = downward_api::payload(pod, items, src.default_mode, &self.node)
                    .map_err(fail)?;
                write(dir(downward_api::PLUGIN), payload)?;
            } else if let Some(src) = &vol.projected {
                let payload = projected::payload(&self.client, pod, ns, src, &self.node)
                    .await
                    .map_err(fail)?;
                let target = dir(projected::PLUGIN);
                // Projected volumes usually carry secrets: keep them off the disk too.
                mounter::ensure_tmpfs(&target, 0, 0o755)
                    .map_err(|e| fail(format!("mount tmpfs on {}: {e}", target.display())))?;
                write(target, payload)?;
            } else if let Some(src) = &vol.persistent_volume_claim {
                let resolved = local_pvc::resolve(&self.client, ns, src).await;
                match resolved {
                    Ok(found) => {
                        self.claims()
                            .entry(uid.to_string())
                            .or_default()
                            .insert(vol.name.clone(), found);
                    }
                    Err(local_pvc::ClaimProblem::NotReady(message)) => {
                        return Err(VolumeError::ClaimNotReady {
                            volume: vol.name.clone(),
                            message,
                        })
                    }
                    Err(local_pvc::ClaimProblem::Unusable(message)) => return Err(fail(message)),
                }
            } else {
                return Err(fail(
                    "no volume plugin matched: this node serves emptyDir, hostPath, configMap, \
                     secret, downwardAPI, projected and persistentVolumeClaim volumes"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Where a volume lives on the host, and whether containers must mount it read-only.
    fn volume_path(
        &self,
        pod_dir: &Path,
        uid: &str,
        vol: &Volume,
    ) -> Result<(PathBuf, bool), VolumeError> {
        let dir = |plugin: &str| pod_dir.join("volumes").join(plugin).join(&vol.name);
        // configMap/secret/downwardAPI/projected are always read-only (Kubernetes' fix for
        // CVE-2017-1002102): a container must not alter the atomic writer's files.
        Ok(if vol.empty_dir.is_some() {
            (dir(empty_dir::PLUGIN), false)
        } else if let Some(hp) = &vol.host_path {
            (PathBuf::from(&hp.path), false)
        } else if vol.config_map.is_some() {
            (dir(configmap::PLUGIN), true)
        } else if vol.secret.is_some() {
            (dir(secret::PLUGIN), true)
        } else if vol.downward_api.is_some() {
            (dir(downward_api::PLUGIN), true)
        } else if vol.projected.is_some() {
            (dir(projected::PLUGIN), true)
        } else if vol.persistent_volume_claim.is_some() {
            self.claims()
                .get(uid)
                .and_then(|m| m.get(&vol.name))
                .cloned()
                .ok_or_else(|| {
                    VolumeError::Config(format!("volume {:?} is not set up yet", vol.name))
                })?
        } else {
            return Err(VolumeError::Config(format!(
                "volume {:?} has no source this node can mount",
                vol.name
            )));
        })
    }

    /// The container's volumeMounts resolved to host paths (subPath, subPathExpr, readOnly,
    /// mountPropagation), plus the termination message file mount. subPathExpr expands with
    /// the env vars resolvable without the API (values and fieldRefs); use
    /// [`Self::container_mounts_with_env`] to pass the container's full env.
    pub fn container_mounts(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> Result<Vec<Mount>, VolumeError> {
        let env = crate::envvars::local_env(pod, container);
        self.container_mounts_with_env(pod, container, &env)
    }

    /// As [`Self::container_mounts`], with subPathExpr expanded from `env` (`NAME=value`).
    pub fn container_mounts_with_env(
        &self,
        pod: &Pod,
        container: &Container,
        env: &[String],
    ) -> Result<Vec<Mount>, VolumeError> {
        let uid = pod_uid(pod)?;
        let pod_dir = self.pod_dir(uid)?;
        let volumes: HashMap<&str, &Volume> = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .map(|v| (v.name.as_str(), v))
            .collect();
        let privileged = container
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false);
        let mut mounts = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            let vol = volumes.get(vm.name.as_str()).ok_or_else(|| {
                VolumeError::Config(format!(
                    "cannot find volume {:?} to mount into container {:?}",
                    vm.name, container.name
                ))
            })?;
            let (base, forced_ro) = self.volume_path(&pod_dir, uid, vol)?;
            let sub = match vm.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
                Some(expr) => expand_sub_path(expr, env)?,
                None => vm.sub_path.clone().unwrap_or_default(),
            };
            let host_path = if sub.is_empty() {
                base
            } else {
                subpath::resolve(&base, &sub).map_err(|e| {
                    VolumeError::Config(format!(
                        "failed to prepare subPath for volumeMount {:?} of container {:?}: {e}",
                        vm.name, container.name
                    ))
                })?
            };
            let propagation = match vm.mount_propagation.as_deref() {
                None | Some("") | Some("None") => MountPropagation::Private,
                Some("HostToContainer") => MountPropagation::HostToContainer,
                Some("Bidirectional") if privileged => MountPropagation::Bidirectional,
                Some("Bidirectional") => return Err(VolumeError::Config(
                    "Bidirectional mount propagation is available only to privileged containers"
                        .into(),
                )),
                Some(other) => {
                    return Err(VolumeError::Config(format!(
                        "invalid mountPropagation {other:?}"
                    )))
                }
            };
            mounts.push(Mount {
                container_path: vm.mount_path.clone(),
                host_path,
                readonly: vm.read_only.unwrap_or(false) || forced_ro,
                propagation,
            });
        }
        let tm_path = container
            .termination_message_path
            .as_deref()
            .unwrap_or(DEFAULT_TERMINATION_MESSAGE_PATH);
        if !tm_path.is_empty() && !mounts.iter().any(|m| m.container_path == tm_path) {
            let file = self.termination_message_file(uid, &container.name)?;
            prepare_termination_log(&file)?;
            mounts.push(Mount {
                container_path: tm_path.to_string(),
                host_path: file,
                readonly: false,
                propagation: MountPropagation::Private,
            });
        }
        Ok(mounts)
    }

    /// The host file behind a container's terminationMessagePath, for reading the message
    /// after the container exits.
    pub fn termination_message_file(
        &self,
        pod_uid: &str,
        container: &str,
    ) -> Result<PathBuf, VolumeError> {
        if container.is_empty() || container.contains('/') || container.starts_with('.') {
            return Err(VolumeError::InvalidPod(format!(
                "invalid container name {container:?}"
            )));
        }
        Ok(self
            .pod_dir(pod_uid)?
            .join("containers")
            .join(container)
            .join("termination-log"))
    }

    /// emptyDirs on disk using more than their sizeLimit (a walk of each volume).
    pub async fn size_limit_violations(
        &self,
        pod: &Pod,
    ) -> Result<Vec<SizeLimitViolation>, VolumeError> {
        let uid = pod_uid(pod)?;
        let pod_dir = self.pod_dir(uid)?;
        let mut checks = Vec::new();
        for vol in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let Some(src) = &vol.empty_dir else { continue };
            if src.medium.as_deref() == Some("Memory") {
                continue;
            }
            let Ok(Some(limit)) = empty_dir::size_limit_bytes(src) else {
                continue;
            };
            let dir = pod_dir
                .join("volumes")
                .join(empty_dir::PLUGIN)
                .join(&vol.name);
            let shown = src
                .size_limit
                .as_ref()
                .map(|q| q.0.clone())
                .unwrap_or_default();
            checks.push((vol.name.clone(), dir, limit, shown));
        }
        let measured = tokio::task::spawn_blocking(move || {
            checks
                .into_iter()
                .filter_map(|(volume, dir, limit, shown)| {
                    let used = empty_dir::usage_bytes(&dir).ok()?;
                    (used > limit).then_some(SizeLimitViolation {
                        volume,
                        used_bytes: used,
                        limit: shown,
                    })
                })
                .collect()
        })
        .await
        .map_err(|e| VolumeError::Io {
            op: "measure",
            path: pod_dir.clone(),
            message: e.to_string(),
        })?;
        Ok(measured)
    }

    /// Unmounts (tmpfs) and removes everything of a pod. Idempotent.
    pub async fn teardown_pod(&self, pod_uid: &str) -> Result<(), VolumeError> {
        let dir = self.pod_dir(pod_uid)?;
        self.claims().remove(pod_uid);
        tokio::task::spawn_blocking(move || teardown_dir(&dir))
            .await
            .map_err(|e| VolumeError::Io {
                op: "teardown",
                path: PathBuf::from(pod_uid),
                message: e.to_string(),
            })?
    }

    /// UIDs with volume dirs on disk (for orphan cleanup after an agent restart).
    pub fn pods_on_disk(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut uids: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        uids.sort();
        uids
    }
}

fn pod_uid(pod: &Pod) -> Result<&str, VolumeError> {
    pod.metadata
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| VolumeError::InvalidPod("pod has no metadata.uid".into()))
}

/// Expands `$(VAR)` in a subPathExpr; every referenced variable must have a value.
fn expand_sub_path(expr: &str, env: &[String]) -> Result<String, VolumeError> {
    let vars: HashMap<&str, &str> = env.iter().filter_map(|kv| kv.split_once('=')).collect();
    let mut missing = std::collections::BTreeSet::new();
    let expanded = crate::envvars::expand(expr, |name| match vars.get(name) {
        Some(v) if !v.is_empty() => Some(v.to_string()),
        _ => {
            missing.insert(name.to_string());
            Some(String::new())
        }
    });
    if !missing.is_empty() {
        return Err(VolumeError::Config(format!(
            "missing value for {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(expanded)
}

/// An empty, world-writable file: the container may run as any user.
fn prepare_termination_log(file: &Path) -> Result<(), VolumeError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |op, e: std::io::Error| VolumeError::Io {
        op,
        path: file.to_path_buf(),
        message: e.to_string(),
    };
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("mkdir", e))?;
    }
    std::fs::write(file, b"").map_err(|e| io("create", e))?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| io("chmod", e))
}

fn teardown_dir(dir: &Path) -> Result<(), VolumeError> {
    let io = |op, e: std::io::Error| VolumeError::Io {
        op,
        path: dir.to_path_buf(),
        message: e.to_string(),
    };
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    mounter::unmount_all_under(dir).map_err(|e| io("unmount", e))?;
    // Never recurse into a mount that is still there (it could be a host directory).
    let canonical = std::fs::canonicalize(dir).map_err(|e| io("resolve", e))?;
    let left = mounter::mounts_under(&canonical).map_err(|e| io("mountinfo", e))?;
    if let Some(still) = left.first() {
        return Err(VolumeError::Io {
            op: "unmount",
            path: still.clone(),
            message: "still mounted".into(),
        });
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", e)),
    }
}

#[cfg(test)]
mod tests;
