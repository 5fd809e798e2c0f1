//! The node agent end to end (root): registration with real machine figures, Ready
//! conditions, the Lease heartbeat, `kubectl get nodes`, joining with the k3s-style token,
//! and an agent SIGKILLed and restarted that keeps its Node Ready.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::cluster::node_condition;
use support::{AgentMode, Cluster, ClusterOptions, Server};

fn lease(cluster: &Cluster) -> Option<Value> {
    let r = cluster
        .server
        .admin_client()
        .get(&format!(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{}",
            cluster.node_name
        ))
        .ok()?;
    (r.status == 200).then(|| r.json())
}

/// Creates a pod that sleeps, bound to no node (kubectl's trailing flags must not reach
/// its argv, so no `kubectl run -- ARGS`).
fn create_sleeper(cluster: &Cluster, name: &str) {
    create_sleeper_tolerating(cluster, name, serde_json::json!([]));
}

/// [`create_sleeper`] with these tolerations.
fn create_sleeper_tolerating(cluster: &Cluster, name: &str, tolerations: Value) {
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "tolerations": tolerations,
                 "containers": [{"name": "c", "image": cluster.image, "command": ["sleep", "3600"]}]}
    });
    cluster
        .kubectl("1.33")
        .stdin(pod.to_string())
        .run(&["create", "-f", "-"])
        .expect_success("create pod");
}

fn quantity_number(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_default();
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().unwrap_or(0);
    match &s[digits.len()..] {
        "Ki" => n * 1024,
        "Mi" => n << 20,
        "Gi" => n << 30,
        "" => n,
        other => panic!("unexpected quantity suffix {other:?} in {s:?}"),
    }
}

/// The node the pod is bound to, once it is (within 30 s).
fn wait_bound(cluster: &Cluster, pod: &str) -> Option<String> {
    testkit::wait_for(Duration::from_secs(30), || {
        let out = cluster.kubectl_run(
            "1.33",
            &["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"],
        );
        let node = out.expect_success("get pod").trim().to_string();
        (!node.is_empty()).then_some(node)
    })
}

/// Waits until the Lease's renewTime differs from `before`; returns the new one.
fn wait_lease_renewed(cluster: &Cluster, before: &str) -> String {
    testkit::wait_for(Duration::from_secs(30), || {
        let t = lease(cluster)?["spec"]["renewTime"].as_str()?.to_string();
        (t != before).then_some(t)
    })
    .unwrap_or_else(|| {
        panic!(
            "the lease was not renewed after {before}\n{}",
            cluster.agent_log()
        )
    })
}

/// The STATUS, ROLES and VERSION columns of the node's row in `kubectl get nodes`.
fn get_nodes_row(cluster: &Cluster, version: &str) -> Vec<String> {
    let out = cluster.kubectl_run(version, &["get", "nodes"]);
    let stdout = out.expect_success("kubectl get nodes");
    let header: Vec<&str> = stdout.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(cluster.node_name.as_str()))
        .unwrap_or_else(|| panic!("no row for {} in\n{stdout}", cluster.node_name));
    row.split_whitespace().map(str::to_string).collect()
}

/// Percent of the filesystem holding `dir` that is free, as `df` reports it.
fn free_percent(dir: &std::path::Path) -> f64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=size,avail"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let figures: Vec<f64> = text
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("df printed {text:?}"))
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    figures[1] * 100.0 / figures[0]
}

#[test]
fn a_joined_node_registers_ready_renews_its_lease_and_survives_an_agent_kill() {
    // The host's disk may be nearly full (CI's often is): judge it against a threshold well
    // under its free share, so that the condition reflects the flag, not the machine.
    let nodefs = (free_percent(&std::env::temp_dir()) / 2.0).floor();
    let mut cluster = Cluster::start_with(ClusterOptions {
        agent_args: vec![format!(
            "--eviction-hard=memory.available<100Mi,nodefs.available<{nodefs}%,pid.available<10%"
        )],
        ..ClusterOptions::default()
    });
    let node = cluster.wait_node_ready(Duration::from_secs(5));

    // Capacity from the machine; allocatable a little less.
    let st = &node["status"];
    let cpus = quantity_number(&st["capacity"]["cpu"]);
    let nproc = std::thread::available_parallelism().unwrap().get() as u64;
    assert!(cpus >= 1 && cpus <= nproc, "cpu {cpus} vs {nproc} CPUs");
    let memory = quantity_number(&st["capacity"]["memory"]);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kib: u64 = meminfo
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(memory, total_kib * 1024);
    assert!(quantity_number(&st["allocatable"]["memory"]) < memory);
    assert_eq!(st["capacity"]["pods"], "110");
    let storage = quantity_number(&st["capacity"]["ephemeral-storage"]);
    assert!(storage > 1 << 20, "ephemeral-storage {storage}");
    assert!(quantity_number(&st["allocatable"]["ephemeral-storage"]) < storage);

    let info = &st["nodeInfo"];
    assert_eq!(info["kubeletVersion"], "v1.33.0-flotilla");
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("runc://1."),
        "{info}"
    );
    assert_eq!(info["operatingSystem"], "linux");
    assert_eq!(
        info["bootID"].as_str().unwrap(),
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap()
            .trim()
    );
    assert!(!info["kernelVersion"].as_str().unwrap().is_empty());
    assert!(!info["osImage"].as_str().unwrap().is_empty());
    let addresses = st["addresses"].as_array().unwrap();
    assert!(addresses
        .iter()
        .any(|a| a["type"] == "InternalIP" && a["address"] == "127.0.0.1"));
    assert!(addresses
        .iter()
        .any(|a| a["type"] == "Hostname" && a["address"] == cluster.node_name.as_str()));
    let port = st["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap();
    assert!(
        port > 0,
        "the node server's real port, not the flag's 0: {st}"
    );
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        cluster.node_name.as_str()
    );
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert!(node["metadata"]["labels"]
        .get("node-role.kubernetes.io/control-plane")
        .is_none());
    assert_eq!(node["spec"]["podCIDR"], cluster.pod_cidr.as_str());
    for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = node_condition(&node, t).unwrap_or_else(|| panic!("no {t} in {st}"));
        assert_eq!(c["status"], "False", "{c}");
    }
    let ready = node_condition(&node, "Ready").unwrap().clone();
    assert_eq!(ready["reason"], "KubeletReady");

    // The Lease: held by the node, owned by the Node, renewed.
    let l = testkit::wait_for(Duration::from_secs(15), || lease(&cluster))
        .unwrap_or_else(|| panic!("no lease\n{}", cluster.agent_log()));
    assert_eq!(l["spec"]["holderIdentity"], cluster.node_name.as_str());
    assert_eq!(l["spec"]["leaseDurationSeconds"], 40);
    let owner = &l["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Node");
    assert_eq!(owner["uid"], node["metadata"]["uid"]);
    let first = l["spec"]["renewTime"].as_str().unwrap().to_string();
    let renewed = wait_lease_renewed(&cluster, &first);

    // The agent says it started, on the Node's events.
    let events = testkit::wait_for(Duration::from_secs(15), || {
        let out = cluster.kubectl_run(
            "1.33",
            &[
                "get",
                "events",
                "-A",
                "--field-selector",
                &format!(
                    "involvedObject.kind=Node,involvedObject.name={}",
                    cluster.node_name
                ),
                "-o",
                "jsonpath={.items[*].reason}",
            ],
        );
        let reasons = out.expect_success("get events").to_string();
        reasons.contains("Starting").then_some(reasons)
    });
    assert!(events.is_some(), "no Starting event for the node");

    // kubectl at both ends of the supported range shows it Ready.
    for v in ["1.29", "1.33"] {
        let row = get_nodes_row(&cluster, v);
        assert_eq!(row[1], "Ready", "kubectl {v}: {row:?}");
        assert_eq!(row[2], "<none>", "kubectl {v}: {row:?}");
        assert_eq!(row[4], "v1.33.0-flotilla", "kubectl {v}: {row:?}");
    }

    // With exactly one node, a new pod is bound to it.
    create_sleeper(&cluster, "bound");
    let bound = wait_bound(&cluster, "bound")
        .unwrap_or_else(|| panic!("pod never bound\n{}", cluster.server.log()));
    assert_eq!(bound, cluster.node_name);

    // SIGKILL the agent; the restarted one takes the Node over without a NotReady blip.
    let old_pid = cluster.agent_pid().unwrap();
    cluster.kill_agent_and_restart();
    assert_ne!(cluster.agent_pid().unwrap(), old_pid);
    let again = wait_lease_renewed(&cluster, &renewed);
    let after = cluster.wait_node_ready(Duration::from_secs(5));
    let ready_after = node_condition(&after, "Ready").unwrap();
    assert_eq!(ready_after["status"], "True");
    assert_eq!(
        ready_after["lastTransitionTime"], ready["lastTransitionTime"],
        "Ready never went away across the restart"
    );
    assert_eq!(
        after["metadata"]["uid"], node["metadata"]["uid"],
        "the same Node"
    );
    let l = lease(&cluster).unwrap();
    assert!(l["spec"]["renewTime"].as_str().unwrap() >= again.as_str());
    assert_eq!(
        get_nodes_row(&cluster, "1.33")[1],
        "Ready",
        "after the restart"
    );

    // SIGTERM stops the agent cleanly, and its pod's container runs on.
    let running = testkit::wait_for(Duration::from_secs(60), || {
        let c = cluster.runc_containers();
        c.iter().any(|(_, status)| status == "running").then_some(c)
    })
    .unwrap_or_else(|| panic!("the bound pod never ran\n{}", cluster.agent_log()));
    let status = cluster.terminate_agent(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        cluster.agent_log()
    );
    assert_eq!(
        cluster.runc_containers(),
        running,
        "containers outlive the agent"
    );
}

#[test]
fn the_servers_own_agent_registers_a_control_plane_node() {
    let mut cluster = Cluster::start_with(ClusterOptions {
        agent: AgentMode::InProcess,
        ..ClusterOptions::default()
    });
    let node = cluster.wait_node_ready(Duration::from_secs(5));
    assert_eq!(
        node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
        "true"
    );
    let l = testkit::wait_for(Duration::from_secs(15), || lease(&cluster));
    assert!(l.is_some(), "the in-process agent holds a lease");
    for v in ["1.29", "1.33"] {
        let row = get_nodes_row(&cluster, v);
        assert_eq!(row[1], "Ready", "kubectl {v}: {row:?}");
        assert_eq!(row[2], "control-plane", "kubectl {v}: {row:?}");
    }
    // Its pods run: the agent's watches stream through the in-process client.
    create_sleeper(&cluster, "cp-pod");
    let running = testkit::wait_for(Duration::from_secs(60), || {
        let out = cluster.kubectl_run(
            "1.33",
            &["get", "pod", "cp-pod", "-o", "jsonpath={.status.phase}"],
        );
        (out.stdout.trim() == "Running").then_some(())
    });
    assert!(
        running.is_some(),
        "cp-pod not Running\n{}",
        cluster.agent_log()
    );

    // A Node deleted under its agent is registered again, as the kubelet does.
    let uid = node["metadata"]["uid"].clone();
    cluster
        .kubectl_run("1.33", &["delete", "node", &cluster.node_name])
        .expect_success("delete node");
    let back = testkit::wait_for(Duration::from_secs(30), || {
        cluster.node().filter(|n| n["metadata"]["uid"] != uid)
    });
    let back = back.expect("the node was not registered again");
    cluster.wait_node_ready(Duration::from_secs(30));
    // Its Lease follows the new Node as owner.
    let owned = testkit::wait_for(Duration::from_secs(30), || {
        let l = lease(&cluster)?;
        (l["metadata"]["ownerReferences"][0]["uid"] == back["metadata"]["uid"]).then_some(())
    });
    assert!(owned.is_some(), "the lease still names the deleted Node");

    // SIGTERM stops the server and its agent cleanly.
    let status = cluster.server.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        cluster.agent_log()
    );
}

#[test]
fn pressure_conditions_follow_the_eviction_thresholds() {
    // Thresholds no machine can meet: every pressure is on, and allocatable keeps it all.
    let cluster = Cluster::start_with(ClusterOptions {
        agent: AgentMode::InProcess,
        agent_args: vec![
            "--eviction-hard=memory.available<100Ti,nodefs.available<100%,pid.available<100%"
                .into(),
        ],
        ..ClusterOptions::default()
    });
    let node = cluster.wait_node_ready(Duration::from_secs(5));
    for (t, reason) in [
        ("MemoryPressure", "KubeletHasInsufficientMemory"),
        ("DiskPressure", "KubeletHasDiskPressure"),
        ("PIDPressure", "KubeletHasInsufficientPID"),
    ] {
        let c = node_condition(&node, t).unwrap_or_else(|| panic!("no {t} in {node}"));
        assert_eq!(c["status"], "True", "{c}");
        assert_eq!(c["reason"], reason, "{c}");
    }
    let st = &node["status"];
    assert_eq!(st["allocatable"]["memory"], "0Ki", "{st}");
    assert_eq!(st["allocatable"]["ephemeral-storage"], "0", "{st}");
    assert!(quantity_number(&st["capacity"]["memory"]) > 0);
    // Pressure is not readiness: the kubelet evicts, it does not go NotReady.
    assert_eq!(node_condition(&node, "Ready").unwrap()["status"], "True");

    // The node lifecycle controller taints the node NoSchedule for each pressure.
    let pressure_taints = [
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
    ];
    let taints = testkit::wait_for(Duration::from_secs(30), || {
        let n = cluster.node()?;
        let keys: Vec<String> = n["spec"]["taints"]
            .as_array()?
            .iter()
            .filter(|t| t["effect"] == "NoSchedule")
            .filter_map(|t| t["key"].as_str().map(str::to_string))
            .collect();
        pressure_taints
            .iter()
            .all(|k| keys.iter().any(|x| x == k))
            .then_some(keys)
    })
    .unwrap_or_else(|| panic!("no pressure taints\n{}", cluster.server.log()));
    assert_eq!(taints.len(), 3, "{taints:?}");

    // A pod that does not tolerate them is not scheduled, and says why; one that does is.
    create_sleeper(&cluster, "intolerant");
    let why = testkit::wait_for(Duration::from_secs(30), || {
        let out = cluster.kubectl_run(
            "1.33",
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=intolerant,reason=FailedScheduling",
                "-o",
                "jsonpath={.items[*].message}",
            ],
        );
        let msg = out.expect_success("get events").trim().to_string();
        (!msg.is_empty()).then_some(msg)
    })
    .unwrap_or_else(|| panic!("no FailedScheduling event\n{}", cluster.server.log()));
    assert!(
        why.contains("untolerated taint {node.kubernetes.io/"),
        "{why}"
    );
    create_sleeper_tolerating(
        &cluster,
        "tolerant",
        serde_json::json!([{"operator": "Exists", "effect": "NoSchedule"}]),
    );
    let bound = wait_bound(&cluster, "tolerant");
    assert_eq!(bound.as_deref(), Some(cluster.node_name.as_str()));
    let out = cluster.kubectl_run(
        "1.33",
        &[
            "get",
            "pod",
            "intolerant",
            "-o",
            "jsonpath={.spec.nodeName}",
        ],
    );
    assert_eq!(
        out.expect_success("get pod").trim(),
        "",
        "still unscheduled"
    );
}

#[test]
fn a_token_pinning_another_ca_is_refused_before_joining() {
    let server = Server::start();
    let token = std::fs::read_to_string(server.data_dir.join("token")).unwrap();
    let token = token.trim();
    assert!(token.starts_with("K10"), "{token}");
    assert!(token.ends_with(&format!("::node:{}", server.node_token())));
    // Same secret, another CA's hash.
    let forged = format!("K10{}::node:{}", "0".repeat(64), server.node_token());
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(support::flotilla_bin())
        .args(["agent", "--server"])
        .arg(format!("https://127.0.0.1:{}", server.port()))
        .arg("--token")
        .arg(&forged)
        .arg("--data-dir")
        .arg(data.path())
        .args(["--node-name", "forged", "--agent-port", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("the token expects"), "{stderr}");
    let nodes = server.admin_client().get("/api/v1/nodes").unwrap().json();
    assert_eq!(nodes["items"].as_array().unwrap().len(), 0);
    // /cacerts is public and is exactly what the genuine token pins.
    let ca = server
        .client(support::Identity::Anonymous)
        .get("/cacerts")
        .unwrap();
    assert_eq!(ca.status, 200);
    assert_eq!(ca.text(), server.ca_pem());
}
