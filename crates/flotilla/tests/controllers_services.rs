//! The Endpoints, EndpointSlice and ServiceAccount controllers end to end: a real
//! `flotilla server` with its scheduler and controllers, and simulated nodes in process
//! that report the pods bound to them Running and Ready with a pod IP.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;

use support::sim::{
    app_workload, create_namespace, eventually, merge_patch, nodes, until_gone, SimCluster,
    SimulatedConfig,
};
use support::{Server, ServerOptions};

/// A server with scheduler and controllers, and `count` simulated nodes `<prefix>-<i>`.
async fn start(prefix: &str, count: usize) -> SimCluster {
    let mut sim = SimCluster::start(ServerOptions {
        with_scheduler: true,
        with_controllers: true,
        ..Default::default()
    })
    .await;
    sim.add_nodes(SimulatedConfig {
        lease_interval: Duration::from_secs(1),
        zones: 2,
        ..nodes(prefix, count)
    })
    .await;
    sim
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    let container = json!({"name": "c", "image": "registry.invalid/web:1",
        "ports": [{"name": "http", "containerPort": 8080}]});
    serde_json::from_value(app_workload("Deployment", name, replicas, container)).unwrap()
}

fn addresses(ep: &Endpoints, ready: bool) -> Vec<String> {
    let mut ips: Vec<String> = ep
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| {
            if ready {
                s.addresses.iter().flatten()
            } else {
                s.not_ready_addresses.iter().flatten()
            }
        })
        .map(|a| a.ip.clone())
        .collect();
    ips.sort();
    ips
}

fn slice_endpoints(slices: &[EndpointSlice]) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            (
                e.addresses[0].clone(),
                e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false),
            )
        })
        .collect();
    v.sort();
    v
}

/// The writes a watch reports until one satisfies `done`.
async fn writes_until<K: Clone + std::fmt::Debug>(
    mut events: futures::stream::BoxStream<'_, kube::Result<WatchEvent<K>>>,
    done: impl Fn(&K) -> bool,
) -> usize {
    let mut writes = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the awaited write")
            .expect("the watch ended")
            .unwrap();
        match next {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                writes += 1;
                if done(&o) {
                    return writes;
                }
            }
            WatchEvent::Deleted(o) => panic!("unexpected deletion: {o:?}"),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error: {e:?}"),
        }
    }
}

async fn slices_of(api: &Api<EndpointSlice>, svc: &str) -> Vec<EndpointSlice> {
    api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc}")))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn service_endpoints_and_slices_follow_the_pods() {
    let prefix = "svc-e2e-node";
    let ns = "svc-e2e";
    let sim = start(prefix, 2).await;
    let (server, client) = (&sim.server, sim.client.clone());
    create_namespace(&client, ns).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);

    deployments
        .create(&PostParams::default(), &deployment("web", 3))
        .await
        .unwrap();
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "appProtocol": "http"}]}
    }))
    .unwrap();
    let svc = services.create(&PostParams::default(), &svc).await.unwrap();

    // Three ready pods: three addresses on the named port's number.
    let ep = eventually(60, "Endpoints with 3 ready addresses", || async {
        endpoints
            .get_opt("web")
            .await
            .unwrap()
            .filter(|ep| addresses(ep, true).len() == 3)
    })
    .await;
    let subset = &ep.subsets.as_ref().unwrap()[0];
    let port = &subset.ports.as_ref().unwrap()[0];
    assert_eq!(
        (
            port.name.as_deref(),
            port.port,
            port.protocol.as_deref(),
            port.app_protocol.as_deref()
        ),
        (Some("http"), 8080, Some("TCP"), Some("http"))
    );
    let address = &subset.addresses.as_ref().unwrap()[0];
    assert!(address.node_name.as_deref().unwrap().starts_with(prefix));
    assert_eq!(
        address.target_ref.as_ref().unwrap().kind.as_deref(),
        Some("Pod")
    );
    let labels = ep.metadata.labels.clone().unwrap();
    assert_eq!(labels.get("tier").map(String::as_str), Some("front"));
    assert_eq!(
        labels
            .get("endpoints.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpoint-controller")
    );
    assert!(ep
        .metadata
        .annotations
        .as_ref()
        .unwrap()
        .contains_key("endpoints.kubernetes.io/last-change-trigger-time"));

    // One EndpointSlice with the same three, ready, with their zones.
    let got = eventually(30, "one EndpointSlice with 3 ready endpoints", || async {
        let got = slices_of(&slices, "web").await;
        (got.len() == 1 && slice_endpoints(&got).iter().filter(|(_, r)| *r).count() == 3)
            .then_some(got)
    })
    .await;
    let slice = &got[0];
    assert!(slice.metadata.name.as_deref().unwrap().starts_with("web-"));
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(Some(&owner.uid), svc.metadata.uid.as_ref());
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("http"), Some(8080))
    );
    for e in &slice.endpoints {
        assert!(e.zone.as_deref().is_some_and(|z| !z.is_empty()), "{e:?}");
        assert!(e.node_name.as_deref().unwrap().starts_with(prefix));
        let c = e.conditions.as_ref().unwrap();
        assert_eq!((c.serving, c.terminating), (Some(true), Some(false)));
    }
    let mut ips: Vec<String> = slice_endpoints(&got)
        .into_iter()
        .map(|(ip, _)| ip)
        .collect();
    ips.sort();
    assert_eq!(ips, addresses(&ep, true));

    // One pod turns not ready: it moves to notReadyAddresses.
    let all = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    let victim = all
        .iter()
        .find(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some())
        .unwrap();
    let victim_ip = victim.status.as_ref().unwrap().pod_ip.clone().unwrap();
    // Watch the writes from here: a change that does not concern the endpoints (an
    // annotation) must cause none, the readiness change exactly one per object.
    let ep_writes = endpoints
        .watch(
            &WatchParams::default().fields("metadata.name=web"),
            ep.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    // From the list's revision: earlier writes to other slices (the placeholder made
    // before the pods were ready, then deleted) are not replayed.
    let listed = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let slice_writes = slices
        .watch(
            &WatchParams::default().labels("kubernetes.io/service-name=web"),
            listed.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    pods.patch(
        victim.metadata.name.as_deref().unwrap(),
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    pods.patch_status(
        victim.metadata.name.as_deref().unwrap(),
        &PatchParams::default(),
        &Patch::Strategic(json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "TestNotReady"}]}})),
    )
    .await
    .unwrap();
    let ep = eventually(30, "the not-ready pod under notReadyAddresses", || async {
        endpoints
            .get_opt("web")
            .await
            .unwrap()
            .filter(|ep| addresses(ep, false) == [victim_ip.clone()])
    })
    .await;
    assert_eq!(addresses(&ep, true).len(), 2);
    assert_eq!(
        writes_until(ep_writes, |ep: &Endpoints| addresses(ep, false)
            == [victim_ip.clone()])
        .await,
        1,
        "Endpoints writes for one readiness change"
    );
    assert_eq!(
        writes_until(slice_writes, |s: &EndpointSlice| {
            slice_endpoints(std::slice::from_ref(s)).contains(&(victim_ip.clone(), false))
        })
        .await,
        1,
        "EndpointSlice writes for one readiness change"
    );
    eventually(30, "the not-ready pod ready=false in its slice", || async {
        let got = slices_of(&slices, "web").await;
        slice_endpoints(&got)
            .contains(&(victim_ip.clone(), false))
            .then_some(())
    })
    .await;

    // kubectl shows them.
    let out = server.kubectl_run("1.33", &["get", "endpoints", "web", "-n", ns]);
    let stdout = out.expect_success("kubectl get endpoints");
    assert!(
        stdout.contains("web") && stdout.contains(":8080"),
        "{stdout}"
    );
    let out = server.kubectl_run("1.33", &["get", "endpointslices", "-n", ns]);
    let stdout = out.expect_success("kubectl get endpointslices");
    assert!(
        stdout.contains("web-") && stdout.contains("IPv4") && stdout.contains("8080"),
        "{stdout}"
    );
    // describe reads the Endpoints (1.29) or the EndpointSlices (1.33): the two ready pods.
    for version in ["1.29", "1.33"] {
        let out = server.kubectl_run(version, &["describe", "service", "web", "-n", ns]);
        let stdout = out.expect_success("kubectl describe service");
        let line = stdout
            .lines()
            .find(|l| l.starts_with("Endpoints:"))
            .unwrap_or_else(|| panic!("{stdout}"));
        assert_eq!(
            line.matches(":8080").count(),
            2,
            "kubectl {version}: {stdout}"
        );
    }

    // Scaling to zero empties them.
    merge_patch(&deployments, "web", json!({"spec": {"replicas": 0}})).await;
    eventually(60, "empty Endpoints after scaling to 0", || async {
        endpoints
            .get_opt("web")
            .await
            .unwrap()
            .filter(|ep| ep.subsets.as_ref().is_none_or(Vec::is_empty))
    })
    .await;
    eventually(30, "one empty EndpointSlice after scaling to 0", || async {
        let got = slices_of(&slices, "web").await;
        (got.len() == 1 && got[0].endpoints.is_empty()).then_some(())
    })
    .await;

    // Deleting the Service deletes its Endpoints.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    until_gone(
        &endpoints,
        "web",
        Duration::from_secs(30),
        "the Endpoints deleted with the Service",
    )
    .await;
    eventually(
        30,
        "the EndpointSlices deleted with the Service",
        || async { slices_of(&slices, "web").await.is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn services_without_selector_keep_their_own_endpoints() {
    let sim = start("svc-manual-node", 1).await;
    let client = sim.client.clone();
    let ns = "svc-manual";
    create_namespace(&client, ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let manual: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}]
    }))
    .unwrap();
    endpoints
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "db"}, "spec": {"ports": [{"port": 5432}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    // A Service with a selector next to it gets its Endpoints: proof the controller ran.
    let selected: Service = serde_json::from_value(json!({
        "metadata": {"name": "other"}, "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &selected)
        .await
        .unwrap();
    eventually(30, "Endpoints for the selector Service", || async {
        endpoints.get_opt("other").await.unwrap()
    })
    .await;
    let ep = endpoints.get("db").await.unwrap();
    assert_eq!(addresses(&ep, true), ["192.0.2.10"]);
    assert!(ep.metadata.labels.is_none_or(|l| l.is_empty()));
    // The user's Endpoints outlive their Service: they are not the controller's.
    services
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    services
        .delete("other", &DeleteParams::default())
        .await
        .unwrap();
    until_gone(
        &endpoints,
        "other",
        Duration::from_secs(30),
        "the managed Endpoints deleted",
    )
    .await;
    assert!(endpoints.get_opt("db").await.unwrap().is_some());
}

#[tokio::test]
async fn every_namespace_has_a_default_service_account() {
    let server = Server::start_with(ServerOptions {
        with_controllers: true,
        ..Default::default()
    });
    let client = server.kube_client().await;
    let ns = "svc-sa-e2e";
    server
        .kubectl_run("1.33", &["create", "namespace", ns])
        .expect_success("kubectl create namespace");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let first = eventually(30, "the default ServiceAccount", || async {
        accounts.get_opt("default").await.unwrap()
    })
    .await;
    accounts
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    let second = eventually(30, "the default ServiceAccount recreated", || async {
        accounts
            .get_opt("default")
            .await
            .unwrap()
            .filter(|sa| sa.metadata.uid != first.metadata.uid)
    })
    .await;
    assert!(second.metadata.uid.is_some());
    // The system namespaces have one too.
    let system: Api<ServiceAccount> = Api::namespaced(client.clone(), "kube-system");
    eventually(30, "kube-system's default ServiceAccount", || async {
        system.get_opt("default").await.unwrap()
    })
    .await;
    let out = server.kubectl_run("1.33", &["get", "serviceaccounts", "-n", ns]);
    assert!(out.expect_success("kubectl get sa").contains("default"));
}

type ControllerTasks = Vec<tokio::task::JoinHandle<()>>;

/// The two endpoint controllers, in this process, until the returned sender fires.
fn start_endpoint_controllers(
    client: &kube::Client,
) -> (tokio::sync::watch::Sender<bool>, ControllerTasks) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let endpoints = tokio::spawn({
        let (client, rx) = (client.clone(), stopped.clone());
        async move {
            controllers::endpoints::run(controllers::informers::Informers::new(client), wait(rx))
                .await
                .unwrap()
        }
    });
    let slices = tokio::spawn({
        let client = client.clone();
        async move {
            controllers::endpointslice::run(
                controllers::informers::Informers::new(client),
                wait(stopped),
            )
            .await
            .unwrap()
        }
    });
    (stop, vec![endpoints, slices])
}

fn bare_pod(name: &str, node: &str, subdomain: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "api"}},
        "spec": {"nodeName": node, "hostname": name, "subdomain": subdomain,
                 "containers": [{"name": "c", "image": "registry.invalid/api:1"}]}
    }))
    .unwrap()
}

/// Level-triggered: what changed while the controllers were down is found on start, and
/// Endpoints deleted behind their back come back.
#[tokio::test]
async fn endpoint_controllers_converge_after_a_restart() {
    let mut sim = SimCluster::start(ServerOptions::default()).await;
    sim.add_nodes(SimulatedConfig {
        lease_interval: Duration::from_secs(1),
        ..nodes("svc-restart-node", 1)
    })
    .await;
    let client = sim.client.clone();
    let ns = "svc-restart";
    create_namespace(&client, ns).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    for i in 0..3 {
        pods.create(
            &PostParams::default(),
            &bare_pod(&format!("api-{i}"), "svc-restart-node-0", "api-hl"),
        )
        .await
        .unwrap();
    }
    let svc = |name: &str, headless: bool| -> Service {
        let mut spec = json!({"selector": {"app": "api"}, "ports": [{"name": "p", "port": 80}]});
        if headless {
            spec["clusterIP"] = json!("None");
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    };
    services
        .create(&PostParams::default(), &svc("api", false))
        .await
        .unwrap();

    let (stop, tasks) = start_endpoint_controllers(&client);
    let ready = |name: &'static str, n: usize| {
        let endpoints = endpoints.clone();
        async move {
            eventually(60, "Endpoints with the ready pods", || async {
                endpoints
                    .get_opt(name)
                    .await
                    .unwrap()
                    .filter(|ep| addresses(ep, true).len() == n)
            })
            .await
        }
    };
    ready("api", 3).await;
    // Deleted by hand: recreated.
    endpoints
        .delete("api", &DeleteParams::default())
        .await
        .unwrap();
    ready("api", 3).await;
    let _ = stop.send(true);
    for t in tasks {
        t.await.unwrap();
    }

    // While the controllers are down: the Service goes, a pod goes, a headless one comes.
    services
        .delete("api", &DeleteParams::default())
        .await
        .unwrap();
    pods.delete("api-2", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    services
        .create(&PostParams::default(), &svc("api-hl", true))
        .await
        .unwrap();

    let (stop, tasks) = start_endpoint_controllers(&client);
    until_gone(
        &endpoints,
        "api",
        Duration::from_secs(30),
        "the deleted Service's Endpoints removed",
    )
    .await;
    let ep = ready("api-hl", 2).await;
    let labels = ep.metadata.labels.clone().unwrap();
    assert_eq!(labels["service.kubernetes.io/headless"], "");
    let hostnames: Vec<Option<String>> = ep.subsets.as_ref().unwrap()[0]
        .addresses
        .iter()
        .flatten()
        .map(|a| a.hostname.clone())
        .collect();
    assert_eq!(
        hostnames,
        [Some("api-0".to_string()), Some("api-1".to_string())]
    );
    let got = eventually(30, "the headless Service's slice", || async {
        let got = slices_of(&slices, "api-hl").await;
        (slice_endpoints(&got).len() == 2).then_some(got)
    })
    .await;
    assert_eq!(
        got[0].metadata.labels.as_ref().unwrap()["service.kubernetes.io/headless"],
        ""
    );
    let mut slice_hostnames: Vec<Option<String>> = got[0]
        .endpoints
        .iter()
        .map(|e| e.hostname.clone())
        .collect();
    slice_hostnames.sort();
    assert_eq!(slice_hostnames, hostnames);
    let _ = stop.send(true);
    for t in tasks {
        t.await.unwrap();
    }
}
