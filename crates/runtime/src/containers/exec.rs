//! Processes run inside a running container by `runc exec`: collected (exec probes, hooks)
//! or streamed (`kubectl exec`), the latter with a terminal we allocate so resizes reach it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures::FutureExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::fdio::{self, FdStream};
use super::runc::Runc;
use super::state;
use crate::cri::{
    BoxedReader, BoxedWriter, ExecResult, RuntimeError, StreamOptions, StreamSession, TerminalSize,
};

fn io_err(context: &'static str) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |e| RuntimeError::io(context, e)
}

fn exec_command(
    runc: &Runc,
    id: &str,
    cmd: &[String],
    tty: bool,
    pid_file: Option<&Path>,
) -> tokio::process::Command {
    let mut c = runc.command("exec");
    if tty {
        c.arg("--tty");
    }
    if let Some(p) = pid_file {
        c.arg("--pid-file").arg(p);
    }
    c.arg(id).args(cmd);
    c
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

async fn read_all(r: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut r) = r {
        let _ = r.read_to_end(&mut out).await;
    }
    out
}

/// Runs `cmd` to completion; past `timeout` the process is SIGKILLed and `timed_out` set.
pub(crate) async fn exec_sync(
    runc: &Runc,
    dir: &Path,
    id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Result<ExecResult, RuntimeError> {
    if cmd.is_empty() {
        return Err(RuntimeError::Invalid {
            what: "exec".into(),
            message: "empty command".into(),
        });
    }
    let pid_file = dir.join(format!("exec-{}.pid", state::new_id()?));
    let mut child = exec_command(runc, id, cmd, false, Some(&pid_file))
        .spawn()
        .map_err(io_err("running runc exec"))?;
    let stdout = tokio::spawn(read_all(child.stdout.take()));
    let stderr = tokio::spawn(read_all(child.stderr.take()));
    let mut timed_out = false;
    let status = tokio::select! {
        status = child.wait() => status,
        _ = tokio::time::sleep(timeout) => {
            timed_out = true;
            kill_exec_process(&pid_file, &mut child).await;
            let _ = child.start_kill();
            child.wait().await
        }
    }
    .map_err(io_err("waiting for runc exec"))?;
    let _ = std::fs::remove_file(&pid_file);
    // Background children of the command may keep the pipes open: don't wait on them long.
    let grace = Duration::from_secs(2);
    let stdout = tokio::time::timeout(grace, stdout)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let stderr = tokio::time::timeout(grace, stderr)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let code = exit_code(status);
    // runc's own failure (the container is gone, say) is an error, not the command's exit.
    if !timed_out && code == 255 && stdout.is_empty() && !stderr.is_empty() {
        let text = String::from_utf8_lossy(&stderr);
        if text.contains("level=error") || text.contains("cannot exec") {
            return Err(RuntimeError::Oci(text.trim().to_owned()));
        }
    }
    Ok(ExecResult {
        exit_code: if timed_out { -1 } else { code },
        stdout,
        stderr,
        timed_out,
    })
}

/// How long a timed-out exec's runc is given to write the process's pid.
const PID_WAIT: Duration = Duration::from_secs(5);

/// Kills a timed-out exec's process. runc forwards catchable signals only, so the process
/// itself is killed; and a timeout that fires while runc is still starting it must wait
/// for its pid, or killing runc would leave the process running in the container.
async fn kill_exec_process(pid_file: &Path, child: &mut tokio::process::Child) {
    let deadline = tokio::time::Instant::now() + PID_WAIT;
    loop {
        let pid = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            return;
        }
        // runc is gone without a pid: the process never started.
        if !matches!(child.try_wait(), Ok(None)) || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts `cmd` with streams wired per `opts`.
pub(crate) async fn exec_stream(
    runc: &Runc,
    id: &str,
    cmd: &[String],
    opts: StreamOptions,
) -> Result<StreamSession, RuntimeError> {
    if cmd.is_empty() {
        return Err(RuntimeError::Invalid {
            what: "exec".into(),
            message: "empty command".into(),
        });
    }
    if opts.tty {
        return exec_tty(runc, id, cmd, opts).await;
    }
    let mut c = exec_command(runc, id, cmd, false, None);
    let pipe_or_null = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    c.stdin(pipe_or_null(opts.stdin))
        .stdout(pipe_or_null(opts.stdout))
        .stderr(pipe_or_null(opts.stderr))
        // The session's exit future owns the wait; a dropped session must not kill it.
        .kill_on_drop(false);
    let mut child = c.spawn().map_err(io_err("running runc exec"))?;
    let stdin = child.stdin.take().map(|w| Box::pin(w) as BoxedWriter);
    let stdout = child.stdout.take().map(|r| Box::pin(r) as BoxedReader);
    let stderr = child.stderr.take().map(|r| Box::pin(r) as BoxedReader);
    let exit = async move {
        child
            .wait()
            .await
            .map(exit_code)
            .map_err(|e| RuntimeError::io("waiting for runc exec", e))
    }
    .boxed();
    Ok(StreamSession {
        stdin,
        stdout,
        stderr,
        resize: None,
        exit,
    })
}

/// runc gets our pty's slave as its stdio and copies it to the container's own terminal;
/// a resize sets our master's size and SIGWINCHes runc, which propagates it.
async fn exec_tty(
    runc: &Runc,
    id: &str,
    cmd: &[String],
    opts: StreamOptions,
) -> Result<StreamSession, RuntimeError> {
    let pty = nix::pty::openpty(None, None).map_err(|e| RuntimeError::io("openpty", e.into()))?;
    fdio::set_winsize(&pty.master, 80, 24).map_err(io_err("sizing the terminal"))?;
    let slave = pty.slave;
    let mut c = exec_command(runc, id, cmd, true, None);
    c.stdin(Stdio::from(slave.try_clone().map_err(io_err("dup pty"))?))
        .stdout(Stdio::from(slave.try_clone().map_err(io_err("dup pty"))?))
        .stderr(Stdio::from(slave))
        .kill_on_drop(false);
    let mut child = c.spawn().map_err(io_err("running runc exec"))?;
    drop(c);
    let runc_pid = child.id().map(|p| p as i32);
    let writer = pty.master.try_clone().map_err(io_err("dup pty"))?;
    let resize_fd = pty.master.try_clone().map_err(io_err("dup pty"))?;
    let reader = FdStream::new(pty.master).map_err(io_err("pty"))?;
    let (resize_tx, mut resize_rx) = mpsc::channel::<TerminalSize>(4);
    tokio::spawn(async move {
        while let Some(size) = resize_rx.recv().await {
            if fdio::set_winsize(&resize_fd, size.width, size.height).is_ok() {
                if let Some(pid) = runc_pid {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGWINCH);
                }
            }
        }
    });
    let stdin = if opts.stdin {
        Some(Box::pin(FdStream::new(writer).map_err(io_err("pty"))?) as BoxedWriter)
    } else {
        None
    };
    let exit = async move {
        child
            .wait()
            .await
            .map(exit_code)
            .map_err(|e| RuntimeError::io("waiting for runc exec", e))
    }
    .boxed();
    Ok(StreamSession {
        stdin,
        stdout: Some(Box::pin(reader) as BoxedReader),
        stderr: None,
        resize: Some(resize_tx),
        exit,
    })
}
