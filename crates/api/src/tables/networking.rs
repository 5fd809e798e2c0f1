//! Service networking: Services, Endpoints, EndpointSlices, Ingresses, IngressClasses and
//! NetworkPolicies.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use jiff::Timestamp;
use serde_json::{json, Value};

use super::columns::{col, wide, AGE, NAME};
use super::fields::{self, age, int_at, list_at, map_at, name, opt_int_at, opt_str_at, str_at};
use super::format;
use crate::table::{Column, TablePrinter};

/// How many addresses, ports or hosts a cell lists before "+ N more...".
const LIST_MAX: usize = 3;

pub struct ServicePrinter;

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    col("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify."),
];

impl TablePrinter for ServicePrinter {
    fn columns(&self) -> Vec<Column> {
        SERVICE_COLUMNS.to_vec()
    }

    fn cells(&self, svc: &Value, now: Timestamp) -> Vec<Value> {
        // clusterIPs[0] is the primary; objects from before dual-stack carry only clusterIP.
        let cluster_ip = list_at(svc, "/spec/clusterIPs")
            .first()
            .and_then(Value::as_str)
            .or_else(|| opt_str_at(svc, "/spec/clusterIP").filter(|s| !s.is_empty()))
            .unwrap_or("<none>");
        let ports = port_list(list_at(svc, "/spec/ports"));
        vec![
            name(svc),
            json!(str_at(svc, "/spec/type")),
            json!(cluster_ip),
            json!(external_ip(svc)),
            json!(fields::or(&ports, "<none>")),
            age(svc, now),
            json!(format::labels(map_at(svc, "/spec/selector"))),
        ]
    }
}

/// "80/TCP,443:30443/TCP": port, then node port when allocated, then protocol.
fn port_list(ports: &[Value]) -> String {
    ports
        .iter()
        .map(|p| {
            let port = int_at(p, "/port");
            // Defaulting sets TCP; an object stored without it means TCP.
            let protocol = opt_str_at(p, "/protocol").unwrap_or("TCP");
            match int_at(p, "/nodePort") {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The sorted, de-duplicated IPs (or host names) of a load balancer status.
fn load_balancer_addresses(status: &Value) -> String {
    let addresses: BTreeSet<&str> = list_at(status, "/ingress")
        .iter()
        .filter_map(|i| match (str_at(i, "/ip"), str_at(i, "/hostname")) {
            ("", "") => None,
            ("", host) => Some(host),
            (ip, _) => Some(ip),
        })
        .collect();
    addresses.into_iter().collect::<Vec<_>>().join(",")
}

fn external_ip(svc: &Value) -> String {
    let external: Vec<&str> = list_at(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match str_at(svc, "/spec/type") {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let lb = load_balancer_addresses(
                svc.pointer("/status/loadBalancer").unwrap_or(&Value::Null),
            );
            let mut all: Vec<&str> = lb.split(',').filter(|s| !s.is_empty()).collect();
            all.extend(external);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `host:port`, with brackets around IPv6 addresses.
fn host_port(ip: &str, port: i64) -> String {
    if ip.parse::<Ipv6Addr>().is_ok() {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

pub struct EndpointsPrinter;

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col("Endpoints", "string", "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share."),
    AGE,
];

impl TablePrinter for EndpointsPrinter {
    fn columns(&self) -> Vec<Column> {
        ENDPOINTS_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        vec![name(obj), json!(endpoints_list(obj)), age(obj, now)]
    }
}

fn endpoints_list(obj: &Value) -> String {
    let subsets = list_at(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let ips: Vec<&str> = list_at(subset, "/addresses")
            .iter()
            .map(|a| str_at(a, "/ip"))
            .collect();
        let ports = list_at(subset, "/ports");
        if ports.is_empty() {
            // Headless services may have no ports: list the bare IPs.
            count += ips.len();
            shown.extend(ips.iter().map(|ip| ip.to_string()));
            continue;
        }
        for port in ports {
            count += ips.len();
            let n = int_at(port, "/port");
            shown.extend(ips.iter().map(|ip| host_port(ip, n)));
        }
    }
    shown.truncate(LIST_MAX);
    let joined = shown.join(",");
    if count > LIST_MAX {
        format!("{joined} + {} more...", count - LIST_MAX)
    } else {
        joined
    }
}

pub struct EndpointSlicePrinter;

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type."),
    col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
    col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
    AGE,
];

impl TablePrinter for EndpointSlicePrinter {
    fn columns(&self) -> Vec<Column> {
        ENDPOINT_SLICE_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let ports: Vec<String> = list_at(obj, "/ports")
            .iter()
            .map(|p| match (opt_int_at(p, "/port"), opt_str_at(p, "/name")) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".to_string(),
            })
            .collect();
        let addresses: Vec<String> = list_at(obj, "/endpoints")
            .iter()
            .flat_map(|e| list_at(e, "/addresses"))
            .map(|a| a.as_str().unwrap_or("").to_string())
            .collect();
        vec![
            name(obj),
            json!(str_at(obj, "/addressType")),
            json!(format::list_with_more(&ports, ports.len(), LIST_MAX)),
            json!(format::list_with_more(
                &addresses,
                addresses.len(),
                LIST_MAX
            )),
            age(obj, now),
        ]
    }
}

pub struct IngressPrinter;

const INGRESS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

impl TablePrinter for IngressPrinter {
    fn columns(&self) -> Vec<Column> {
        INGRESS_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let ports = if list_at(obj, "/spec/tls").is_empty() {
            "80"
        } else {
            "80, 443"
        };
        vec![
            name(obj),
            json!(opt_str_at(obj, "/spec/ingressClassName").unwrap_or("<none>")),
            json!(ingress_hosts(list_at(obj, "/spec/rules"))),
            json!(load_balancer_addresses(
                obj.pointer("/status/loadBalancer").unwrap_or(&Value::Null)
            )),
            json!(ports),
            age(obj, now),
        ]
    }
}

/// The rules' hosts, `*` when none names one. Like Kubernetes' printer, "+ N more..." counts
/// rules (not hosts) past the third, once three hosts are listed.
fn ingress_hosts(rules: &[Value]) -> String {
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == LIST_MAX {
            more = true;
            break;
        }
        match str_at(rule, "/host") {
            "" => {}
            host => hosts.push(host),
        }
    }
    if hosts.is_empty() {
        return "*".to_string();
    }
    let joined = hosts.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - LIST_MAX)
    } else {
        joined
    }
}

pub struct IngressClassPrinter;

const INGRESS_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

impl TablePrinter for IngressClassPrinter {
    fn columns(&self) -> Vec<Column> {
        INGRESS_CLASS_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        let parameters = match obj.pointer("/spec/parameters") {
            Some(p) if p.is_object() => {
                let kind = match opt_str_at(p, "/apiGroup") {
                    Some(group) => format!("{}.{group}", str_at(p, "/kind")),
                    None => str_at(p, "/kind").to_string(),
                };
                format!("{kind}/{}", str_at(p, "/name"))
            }
            _ => "<none>".to_string(),
        };
        vec![
            name(obj),
            json!(str_at(obj, "/spec/controller")),
            json!(parameters),
            age(obj, now),
        ]
    }
}

pub struct NetworkPolicyPrinter;

const NETWORK_POLICY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Pod-Selector",
        "string",
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];

impl TablePrinter for NetworkPolicyPrinter {
    fn columns(&self) -> Vec<Column> {
        NETWORK_POLICY_COLUMNS.to_vec()
    }

    fn cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            name(obj),
            json!(format::label_selector(obj.pointer("/spec/podSelector"))),
            age(obj, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-06-01T12:00:00Z".parse().expect("time")
    }

    fn service(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": "2024-06-01T11:59:55Z"}, "spec": spec})
    }

    #[test]
    fn node_port_service() {
        let svc = service(json!({
            "type": "NodePort", "clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
            "selector": {"app": "web"},
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}],
        }));
        assert_eq!(
            ServicePrinter.cells(&svc, now()),
            [
                json!("web"),
                json!("NodePort"),
                json!("10.43.0.20"),
                json!("<none>"),
                json!("80/TCP,443:30443/TCP"),
                json!("5s"),
                json!("app=web")
            ]
        );
    }

    #[test]
    fn service_external_addresses() {
        let lb = service(
            json!({"type": "LoadBalancer", "clusterIPs": ["10.43.0.9"], "externalIPs": ["192.0.2.9"]}),
        );
        assert_eq!(ServicePrinter.cells(&lb, now())[3], json!("192.0.2.9"));
        let mut pending =
            service(json!({"type": "LoadBalancer", "ports": [{"port": 53, "protocol": "UDP"}]}));
        assert_eq!(ServicePrinter.cells(&pending, now())[3], json!("<pending>"));
        pending["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.2"}, {"hostname": "lb.example"}, {"ip": "192.0.2.1"}]}});
        let c = ServicePrinter.cells(&pending, now());
        assert_eq!(
            (&c[3], &c[4]),
            (&json!("192.0.2.1,192.0.2.2,lb.example"), &json!("53/UDP"))
        );
        let ext = service(json!({"type": "ExternalName", "externalName": "db.example.com"}));
        let c = ServicePrinter.cells(&ext, now());
        assert_eq!(
            (&c[2], &c[3], &c[4], &c[6]),
            (
                &json!("<none>"),
                &json!("db.example.com"),
                &json!("<none>"),
                &json!("<none>")
            )
        );
        let headless = service(
            json!({"type": "ClusterIP", "clusterIPs": ["None"], "externalIPs": ["192.0.2.7", "192.0.2.8"]}),
        );
        let c = ServicePrinter.cells(&headless, now());
        assert_eq!(
            (&c[2], &c[3]),
            (&json!("None"), &json!("192.0.2.7,192.0.2.8"))
        );
    }

    #[test]
    fn endpoints_list_three_then_more() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.42.0.4"}, {"ip": "10.42.0.5"}], "ports": [{"port": 8080}, {"port": 9090}]},
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]},
        ]});
        assert_eq!(
            EndpointsPrinter.cells(&ep, now())[1],
            json!("10.42.0.4:8080,10.42.0.5:8080,10.42.0.4:9090 + 2 more...")
        );
        let v6 = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
        assert_eq!(EndpointsPrinter.cells(&v6, now())[1], json!("[fd00::1]:80"));
        let headless = json!({"subsets": [{"addresses": [{"ip": "10.42.0.4"}]}]});
        assert_eq!(
            EndpointsPrinter.cells(&headless, now())[1],
            json!("10.42.0.4")
        );
        assert_eq!(
            EndpointsPrinter.cells(&json!({}), now())[1],
            json!("<none>")
        );
    }

    #[test]
    fn endpoint_slice_row() {
        let es = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "named"}, {}],
            "endpoints": [{"addresses": ["10.42.0.4"]}, {"addresses": ["10.42.0.5"]}]});
        let c = EndpointSlicePrinter.cells(&es, now());
        assert_eq!(
            &c[1..4],
            &[
                json!("IPv4"),
                json!("8080,named,*"),
                json!("10.42.0.4,10.42.0.5")
            ]
        );
        let empty = json!({"addressType": "IPv4"});
        assert_eq!(
            &EndpointSlicePrinter.cells(&empty, now())[2..4],
            &[json!("<unset>"), json!("<unset>")]
        );
    }

    #[test]
    fn ingress_and_class_rows() {
        let ing = json!({"metadata": {"name": "web"},
            "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example"]}],
                     "rules": [{"host": "a.example"}, {}, {"host": "c.example"}, {"host": "d.example"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
        let c = IngressPrinter.cells(&ing, now());
        assert_eq!(
            &c[1..5],
            &[
                json!("nginx"),
                json!("a.example,c.example,d.example"),
                json!("192.0.2.1"),
                json!("80, 443")
            ]
        );
        let many = json!({"spec": {"rules": [{"host": "a"}, {"host": "b"}, {"host": "c"}, {"host": "d"}, {}]}});
        assert_eq!(
            IngressPrinter.cells(&many, now())[2],
            json!("a,b,c + 2 more...")
        );
        let bare = json!({"spec": {"defaultBackend": {}}});
        assert_eq!(
            &IngressPrinter.cells(&bare, now())[1..5],
            &[json!("<none>"), json!("*"), json!(""), json!("80")]
        );

        let class = json!({"spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
        assert_eq!(
            IngressClassPrinter.cells(&class, now())[2],
            json!("IngressParameters.k8s.example.com/external-lb")
        );
    }

    #[test]
    fn network_policy_row() {
        let np = json!({"spec": {"podSelector": {"matchLabels": {"role": "db"}}}});
        assert_eq!(NetworkPolicyPrinter.cells(&np, now())[1], json!("role=db"));
        let all = json!({"spec": {"podSelector": {}}});
        assert_eq!(NetworkPolicyPrinter.cells(&all, now())[1], json!("<none>"));
    }
}
