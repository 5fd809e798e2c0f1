//! The OCI runtime's command line (runc; crun speaks the same): every call carries the
//! node's `--root` so several nodes on one machine keep separate state.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::Command;

use crate::cri::RuntimeError;

#[derive(Debug, Clone)]
pub(crate) struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
}

impl Runc {
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Runc {
            binary: binary.into(),
            root: root.into(),
        }
    }

    /// A command with the global flags set; stdio defaults to null in, piped out/err.
    pub fn command(&self, subcommand: &str) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg(subcommand)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs a short command to completion; its stderr becomes the error.
    pub async fn run(&self, mut cmd: Command) -> Result<Vec<u8>, RuntimeError> {
        let out = cmd
            .output()
            .await
            .map_err(|e| RuntimeError::io(format!("running {}", self.binary.display()), e))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(RuntimeError::Oci(stderr_message(&out.stderr, &out.stdout)))
        }
    }

    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command("start");
        cmd.arg(id);
        self.run(cmd).await.map(drop)
    }

    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command("kill");
        cmd.arg(id).arg(signal);
        self.run(cmd).await.map(drop)
    }

    /// `runc delete --force`; a container runc does not know is already deleted.
    pub async fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command("delete");
        cmd.arg("--force").arg(id);
        match self.run(cmd).await {
            Err(RuntimeError::Oci(m)) if is_not_exist(&m) => Ok(()),
            other => other.map(drop),
        }
    }
}

fn is_not_exist(message: &str) -> bool {
    message.contains("does not exist") || message.contains("not found")
}

/// runc logs errors as `level=error msg="..."` lines (or JSON); keep the text readable.
pub(crate) fn stderr_message(stderr: &[u8], stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(if stderr.is_empty() { stdout } else { stderr });
    let text = text.trim();
    if text.is_empty() {
        "runtime failed without a message".into()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(stderr_message(b" boom\n", b""), "boom");
        assert_eq!(stderr_message(b"", b"out"), "out");
        assert!(is_not_exist("container abc does not exist"));
        assert!(!is_not_exist("permission denied"));
    }
}
