//! Cgroup housekeeping shared by sandboxes and containers: removing a pod's or container's
//! cgroup from every hierarchy, and reading the CPU and memory figures the Summary API wants.
//!
//! runc creates cgroups (and their parents) itself; what it leaves behind are the parents,
//! and on a hybrid (v1 + unified) host it creates directories in every mounted hierarchy,
//! including named ones like `name=systemd` — so removal walks every cgroup mount.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::cri::{CgroupStats, RuntimeError};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A mounted cgroup hierarchy: where it is and which controllers it carries (empty for v2).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    mount_point: PathBuf,
    v2: bool,
    options: Vec<String>,
}

/// True when the host runs the unified hierarchy only (cgroup v2 mounted at /sys/fs/cgroup).
pub fn is_v2() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.controllers").exists()
}

fn hierarchies() -> Result<Vec<Hierarchy>, RuntimeError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| RuntimeError::io("reading /proc/self/mounts", e))?;
    Ok(parse_mounts(&mounts))
}

fn parse_mounts(mounts: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, mount_point, fstype, options, ..] = fields.as_slice() else {
            continue;
        };
        let v2 = match *fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let mount_point = PathBuf::from(unescape_mount_path(mount_point));
        // The same hierarchy can be mounted twice (bind mounts in containers): once is enough.
        if out.iter().any(|h| h.mount_point == mount_point) {
            continue;
        }
        out.push(Hierarchy {
            mount_point,
            v2,
            options: options.split(',').map(str::to_owned).collect(),
        });
    }
    out
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(raw: &str) -> String {
    raw.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Rejects paths that would leave the cgroup tree; returns the path without leading '/'.
fn checked_relative(relative: &str) -> Result<&str, RuntimeError> {
    let trimmed = relative.trim_matches('/');
    let bad = trimmed
        .split('/')
        .any(|part| part == ".." || part == "." || (part.is_empty() && !trimmed.is_empty()));
    if bad || trimmed.contains('\0') {
        return Err(RuntimeError::Invalid {
            what: "cgroup path".into(),
            message: format!("{relative:?} must be a plain relative path"),
        });
    }
    Ok(trimmed)
}

/// Removes the cgroup `relative` (and everything beneath it) from every hierarchy.
/// Idempotent: a cgroup already gone is success. Fails with the kernel's EBUSY when a
/// process still lives in it after a short grace (processes leave their cgroup a moment
/// after they are reaped).
pub fn remove(relative: &str) -> Result<(), RuntimeError> {
    let relative = checked_relative(relative)?;
    if relative.is_empty() {
        return Err(RuntimeError::Invalid {
            what: "cgroup path".into(),
            message: "refusing to remove the root cgroup".into(),
        });
    }
    for hierarchy in hierarchies()? {
        remove_tree(&hierarchy.mount_point.join(relative))?;
    }
    Ok(())
}

fn remove_tree(dir: &Path) -> Result<(), RuntimeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(RuntimeError::io(format!("reading {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| RuntimeError::io(format!("reading {}", dir.display()), e))?;
        // Cgroup directories hold only control files and child cgroups; only the latter are dirs.
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    rmdir_with_grace(dir)
}

fn rmdir_with_grace(dir: &Path) -> Result<(), RuntimeError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(RuntimeError::io(
                    format!("removing cgroup {}", dir.display()),
                    e,
                ));
            }
        }
    }
}

/// CPU and memory of the cgroup `relative` ("" is the root: the whole node).
pub fn stats(relative: &str) -> Result<CgroupStats, RuntimeError> {
    let relative = checked_relative(relative)?;
    let all = hierarchies()?;
    let v1 = |controller: &str| {
        all.iter()
            .find(|h| !h.v2 && h.options.iter().any(|o| o == controller))
            .map(|h| h.mount_point.join(relative))
    };
    if let (Some(cpu), Some(memory)) = (v1("cpuacct"), v1("memory")) {
        let cpu_usage_nanos = read_u64(&cpu.join("cpuacct.usage"))?;
        let memory_usage_bytes = read_u64(&memory.join("memory.usage_in_bytes"))?;
        let inactive = stat_field(&memory.join("memory.stat"), "total_inactive_file")?;
        return Ok(CgroupStats {
            timestamp: SystemTime::now(),
            cpu_usage_nanos,
            memory_working_set_bytes: memory_usage_bytes.saturating_sub(inactive),
            memory_usage_bytes,
        });
    }
    let unified = all
        .iter()
        .find(|h| h.v2)
        .map(|h| h.mount_point.join(relative))
        .ok_or_else(|| RuntimeError::Other("no cgroup hierarchy with cpu and memory".into()))?;
    let cpu_usage_nanos = stat_field(&unified.join("cpu.stat"), "usage_usec")?.saturating_mul(1000);
    let memory_stat = unified.join("memory.stat");
    let memory_usage_bytes = match read_u64(&unified.join("memory.current")) {
        Ok(v) => v,
        // The root cgroup has no memory.current: sum what memory.stat attributes to it.
        Err(RuntimeError::NotFound(_)) => {
            stat_field(&memory_stat, "anon")? + stat_field(&memory_stat, "file")?
        }
        Err(e) => return Err(e),
    };
    let inactive = stat_field(&memory_stat, "inactive_file")?;
    Ok(CgroupStats {
        timestamp: SystemTime::now(),
        cpu_usage_nanos,
        memory_working_set_bytes: memory_usage_bytes.saturating_sub(inactive),
        memory_usage_bytes,
    })
}

fn read_file(path: &Path) -> Result<String, RuntimeError> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => RuntimeError::NotFound(format!("cgroup file {}", path.display())),
        _ => RuntimeError::io(format!("reading {}", path.display()), e),
    })
}

fn read_u64(path: &Path) -> Result<u64, RuntimeError> {
    let text = read_file(path)?;
    text.trim().parse().map_err(|_| RuntimeError::Invalid {
        what: path.display().to_string(),
        message: format!("not a number: {:?}", text.trim()),
    })
}

/// A `key value` line of a flat-keyed cgroup file (memory.stat, cpu.stat); 0 when absent.
fn stat_field(path: &Path, key: &str) -> Result<u64, RuntimeError> {
    Ok(parse_stat_field(&read_file(path)?, key))
}

fn parse_stat_field(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether the memory cgroup `relative` recorded an OOM kill (v1 oom_control, v2 events).
pub fn oom_killed(relative: &str) -> bool {
    let Ok(relative) = checked_relative(relative) else {
        return false;
    };
    let Ok(all) = hierarchies() else {
        return false;
    };
    if let Some(memory) = all
        .iter()
        .find(|h| !h.v2 && h.options.iter().any(|o| o == "memory"))
    {
        let text = read_file(&memory.mount_point.join(relative).join("memory.oom_control"))
            .unwrap_or_default();
        return parse_stat_field(&text, "oom_kill") > 0 || parse_stat_field(&text, "under_oom") > 0;
    }
    if let Some(unified) = all.iter().find(|h| h.v2) {
        let text = read_file(&unified.mount_point.join(relative).join("memory.events"))
            .unwrap_or_default();
        return parse_stat_field(&text, "oom_kill") > 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hybrid_mounts() {
        let mounts = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
            cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0\n\
            cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
            cgroup /sys/fs/cgroup/systemd cgroup rw,name=systemd 0 0\n\
            cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n\
            cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n";
        let h = parse_mounts(mounts);
        assert_eq!(h.len(), 4);
        assert!(h[0].options.iter().any(|o| o == "cpuacct"));
        assert!(h[3].v2);
        assert_eq!(h[2].mount_point, PathBuf::from("/sys/fs/cgroup/systemd"));
    }

    #[test]
    fn rejects_escaping_paths() {
        assert!(checked_relative("../etc").is_err());
        assert!(checked_relative("a/../../b").is_err());
        assert!(checked_relative("a//b").is_err());
        assert_eq!(
            checked_relative("/flotilla/pod1/").ok(),
            Some("flotilla/pod1")
        );
        assert!(matches!(remove("/"), Err(RuntimeError::Invalid { .. })));
    }

    #[test]
    fn stat_fields() {
        let text = "cache 10\ntotal_inactive_file 4096\ninactive_file 7\n";
        assert_eq!(parse_stat_field(text, "total_inactive_file"), 4096);
        assert_eq!(parse_stat_field(text, "inactive_file"), 7);
        assert_eq!(parse_stat_field(text, "missing"), 0);
        assert_eq!(
            parse_stat_field("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "oom_kill"),
            2
        );
    }

    #[test]
    fn root_stats_are_readable() {
        let s = stats("").expect("root cgroup stats");
        assert!(s.cpu_usage_nanos > 0);
        assert!(s.memory_usage_bytes >= s.memory_working_set_bytes);
    }

    #[test]
    fn remove_missing_is_ok() {
        remove("flotilla-test-never-created/xyz").expect("idempotent remove");
    }
}
