//! Persistent namespaces: a pod's network, IPC and UTS namespaces outlive any process in
//! them because each is bind-mounted onto a file, as `ip netns add` does. runc then joins
//! them by path.
//!
//! Namespaces are created on a dedicated thread that unshares only itself (net, IPC and
//! UTS may be unshared per thread in a multi-threaded process), binds its
//! `/proc/self/task/<tid>/ns/*` files and exits; no pooled thread ever changes namespace.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Where `ip netns` keeps named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// What to create for one sandbox. `net` is None for hostNetwork pods.
#[derive(Debug, Clone)]
pub struct NamespaceSet {
    pub net: Option<PathBuf>,
    pub ipc: PathBuf,
    pub uts: PathBuf,
    pub hostname: String,
}

/// Creates the namespaces of `set` and sets the hostname in the new UTS namespace.
/// Namespaces already mounted at their paths are left as they are (idempotent).
pub fn create(set: &NamespaceSet) -> io::Result<()> {
    if set.net.is_some() {
        ensure_netns_dir()?;
    }
    let set = set.clone();
    std::thread::Builder::new()
        .name("ns-create".to_string())
        .spawn(move || create_on_this_thread(&set))?
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
}

fn create_on_this_thread(set: &NamespaceSet) -> io::Result<()> {
    let mut wanted = Vec::new();
    let mut flags = CloneFlags::empty();
    for (kind, flag, path) in [
        ("net", CloneFlags::CLONE_NEWNET, set.net.as_ref()),
        ("ipc", CloneFlags::CLONE_NEWIPC, Some(&set.ipc)),
        ("uts", CloneFlags::CLONE_NEWUTS, Some(&set.uts)),
    ] {
        if let Some(path) = path {
            if !is_mounted_ns(path) {
                wanted.push((kind, path));
                flags |= flag;
            }
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    unshare(flags).map_err(io::Error::from)?;
    if flags.contains(CloneFlags::CLONE_NEWUTS) {
        nix::unistd::sethostname(&set.hostname).map_err(io::Error::from)?;
    }
    let tid = nix::unistd::gettid();
    let mut done: Vec<&Path> = Vec::new();
    for (kind, path) in wanted {
        let source = format!("/proc/self/task/{tid}/ns/{kind}");
        if let Err(e) = bind_ns(Path::new(&source), path) {
            for p in done {
                let _ = remove(p);
            }
            return Err(io::Error::new(
                e.kind(),
                format!("bind {kind} namespace at {}: {e}", path.display()),
            ));
        }
        done.push(path);
    }
    Ok(())
}

fn bind_ns(source: &Path, target: &Path) -> io::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // The mount point must exist as a file; a stale one from a crash is reused.
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(target)?;
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io::Error::from)
}

/// Makes /run/netns a shared mount, as `ip netns add` does, so namespace mounts made
/// here propagate into mount namespaces that copied /run/netns (runc's, a node's shell).
fn ensure_netns_dir() -> io::Result<()> {
    // Two pods starting at once must not both bind /run/netns onto itself.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    std::fs::create_dir_all(NETNS_RUN_DIR)?;
    let flags = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(
        None::<&str>,
        NETNS_RUN_DIR,
        None::<&str>,
        flags,
        None::<&str>,
    ) {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself first.
        Err(Errno::EINVAL) => {
            mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(io::Error::from)?;
            mount(
                None::<&str>,
                NETNS_RUN_DIR,
                None::<&str>,
                flags,
                None::<&str>,
            )
            .map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether a namespace is bind-mounted at `path`.
pub fn is_mounted_ns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Unmounts and deletes a namespace file. Missing or unmounted files are fine. Processes
/// still inside keep the namespace alive until they exit; it just loses its name.
pub fn remove(path: &Path) -> io::Result<()> {
    // Detach rather than fail on EBUSY: a namespace file is never a busy mount itself.
    // Mounted more than once (two racing creates): peel every layer.
    for _ in 0..16 {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(e) => return Err(e.into()),
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Opens a TCP connection to 127.0.0.1:port INSIDE the network namespace at `netns` (for
/// port-forward). A dedicated thread enters the namespace and connects; the socket stays
/// in the namespace it was created in, so it is handed to tokio afterwards.
pub async fn connect_in_netns(netns: &Path, port: u16) -> io::Result<tokio::net::TcpStream> {
    let netns = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns-connect".to_string())
        .spawn(move || {
            let _ = tx.send(connect_on_this_thread(&netns, port));
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("netns connect thread ended without an answer"))??;
    tokio::net::TcpStream::from_std(stream)
}

fn connect_on_this_thread(netns: &Path, port: u16) -> io::Result<std::net::TcpStream> {
    let ns = File::open(netns)?;
    if !is_mounted_ns(netns) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a network namespace", netns.display()),
        ));
    }
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmounted_paths_are_not_namespaces_and_remove_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("plain");
        std::fs::write(&f, "").unwrap();
        assert!(!is_mounted_ns(&f));
        assert!(!is_mounted_ns(&dir.path().join("missing")));
        remove(&f).unwrap();
        assert!(!f.exists());
        remove(&f).unwrap();
    }

    #[tokio::test]
    async fn connect_refuses_a_path_that_is_not_a_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("plain");
        std::fs::write(&f, "").unwrap();
        let err = connect_in_netns(&f, 80).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err = connect_in_netns(&dir.path().join("missing"), 80)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
