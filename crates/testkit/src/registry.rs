//! A throwaway OCI registry: Debian's `docker-registry` (Distribution 2.8) on a free loopback
//! port, storage in a temp dir, killed and removed on drop.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// Where Debian's docker-registry package installs the binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running registry. Drop kills it and deletes its storage.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Registry {
    /// Starts a registry and waits (30 s deadline) until `GET /v2/` answers 200. Retries on a
    /// fresh port if another process took the chosen one first. Panics if it cannot start:
    /// this is test setup.
    pub fn start() -> Registry {
        let mut last_err = String::new();
        for _ in 0..5 {
            match Self::try_start() {
                Ok(r) => return r,
                Err(e) => last_err = e,
            }
        }
        panic!("docker-registry did not start: {last_err}")
    }

    fn try_start() -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-registry-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let port = crate::free_port();
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).map_err(|e| format!("storage dir: {e}"))?;
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).map_err(|e| format!("write config: {e}"))?;
        let log = fs::File::create(dir.path().join("registry.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("spawn {REGISTRY_BIN}: {e}"))?;
        let mut reg = Registry { child, port, dir };
        let mut exited = None;
        let ready = crate::wait_for(Duration::from_secs(30), || {
            if let Ok(Some(status)) = reg.child.try_wait() {
                exited = Some(status);
                return Some(false);
            }
            ping(port).then_some(true)
        });
        match ready {
            Some(true) => Ok(reg),
            _ => {
                let log =
                    fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default();
                Err(format!("not ready on port {port} (exit {exited:?}): {log}"))
            }
        }
    }

    /// `127.0.0.1:PORT`: the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`: an endpoint as mirror configuration writes it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's log: warnings, errors and one access-log line per request (tests
    /// count requests with it, e.g. blob downloads).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.0 request, enough to tell the registry answers `/v2/` with 200.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 32];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"HTTP/1.1 200") || buf[..got].starts_with(b"HTTP/1.0 200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_stops() {
        let reg = Registry::start();
        let port = reg.port();
        assert!(ping(port));
        assert_eq!(reg.host(), format!("127.0.0.1:{port}"));
        drop(reg);
        assert!(!ping(port), "registry still answers after drop");
    }
}
