//! The node server end to end over real TLS, against fake runtimes: who may connect, logs
//! (follow across a rotation), exec over WebSocket and SPDY, port-forward over SPDY.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use flotilla_agent::server::spdy::frame::{Codec, Frame, FLAG_FIN};
use flotilla_agent::server::spdy::Headers;
use flotilla_agent::server::{NodeServer, NodeServerConfig};
use futures::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use runtime::cri::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CN: &str = "flotilla-apiserver-node-client";

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "test-ca");
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// (cert PEM, key PEM) of a client certificate named `cn`.
    fn client(&self, cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

#[derive(Debug)]
struct AnyCert;
impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn dial(
    addr: std::net::SocketAddr,
    client: Option<&(String, String)>,
) -> std::io::Result<Tls> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert));
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    // TLS 1.3 reports a refused client certificate only at the first read.
    tls.flush().await?;
    Ok(tls)
}

/// Sends a raw HTTP/1.1 request and reads the answer's head.
async fn request(tls: &mut Tls, head: &str) -> (u16, String, BytesMut) {
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = BytesMut::new();
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            let rest = buf.split_off(i + 4);
            let code = head[9..12].parse().unwrap();
            return (code, head, rest);
        }
        assert!(
            tls.read_buf(&mut buf).await.unwrap() > 0,
            "closed before an answer: {buf:?}"
        );
    }
}

/// Reads a whole response body until the server closes; `chunked` as the head said.
async fn body_to_end(tls: &mut Tls, mut have: BytesMut, chunked: bool) -> String {
    while tls.read_buf(&mut have).await.unwrap_or(0) > 0 {}
    if !chunked {
        return String::from_utf8(have.to_vec()).unwrap();
    }
    // De-chunk.
    let mut out = Vec::new();
    let mut rest = &have[..];
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&rest[..i]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&rest[i + 2..i + 2 + n]);
        rest = &rest[i + 2 + n + 2..];
    }
    String::from_utf8(out).unwrap()
}

// ---------------------------------------------------------------------------------------
// Fake runtimes

#[derive(Default)]
struct FakeContainers {
    list: Mutex<Vec<ContainerStatus>>,
}

fn status(name: &str, attempt: u32, state: ContainerState, log: &Path) -> ContainerStatus {
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_POD_NAMESPACE.into(), "ns".into());
    labels.insert(LABEL_POD_NAME.into(), "web".into());
    labels.insert(LABEL_CONTAINER_NAME.into(), name.into());
    ContainerStatus {
        id: format!("{name}-{attempt}"),
        sandbox_id: "sb".into(),
        name: name.into(),
        attempt,
        state,
        created_at: SystemTime::now(),
        started_at: None,
        finished_at: None,
        exit_code: None,
        reason: None,
        message: None,
        image_ref: String::new(),
        image_id: String::new(),
        log_path: log.to_path_buf(),
        labels,
        annotations: BTreeMap::new(),
    }
}

fn unsupported<T>() -> Result<T> {
    Err(RuntimeError::Other("not in this fake".into()))
}

#[async_trait]
impl ContainerRuntime for FakeContainers {
    async fn create_container(&self, _: &PodSandbox, _: &ContainerConfig) -> Result<String> {
        unsupported()
    }
    async fn start_container(&self, _: &str) -> Result<()> {
        unsupported()
    }
    async fn stop_container(&self, _: &str, _: Duration) -> Result<()> {
        unsupported()
    }
    async fn remove_container(&self, _: &str) -> Result<()> {
        unsupported()
    }
    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let list = self.list.lock().unwrap();
        list.iter()
            .find(|c| c.id == id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(id.into()))
    }
    async fn list_containers(&self) -> Result<Vec<ContainerStatus>> {
        Ok(self.list.lock().unwrap().clone())
    }
    async fn exec_sync(&self, _: &str, _: &[String], _: Duration) -> Result<ExecResult> {
        unsupported()
    }
    /// A "process" that answers `got:<stdin>` on stdout, `<argv>` on stderr, and exits 3.
    async fn exec(&self, _: &str, cmd: &[String], _: StreamOptions) -> Result<StreamSession> {
        let (stdin_w, mut stdin_r) = tokio::io::duplex(1024);
        let (mut out_w, out_r) = tokio::io::duplex(1024);
        let (mut err_w, err_r) = tokio::io::duplex(1024);
        let argv = cmd.join(" ");
        let exit = tokio::spawn(async move {
            let mut input = Vec::new();
            stdin_r.read_to_end(&mut input).await.unwrap();
            out_w.write_all(b"got:").await.unwrap();
            out_w.write_all(&input).await.unwrap();
            err_w.write_all(argv.as_bytes()).await.unwrap();
            drop((out_w, err_w));
            3
        });
        Ok(StreamSession {
            stdin: Some(Box::pin(stdin_w)),
            stdout: Some(Box::pin(out_r)),
            stderr: Some(Box::pin(err_r)),
            resize: None,
            exit: Box::pin(
                async move { exit.await.map_err(|e| RuntimeError::Other(e.to_string())) },
            ),
        })
    }
    async fn attach(&self, _: &str, _: StreamOptions) -> Result<StreamSession> {
        unsupported()
    }
    async fn container_stats(&self, _: &str) -> Result<CgroupStats> {
        unsupported()
    }
    async fn cgroup_stats(&self, _: &str) -> Result<CgroupStats> {
        unsupported()
    }
}

struct FakeSandboxes;

#[async_trait]
impl SandboxRuntime for FakeSandboxes {
    async fn run_pod_sandbox(&self, _: &PodSandboxConfig) -> Result<PodSandbox> {
        unsupported()
    }
    async fn stop_pod_sandbox(&self, _: &str) -> Result<()> {
        unsupported()
    }
    async fn remove_pod_sandbox(&self, _: &str) -> Result<()> {
        unsupported()
    }
    async fn pod_sandbox_status(&self, _: &str) -> Result<PodSandbox> {
        unsupported()
    }
    /// One ready hostNetwork sandbox: port-forward dials the host's loopback.
    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandbox>> {
        Ok(vec![PodSandbox {
            id: "sb".into(),
            pod_uid: "uid".into(),
            namespace: "ns".into(),
            name: "web".into(),
            state: SandboxState::Ready,
            created_at: SystemTime::now(),
            netns_path: None,
            ipc_ns_path: None,
            uts_ns_path: None,
            ips: vec![],
            hosts_path: PathBuf::new(),
            hostname_path: PathBuf::new(),
            resolv_conf_path: PathBuf::new(),
            cgroup_parent: String::new(),
            labels: BTreeMap::new(),
        }])
    }
}

struct Node {
    addr: std::net::SocketAddr,
    ca: Ca,
    containers: Arc<FakeContainers>,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Node {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let containers = Arc::new(FakeContainers::default());
    let server = NodeServer::bind(
        NodeServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            client_ca_pem: ca.pem.clone(),
            allowed_client_cn: CN.into(),
            node_name: "node-a".into(),
            pod_logs_dir: dir.path().to_path_buf(),
        },
        containers.clone(),
        Arc::new(FakeSandboxes),
        axum::Router::new().route("/stats/summary", axum::routing::get(|| async { "{}" })),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    Node {
        addr,
        ca,
        containers,
        dir,
        _stop: stop,
    }
}

async fn get(node: &Node, path: &str) -> (u16, String) {
    let mut tls = dial(node.addr, Some(&node.ca.client(CN))).await.unwrap();
    let (code, head, rest) = request(
        &mut tls,
        &format!("GET {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n"),
    )
    .await;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (code, body_to_end(&mut tls, rest, chunked).await)
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn only_the_api_server_certificate_gets_in() {
    let node = start().await;
    let (code, body) = get(&node, "/stats/summary").await;
    assert_eq!((code, body.as_str()), (200, "{}"));

    // No certificate: the handshake is refused.
    let refused = async |client: Option<&(String, String)>| match dial(node.addr, client).await {
        Err(_) => true,
        Ok(mut tls) => {
            let _ = tls
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: n\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            matches!(tls.read_to_end(&mut buf).await, Err(_) | Ok(0))
        }
    };
    assert!(refused(None).await, "no client certificate");
    assert!(refused(Some(&Ca::new().client(CN))).await, "another CA");
    assert!(
        refused(Some(&node.ca.client("someone-else"))).await,
        "another name"
    );
}

fn write_log(path: &Path, lines: &[(&str, &str)]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for (ts, text) in lines {
        writeln!(f, "{ts} stdout F {text}").unwrap();
    }
}

#[tokio::test]
async fn logs_with_options_and_previous() {
    let node = start().await;
    let dir = node.dir.path().join("ns_web_uid/app");
    std::fs::create_dir_all(&dir).unwrap();
    write_log(
        &dir.join("0.log"),
        &[("2024-01-01T00:00:00.000000000Z", "old")],
    );
    write_log(
        &dir.join("1.log"),
        &[
            ("2024-01-01T00:00:01.000000000Z", "a"),
            ("2024-01-01T00:00:02.000000000Z", "b"),
            ("2024-01-01T00:00:03.000000000Z", "c"),
        ],
    );
    node.containers.list.lock().unwrap().push(status(
        "app",
        1,
        ContainerState::Running,
        &dir.join("1.log"),
    ));
    assert_eq!(
        get(&node, "/containerLogs/ns/web/app").await,
        (200, "a\nb\nc\n".into())
    );
    assert_eq!(
        get(&node, "/containerLogs/ns/web/app?tailLines=2").await.1,
        "b\nc\n"
    );
    assert_eq!(
        get(
            &node,
            "/containerLogs/ns/web/app?sinceTime=2024-01-01T00:00:02Z&timestamps=true"
        )
        .await
        .1,
        "2024-01-01T00:00:02.000000000Z b\n2024-01-01T00:00:03.000000000Z c\n"
    );
    assert_eq!(
        get(&node, "/containerLogs/ns/web/app?limitBytes=3").await.1,
        "a\nb"
    );
    assert_eq!(
        get(&node, "/containerLogs/ns/web/app?previous=true")
            .await
            .1,
        "old\n"
    );
    // A record whose log lies outside the pod log directory is not served.
    node.containers.list.lock().unwrap().push(status(
        "stray",
        0,
        ContainerState::Running,
        &node.dir.path().join("../etc-passwd"),
    ));
    let (code, body) = get(&node, "/containerLogs/ns/web/stray").await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = get(&node, "/containerLogs/ns/web/nope").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = get(&node, "/containerLogs/ns/web/app?tailLines=x").await;
    assert!(
        code == 400 && body.contains("\"kind\":\"Status\""),
        "{code} {body}"
    );
}

#[tokio::test]
async fn follow_sees_new_lines_across_a_rotation_until_the_container_exits() {
    let node = start().await;
    let log = node.dir.path().join("0.log");
    write_log(&log, &[("2024-01-01T00:00:01.000000000Z", "one")]);
    node.containers
        .list
        .lock()
        .unwrap()
        .push(status("app", 0, ContainerState::Running, &log));

    let mut tls = dial(node.addr, Some(&node.ca.client(CN))).await.unwrap();
    let (code, _, mut buf) = request(
        &mut tls,
        "GET /containerLogs/ns/web/app?follow=true HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 200);
    let wait_for = async |tls: &mut Tls, buf: &mut BytesMut, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(buf).contains(want) {
            assert!(Instant::now() < deadline, "never saw {want:?} in {buf:?}");
            let _ = tokio::time::timeout(Duration::from_millis(500), tls.read_buf(buf)).await;
        }
    };
    wait_for(&mut tls, &mut buf, "one\n").await;
    write_log(&log, &[("2024-01-01T00:00:02.000000000Z", "two")]);
    wait_for(&mut tls, &mut buf, "two\n").await;
    // Rotation as the supervisor does it: rename to .1, continue in a new file.
    write_log(&log, &[("2024-01-01T00:00:03.000000000Z", "three")]);
    std::fs::rename(&log, node.dir.path().join("0.log.1")).unwrap();
    write_log(&log, &[("2024-01-01T00:00:04.000000000Z", "four")]);
    wait_for(&mut tls, &mut buf, "four\n").await;
    node.containers.list.lock().unwrap()[0].state = ContainerState::Exited;
    let text = body_to_end(&mut tls, buf, true).await;
    assert_eq!(text, "one\ntwo\nthree\nfour\n");
}

#[tokio::test]
async fn exec_over_websocket_reports_output_and_the_exit_code() {
    let node = start().await;
    node.containers.list.lock().unwrap().push(status(
        "app",
        0,
        ContainerState::Running,
        Path::new("/nonexistent"),
    ));
    // v5 can close stdin; v4 cannot, so there the session runs without it.
    for (protocol, stdin) in [("v5.channel.k8s.io", true), ("v4.channel.k8s.io", false)] {
        let tls = dial(node.addr, Some(&node.ca.client(CN))).await.unwrap();
        let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            format!("wss://node/exec/ns/web/app?command=sh&command=-c&command=exit+3&stdin={stdin}&stdout=true&stderr=true"),
        )
        .unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        let (mut ws, resp) = tokio_tungstenite::client_async(req, tls).await.unwrap();
        assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
        use tokio_tungstenite::tungstenite::Message;
        if stdin {
            ws.send(Message::Binary(Bytes::from_static(b"\x00hello")))
                .await
                .unwrap();
            ws.send(Message::Binary(Bytes::from_static(b"\xff\x00")))
                .await
                .unwrap();
        }
        let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Binary(data) = msg else { continue };
            match data.first() {
                Some(1) => out.extend_from_slice(&data[1..]),
                Some(2) => err.extend_from_slice(&data[1..]),
                Some(3) => {
                    status = Some(serde_json::from_slice::<serde_json::Value>(&data[1..]).unwrap())
                }
                _ => {}
            }
        }
        let want: &[u8] = if stdin { b"got:hello" } else { b"got:" };
        assert_eq!(out, want, "{protocol}");
        assert_eq!(err, b"sh -c exit 3");
        let status = status.unwrap();
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
    }
}

/// A SPDY client over TLS, enough to drive exec and port-forward.
struct SpdyClient {
    tls: Tls,
    codec: Codec,
    buf: BytesMut,
}

impl SpdyClient {
    async fn upgrade(node: &Node, path: &str, protocol: &str) -> (Self, String) {
        let mut tls = dial(node.addr, Some(&node.ca.client(CN))).await.unwrap();
        let (code, head, rest) = request(
            &mut tls,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: n\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
                 X-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(code, 101, "{head}");
        (
            SpdyClient {
                tls,
                codec: Codec::new(),
                buf: rest,
            },
            head,
        )
    }

    async fn send(&mut self, f: Frame) {
        let mut out = BytesMut::new();
        self.codec.encode(&f, &mut out).unwrap();
        self.tls.write_all(&out).await.unwrap();
    }

    async fn open(&mut self, id: u32, headers: Headers, fin: bool) {
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: if fin { FLAG_FIN } else { 0 },
            headers,
        })
        .await;
    }

    async fn data(&mut self, id: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id: id,
            flags: if fin { FLAG_FIN } else { 0 },
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }

    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.tls.read_buf(&mut self.buf))
                    .await
                    .expect("SPDY peer went quiet");
            if read.unwrap_or(0) == 0 {
                return None;
            }
        }
    }

    /// Collects DATA per stream until each of `ids` has ended (FIN).
    async fn until_finished(&mut self, ids: &[u32]) -> BTreeMap<u32, Vec<u8>> {
        let mut got: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut open: Vec<u32> = ids.to_vec();
        while !open.is_empty() {
            match self.recv().await {
                Some(Frame::Data {
                    stream_id,
                    flags,
                    data,
                }) => {
                    got.entry(stream_id).or_default().extend_from_slice(&data);
                    if flags & FLAG_FIN != 0 {
                        open.retain(|i| *i != stream_id);
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        got
    }
}

#[tokio::test]
async fn exec_over_spdy_reports_output_and_the_exit_code() {
    let node = start().await;
    node.containers.list.lock().unwrap().push(status(
        "app",
        0,
        ContainerState::Running,
        Path::new("/nonexistent"),
    ));
    let (mut c, head) = SpdyClient::upgrade(
        &node,
        "/exec/ns/web/app?command=ls&command=-l&stdin=true&stdout=true&stderr=true",
        "v4.channel.k8s.io",
    )
    .await;
    assert!(
        head.to_ascii_lowercase()
            .contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );
    c.open(1, Headers::new().with("streamType", "error"), true)
        .await;
    c.open(3, Headers::new().with("streamType", "stdin"), false)
        .await;
    c.open(5, Headers::new().with("streamType", "stdout"), true)
        .await;
    c.open(7, Headers::new().with("streamType", "stderr"), true)
        .await;
    c.data(3, b"over spdy", true).await;
    let got = c.until_finished(&[1, 5, 7]).await;
    assert_eq!(got[&5], b"got:over spdy");
    assert_eq!(got[&7], b"ls -l");
    let status: serde_json::Value = serde_json::from_slice(&got[&1]).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "3");
}

#[tokio::test]
async fn spdy_needs_a_protocol_both_sides_speak() {
    let node = start().await;
    let mut tls = dial(node.addr, Some(&node.ca.client(CN))).await.unwrap();
    let (code, head, _) = request(
        &mut tls,
        "POST /portForward/ns/web HTTP/1.1\r\nHost: n\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: v9.example\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(code, 403, "{head}");
}

#[tokio::test]
async fn port_forward_over_spdy_reaches_the_pod_port() {
    let node = start().await;
    // An echo server standing in for the pod (a hostNetwork sandbox dials loopback).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    s.write_all(b"echo:").await.unwrap();
                    s.write_all(&buf[..n]).await.unwrap();
                }
            });
        }
    });
    let (mut c, _) = SpdyClient::upgrade(&node, "/portForward/ns/web", "portforward.k8s.io").await;
    let h = |t: &str, id: &str, p: u16| {
        Headers::new()
            .with("streamType", t)
            .with("port", &p.to_string())
            .with("requestID", id)
    };
    // Two connections at once, and one to a closed port.
    c.open(1, h("error", "0", port), true).await;
    c.open(3, h("data", "0", port), false).await;
    c.open(5, h("error", "1", port), true).await;
    c.open(7, h("data", "1", port), false).await;
    c.data(3, b"first", true).await;
    c.data(7, b"second", true).await;
    let got = c.until_finished(&[1, 3, 5, 7]).await;
    assert_eq!(got[&3], b"echo:first");
    assert_eq!(got[&7], b"echo:second");
    assert!(got.get(&1).is_none_or(|e| e.is_empty()));

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    c.open(9, h("error", "2", closed), true).await;
    c.open(11, h("data", "2", closed), false).await;
    let got = c.until_finished(&[9, 11]).await;
    let message = String::from_utf8_lossy(&got[&9]).into_owned();
    assert!(
        message.contains(&format!("error forwarding port {closed} to pod web")),
        "{message}"
    );
}

#[tokio::test]
async fn port_forward_over_spdy_tunnelled_in_websocket() {
    use tokio_tungstenite::tungstenite::Message;
    let node = start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"banner from the pod").await.unwrap();
    });
    let tls = dial(node.addr, Some(&node.ca.client(CN))).await.unwrap();
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        "wss://node/portForward/ns/web",
    )
    .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "SPDY/3.1+portforward.k8s.io".parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "SPDY/3.1+portforward.k8s.io"
    );
    let mut codec = Codec::new();
    let mut wire = BytesMut::new();
    for (id, kind) in [(1, "error"), (3, "data")] {
        let headers = Headers::new()
            .with("streamType", kind)
            .with("port", &port.to_string())
            .with("requestID", "0");
        let f = Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: if kind == "error" { FLAG_FIN } else { 0 },
            headers,
        };
        codec.encode(&f, &mut wire).unwrap();
    }
    ws.send(Message::Binary(wire.split().freeze()))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    'read: while Instant::now() < deadline {
        let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await
        else {
            break;
        };
        let Message::Binary(b) = msg else { continue };
        buf.extend_from_slice(&b);
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            if let Frame::Data {
                stream_id: 3,
                flags,
                data: d,
            } = f
            {
                data.extend_from_slice(&d);
                if flags & FLAG_FIN != 0 {
                    break 'read;
                }
            }
        }
    }
    assert_eq!(data, b"banner from the pod");
}
