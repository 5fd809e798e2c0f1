//! API server benchmark: one `flotilla server` on the embedded store and one on a real etcd,
//! started side by side and driven over HTTPS/HTTP/2 with the admin client certificate.
//!
//! ```sh
//! cargo bench -p flotilla --bench apiserver            # full, about 2-3 minutes
//! cargo bench -p flotilla --bench apiserver -- --quick # about 20 seconds
//! ```
//!
//! Measurements alternate between the two servers metric by metric, so that the noise of a
//! shared machine falls on both sides alike; the ratios are embedded / etcd.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::sync::mpsc;

use support::{Etcd, Server, ServerOptions};

type BenchResult<T> = Result<T, String>;

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
const JSON: &str = "application/json";
/// Concurrent clients for the concurrent create/get figures, each on its own connection.
const CONCURRENT: usize = 16;
const LIST_PODS: usize = 1_000;
const WATCHERS: usize = 1_000;
/// Watch streams per HTTP/2 connection; below the server's concurrent-stream limit.
const STREAMS_PER_CONN: usize = 50;
/// The goal the figures are reported against.
const GOAL_P99: Duration = Duration::from_millis(10);

struct Plan {
    /// How long each throughput phase runs per server.
    phase: Duration,
    lists: usize,
    watch_updates: usize,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("FLOTILLA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let plan = if quick {
        Plan {
            phase: Duration::from_millis(800),
            lists: 10,
            watch_updates: 3,
        }
    } else {
        Plan {
            phase: Duration::from_secs(5),
            lists: 40,
            watch_updates: 10,
        }
    };
    let started = Instant::now();
    let etcd = Etcd::start();
    let on_etcd = Server::start_with(ServerOptions::etcd(&etcd));
    let embedded = Server::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the benchmark runtime");
    let outcome = runtime.block_on(run(&plan, [&on_etcd, &embedded]));
    if let Err(e) = outcome {
        eprintln!("benchmark failed: {e}");
        eprintln!("--- etcd-backed server log ---\n{}", tail(&on_etcd.log()));
        eprintln!("--- embedded server log ---\n{}", tail(&embedded.log()));
        std::process::exit(1);
    }
    println!("total {:.0?}", started.elapsed());
}

fn tail(log: &str) -> &str {
    let start = log.len().saturating_sub(4000);
    let start = (start..log.len())
        .find(|i| log.is_char_boundary(*i))
        .unwrap_or(log.len());
    &log[start..]
}

/// One row of the report: a figure for etcd and embedded.
struct Row {
    name: String,
    etcd: f64,
    embedded: f64,
    unit: &'static str,
}

async fn run(plan: &Plan, servers: [&Server; 2]) -> BenchResult<()> {
    let mut apis = Vec::new();
    for s in servers {
        apis.push(Target::new(s)?);
    }
    for api in &apis {
        for ns in ["bench", "list", "watch"] {
            api.ensure_namespace(ns).await?;
        }
    }
    let mut rows = Vec::new();
    let mut both = |name: &str, unit: &'static str, f: [f64; 2]| {
        rows.push(Row {
            name: name.to_string(),
            etcd: f[0],
            embedded: f[1],
            unit,
        })
    };

    let mut create_seq = Vec::new();
    let mut create_conc = Vec::new();
    let mut get_seq = Vec::new();
    let mut get_conc = Vec::new();
    for api in &apis {
        create_seq.push(api.create_configmaps(1, plan.phase, "s").await?);
    }
    for api in &apis {
        create_conc.push(api.create_configmaps(CONCURRENT, plan.phase, "c").await?);
    }
    for api in &apis {
        get_seq.push(api.get_configmap(1, plan.phase).await?);
    }
    for api in &apis {
        get_conc.push(api.get_configmap(CONCURRENT, plan.phase).await?);
    }
    for (label, figures) in [
        ("create configmap, 1 client", &create_seq),
        ("create configmap, 16 clients", &create_conc),
        ("get configmap, 1 client", &get_seq),
        ("get configmap, 16 clients", &get_conc),
    ] {
        both(
            &format!("{label}: requests/s"),
            "req/s",
            [figures[0].rate(), figures[1].rate()],
        );
        both(
            &format!("{label}: p50"),
            "ms",
            [figures[0].ms(0.50), figures[1].ms(0.50)],
        );
        both(
            &format!("{label}: p99"),
            "ms",
            [figures[0].ms(0.99), figures[1].ms(0.99)],
        );
    }

    for api in &apis {
        api.create_pods(LIST_PODS).await?;
    }
    let mut list_json = Vec::new();
    let mut list_table = Vec::new();
    for api in &apis {
        list_json.push(api.list_pods(JSON, plan.lists).await?);
    }
    for api in &apis {
        list_table.push(api.list_pods(TABLE, plan.lists).await?);
    }
    for (label, figures) in [("JSON", &list_json), ("Table", &list_table)] {
        let name = format!("list {LIST_PODS} pods as {label}");
        both(
            &format!("{name}: p50"),
            "ms",
            [figures[0].ms(0.50), figures[1].ms(0.50)],
        );
        both(
            &format!("{name}: p99"),
            "ms",
            [figures[0].ms(0.99), figures[1].ms(0.99)],
        );
    }

    let mut fanout = Vec::new();
    for api in &apis {
        fanout.push(api.watch_fanout(plan.watch_updates).await?);
    }
    both(
        &format!("watch: time until all {WATCHERS} watchers got an update, median"),
        "ms",
        [fanout[0].all.ms(0.50), fanout[1].all.ms(0.50)],
    );
    both(
        &format!("watch: time until all {WATCHERS} watchers got an update, max"),
        "ms",
        [fanout[0].all.ms(1.0), fanout[1].all.ms(1.0)],
    );
    both(
        "watch: per-watcher delivery p50",
        "ms",
        [fanout[0].each.ms(0.50), fanout[1].each.ms(0.50)],
    );
    both(
        "watch: per-watcher delivery p99",
        "ms",
        [fanout[0].each.ms(0.99), fanout[1].each.ms(0.99)],
    );

    print_report(&rows);
    let goal_ok = [&create_seq, &get_seq]
        .iter()
        .all(|f| f[1].latency(0.99) < GOAL_P99);
    println!(
        "goal p99 < {GOAL_P99:?} for single-object calls (1 client, embedded): {}",
        if goal_ok { "met" } else { "not met" }
    );
    Ok(())
}

fn print_report(rows: &[Row]) {
    println!(
        "{:<70} {:>12} {:>12} {:>10}",
        "metric", "etcd", "embedded", "emb/etcd"
    );
    for r in rows {
        let ratio = if r.etcd > 0.0 {
            format!("{:.2}", r.embedded / r.etcd)
        } else {
            "-".into()
        };
        println!(
            "{:<70} {:>12} {:>12} {:>10}",
            format!("{} ({})", r.name, r.unit),
            fmt(r.etcd),
            fmt(r.embedded),
            ratio
        );
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Latencies of one phase and how long it ran.
struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Sample {
    fn new(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        Self { latencies, elapsed }
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The `q` quantile by nearest rank.
    fn latency(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn ms(&self, q: f64) -> f64 {
        self.latency(q).as_secs_f64() * 1e3
    }
}

struct Fanout {
    /// Per update: from sending the update to the last watcher receiving it.
    all: Sample,
    /// Per watcher and update: from sending the update to that watcher receiving it.
    each: Sample,
}

/// One server as seen by the benchmark: where it is and how to open connections to it.
struct Target {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

#[derive(Clone)]
struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

struct Reply {
    status: u16,
    body: Bytes,
}

impl Target {
    fn new(server: &Server) -> BenchResult<Self> {
        let read = |p: &str| {
            std::fs::read(server.data_dir.join("pki").join(p)).map_err(|e| format!("{p}: {e}"))
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&read("ca.crt")?) {
            roots
                .add(cert.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let chain = CertificateDer::pem_slice_iter(&read("admin.crt")?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_slice(&read("admin.key")?).map_err(|e| e.to_string())?;
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
        tls.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            addr: server.addr,
            tls: Arc::new(tls),
        })
    }

    /// A new HTTP/2 connection; requests on it share it (multiplexed streams).
    async fn connect(&self) -> BenchResult<Conn> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(ServerName::IpAddress(self.addr.ip().into()), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(Conn {
            addr: self.addr,
            sender,
        })
    }

    async fn ensure_namespace(&self, name: &str) -> BenchResult<()> {
        let mut c = self.connect().await?;
        let body =
            format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{name}"}}}}"#);
        let r = c
            .send("POST", "/api/v1/namespaces", JSON, Some(body))
            .await?;
        match r.status {
            201 | 409 => Ok(()),
            s => Err(format!("create namespace {name}: {s}: {}", r.text())),
        }
    }

    /// `clients` connections each creating configmaps one after another for `phase`.
    async fn create_configmaps(
        &self,
        clients: usize,
        phase: Duration,
        tag: &'static str,
    ) -> BenchResult<Sample> {
        self.drive(clients, phase, move |client, i| {
            let body = format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{tag}-{client}-{i}"}},"data":{{"key":"{}"}}}}"#,
                "v".repeat(256)
            );
            ("POST", "/api/v1/namespaces/bench/configmaps".to_string(), Some(body), 201)
        })
        .await
    }

    async fn get_configmap(&self, clients: usize, phase: Duration) -> BenchResult<Sample> {
        self.drive(clients, phase, |_, _| {
            (
                "GET",
                "/api/v1/namespaces/bench/configmaps/cm-s-0-0".to_string(),
                None,
                200,
            )
        })
        .await
    }

    /// Runs `clients` loops of requests made by `make(client, i)` for `phase`, each on its own
    /// connection, and gathers their latencies.
    async fn drive<F>(&self, clients: usize, phase: Duration, make: F) -> BenchResult<Sample>
    where
        F: Fn(usize, usize) -> (&'static str, String, Option<String>, u16) + Clone + Send + 'static,
    {
        let mut conns = Vec::new();
        for _ in 0..clients {
            conns.push(self.connect().await?);
        }
        let start = Instant::now();
        let deadline = start + phase;
        let mut tasks = Vec::new();
        for (client, mut conn) in conns.into_iter().enumerate() {
            let make = make.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0;
                while Instant::now() < deadline {
                    let (method, path, body, want) = make(client, i);
                    let t = Instant::now();
                    let r = conn.send(method, &path, JSON, body).await?;
                    latencies.push(t.elapsed());
                    if r.status != want {
                        return Err(format!("{method} {path}: {}: {}", r.status, r.text()));
                    }
                    i += 1;
                }
                Ok::<_, String>(latencies)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.map_err(|e| e.to_string())??);
        }
        Ok(Sample::new(all, start.elapsed()))
    }

    async fn create_pods(&self, count: usize) -> BenchResult<()> {
        let mut tasks = Vec::new();
        for client in 0..CONCURRENT {
            let mut conn = self.connect().await?;
            tasks.push(tokio::spawn(async move {
                for i in (client..count).step_by(CONCURRENT) {
                    let r = conn
                        .send(
                            "POST",
                            "/api/v1/namespaces/list/pods",
                            JSON,
                            Some(pod(&format!("pod-{i}"))),
                        )
                        .await?;
                    if r.status != 201 {
                        return Err(format!("create pod-{i}: {}: {}", r.status, r.text()));
                    }
                }
                Ok::<_, String>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    }

    /// `times` lists of the pods in namespace "list", one after another on one connection.
    async fn list_pods(&self, accept: &str, times: usize) -> BenchResult<Sample> {
        let mut conn = self.connect().await?;
        let path = "/api/v1/namespaces/list/pods";
        let probe = conn.send("GET", path, accept, None).await?;
        let items = count_items(&probe, accept)?;
        if items != LIST_PODS {
            return Err(format!("list as {accept}: {items} items, want {LIST_PODS}"));
        }
        let start = Instant::now();
        let mut latencies = Vec::with_capacity(times);
        for _ in 0..times {
            let t = Instant::now();
            let r = conn.send("GET", path, accept, None).await?;
            latencies.push(t.elapsed());
            if r.status != 200 {
                return Err(format!("list: {}: {}", r.status, r.text()));
            }
        }
        Ok(Sample::new(latencies, start.elapsed()))
    }

    /// Opens `WATCHERS` watches on the pods of namespace "watch", then updates one pod
    /// `updates` times, each time waiting until every watcher received the event.
    async fn watch_fanout(&self, updates: usize) -> BenchResult<Fanout> {
        let mut writer = self.connect().await?;
        let r = writer
            .send(
                "POST",
                "/api/v1/namespaces/watch/pods",
                JSON,
                Some(pod("target")),
            )
            .await?;
        if r.status != 201 && r.status != 409 {
            return Err(format!(
                "create the watched pod: {}: {}",
                r.status,
                r.text()
            ));
        }
        let r = writer
            .send("GET", "/api/v1/namespaces/watch/pods", JSON, None)
            .await?;
        let rv = serde_json::from_slice::<serde_json::Value>(&r.body)
            .map_err(|e| e.to_string())?
            .pointer("/metadata/resourceVersion")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or("no resourceVersion in the list")?;
        let watch_path = format!("/api/v1/namespaces/watch/pods?watch=true&resourceVersion={rv}");

        let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
        let mut conns = Vec::new();
        for _ in 0..WATCHERS.div_ceil(STREAMS_PER_CONN) {
            conns.push(self.connect().await?);
        }
        let mut watchers = Vec::new();
        for w in 0..WATCHERS {
            let mut conn = conns[w / STREAMS_PER_CONN].clone();
            let path = watch_path.clone();
            let tx = tx.clone();
            watchers.push(tokio::spawn(async move {
                let resp = conn.open(&path).await?;
                if resp.status() != 200 {
                    return Err(format!("watch: {}", resp.status()));
                }
                let mut body = resp.into_body();
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| e.to_string())?;
                    if let Some(data) = frame.data_ref() {
                        let now = Instant::now();
                        // One event per line; a frame may hold several or a part of one.
                        for _ in data.iter().filter(|b| **b == b'\n') {
                            if tx.send(now).is_err() {
                                return Ok(());
                            }
                        }
                    }
                }
                Ok::<_, String>(())
            }));
        }
        drop(tx);

        let mut all = Vec::new();
        let mut each = Vec::new();
        // The first update is a warm-up: once every watcher saw it, all streams are live.
        for round in 0..=updates {
            let patch = format!(r#"{{"metadata":{{"labels":{{"round":"r{round}"}}}}}}"#);
            let sent = Instant::now();
            let r = writer
                .send_typed(
                    "PATCH",
                    "/api/v1/namespaces/watch/pods/target",
                    "application/merge-patch+json",
                    Some(patch),
                )
                .await?;
            if r.status != 200 {
                return Err(format!(
                    "update the watched pod: {}: {}",
                    r.status,
                    r.text()
                ));
            }
            let limit = Duration::from_secs(if round == 0 { 120 } else { 30 });
            let mut last = sent;
            for got in 0..WATCHERS {
                let at = tokio::time::timeout(limit.saturating_sub(sent.elapsed()), rx.recv())
                    .await
                    .map_err(|_| {
                        format!("round {round}: only {got} of {WATCHERS} watchers got the update")
                    })?
                    .ok_or("every watch stream ended")?;
                last = last.max(at);
                if round > 0 {
                    each.push(at.saturating_duration_since(sent));
                }
            }
            if round > 0 {
                all.push(last.saturating_duration_since(sent));
            }
        }
        for w in watchers {
            w.abort();
        }
        let elapsed = Duration::ZERO;
        Ok(Fanout {
            all: Sample::new(all, elapsed),
            each: Sample::new(each, elapsed),
        })
    }
}

impl Conn {
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        accept: &str,
        body: Option<String>,
    ) -> BenchResult<Reply> {
        self.send_typed_accept(method, path, JSON, accept, body)
            .await
    }

    async fn send_typed(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<String>,
    ) -> BenchResult<Reply> {
        self.send_typed_accept(method, path, content_type, JSON, body)
            .await
    }

    async fn send_typed_accept(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        accept: &str,
        body: Option<String>,
    ) -> BenchResult<Reply> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.addr))
            .header(http::header::ACCEPT, accept);
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, content_type);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{method} {path} body: {e}"))?
            .to_bytes();
        Ok(Reply { status, body })
    }

    /// Starts a streaming GET and returns once the headers arrived.
    async fn open(&mut self, path: &str) -> BenchResult<http::Response<hyper::body::Incoming>> {
        let req = http::Request::builder()
            .method("GET")
            .uri(format!("https://{}{path}", self.addr))
            .header(http::header::ACCEPT, JSON)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        self.sender
            .send_request(req)
            .await
            .map_err(|e| format!("watch {path}: {e}"))
    }
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How many objects a list answer holds: `items` for JSON, `rows` for a Table.
fn count_items(reply: &Reply, accept: &str) -> BenchResult<usize> {
    if reply.status != 200 {
        return Err(format!("list: {}: {}", reply.status, reply.text()));
    }
    let v: serde_json::Value = serde_json::from_slice(&reply.body).map_err(|e| e.to_string())?;
    let field = if accept == TABLE { "rows" } else { "items" };
    v.get(field)
        .and_then(|a| a.as_array())
        .map(Vec::len)
        .ok_or_else(|| format!("list as {accept}: no {field} array"))
}

fn pod(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{"app":"bench"}}}},"spec":{{"containers":[{{"name":"main","image":"registry.local/busybox:1","command":["sleep","3600"]}}]}}}}"#
    )
}
