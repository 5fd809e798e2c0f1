//! Shared helpers for Flotilla's end-to-end tests. Dev-only: never a runtime dependency.
//!
//! Tests run in parallel, in several processes at once, on one machine; everything here is
//! built so that two tests never collide and nothing outlives a test.
//!
//! - [`registry::Registry::start`] runs Debian's `docker-registry` (Distribution 2.8) on a
//!   free loopback port with storage in a temp dir; dropping it kills the process and removes
//!   the dir. [`registry::Registry::host`] is `127.0.0.1:PORT`.
//!   [`registry::Registry::start_with`] adds TLS (a fresh CA, [`registry::Registry::ca_pem`])
//!   and/or htpasswd basic auth; push to it with [`images::push_image_to`].
//! - [`images::push_busybox`] (async) / [`images::push_busybox_blocking`] build an OCI image
//!   from the host's busybox-static at test time (one gzip layer: `/bin/busybox`, a `/bin`
//!   symlink per applet, `/etc/passwd` and `/etc/group` with root and nobody, an empty
//!   `/tmp`; config `Cmd ["sh"]`, `Env PATH=…`) and push it, returning
//!   `127.0.0.1:PORT/repo:tag`. [`images::push_image`] takes [`images::ImageOptions`] for
//!   variants (extra files in a second layer, whiteouts, Entrypoint/Cmd/Env/WorkingDir/User);
//!   [`images::push_multiarch`] pushes an OCI index over per-architecture variants.
//! - [`images::write_oci_archive`] and [`images::write_docker_save_archive`] write the same
//!   image as an OCI image-layout tar and as a `docker save` tar.
//! - [`wait_for`] / [`wait_for_async`]: poll a condition until it yields a value or the
//!   timeout passes (no sleeps as synchronisation).
//! - [`free_port`]: a loopback TCP port nobody listens on right now.
//! - [`unique_name`]: a short name (≤15 bytes: fits a network interface) unique per process
//!   and call, for netns, bridges, veths, cgroups, runc roots.
//! - [`unique_subnet`]: a `10.244.N.0/24` no other running test (in this or any other
//!   process) holds; the lease is an flock released when the guard drops or the process dies.

#![allow(clippy::expect_used)]

pub mod images;
pub mod registry;

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// Polls `check` until it returns `Some`, or `timeout` passes (then `None`). The pause
/// between polls starts at 5 ms and grows to 100 ms, so fast conditions are seen quickly.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The async [`wait_for`]: `check` is a closure returning a future of `Option<T>`.
pub async fn wait_for_async<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A loopback TCP port free at the time of the call (the kernel picks it; another process
/// may take it before the caller binds, so callers that can retry should).
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0 for a free port");
    listener
        .local_addr()
        .expect("local addr of listener")
        .port()
}

static NAME_COUNTER: AtomicU32 = AtomicU32::new(0);

/// `prefix` + base-36 pid + base-36 counter, at most 15 bytes (Linux's interface-name
/// limit): the prefix is cut short when needed, never the unique part. Unique among all
/// live processes because it embeds the pid.
pub fn unique_name(prefix: &str) -> String {
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("{}x{}", base36(std::process::id()), base36(n));
    let room = 15usize.saturating_sub(suffix.len());
    let prefix: String = prefix.chars().take(room).collect();
    format!("{prefix}{suffix}")
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// A leased `10.244.N.0/24`. The lease is an exclusive flock on
/// `/tmp/flotilla-testkit/subnet-N.lock`: released on drop, and by the kernel if the test
/// process dies, so a crashed test never leaks a subnet.
#[derive(Debug)]
pub struct SubnetLease {
    n: u8,
    _lock: Flock<File>,
}

impl SubnetLease {
    /// `10.244.N.0/24`.
    pub fn cidr(&self) -> String {
        format!("10.244.{}.0/24", self.n)
    }
    /// The third octet N.
    pub fn octet(&self) -> u8 {
        self.n
    }
    /// `10.244.N.1`, the address CNI's host-local IPAM gives the bridge by default.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.n, 1)
    }
}

impl std::fmt::Display for SubnetLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "10.244.{}.0/24", self.n)
    }
}

/// Leases a `/24` in 10.244.0.0/16 (N in 10..=254) that no other live lease holds, in this
/// process or any other. Keep the guard alive while the subnet is in use.
pub fn unique_subnet() -> SubnetLease {
    let dir = PathBuf::from("/tmp/flotilla-testkit");
    std::fs::create_dir_all(&dir).expect("create /tmp/flotilla-testkit");
    // Start at a per-process offset so parallel processes rarely contend for the same N.
    let start =
        (std::process::id() as usize * 7 + NAME_COUNTER.load(Ordering::Relaxed) as usize) % 245;
    for i in 0..245 {
        let n = 10 + ((start + i) % 245) as u8;
        if let Some(lease) = try_lease(&dir, n) {
            return lease;
        }
    }
    panic!("all 245 test subnets in 10.244.0.0/16 are leased")
}

fn try_lease(dir: &std::path::Path, n: u8) -> Option<SubnetLease> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("subnet-{n}.lock")))
        .expect("open subnet lock file");
    // A second open of the same file in this process gets its own open file description,
    // so flock excludes other leases of this process too.
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .ok()
        .map(|lock| SubnetLease { n, _lock: lock })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_interfaces_and_differ() {
        let a = unique_name("flotilla-bridge");
        let b = unique_name("flotilla-bridge");
        assert!(a.len() <= 15, "{a}");
        assert_ne!(a, b);
        assert!(a.starts_with("flo"));
        assert!(unique_name("").len() <= 15);
    }

    #[test]
    fn subnets_are_exclusive_until_dropped() {
        let dir = PathBuf::from("/tmp/flotilla-testkit");
        let a = unique_subnet();
        let b = unique_subnet();
        assert_ne!(a.cidr(), b.cidr());
        assert_eq!(a.gateway().octets()[2], a.octet());
        let n = a.octet();
        assert!(
            try_lease(&dir, n).is_none(),
            "a held lease was granted twice"
        );
        drop(a);
        assert!(
            try_lease(&dir, n).is_some(),
            "a dropped lease was not released"
        );
        assert!(try_lease(&dir, b.octet()).is_none());
    }

    #[test]
    fn wait_for_returns_value_or_none_at_deadline() {
        let mut calls = 0;
        let got = wait_for(Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(got, Some(3));
        let start = Instant::now();
        assert_eq!(wait_for(Duration::from_millis(50), || None::<()>), None);
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn free_port_is_bindable() {
        let p = free_port();
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok());
    }
}
