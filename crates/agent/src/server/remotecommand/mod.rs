//! Exec and attach (the kubelet's remotecommand): the request's options, the bridge
//! between the client's streams and the runtime's [`StreamSession`], and the Status that
//! ends every session. The client's streams come over a WebSocket ([`websocket`]) or SPDY
//! ([`spdy`]); both hand the bridge the same [`ClientStreams`].

pub mod spdy;
pub mod websocket;

use std::time::Duration;

use bytes::Bytes;
use runtime::cri::{StreamOptions, StreamSession, TerminalSize};
use runtime::RuntimeError;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::ServerError;

/// After the process exits, how long its output may still take to drain (a background
/// child can hold the pipes open forever).
const DRAIN: Duration = Duration::from_secs(2);

/// What the client asked for (`?command=…&stdin&stdout&stderr&tty`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub command: Vec<String>,
    pub stream: StreamOptions,
}

impl Options {
    pub fn from_query(query: &str, exec: bool) -> Result<Self, ServerError> {
        let mut o = Options::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let on = || matches!(v.as_ref(), "true" | "1" | "");
            match k.as_ref() {
                "command" => o.command.push(v.into_owned()),
                "stdin" | "input" => o.stream.stdin = on(),
                "stdout" | "output" => o.stream.stdout = on(),
                "stderr" | "error" => o.stream.stderr = on(),
                "tty" => o.stream.tty = on(),
                _ => {}
            }
        }
        if exec && o.command.is_empty() {
            return Err(ServerError::BadRequest(
                "you must specify at least 1 command".into(),
            ));
        }
        if !(o.stream.stdin || o.stream.stdout || o.stream.stderr) {
            return Err(ServerError::BadRequest(
                "you must specify at least 1 of stdin, stdout, stderr".into(),
            ));
        }
        // A terminal merges stderr into stdout.
        if o.stream.tty {
            o.stream.stderr = false;
        }
        Ok(o)
    }
}

/// Where one output goes.
#[derive(Clone)]
pub enum Sink {
    Spdy(super::spdy::StreamSender),
    WebSocket {
        channel: u8,
        tx: mpsc::Sender<Vec<u8>>,
    },
}

impl Sink {
    async fn send(&self, data: &[u8]) -> bool {
        match self {
            Sink::Spdy(s) => s.send(data).await.is_ok(),
            Sink::WebSocket { channel, tx } => tx
                .send(super::channel::encode(*channel, data))
                .await
                .is_ok(),
        }
    }

    async fn close(&self) {
        if let Sink::Spdy(s) = self {
            let _ = s.finish().await;
        }
    }
}

/// The client's side of a session, whatever the transport.
pub struct ClientStreams {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    pub stdout: Option<Sink>,
    pub stderr: Option<Sink>,
    pub error: Sink,
}

/// How a session ended, as reported on the error channel.
pub enum Outcome {
    Exited(i32),
    Detached,
    Failed(String),
}

/// The v4+ error-channel Status for an outcome (the kubelet's wording).
pub fn status(outcome: &Outcome, command: &[String]) -> Value {
    match outcome {
        Outcome::Exited(0) | Outcome::Detached => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500,
        }),
    }
}

async fn pump_output(mut from: runtime::cri::BoxedReader, to: Sink) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !to.send(&buf[..n]).await {
                    break;
                }
            }
        }
    }
    to.close().await;
}

/// Connects the client's streams to the process until it exits (exec), the container
/// exits or the client goes away (attach), and reports the outcome on the error stream.
pub async fn bridge(
    session: Result<StreamSession, RuntimeError>,
    client: ClientStreams,
    client_gone: impl std::future::Future<Output = ()> + Send,
    command: &[String],
) -> Outcome {
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            let outcome = Outcome::Failed(e.to_string());
            report(&client.error, &outcome, command).await;
            return outcome;
        }
    };
    let StreamSession {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = session;
    let mut tasks = Vec::new();
    if let (Some(mut writer), Some(mut rx)) = (stdin, client.stdin) {
        // Stdin is not awaited: the process may exit without reading it.
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if writer.write_all(&chunk).await.is_err() {
                    return;
                }
                let _ = writer.flush().await;
            }
            let _ = writer.shutdown().await;
        });
    }
    if let (Some(tx), Some(mut rx)) = (resize, client.resize) {
        tokio::spawn(async move {
            while let Some(size) = rx.recv().await {
                if tx.send(size).await.is_err() {
                    return;
                }
            }
        });
    }
    if let (Some(r), Some(sink)) = (stdout, client.stdout.clone()) {
        tasks.push(tokio::spawn(pump_output(r, sink)));
    }
    if let (Some(r), Some(sink)) = (stderr, client.stderr.clone()) {
        tasks.push(tokio::spawn(pump_output(r, sink)));
    }
    let outcome = tokio::select! {
        exit = exit => match exit {
            Ok(code) => Outcome::Exited(code),
            Err(e) => Outcome::Failed(e.to_string()),
        },
        () = client_gone => Outcome::Detached,
    };
    if matches!(outcome, Outcome::Detached) {
        for t in &tasks {
            t.abort();
        }
        return outcome;
    }
    let drained = futures::future::join_all(tasks);
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        tracing::debug!("output still open after the process exited");
        for sink in [&client.stdout, &client.stderr].into_iter().flatten() {
            sink.close().await;
        }
    }
    report(&client.error, &outcome, command).await;
    outcome
}

async fn report(error: &Sink, outcome: &Outcome, command: &[String]) {
    let body = status(outcome, command).to_string();
    error.send(body.as_bytes()).await;
    error.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_the_kubelet() {
        let o = Options::from_query(
            "command=sh&command=-c&command=exit%203&stdin=true&stdout=true&stderr=true&tty=true",
            true,
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "exit 3"]);
        assert!(o.stream.stdin && o.stream.stdout && o.stream.tty);
        assert!(!o.stream.stderr, "a tty has no separate stderr");
        assert!(matches!(
            Options::from_query("stdout=true", true),
            Err(ServerError::BadRequest(_))
        ));
        assert!(matches!(
            Options::from_query("command=ls", true),
            Err(ServerError::BadRequest(_))
        ));
        assert!(Options::from_query("stdout=1", false).is_ok());
    }

    #[test]
    fn statuses_carry_the_exit_code() {
        let cmd = vec!["sh".to_string()];
        assert_eq!(status(&Outcome::Exited(0), &cmd)["status"], "Success");
        let s = status(&Outcome::Exited(3), &cmd);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(
            s["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        let s = status(&Outcome::Failed("no such file".into()), &cmd);
        assert_eq!(
            (s["status"].as_str(), s["message"].as_str()),
            (Some("Failure"), Some("no such file"))
        );
    }
}
