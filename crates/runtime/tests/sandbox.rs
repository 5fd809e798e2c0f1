//! Pod sandboxes against the real thing: Debian's CNI plugins, bind-mounted namespaces,
//! iptables (portmap). Root only. Every test has its own bridge, netns prefix, /24 in
//! 10.244.0.0/16, IPAM dataDir and state dir, and a guard that removes all of it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flotilla_runtime::cri::{
    DnsConfig, PodSandbox, PodSandboxConfig, PortMapping, Protocol, RuntimeError, SandboxState,
};
use flotilla_runtime::network::{connect_in_netns, namespaces, NetworkConfig, Sandboxes};
use flotilla_runtime::SandboxRuntime;
use testkit::{free_port, unique_name, unique_subnet, wait_for, SubnetLease};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);

/// One test node's network: everything machine-global is unique, and dropping it removes
/// every sandbox (CNI DEL frees IPs and portmap rules), leftover namespaces, the bridge.
struct Node {
    config: NetworkConfig,
    subnet: SubnetLease,
    _dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Self::with_cidr(|lease| lease.cidr())
    }

    fn with_cidr(pod_cidr: impl FnOnce(&SubnetLease) -> String) -> Node {
        let subnet = unique_subnet();
        let dir = tempfile::tempdir().unwrap();
        let config = NetworkConfig {
            root: dir.path().join("sandboxes"),
            cni_bin_dir: "/usr/lib/cni".into(),
            cni_data_dir: dir.path().join("cni"),
            pod_cidr: pod_cidr(&subnet),
            bridge: unique_name("flsb"),
            netns_prefix: format!("{}-", unique_name("flsb")),
            mtu: None,
            cluster_cidr: None,
            service_cidr: None,
            cluster_domain: "cluster.local".into(),
        };
        Node {
            config,
            subnet,
            _dir: dir,
        }
    }

    fn sandboxes(&self) -> Sandboxes {
        Sandboxes::new(self.config.clone()).unwrap()
    }

    fn veths(&self) -> usize {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.config.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    fn ipam_file(&self, ip: IpAddr) -> PathBuf {
        self.config
            .cni_data_dir
            .join("flotilla")
            .join(ip.to_string())
    }

    fn netns_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&self.config.netns_prefix)
                    })
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut config = self.config.clone();
        config.cluster_cidr = None;
        config.service_cidr = None;
        // A runtime of its own: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(s) = Sandboxes::new(config) {
                    for sb in s.list_pod_sandboxes().await.unwrap_or_default() {
                        if let Err(e) = s.remove_pod_sandbox(&sb.id).await {
                            eprintln!("cleanup of sandbox {}: {e}", sb.id);
                        }
                    }
                }
            });
        })
        .join();
        for ns in self.netns_files() {
            let _ = namespaces::remove(&ns);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.config.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

/// A process killed and reaped when the test ends, pass or fail.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// busybox httpd serving `body` at `/` on `listen` (`PORT` or `IP:PORT`) in `netns`.
fn serve_in(netns: &Path, listen: &str, body: &str) -> (Proc, tempfile::TempDir) {
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), body).unwrap();
    let child = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["/bin/busybox", "httpd", "-f", "-p", listen, "-h"])
        .arg(www.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Proc(child), www)
}

fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Waits until `addr` serves a page containing `want`.
fn wait_http(addr: SocketAddr, want: &str) -> String {
    wait_for(WAIT, || http_get(addr).ok().filter(|b| b.contains(want)))
        .unwrap_or_else(|| panic!("{addr} never served {want:?}"))
}

fn pod(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        pod_uid: format!("{}-{name}", unique_name("uid")),
        namespace: "default".into(),
        name: name.into(),
        hostname: name.into(),
        subdomain: None,
        host_network: false,
        port_mappings: vec![],
        dns: DnsConfig {
            servers: vec!["10.43.0.10".into()],
            searches: vec!["default.svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into()],
        },
        host_aliases: vec![],
        cgroup_parent: format!("flotilla-test-{}", unique_name("pod")),
        labels: BTreeMap::from([("app".into(), name.into())]),
    }
}

fn netns_of(sb: &PodSandbox) -> &Path {
    sb.netns_path.as_deref().unwrap()
}

fn ns_inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

fn iptables_nat() -> String {
    let out = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn sandbox_lifecycle_network_namespaces_and_files() {
    let node = Node::new();
    let sandboxes = node.sandboxes();
    let mut config = pod("web");
    config.subdomain = Some("nginx".into());
    config.host_aliases = vec![("10.1.2.3".into(), vec!["foo.local".into()])];

    let started = std::time::Instant::now();
    let sb = sandboxes.run_pod_sandbox(&config).await.unwrap();
    eprintln!("one sandbox: {:?}", started.elapsed());
    assert_eq!(sb.state, SandboxState::Ready);
    assert_eq!(sb.pod_uid, config.pod_uid);
    assert_eq!(sb.labels, config.labels);
    let ip = sb.ips[0];
    let IpAddr::V4(v4) = ip else { panic!("{ip}") };
    assert_eq!(v4.octets()[..3], [10, 244, node.subnet.octet()]);
    assert_ne!(v4, node.subnet.gateway());
    assert!(namespaces::is_mounted_ns(netns_of(&sb)));
    assert_eq!(node.veths(), 1, "one veth on the bridge");
    assert!(node.ipam_file(ip).exists());

    // Own IPC and UTS namespaces, the pod's hostname inside.
    for (path, kind) in [(&sb.ipc_ns_path, "ipc"), (&sb.uts_ns_path, "uts")] {
        let path = path.as_deref().unwrap();
        assert!(namespaces::is_mounted_ns(path), "{kind}");
        assert_ne!(
            ns_inode(path),
            ns_inode(&Path::new("/proc/self/ns").join(kind))
        );
    }
    let out = Command::new("nsenter")
        .arg(format!(
            "--uts={}",
            sb.uts_ns_path.as_deref().unwrap().display()
        ))
        .arg("hostname")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "web");

    // The host reaches the pod on its IP; the pod reaches itself on loopback.
    let (_httpd, _www) = serve_in(netns_of(&sb), "8080", "hello-from-web");
    wait_http(SocketAddr::new(ip, 8080), "hello-from-web");
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns_of(&sb).display()))
        .args([
            "timeout",
            "3",
            "/bin/busybox",
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-from-web");

    // /etc files.
    let hosts = std::fs::read_to_string(&sb.hosts_path).unwrap();
    assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
    assert!(
        hosts.contains(&format!("{ip}\tweb.nginx.default.svc.cluster.local\tweb\n")),
        "{hosts}"
    );
    assert!(hosts.ends_with("# Entries added by HostAliases.\n10.1.2.3\tfoo.local\n"));
    assert_eq!(std::fs::read_to_string(&sb.hostname_path).unwrap(), "web\n");
    assert_eq!(
        std::fs::read_to_string(&sb.resolv_conf_path).unwrap(),
        "nameserver 10.43.0.10\nsearch default.svc.cluster.local cluster.local\noptions ndots:5\n"
    );

    // Running it again returns the same sandbox.
    let again = sandboxes.run_pod_sandbox(&config).await.unwrap();
    assert_eq!(again, sb);
    assert_eq!(node.veths(), 1);
    assert_eq!(
        sandboxes.list_pod_sandboxes().await.unwrap(),
        vec![sb.clone()]
    );

    // A pod cgroup (runc would have made it) goes with the sandbox.
    let cgroup = Path::new("/sys/fs/cgroup/pids").join(&config.cgroup_parent);
    let made_cgroup = std::fs::create_dir_all(&cgroup).is_ok();

    // Stop releases the network and keeps the record; twice is fine.
    sandboxes.stop_pod_sandbox(&sb.id).await.unwrap();
    sandboxes.stop_pod_sandbox(&sb.id).await.unwrap();
    let stopped = sandboxes.pod_sandbox_status(&sb.id).await.unwrap();
    assert_eq!(stopped.state, SandboxState::NotReady);
    assert!(stopped.ips.is_empty());
    assert_eq!(node.veths(), 0, "stop removes the veth");
    assert!(!node.ipam_file(ip).exists(), "stop releases the IP");

    // Remove takes the rest; twice is fine.
    sandboxes.remove_pod_sandbox(&sb.id).await.unwrap();
    sandboxes.remove_pod_sandbox(&sb.id).await.unwrap();
    assert!(node.netns_files().is_empty());
    assert!(!node.config.root.join(&sb.id).exists());
    assert!(sandboxes.list_pod_sandboxes().await.unwrap().is_empty());
    assert!(matches!(
        sandboxes.pod_sandbox_status(&sb.id).await,
        Err(RuntimeError::NotFound(_))
    ));
    if made_cgroup {
        assert!(!cgroup.exists(), "the pod cgroup is removed");
    }
}

#[tokio::test]
async fn host_port_is_mapped_and_its_rules_removed() {
    let node = Node::new();
    let sandboxes = node.sandboxes();
    let host_port = free_port();
    let mut config = pod("hp");
    config.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp,
        container_port: 8080,
        host_port,
        host_ip: None,
    }];
    let sb = sandboxes.run_pod_sandbox(&config).await.unwrap();
    let (_httpd, _www) = serve_in(netns_of(&sb), "8080", "hello-hostport");
    wait_http(SocketAddr::new(sb.ips[0], 8080), "hello-hostport");
    assert!(
        iptables_nat().contains(&sb.id),
        "portmap rules name the sandbox"
    );

    // From the host through its own address on the pod bridge, and through loopback
    // (portmap sets route_localnet on the bridge and masquerades 127.0.0.1 sources).
    let gateway = IpAddr::V4(node.subnet.gateway());
    wait_http(SocketAddr::new(gateway, host_port), "hello-hostport");
    wait_http(
        SocketAddr::from(([127, 0, 0, 1], host_port)),
        "hello-hostport",
    );

    sandboxes.remove_pod_sandbox(&sb.id).await.unwrap();
    assert!(!iptables_nat().contains(&sb.id), "portmap rules are gone");
    assert_eq!(node.veths(), 0);
    assert!(node.netns_files().is_empty());
    assert!(!node.ipam_file(sb.ips[0]).exists());
}

#[tokio::test]
async fn restarted_runtime_lists_and_removes_what_the_old_one_made() {
    let node = Node::new();
    let (first, second) = {
        let old = node.sandboxes();
        let first = old.run_pod_sandbox(&pod("one")).await.unwrap();
        let mut host = pod("two");
        host.host_network = true;
        let second = old.run_pod_sandbox(&host).await.unwrap();
        (first, second)
    };
    let new = node.sandboxes();
    let listed = new.list_pod_sandboxes().await.unwrap();
    assert_eq!(listed, vec![first.clone(), second.clone()]);
    assert_eq!(new.pod_sandbox_status(&first.id).await.unwrap(), first);
    assert_eq!(node.veths(), 1);

    for sb in &listed {
        new.remove_pod_sandbox(&sb.id).await.unwrap();
    }
    assert!(new.list_pod_sandboxes().await.unwrap().is_empty());
    assert_eq!(node.veths(), 0);
    assert!(node.netns_files().is_empty());
    assert!(!node.ipam_file(first.ips[0]).exists());
    assert!(!namespaces::is_mounted_ns(
        second.uts_ns_path.as_deref().unwrap()
    ));
}

#[tokio::test]
async fn host_network_sandbox_shares_the_node_network() {
    let node = Node::new();
    let sandboxes = node.sandboxes();
    let mut config = pod("hostnet");
    config.host_network = true;
    config.dns = DnsConfig::default();
    let sb = sandboxes.run_pod_sandbox(&config).await.unwrap();
    assert_eq!(sb.state, SandboxState::Ready);
    assert_eq!(sb.netns_path, None);
    assert!(sb.ips.is_empty());
    assert_eq!(node.veths(), 0);

    let node_name = nix::unistd::gethostname().unwrap();
    let node_name = node_name.to_string_lossy();
    assert_eq!(
        std::fs::read_to_string(&sb.hostname_path).unwrap(),
        format!("{node_name}\n")
    );
    let out = Command::new("nsenter")
        .arg(format!(
            "--uts={}",
            sb.uts_ns_path.as_deref().unwrap().display()
        ))
        .arg("hostname")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), node_name);
    let hosts = std::fs::read_to_string(&sb.hosts_path).unwrap();
    assert!(hosts.starts_with("# Kubernetes-managed hosts file (host network).\n"));
    assert!(hosts.contains(&std::fs::read_to_string("/etc/hosts").unwrap()));
    let resolv = std::fs::read_to_string(&sb.resolv_conf_path).unwrap();
    let node_servers: Vec<_> = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .map(String::from)
        .take(3)
        .collect();
    for server in node_servers {
        assert!(resolv.contains(&server), "{resolv}");
    }
    sandboxes.remove_pod_sandbox(&sb.id).await.unwrap();
    assert!(!node.config.root.join(&sb.id).exists());
}

#[tokio::test]
async fn connect_in_netns_reaches_the_pods_loopback() {
    let node = Node::new();
    let sandboxes = node.sandboxes();
    let sb = sandboxes.run_pod_sandbox(&pod("pf")).await.unwrap();
    let (_httpd, _www) = serve_in(netns_of(&sb), "127.0.0.1:8081", "inside-only");

    let reply = testkit::wait_for_async(WAIT, || async {
        let mut s = connect_in_netns(netns_of(&sb), 8081).await.ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    })
    .await
    .expect("connect_in_netns never reached the listener");
    assert!(reply.contains("inside-only"), "{reply}");
    // Bound to the pod's loopback: not reachable on the pod IP from outside.
    assert!(http_get(SocketAddr::new(sb.ips[0], 8081)).is_err());
    // And the namespace switch stayed on its own thread: this process is still on the host.
    assert_ne!(
        ns_inode(netns_of(&sb)),
        ns_inode(Path::new("/proc/self/ns/net"))
    );
    sandboxes.remove_pod_sandbox(&sb.id).await.unwrap();
}

#[tokio::test]
async fn failed_cni_add_leaves_nothing_behind() {
    // A /30 has one address for pods (.1 is the bridge): the second pod cannot get one.
    let node = Node::with_cidr(|lease| format!("10.244.{}.0/30", lease.octet()));
    let sandboxes = node.sandboxes();
    let first = sandboxes.run_pod_sandbox(&pod("first")).await.unwrap();
    let err = sandboxes.run_pod_sandbox(&pod("second")).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::Cni { .. }),
        "expected a CNI error, got {err}"
    );
    let listed = sandboxes.list_pod_sandboxes().await.unwrap();
    assert_eq!(listed, vec![first.clone()]);
    assert_eq!(node.netns_files(), vec![first.netns_path.clone().unwrap()]);
    assert_eq!(node.veths(), 1);
    sandboxes.remove_pod_sandbox(&first.id).await.unwrap();
}

#[tokio::test]
async fn bad_input_is_rejected_with_typed_errors() {
    let node = Node::new();
    for mutate in [
        (|c: &mut NetworkConfig| c.pod_cidr = "10.244.0.0/33".into()) as fn(&mut NetworkConfig),
        |c| c.bridge = "a-bridge-name-too-long".into(),
        |c| c.netns_prefix = "../escape".into(),
        |c| c.cluster_cidr = Some("nonsense".into()),
        |c| c.cni_bin_dir = "/nonexistent".into(),
    ] {
        let mut config = node.config.clone();
        mutate(&mut config);
        assert!(Sandboxes::new(config).is_err());
    }
    let sandboxes = node.sandboxes();
    let mut bad = pod("bad");
    bad.hostname = "not a hostname".into();
    assert!(matches!(
        sandboxes.run_pod_sandbox(&bad).await,
        Err(RuntimeError::Invalid { .. })
    ));
    let mut bad = pod("bad");
    bad.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp,
        container_port: 80,
        host_port: 0,
        host_ip: None,
    }];
    assert!(matches!(
        sandboxes.run_pod_sandbox(&bad).await,
        Err(RuntimeError::Invalid { .. })
    ));
    assert!(sandboxes.list_pod_sandboxes().await.unwrap().is_empty());
    assert!(node.netns_files().is_empty());
    // Unknown and malformed IDs: stop and remove succeed, status is NotFound.
    for id in ["0".repeat(64), "../../etc".to_string()] {
        sandboxes.stop_pod_sandbox(&id).await.unwrap();
        sandboxes.remove_pod_sandbox(&id).await.unwrap();
        assert!(matches!(
            sandboxes.pod_sandbox_status(&id).await,
            Err(RuntimeError::NotFound(_))
        ));
    }
}

/// Deletes the test's routes however the test ends.
struct Routes(Vec<(&'static str, String)>);

impl Drop for Routes {
    fn drop(&mut self) {
        for (kind, cidr) in &self.0 {
            let _ = Command::new("ip")
                .args(["route", "del", kind, cidr])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn route(args: &[&str]) -> String {
    let out = Command::new("ip").arg("route").args(args).output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn cluster_and_service_cidrs_get_unreachable_routes() {
    let service = unique_subnet();
    // The node's /24 stands for the cluster CIDR; its pod CIDR is the lower half.
    let node = Node::with_cidr(|lease| format!("10.244.{}.0/25", lease.octet()));
    let cluster = node.subnet.cidr();
    let _routes = Routes(vec![
        ("unreachable", cluster.clone()),
        ("unreachable", service.cidr()),
        ("blackhole", service.cidr()),
    ]);
    // Someone else's route for exactly the service CIDR is left alone, and stays first.
    assert!(Command::new("ip")
        .args(["route", "add", "blackhole", &service.cidr()])
        .status()
        .unwrap()
        .success());

    let mut config = node.config.clone();
    config.cluster_cidr = Some(cluster.clone());
    config.service_cidr = Some(service.cidr());
    Sandboxes::new(config.clone()).unwrap();
    let sandboxes = Sandboxes::new(config).unwrap();
    assert!(route(&["show", "exact", &cluster]).starts_with(&format!("unreachable {cluster}")));
    assert!(route(&["show", "exact", &service.cidr()]).starts_with("blackhole"));

    // The pod CIDR on the bridge is more specific, so pods stay reachable; the rest of the
    // cluster CIDR fails at once instead of taking the default route.
    let sb = sandboxes.run_pod_sandbox(&pod("rt")).await.unwrap();
    let via = route(&["get", &sb.ips[0].to_string()]);
    assert!(
        via.contains(&format!("dev {}", node.config.bridge)),
        "{via}"
    );
    let other = format!("10.244.{}.200", node.subnet.octet());
    let err = TcpStream::connect_timeout(
        &SocketAddr::new(other.parse().unwrap(), 80),
        Duration::from_secs(2),
    )
    .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EHOSTUNREACH), "{err}");
    sandboxes.remove_pod_sandbox(&sb.id).await.unwrap();
}

#[tokio::test]
async fn parallel_sandboxes_get_distinct_ips_and_leave_nothing_behind() {
    let node = Node::new();
    let sandboxes = node.sandboxes();
    let configs: Vec<PodSandboxConfig> = (0..12).map(|i| pod(&format!("par{i}"))).collect();
    let started = std::time::Instant::now();
    let made = futures::future::join_all(configs.iter().map(|c| sandboxes.run_pod_sandbox(c)))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    eprintln!("12 sandboxes in parallel: {:?}", started.elapsed());
    let mut ips: Vec<IpAddr> = made.iter().map(|s| s.ips[0]).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 12, "every pod has its own IP");
    assert_eq!(node.veths(), 12);
    assert_eq!(node.netns_files().len(), 12);

    futures::future::join_all(made.iter().map(|s| sandboxes.remove_pod_sandbox(&s.id)))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(node.veths(), 0);
    assert!(node.netns_files().is_empty());
    for ip in ips {
        assert!(!node.ipam_file(ip).exists(), "{ip} still allocated");
    }
    assert!(sandboxes.list_pod_sandboxes().await.unwrap().is_empty());
}

#[tokio::test]
async fn lost_namespace_is_reported_not_ready_and_rebuilt() {
    let node = Node::new();
    let sandboxes = node.sandboxes();
    let config = pod("lost");
    let sb = sandboxes.run_pod_sandbox(&config).await.unwrap();
    // As after `ip netns del`, or a reboot that emptied /run.
    namespaces::remove(netns_of(&sb)).unwrap();
    let seen = sandboxes.pod_sandbox_status(&sb.id).await.unwrap();
    assert_eq!(seen.state, SandboxState::NotReady);
    assert_eq!(
        sandboxes.list_pod_sandboxes().await.unwrap()[0].state,
        SandboxState::NotReady
    );

    let rebuilt = sandboxes.run_pod_sandbox(&config).await.unwrap();
    assert_eq!(rebuilt.id, sb.id);
    assert_eq!(rebuilt.state, SandboxState::Ready);
    assert!(namespaces::is_mounted_ns(netns_of(&rebuilt)));
    // The kernel tears a deleted namespace (and its veth) down asynchronously.
    let veths = wait_for(WAIT, || (node.veths() == 1).then_some(()));
    assert!(
        veths.is_some(),
        "the old veth did not die with its namespace: {} veths",
        node.veths()
    );
    let allocated: Vec<_> = std::fs::read_dir(node.config.cni_data_dir.join("flotilla"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("10.244."))
        .collect();
    assert_eq!(allocated.len(), 1, "the old IP was released: {allocated:?}");
    sandboxes.remove_pod_sandbox(&rebuilt.id).await.unwrap();
    assert!(node.netns_files().is_empty());
}
