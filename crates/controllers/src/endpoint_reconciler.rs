//! The `kubernetes` Service's endpoints: where the API servers are, as kube-apiserver's
//! lease endpoint reconciler (`--endpoint-reconciler-type=lease`) keeps them.
//!
//! Every API server runs this, elected or not: each renews a Lease of its own in
//! `kube-system` (labelled [`LEASE_LABEL`], holder `IP:PORT`, [`Config::lease_duration`])
//! and writes `default/kubernetes` Endpoints and EndpointSlices listing every server whose
//! Lease is live. A server that stops cleanly deletes its Lease and takes itself out at
//! once; one that dies drops out when its Lease expires. Expiry is judged by when this
//! server saw the Lease last change, on its own clock (as leader election does), so servers
//! whose clocks disagree do not drop each other.
//!
//! Upstream keeps one port for all API servers. Flotilla's servers may listen on different
//! ports (tests do), so the Endpoints get one subset per port and each port its own slice:
//! `kubernetes` for the lowest, `kubernetes-<port>` for the others.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

/// Marks the Leases this reconciler reads.
pub const LEASE_LABEL: &str = "flotilla.io/apiserver-endpoint";
const LEASE_NAMESPACE: &str = "kube-system";
const NAMESPACE: &str = "default";
const SERVICE: &str = "kubernetes";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "flotilla-apiserver";
/// Upstream's Endpoints for `kubernetes` are not to be mirrored into slices: it writes both.
const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients reach this server.
    pub advertise: SocketAddr,
    /// How long a Lease stays live without renewal (upstream's master lease TTL is 15 s).
    pub lease_duration: Duration,
    /// How often the Lease is renewed and the endpoints reconciled.
    pub interval: Duration,
}

impl Config {
    pub fn new(advertise: SocketAddr) -> Self {
        Config {
            advertise,
            lease_duration: Duration::from_secs(15),
            interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("apiserver endpoints: {0}")]
    Api(#[from] kube::Error),
}

/// Renews this server's Lease and reconciles until `shutdown`, then withdraws it.
pub async fn run(client: kube::Client, config: Config, shutdown: impl Future<Output = ()>) {
    let reconciler = Reconciler::new(client, config);
    let mut tick = tokio::time::interval(reconciler.config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {
                if let Err(e) = reconciler.renew_and_reconcile().await {
                    tracing::warn!(error = %e, "reconciling the kubernetes Service's endpoints failed");
                }
            }
        }
    }
    if let Err(e) = reconciler.withdraw().await {
        tracing::warn!(error = %e, "removing this server from the kubernetes Service's endpoints failed");
    }
}

struct Reconciler {
    config: Config,
    observed: Mutex<Observed>,
    leases: Api<Lease>,
    endpoints: Api<Endpoints>,
    slices: Api<EndpointSlice>,
}

impl Reconciler {
    fn new(client: kube::Client, config: Config) -> Self {
        Reconciler {
            config,
            observed: Mutex::default(),
            leases: Api::namespaced(client.clone(), LEASE_NAMESPACE),
            endpoints: Api::namespaced(client.clone(), NAMESPACE),
            slices: Api::namespaced(client, NAMESPACE),
        }
    }

    async fn renew_and_reconcile(&self) -> Result<(), Error> {
        let now = Timestamp::now();
        let lease = own_lease(&self.config, now);
        let name = lease_name(self.config.advertise);
        match self.leases.get_opt(&name).await? {
            None => {
                self.leases.create(&PostParams::default(), &lease).await?;
            }
            Some(current) => {
                let mut renewed = lease;
                renewed.metadata.resource_version = current.metadata.resource_version;
                self.leases
                    .replace(&name, &PostParams::default(), &renewed)
                    .await?;
            }
        }
        self.reconcile(None, now).await
    }

    /// Deletes this server's Lease and writes the endpoints without it.
    async fn withdraw(&self) -> Result<(), Error> {
        match self
            .leases
            .delete(&lease_name(self.config.advertise), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        self.reconcile(Some(self.config.advertise), Timestamp::now())
            .await
    }

    /// Writes what the live Leases say, leaving `gone` out whatever its Lease says (the
    /// list may still show a Lease just deleted).
    async fn reconcile(&self, gone: Option<SocketAddr>, now: Timestamp) -> Result<(), Error> {
        let leases = self
            .leases
            .list(&ListParams::default().labels(LEASE_LABEL))
            .await?;
        let mut live = self
            .observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .live(&leases.items, Instant::now(), now);
        live.retain(|a| Some(*a) != gone);
        self.write_endpoints(&live).await?;
        self.write_slices(&live).await
    }

    async fn write_endpoints(&self, live: &[SocketAddr]) -> Result<(), Error> {
        let subsets = subsets(live);
        let current = self.endpoints.get_opt(SERVICE).await?;
        let Some(mut current) = current else {
            let ep = Endpoints {
                metadata: meta(SERVICE, endpoints_labels()),
                subsets: Some(subsets),
            };
            return create_ignoring_race(&self.endpoints, &ep).await;
        };
        let wanted = Some(subsets).filter(|s| !s.is_empty());
        let labels_ok = current
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| endpoints_labels().iter().all(|(k, v)| l.get(k) == Some(v)));
        if current.subsets.clone().filter(|s| !s.is_empty()) == wanted && labels_ok {
            return Ok(());
        }
        current.subsets = wanted;
        current
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(endpoints_labels());
        replace_ignoring_conflict(&self.endpoints, SERVICE, &current).await
    }

    async fn write_slices(&self, live: &[SocketAddr]) -> Result<(), Error> {
        let wanted = slices(live);
        let existing = self
            .slices
            .list(&ListParams::default().labels(&format!(
                "{SERVICE_NAME_LABEL}={SERVICE},{MANAGED_BY_LABEL}={MANAGED_BY}"
            )))
            .await?;
        for slice in &wanted {
            let name = slice.metadata.name.clone().unwrap_or_default();
            let current = existing
                .items
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
            match current {
                None => create_ignoring_race(&self.slices, slice).await?,
                Some(c) if same_slice(c, slice) => {}
                Some(c) => {
                    let mut updated = slice.clone();
                    updated.metadata.resource_version = c.metadata.resource_version.clone();
                    replace_ignoring_conflict(&self.slices, &name, &updated).await?;
                }
            }
        }
        for stale in existing
            .items
            .iter()
            .filter(|s| !wanted.iter().any(|w| w.metadata.name == s.metadata.name))
        {
            let name = stale.metadata.name.clone().unwrap_or_default();
            match self.slices.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Another server may have created it first; the next round compares again.
async fn create_ignoring_race<K>(api: &Api<K>, obj: &K) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Another server may have written in between; the next round compares again.
async fn replace_ignoring_conflict<K>(api: &Api<K>, name: &str, obj: &K) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.replace(name, &PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The Lease name for a server: its address, in a name's alphabet.
pub fn lease_name(addr: SocketAddr) -> String {
    let ip: String = addr
        .ip()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("apiserver-{}-{}", ip.trim_matches('-'), addr.port())
}

fn own_lease(config: &Config, now: Timestamp) -> Lease {
    Lease {
        metadata: meta(
            &lease_name(config.advertise),
            BTreeMap::from([(LEASE_LABEL.to_string(), "true".to_string())]),
        ),
        spec: Some(LeaseSpec {
            holder_identity: Some(config.advertise.to_string()),
            lease_duration_seconds: Some(
                i32::try_from(config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// How far the holders' clocks may be off this server's before a Lease long expired by its
/// own `renewTime` is not believed live on first sight.
const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// When this server saw each Lease change: liveness is judged on its own clock, as leader
/// election judges a Lease, so servers whose clocks differ do not drop each other.
#[derive(Debug, Default)]
pub struct Observed {
    /// Lease name → (resourceVersion, when this server first saw it).
    seen: HashMap<String, (String, Instant)>,
}

impl Observed {
    /// The servers whose Lease changed within its duration by this server's clock, sorted
    /// and without duplicates. A Lease seen for the first time counts from now, unless its
    /// own `renewTime` says it expired long ago (a server gone before this one started).
    pub fn live(&mut self, leases: &[Lease], now: Instant, wall: Timestamp) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        let mut current = HashMap::new();
        for l in leases {
            let (Some(name), Some(spec)) = (l.metadata.name.clone(), l.spec.as_ref()) else {
                continue;
            };
            let rv = l.metadata.resource_version.clone().unwrap_or_default();
            let since = match self.seen.get(&name) {
                Some((seen_rv, at)) if *seen_rv == rv => *at,
                _ => now,
            };
            current.insert(name, (rv, since));
            let Some(addr) = spec
                .holder_identity
                .as_deref()
                .and_then(|h| h.parse::<SocketAddr>().ok())
            else {
                continue;
            };
            let duration = spec
                .lease_duration_seconds
                .map_or(0, |d| u64::try_from(d).unwrap_or(0));
            let fresh = now.duration_since(since) < Duration::from_secs(duration);
            let long_expired = spec.renew_time.as_ref().is_none_or(|t| {
                t.0.checked_add(jiff::SignedDuration::from_secs(duration as i64) + CLOCK_SKEW)
                    .is_ok_and(|end| end < wall)
            });
            if fresh && !long_expired {
                out.push(addr);
            }
        }
        self.seen = current;
        out.sort();
        out.dedup();
        out
    }
}

/// One subset per port, addresses sorted.
pub fn subsets(live: &[SocketAddr]) -> Vec<EndpointSubset> {
    by_port(live)
        .into_iter()
        .map(|(port, ips)| EndpointSubset {
            addresses: Some(
                ips.into_iter()
                    .map(|ip| EndpointAddress {
                        ip: ip.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![EndpointPort {
                name: Some("https".into()),
                port: i32::from(port),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        })
        .collect()
}

/// One slice per port and address family: `kubernetes` for the first, then
/// `kubernetes-<port>` (with `-v6` for IPv6).
pub fn slices(live: &[SocketAddr]) -> Vec<EndpointSlice> {
    let mut groups: BTreeMap<(bool, u16), Vec<IpAddr>> = BTreeMap::new();
    for a in live {
        groups
            .entry((a.is_ipv6(), a.port()))
            .or_default()
            .push(a.ip());
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, ((v6, port), ips))| {
            let name = match (i, v6) {
                (0, _) => SERVICE.to_string(),
                (_, false) => format!("{SERVICE}-{port}"),
                (_, true) => format!("{SERVICE}-{port}-v6"),
            };
            EndpointSlice {
                metadata: meta(
                    &name,
                    BTreeMap::from([
                        (SERVICE_NAME_LABEL.to_string(), SERVICE.to_string()),
                        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                    ]),
                ),
                address_type: if v6 { "IPv6" } else { "IPv4" }.into(),
                endpoints: ips
                    .into_iter()
                    .map(|ip| Endpoint {
                        addresses: vec![ip.to_string()],
                        conditions: Some(EndpointConditions {
                            ready: Some(true),
                            serving: Some(true),
                            terminating: Some(false),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ports: Some(vec![SlicePort {
                    name: Some("https".into()),
                    port: Some(i32::from(port)),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            }
        })
        .collect()
}

fn by_port(live: &[SocketAddr]) -> BTreeMap<u16, Vec<IpAddr>> {
    let mut out: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
    for a in live {
        out.entry(a.port()).or_default().push(a.ip());
    }
    out
}

fn same_slice(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.address_type == b.address_type
        && a.endpoints == b.endpoints
        && a.ports == b.ports
        && a.metadata.labels == b.metadata.labels
}

fn endpoints_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(SKIP_MIRROR_LABEL.to_string(), "true".to_string())])
}

fn meta(name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(labels),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn lease(holder: &str, renewed: i64, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(ts(renewed))),
                lease_duration_seconds: Some(duration),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn liveness_is_judged_by_this_servers_clock() {
        let named = |name: &str, rv: &str, mut l: Lease| {
            l.metadata.name = Some(name.into());
            l.metadata.resource_version = Some(rv.into());
            l
        };
        let t0 = Instant::now();
        let wall = ts(100);
        let mut obs = Observed::default();
        // b's clock is 30 s behind ours: its renewTime looks stale, yet it renews.
        let a = named("a", "1", lease("10.0.0.1:6443", 100, 15));
        let b = named("b", "7", lease("10.0.0.2:6443", 70, 15));
        let gone = named("gone", "3", lease("10.0.0.3:6443", -1000, 15));
        let junk = named("junk", "4", lease("not an address", 100, 15));
        let want: Vec<SocketAddr> = vec![
            "10.0.0.1:6443".parse().unwrap(),
            "10.0.0.2:6443".parse().unwrap(),
        ];
        let all = [a.clone(), b.clone(), gone.clone(), junk];
        assert_eq!(
            obs.live(&all, t0, wall),
            want,
            "long expired or unparsable: out"
        );
        // 14 s later, unchanged: still live; at 15 s unchanged Leases expire.
        assert_eq!(obs.live(&all, t0 + Duration::from_secs(14), wall), want);
        let b2 = named("b", "8", lease("10.0.0.2:6443", 84, 15));
        let later = [a, b2, gone];
        assert_eq!(
            obs.live(&later, t0 + Duration::from_secs(15), wall),
            want[1..],
            "only the renewed one"
        );
        assert!(obs.live(&[Lease::default()], t0, wall).is_empty());
    }

    #[test]
    fn one_subset_and_one_slice_per_port() {
        let live: Vec<SocketAddr> = ["10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:7443"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let s = subsets(&live);
        assert_eq!(s.len(), 2);
        let ips = |sub: &EndpointSubset| -> Vec<String> {
            sub.addresses
                .as_ref()
                .unwrap()
                .iter()
                .map(|a| a.ip.clone())
                .collect()
        };
        assert_eq!(ips(&s[0]), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(s[0].ports.as_ref().unwrap()[0].port, 6443);
        assert_eq!(ips(&s[1]), ["10.0.0.3"]);

        let sl = slices(&live);
        let names: Vec<_> = sl
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["kubernetes", "kubernetes-7443"]);
        assert_eq!(sl[0].endpoints.len(), 2);
        assert_eq!(sl[0].address_type, "IPv4");
        assert_eq!(sl[1].ports.as_ref().unwrap()[0].port, Some(7443));
        assert_eq!(
            sl[0].metadata.labels.as_ref().unwrap()[SERVICE_NAME_LABEL],
            "kubernetes"
        );
        assert!(subsets(&[]).is_empty() && slices(&[]).is_empty());

        let v6: SocketAddr = "[fd00::1]:6443".parse().unwrap();
        let sl = slices(&[live[0], v6]);
        assert_eq!(sl[1].metadata.name.as_deref(), Some("kubernetes-6443-v6"));
        assert_eq!(sl[1].address_type, "IPv6");
    }

    #[test]
    fn lease_names_are_valid_names() {
        assert_eq!(
            lease_name("192.0.2.10:6443".parse().unwrap()),
            "apiserver-192-0-2-10-6443"
        );
        assert_eq!(
            lease_name("[fd00::1]:443".parse().unwrap()),
            "apiserver-fd00--1-443"
        );
    }
}
