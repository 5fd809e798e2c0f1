//! The `kubernetes` Service's endpoints end to end: two `flotilla server`s on one etcd,
//! each advertising a TEST-NET-1 address (only written into objects; nothing is ever sent
//! there). Both appear in the Endpoints and EndpointSlices kubectl reads; one stopped
//! cleanly deletes its Lease and drops out.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use support::{Etcd, Server, ServerOptions};

fn advertising(etcd: &Etcd, ip: &str) -> Server {
    Server::start_with(ServerOptions {
        args: vec!["--advertise-address".into(), ip.into()],
        ..ServerOptions::etcd(etcd)
    })
}

fn kubectl_json(server: &Server, args: &[&str]) -> Value {
    let mut argv = args.to_vec();
    argv.extend(["-o", "json"]);
    let out = server.kubectl("1.33").run(&argv);
    serde_json::from_str(out.expect_success("kubectl get")).unwrap()
}

/// `IP:PORT` of every address in the `kubernetes` Endpoints.
fn endpoints(server: &Server) -> BTreeSet<String> {
    let ep = kubectl_json(server, &["get", "endpoints", "kubernetes"]);
    let mut out = BTreeSet::new();
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        let ports = subset["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 1, "{subset}");
        assert_eq!(ports[0]["name"], "https");
        for a in subset["addresses"].as_array().into_iter().flatten() {
            out.insert(format!(
                "{}:{}",
                a["ip"].as_str().unwrap(),
                ports[0]["port"]
            ));
        }
    }
    out
}

/// `IP:PORT` of every ready endpoint in the `kubernetes` EndpointSlices, and their names.
fn slices(server: &Server) -> (BTreeSet<String>, BTreeSet<String>) {
    let list = kubectl_json(
        server,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=kubernetes",
        ],
    );
    let (mut addrs, mut names) = (BTreeSet::new(), BTreeSet::new());
    for s in list["items"].as_array().unwrap() {
        names.insert(s["metadata"]["name"].as_str().unwrap().to_string());
        assert_eq!(s["addressType"], "IPv4", "{s}");
        let port = &s["ports"][0]["port"];
        for e in s["endpoints"].as_array().into_iter().flatten() {
            assert_eq!(e["conditions"]["ready"], true, "{e}");
            addrs.insert(format!("{}:{port}", e["addresses"][0].as_str().unwrap()));
        }
    }
    (addrs, names)
}

#[test]
fn every_api_server_is_an_endpoint_of_the_kubernetes_service_until_it_stops() {
    let etcd = Etcd::start();
    let a = advertising(&etcd, "192.0.2.10");
    let mut b = advertising(&etcd, "192.0.2.11");
    let both: BTreeSet<String> = [
        format!("192.0.2.10:{}", a.port()),
        format!("192.0.2.11:{}", b.port()),
    ]
    .into();

    let seen = testkit::wait_for(Duration::from_secs(30), || {
        let (addrs, _) = slices(&a);
        (endpoints(&a) == both && addrs == both).then_some(())
    });
    assert!(
        seen.is_some(),
        "endpoints {:?}, slices {:?}, want {both:?}\n{}",
        endpoints(&a),
        slices(&a),
        a.log()
    );
    // Different ports (free ones): a slice each, the first named after the Service.
    let (_, names) = slices(&a);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains("kubernetes"), "{names:?}");
    let ep = kubectl_json(&a, &["get", "endpoints", "kubernetes"]);
    assert_eq!(
        ep["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );
    let leases = kubectl_json(
        &a,
        &[
            "get",
            "leases",
            "-n",
            "kube-system",
            "-l",
            "flotilla.io/apiserver-endpoint",
        ],
    );
    let holders: BTreeSet<String> = leases["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["spec"]["holderIdentity"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(holders, both);

    // A clean stop withdraws: its Lease is gone before it exits, and it leaves the lists.
    let status = b.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        b.log()
    );
    let b_lease = format!("apiserver-192-0-2-11-{}", b.port());
    let out = a
        .kubectl("1.33")
        .run(&["get", "lease", "-n", "kube-system", &b_lease]);
    assert!(out.stderr.contains("NotFound"), "{}", out.stderr);
    let only_a: BTreeSet<String> = [format!("192.0.2.10:{}", a.port())].into();
    let left = testkit::wait_for(Duration::from_secs(30), || {
        let (addrs, names) = slices(&a);
        (endpoints(&a) == only_a && addrs == only_a && names.len() == 1).then_some(())
    });
    assert!(
        left.is_some(),
        "endpoints {:?}, slices {:?}\n{}",
        endpoints(&a),
        slices(&a),
        a.log()
    );
}
