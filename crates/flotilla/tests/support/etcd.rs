//! A real etcd (/usr/bin/etcd) on free loopback ports with a temporary data directory, for
//! tests of the etcd backend. Killed and removed on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, ProcessGroup, READY_DEADLINE};

pub const ETCD_BIN: &str = "/usr/bin/etcd";

pub struct Etcd {
    /// `http://127.0.0.1:PORT`, for `--etcd-endpoints`.
    pub client_url: String,
    pub client_addr: SocketAddr,
    // Dropped in this order: the process first, then its directory.
    process: ProcessGroup,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd and waits until /health reports healthy; retries with other ports when
    /// one was taken meanwhile.
    pub fn start() -> Self {
        let mut last_log = String::new();
        for attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("flotilla-etcd-")
                .tempdir()
                .expect("create etcd's directory");
            let (client, peer) = (free_port(), free_port());
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log_path = dir.path().join("etcd.log");
            let log = std::fs::File::create(&log_path).expect("create etcd's log");
            let err = log.try_clone().expect("clone the log handle");
            let mut cmd = Command::new(ETCD_BIN);
            cmd.arg("--name")
                .arg("test")
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .arg("--listen-client-urls")
                .arg(&client_url)
                .arg("--advertise-client-urls")
                .arg(&client_url)
                .arg("--listen-peer-urls")
                .arg(&peer_url)
                .arg("--initial-advertise-peer-urls")
                .arg(&peer_url)
                .arg("--initial-cluster")
                .arg(format!("test={peer_url}"))
                // Kubernetes' request body limit, so the largest object the API accepts fits.
                .arg("--max-request-bytes")
                .arg("3145728")
                .arg("--log-level")
                .arg("warn")
                .stdout(log)
                .stderr(err);
            let mut process = ProcessGroup::spawn(&mut cmd).expect("spawn etcd");
            let client_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, client));
            match wait_healthy(&mut process, client_addr) {
                Ok(()) => {
                    return Self {
                        client_url,
                        client_addr,
                        process,
                        dir,
                    }
                }
                Err(why) => {
                    drop(process);
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if !last_log.contains("address already in use") {
                        panic!("etcd did not start (attempt {attempt}): {why}\n{last_log}");
                    }
                }
            }
        }
        panic!("etcd could not bind free ports\n{last_log}");
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

fn wait_healthy(process: &mut ProcessGroup, addr: SocketAddr) -> Result<(), String> {
    let start = Instant::now();
    let mut last: String;
    loop {
        if let Some(status) = process.exited() {
            return Err(format!("etcd exited with {status}"));
        }
        match health(addr) {
            Ok(body) if body.contains("\"health\":\"true\"") => return Ok(()),
            Ok(body) => last = body,
            Err(e) => last = e.to_string(),
        }
        if start.elapsed() > READY_DEADLINE {
            return Err(format!("not healthy after {READY_DEADLINE:?}: {last}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// etcd's /health over plain HTTP/1.0: enough for one probe, no client library needed.
fn health(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
