//! What the node is made of, read from the machine: CPUs, memory, disk and process-ID use,
//! and the identity facts of `status.nodeInfo` (the kubelet's cadvisor machine info).

use std::path::Path;

use super::NodeError;

/// CPUs this process may run on, lowered to the cgroup's CPU quota when one is set (a node
/// in a container with `--cpus 2` has 2 CPUs however many the host has).
pub fn cpu_count() -> u32 {
    let affinity = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .ok()
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count() as u32
        })
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    match cgroup_cpu_quota() {
        Some(limit) => affinity.min(limit.max(1)),
        None => affinity,
    }
}

/// Whole CPUs the root cgroup's CFS quota allows (rounded up), if limited.
fn cgroup_cpu_quota() -> Option<u32> {
    // v2: "max 100000" or "200000 100000".
    if let Ok(text) = std::fs::read_to_string("/sys/fs/cgroup/cpu.max") {
        return parse_cpu_max(&text);
    }
    let quota = std::fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").ok()?;
    let period = std::fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_period_us").ok()?;
    quota_cpus(quota.trim().parse().ok()?, period.trim().parse().ok()?)
}

fn parse_cpu_max(text: &str) -> Option<u32> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    let period: i64 = it.next()?.parse().ok()?;
    if quota == "max" {
        return None;
    }
    quota_cpus(quota.parse().ok()?, period)
}

fn quota_cpus(quota: i64, period: i64) -> Option<u32> {
    if quota <= 0 || period <= 0 {
        return None;
    }
    Some(((quota + period - 1) / period) as u32)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

pub fn meminfo() -> Result<MemInfo, NodeError> {
    let text = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| NodeError::io("reading /proc/meminfo", e))?;
    parse_meminfo(&text).ok_or_else(|| NodeError::Machine("/proc/meminfo lacks MemTotal".into()))
}

fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib * 1024)
        })
    };
    let total = field("MemTotal")?;
    // Kernels before 3.14 have no MemAvailable; free + cached is the old estimate.
    let available = field("MemAvailable")
        .or_else(|| Some(field("MemFree")? + field("Cached").unwrap_or(0)))
        .unwrap_or(0);
    Some(MemInfo {
        total_bytes: total,
        available_bytes: available,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub capacity_bytes: u64,
    /// Bytes an unprivileged writer could still use (what `df` calls Avail).
    pub available_bytes: u64,
}

impl FsUsage {
    /// Used share of the filesystem, 0–100, as `df` computes Use%.
    pub fn used_percent(&self) -> f64 {
        if self.capacity_bytes == 0 {
            return 0.0;
        }
        let used = self.capacity_bytes.saturating_sub(self.available_bytes);
        used as f64 * 100.0 / self.capacity_bytes as f64
    }
}

pub fn fs_usage(path: &Path) -> Result<FsUsage, NodeError> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| {
        NodeError::io(
            format!("statvfs {}", path.display()),
            std::io::Error::from(e),
        )
    })?;
    let frag = st.fragment_size() as u64;
    Ok(FsUsage {
        capacity_bytes: (st.blocks() as u64).saturating_mul(frag),
        available_bytes: (st.blocks_available() as u64).saturating_mul(frag),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidUsage {
    /// Tasks (threads included) that exist now: each takes a process ID.
    pub used: u64,
    pub max: u64,
}

pub fn pid_usage() -> Result<PidUsage, NodeError> {
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map_err(|e| NodeError::io("reading /proc/loadavg", e))?;
    let max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .map_err(|e| NodeError::io("reading /proc/sys/kernel/pid_max", e))?;
    let used = parse_loadavg_tasks(&loadavg)
        .ok_or_else(|| NodeError::Machine(format!("unexpected /proc/loadavg: {loadavg:?}")))?;
    let max = max
        .trim()
        .parse()
        .map_err(|_| NodeError::Machine(format!("unexpected pid_max: {max:?}")))?;
    Ok(PidUsage { used, max })
}

/// The fourth field of /proc/loadavg is `running/total` scheduling entities.
fn parse_loadavg_tasks(text: &str) -> Option<u64> {
    let field = text.split_whitespace().nth(3)?;
    field.split_once('/')?.1.parse().ok()
}

/// The identity facts of `status.nodeInfo` that do not depend on the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemInfo {
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    pub operating_system: String,
    pub architecture: String,
}

pub fn system_info() -> SystemInfo {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let machine_id = read("/etc/machine-id");
    // Virtual machines without DMI (and containers) have no product_uuid; the kubelet then
    // reports what cadvisor finds, often empty. The machine ID is a stable stand-in.
    let system_uuid = Some(read("/sys/class/dmi/id/product_uuid"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| machine_id.clone());
    let kernel_version = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    SystemInfo {
        machine_id,
        system_uuid,
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        kernel_version,
        os_image: os_image(&read("/etc/os-release")),
        operating_system: std::env::consts::OS.to_string(),
        architecture: go_arch(std::env::consts::ARCH).to_string(),
    }
}

/// PRETTY_NAME of os-release, unquoted.
fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "Linux".into())
}

/// Go's GOARCH names, which Kubernetes uses for `kubernetes.io/arch`.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "arm" => "arm",
        other => other,
    }
}

/// `runc://1.1.5` from the runtime's `--version` (crun prints `crun version 1.8`).
pub async fn runtime_version(binary: &Path) -> String {
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "runc".into());
    let out = tokio::process::Command::new(binary)
        .arg("--version")
        .output()
        .await;
    let version = out
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| parse_runtime_version(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_else(|| "unknown".into());
    format!("{name}://{version}")
}

fn parse_runtime_version(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    let v = first.split_whitespace().nth(2)?;
    Some(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let text = "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some(MemInfo {
                total_bytes: 8_000_000 * 1024,
                available_bytes: 4_000_000 * 1024
            })
        );
        let old = "MemTotal: 10 kB\nMemFree: 2 kB\nCached: 3 kB\n";
        assert_eq!(parse_meminfo(old).unwrap().available_bytes, 5 * 1024);
        assert_eq!(parse_meminfo("garbage"), None);
    }

    #[test]
    fn cpu_quota_rounds_up_and_max_means_unlimited() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("100000 100000"), Some(1));
        assert_eq!(quota_cpus(-1, 100000), None);
        assert_eq!(parse_cpu_max(""), None);
    }

    #[test]
    fn loadavg_gives_the_task_count() {
        assert_eq!(
            parse_loadavg_tasks("3.26 2.92 2.54 5/135 29461\n"),
            Some(135)
        );
        assert_eq!(parse_loadavg_tasks("1 2 3"), None);
    }

    #[test]
    fn os_release_pretty_name_is_unquoted() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(os_image(text), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os_image(""), "Linux");
    }

    #[test]
    fn runtime_versions_come_from_the_first_line() {
        let runc = "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1\nspec: 1.0.2-dev\n";
        assert_eq!(parse_runtime_version(runc).as_deref(), Some("1.1.5+ds1"));
        assert_eq!(
            parse_runtime_version("crun version 1.8.1\n").as_deref(),
            Some("1.8.1")
        );
        assert_eq!(parse_runtime_version(""), None);
    }

    #[test]
    fn the_machine_reports_sane_figures() {
        let cpus = cpu_count();
        let avail = std::thread::available_parallelism().unwrap().get() as u32;
        assert!(cpus >= 1 && cpus <= avail.max(1), "{cpus} vs {avail}");
        let mem = meminfo().unwrap();
        assert!(mem.total_bytes > 64 << 20);
        assert!(mem.available_bytes <= mem.total_bytes);
        let fs = fs_usage(Path::new("/")).unwrap();
        assert!(fs.capacity_bytes > 0 && fs.available_bytes <= fs.capacity_bytes);
        let pids = pid_usage().unwrap();
        assert!(pids.used > 1 && pids.used < pids.max);
        let info = system_info();
        assert!(!info.kernel_version.is_empty());
        assert!(!info.boot_id.is_empty());
        assert_eq!(info.operating_system, "linux");
    }
}
