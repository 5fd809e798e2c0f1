//! Tears down everything a test node may have left on the machine, even after a failed
//! test: containers under its runc root, its supervisors (setsid-detached, so killing the
//! agent does not reach them), mounts under its directories, its pod network namespaces,
//! its bridge and veths, and its cgroups. Every step is best effort and idempotent; each
//! one that fails is reported on stderr so leaks are visible.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The machine-wide names one test node owns.
#[derive(Debug, Clone)]
pub struct NodeResources {
    /// Directories whose mounts, and whose processes (by command line), belong to the node.
    pub dirs: Vec<PathBuf>,
    pub runtime_binary: PathBuf,
    pub runtime_root: PathBuf,
    pub netns_prefix: String,
    pub bridge: String,
    pub cgroup_root: String,
    /// Unreachable host routes the node's agent installed for CIDRs unique to the test (a
    /// cluster CIDR that is the test's own subnet); shared CIDRs are not listed.
    pub unreachable_routes: Vec<String>,
}

impl NodeResources {
    pub fn clean(&self) {
        self.delete_containers();
        self.kill_processes();
        self.unmount_dirs();
        self.delete_netns();
        self.delete_links();
        self.remove_cgroups();
        self.delete_routes();
    }

    fn delete_routes(&self) {
        for cidr in &self.unreachable_routes {
            let _ = Command::new("ip")
                .args(["route", "del", "unreachable", cidr])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    fn delete_containers(&self) {
        let out = Command::new(&self.runtime_binary)
            .arg("--root")
            .arg(&self.runtime_root)
            .args(["list", "-q"])
            .output();
        let Ok(out) = out else { return };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let status = Command::new(&self.runtime_binary)
                .arg("--root")
                .arg(&self.runtime_root)
                .args(["delete", "--force", id])
                .status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("cleanup: runc delete --force {id} failed");
            }
        }
        let _ = std::fs::remove_dir_all(&self.runtime_root);
    }

    /// Supervisors and anything else whose command line names one of the node's
    /// directories (the agent passes them their state paths).
    fn kill_processes(&self) {
        let me = std::process::id();
        let needles: Vec<String> = self
            .dirs
            .iter()
            .chain(std::iter::once(&self.runtime_root))
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        let matching = || -> Vec<i32> {
            let Ok(entries) = std::fs::read_dir("/proc") else {
                return Vec::new();
            };
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| pid as u32 != me)
                .filter(|pid| {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let cmd = String::from_utf8_lossy(&cmd);
                    needles.iter().any(|n| cmd.contains(n.as_str()))
                })
                .collect()
        };
        for pid in matching() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let gone = testkit::wait_for(Duration::from_secs(10), || {
            matching().is_empty().then_some(())
        });
        if gone.is_none() {
            eprintln!("cleanup: processes still alive: {:?}", matching());
        }
    }

    fn unmount_dirs(&self) {
        let mut targets: Vec<PathBuf> = mount_points()
            .into_iter()
            .filter(|m| self.dirs.iter().any(|d| m.starts_with(d)))
            .collect();
        // Deepest first, so a mount is never busy because of one stacked beneath it.
        targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for t in targets {
            if let Err(e) = nix::mount::umount2(&t, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("cleanup: umount {}: {e}", t.display());
            }
        }
    }

    fn delete_netns(&self) {
        let Ok(entries) = std::fs::read_dir("/run/netns") else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&self.netns_prefix) {
                continue;
            }
            let path = e.path();
            let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
            if let Err(e) = std::fs::remove_file(&path) {
                eprintln!("cleanup: remove {}: {e}", path.display());
            }
        }
    }

    fn delete_links(&self) {
        if let Ok(out) = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
        {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                // "12: veth1234@if3: <...> ..."
                let Some(name) = line.split(':').nth(1) else {
                    continue;
                };
                let name = name.trim().split('@').next().unwrap_or_default();
                if !name.is_empty() {
                    let _ = Command::new("ip").args(["link", "del", name]).status();
                }
            }
        }
        let exists = Path::new("/sys/class/net").join(&self.bridge).exists();
        if exists {
            let ok = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("cleanup: could not delete bridge {}", self.bridge);
            }
        }
    }

    fn remove_cgroups(&self) {
        // Processes just killed leave their cgroups a moment later.
        let removed = testkit::wait_for(Duration::from_secs(10), || {
            runtime::cgroups::remove(&self.cgroup_root).ok()
        });
        if removed.is_none() {
            eprintln!("cleanup: cgroup {} could not be removed", self.cgroup_root);
        }
    }
}

/// Every mount point of this mount namespace, unescaped.
pub fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as \\ooo octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let code = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(v) = code {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
