//! The per-container supervisor (containerd-shim's role), run as `flotilla supervise`.
//!
//! The agent starts stage one, which leaves the agent's session (setsid) and re-executes
//! itself as stage two, then exits: the agent reaps stage one at once and is never the
//! long-lived supervisor's parent, so agent crashes, restarts and process-group kills leave
//! containers running. Stage two becomes a child subreaper (runc's init is reparented to
//! it), runs `runc create` + `runc start`, pumps stdout/stderr into the CRI log and to
//! attach clients, reaps the container's init and writes `exit.json` — the exit code
//! survives any agent restart because it lives on disk.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc};

use super::attach::{self, AttachHub};
use super::cri_log::{CriLogWriter, Stream};
use super::fdio::FdStream;
use super::runc::Runc;
use super::state::{self, ContainerRecord, ExitRecord, StartedRecord};
use crate::cgroups;
use crate::cri::RuntimeError;

/// Bytes of a termination message the kubelet keeps.
const MAX_TERMINATION_MESSAGE: u64 = 4096;

/// Stage one: leave the caller's session and start stage two detached.
pub fn launch(dir: &Path) -> Result<(), RuntimeError> {
    nix::unistd::setsid().map_err(|e| RuntimeError::io("setsid", e.into()))?;
    let exe = std::env::current_exe().map_err(|e| RuntimeError::io("finding own executable", e))?;
    let log = std::fs::File::create(dir.join(state::SUPERVISOR_LOG))
        .map_err(|e| RuntimeError::io("creating supervisor log", e))?;
    std::process::Command::new(exe)
        .arg("supervise")
        .arg("--detached")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| RuntimeError::io("starting the detached supervisor", e))?;
    Ok(())
}

/// Stage two: supervises the container in `dir` until it exits.
pub fn run(dir: &Path) -> Result<(), RuntimeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::io("building the supervisor runtime", e))?;
    let result = rt.block_on(supervise(dir));
    if let Err(e) = &result {
        // The agent waits for started.json or this file; without it, it would time out.
        if !dir.join(state::STARTED).exists() {
            let _ = state::write_bytes_atomic(dir, state::START_ERROR, e.to_string().as_bytes());
        }
    }
    result
}

struct ContainerIo {
    stdout: Option<FdStream>,
    stderr: Option<FdStream>,
    stdin: Option<FdStream>,
    pty: Option<Arc<OwnedFd>>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| RuntimeError::io("pipe", e.into()))
}

fn io_err(context: &str) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |e| RuntimeError::io(context, e)
}

/// runc's own error, from its JSON log (its stderr went to the container's pipes).
fn runc_error(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("runc.log")).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error")
        .and_then(|v| v["msg"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "runc create failed".into())
}

async fn create(
    runc: &Runc,
    dir: &Path,
    rec: &ContainerRecord,
) -> Result<ContainerIo, RuntimeError> {
    // runc's stderr is the container's: its own errors go to a JSON log we can parse.
    let mut cmd = tokio::process::Command::new(&runc.binary);
    cmd.arg("--root")
        .arg(&runc.root)
        .arg("--log")
        .arg(dir.join("runc.log"))
        .arg("--log-format")
        .arg("json")
        .arg("create")
        .arg("--bundle")
        .arg(dir)
        .arg("--pid-file")
        .arg(dir.join(state::PID_FILE))
        .kill_on_drop(true);
    if rec.tty {
        let _ = std::fs::remove_file(state::CONSOLE_SOCKET);
        let listener =
            UnixListener::bind(state::CONSOLE_SOCKET).map_err(io_err("binding console socket"))?;
        cmd.arg("--console-socket")
            .arg(state::CONSOLE_SOCKET)
            .arg(&rec.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(io_err("running runc create"))?;
        drop(cmd);
        let conn = tokio::select! {
            accepted = listener.accept() => accepted.map_err(io_err("console socket"))?.0,
            status = child.wait() => {
                let _ = status;
                return Err(RuntimeError::Oci(runc_error(dir)));
            }
        };
        let master = receive_fd(conn).await?;
        let status = child
            .wait()
            .await
            .map_err(io_err("waiting for runc create"))?;
        let _ = std::fs::remove_file(state::CONSOLE_SOCKET);
        if !status.success() {
            return Err(RuntimeError::Oci(runc_error(dir)));
        }
        let writer = master.try_clone().map_err(io_err("dup pty"))?;
        let resize = master.try_clone().map_err(io_err("dup pty"))?;
        return Ok(ContainerIo {
            stdout: Some(FdStream::new(master).map_err(io_err("pty"))?),
            stderr: None,
            stdin: if rec.stdin {
                Some(FdStream::new(writer).map_err(io_err("pty"))?)
            } else {
                None
            },
            pty: Some(Arc::new(resize)),
        });
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdin = if rec.stdin {
        let (r, w) = pipe()?;
        cmd.stdin(Stdio::from(r));
        Some(w)
    } else {
        cmd.stdin(Stdio::null());
        None
    };
    cmd.arg(&rec.id)
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    let mut child = cmd.spawn().map_err(io_err("running runc create"))?;
    // Our copies of the write ends must go, or the log never sees end-of-file.
    drop(cmd);
    let status = child
        .wait()
        .await
        .map_err(io_err("waiting for runc create"))?;
    if !status.success() {
        return Err(RuntimeError::Oci(runc_error(dir)));
    }
    Ok(ContainerIo {
        stdout: Some(FdStream::new(out_r).map_err(io_err("pipe"))?),
        stderr: Some(FdStream::new(err_r).map_err(io_err("pipe"))?),
        stdin: match stdin {
            Some(w) => Some(FdStream::new(w).map_err(io_err("pipe"))?),
            None => None,
        },
        pty: None,
    })
}

/// runc sends the container's pty master over the console socket (SCM_RIGHTS).
async fn receive_fd(conn: tokio::net::UnixStream) -> Result<OwnedFd, RuntimeError> {
    let std_conn = conn.into_std().map_err(io_err("console socket"))?;
    std_conn
        .set_nonblocking(false)
        .map_err(io_err("console socket"))?;
    tokio::task::spawn_blocking(move || {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut name = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut name)];
        rustix::net::recvmsg(&std_conn, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)
            .map_err(|e| RuntimeError::io("receiving the pty", e.into()))?;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
                if let Some(fd) = fds.next() {
                    return Ok(fd);
                }
            }
        }
        Err(RuntimeError::Oci("runc sent no console descriptor".into()))
    })
    .await
    .map_err(|e| RuntimeError::Other(format!("receiving the pty: {e}")))?
}

fn read_pid(dir: &Path) -> Result<i32, RuntimeError> {
    let text =
        std::fs::read_to_string(dir.join(state::PID_FILE)).map_err(io_err("reading pid file"))?;
    text.trim()
        .parse()
        .map_err(|_| RuntimeError::Oci(format!("bad pid file {text:?}")))
}

/// Reaps every exited child; returns the init's exit code once it is among them.
fn reap(init: i32) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, status)) if pid.as_raw() == init => code = Some(status),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == init => {
                code = Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(_) => {}
        }
    }
}

fn pump(stream: Option<FdStream>, which: Stream, tx: mpsc::Sender<(Stream, Bytes)>) {
    let Some(mut stream) = stream else { return };
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((which, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
}

fn termination_message(rec: &ContainerRecord) -> Option<String> {
    let path = rec.termination_message_path.as_ref()?;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_TERMINATION_MESSAGE),
        &mut text,
    )
    .ok()?;
    (!text.is_empty()).then_some(text)
}

async fn supervise(dir: &Path) -> Result<(), RuntimeError> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| RuntimeError::io("becoming a child subreaper", e.into()))?;
    std::env::set_current_dir(dir).map_err(io_err("entering the container directory"))?;
    let rec: ContainerRecord = state::read_json(dir, state::RECORD)?
        .ok_or_else(|| RuntimeError::NotFound(format!("container record in {}", dir.display())))?;
    let runc = Runc::new(&rec.runtime_binary, &rec.runtime_root);
    let mut log = CriLogWriter::open(&rec.log_path, rec.log_max_bytes)
        .map_err(|e| RuntimeError::io(format!("opening log {}", rec.log_path.display()), e))?;
    let io = create(&runc, dir, &rec).await?;
    if let Err(e) = runc.start(&rec.id).await {
        let _ = runc.delete(&rec.id).await;
        return Err(e);
    }
    let init = read_pid(dir)?;
    let mut sigchld = signal(SignalKind::child()).map_err(io_err("SIGCHLD handler"))?;
    state::write_atomic(
        dir,
        state::STARTED,
        &StartedRecord {
            started_at: Timestamp::now(),
            pid: init,
            supervisor_pid: std::process::id() as i32,
        },
    )?;

    let (out_tx, mut out_rx) = mpsc::channel::<(Stream, Bytes)>(64);
    pump(io.stdout, Stream::Stdout, out_tx.clone());
    pump(io.stderr, Stream::Stderr, out_tx);
    let (broadcast_tx, _) = broadcast::channel::<(u8, Bytes)>(256);
    let stdin_tx = io.stdin.map(|mut w| {
        let (tx, mut rx) = mpsc::channel::<Option<Bytes>>(16);
        let tty = rec.tty;
        tokio::spawn(async move {
            while let Some(Some(data)) = rx.recv().await {
                if w.write_all(&data).await.is_err() {
                    return;
                }
            }
            // Closing a terminal's input means sending EOF (^D), not closing the master.
            if tty {
                let _ = w.write_all(&[4]).await;
            }
        });
        tx
    });
    let hub = AttachHub {
        output: broadcast_tx.clone(),
        stdin: stdin_tx,
        pty: io.pty,
        stdin_once: rec.stdin_once,
    };
    let _ = std::fs::remove_file(state::ATTACH_SOCKET);
    let attach_listener =
        UnixListener::bind(state::ATTACH_SOCKET).map_err(io_err("binding attach socket"))?;

    let mut exit_code = reap(init);
    let mut outputs_open = true;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    while outputs_open || exit_code.is_none() {
        if exit_code.is_some() && drain_deadline.is_none() {
            // Processes that escaped into other sessions might keep a pipe open: bounded drain.
            drain_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(5));
        }
        let deadline = drain_deadline
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            chunk = out_rx.recv(), if outputs_open => match chunk {
                Some((stream, data)) => {
                    if let Err(e) = log.write(stream, &data) {
                        tracing::warn!(error = %e, "writing container log");
                    }
                    let kind = if stream == Stream::Stdout { attach::STDOUT } else { attach::STDERR };
                    let _ = broadcast_tx.send((kind, data));
                }
                None => outputs_open = false,
            },
            _ = sigchld.recv(), if exit_code.is_none() => exit_code = reap(init),
            _ = tick.tick(), if exit_code.is_none() => exit_code = reap(init),
            accepted = attach_listener.accept() => {
                if let Ok((conn, _)) = accepted {
                    tokio::spawn(attach::serve_client(hub.clone(), conn));
                }
            }
            _ = tokio::time::sleep_until(deadline), if drain_deadline.is_some() => break,
        }
    }
    let _ = log.flush_pending();
    let exit_code = exit_code.unwrap_or(255);
    let oom = cgroups::oom_killed(&rec.cgroup);
    let reason = if oom {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let _ = broadcast_tx.send((
        attach::EXIT,
        Bytes::copy_from_slice(&exit_code.to_be_bytes()),
    ));
    drop(attach_listener);
    let _ = std::fs::remove_file(state::ATTACH_SOCKET);
    // Last act: once exit.json exists the agent may delete this directory.
    state::write_atomic(
        dir,
        state::EXIT,
        &ExitRecord {
            exit_code,
            finished_at: Timestamp::now(),
            reason: reason.into(),
            message: termination_message(&rec),
        },
    )?;
    // Let attach clients receive EXIT before the process ends.
    tokio::task::yield_now().await;
    Ok(())
}
