//! ClusterIP and NodePort allocation for Services.
//!
//! The allocations live in the store (`/registry/ranges/serviceips`,
//! `/registry/ranges/servicenodeports`) and are written in the SAME transaction as the
//! Service, guarded by the records' mod revisions: two creates racing for an address
//! cannot both win, and a failed create leaves nothing allocated.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use bytes::Bytes;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{Compare, KeyValue, Op, OpResult, Revision, TxnResult};
use tracing::warn;

use super::{meta, ObjectRef, Registry};
use crate::status::ApiError;

const IP_RECORD: &str = "/registry/ranges/serviceips";
const PORT_RECORD: &str = "/registry/ranges/servicenodeports";
const MAX_ATTEMPTS: usize = 16;

/// An IPv4 network such as 10.43.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn new(network: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Self {
            network: Ipv4Addr::from(u32::from(network) & mask),
            prefix,
        }
    }

    fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let off = u64::from(u32::from(ip)).wrapping_sub(u64::from(u32::from(self.network)));
        u32::from(ip) >= u32::from(self.network) && off < self.size()
    }

    /// The n-th address of the network (1 = the first usable one).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add(n))
    }
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{s:?} is not a CIDR"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("{s:?} is not a CIDR"))?;
        if prefix > 30 {
            return Err(format!("{s:?} is too small for services"));
        }
        Ok(Self::new(ip, prefix))
    }
}

/// Who holds which address or port ("namespace/name").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    allocated: BTreeMap<String, String>,
}

fn read_record(kv: &Option<KeyValue>) -> Record {
    kv.as_ref()
        .and_then(|kv| serde_json::from_slice(&kv.value).ok())
        .unwrap_or_default()
}

fn compare_for(key: &str, kv: &Option<KeyValue>) -> Compare {
    match kv {
        Some(kv) => Compare::ModRevision(key.to_string(), kv.mod_revision),
        None => Compare::Absent(key.to_string()),
    }
}

fn owner(obj: &Value) -> String {
    format!(
        "{}/{}",
        meta::namespace(obj).unwrap_or_default(),
        meta::name(obj).unwrap_or_default()
    )
}

impl Registry {
    /// Picks addresses for `svc` against the current records and stores them in `svc`.
    fn allocate(
        &self,
        svc: &mut Value,
        ips: &mut Record,
        ports: &mut Record,
    ) -> Result<(), ApiError> {
        let who = owner(svc);
        let kind = svc
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        let name = meta::name(svc).unwrap_or_default().to_string();
        let invalid = |field: &str, v: Value, why: &str| {
            ApiError::invalid(
                "",
                "Service",
                &name,
                &[api::FieldError::invalid(field, v, why)],
            )
        };
        if kind != "ExternalName" {
            let requested = svc
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let ip = match requested.as_str() {
                "None" => None,
                "" => Some(self.free_ip(ips).ok_or_else(|| {
                    ApiError::internal("failed to allocate a serviceIP: range is full")
                })?),
                text => {
                    let ip: Ipv4Addr = text.parse().map_err(|_| {
                        invalid(
                            "spec.clusterIPs[0]",
                            json!(text),
                            "must be a valid IP address",
                        )
                    })?;
                    let cidr = self.config.service_cidr;
                    if !cidr.contains(ip) || ip == cidr.network {
                        return Err(invalid("spec.clusterIPs", json!([text]), &format!(
                            "failed to allocate IP {text}: the provided IP ({text}) is not in the valid range. The range of valid IPs is {}/{}", cidr.network, cidr.prefix)));
                    }
                    if ips.allocated.contains_key(text) {
                        return Err(invalid(
                            "spec.clusterIPs",
                            json!([text]),
                            &format!(
                                "failed to allocate IP {text}: provided IP is already allocated"
                            ),
                        ));
                    }
                    Some(ip)
                }
            };
            let spec = svc.get_mut("spec").and_then(Value::as_object_mut);
            if let Some(spec) = spec {
                match ip {
                    Some(ip) => {
                        ips.allocated.insert(ip.to_string(), who.clone());
                        spec.insert("clusterIP".into(), json!(ip.to_string()));
                        spec.insert("clusterIPs".into(), json!([ip.to_string()]));
                    }
                    None => {
                        spec.insert("clusterIP".into(), json!("None"));
                        spec.insert("clusterIPs".into(), json!(["None"]));
                    }
                }
                spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
                spec.entry("ipFamilyPolicy")
                    .or_insert_with(|| json!("SingleStack"));
            }
        }
        if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
            let range = self.config.node_port_range.clone();
            if let Some(Value::Array(list)) = svc.pointer_mut("/spec/ports") {
                for (i, p) in list.iter_mut().enumerate() {
                    let port = match p.get("nodePort").and_then(Value::as_u64) {
                        Some(n) => {
                            let n = u16::try_from(n).ok().filter(|n| range.contains(n)).ok_or_else(|| {
                                invalid(&format!("spec.ports[{i}].nodePort"), json!(n), &format!(
                                    "provided port is not in the valid range. The range of valid ports is {}-{}", range.start(), range.end()))
                            })?;
                            if ports.allocated.contains_key(&n.to_string()) {
                                return Err(invalid(
                                    &format!("spec.ports[{i}].nodePort"),
                                    json!(n),
                                    "provided port is already allocated",
                                ));
                            }
                            n
                        }
                        None => free_port(ports, &range).ok_or_else(|| {
                            ApiError::internal("failed to allocate a nodePort: range is full")
                        })?,
                    };
                    ports.allocated.insert(port.to_string(), who.clone());
                    if let Some(o) = p.as_object_mut() {
                        o.insert("nodePort".into(), json!(port));
                    }
                }
            }
        }
        Ok(())
    }

    fn free_ip(&self, ips: &Record) -> Option<Ipv4Addr> {
        let cidr = self.config.service_cidr;
        // First and last addresses are the network and broadcast; .1 is the `kubernetes`
        // service's and .10 cluster DNS's, given only when asked for by name.
        let usable = u32::try_from(cidr.size().saturating_sub(2)).ok()?;
        if usable == 0 {
            return None;
        }
        let start = rand::rng().random_range(0..usable);
        (0..usable)
            .map(|i| cidr.nth(1 + (start + i) % usable))
            .find(|ip| {
                *ip != cidr.nth(1)
                    && *ip != cidr.nth(10)
                    && !ips.allocated.contains_key(&ip.to_string())
            })
    }

    /// Dry run: what the allocation would give, without writing.
    pub(super) fn preview_service_allocation(&self, svc: &mut Value) -> Result<(), ApiError> {
        self.allocate(svc, &mut Record::default(), &mut Record::default())
    }

    /// Creates a Service together with its allocations, in one transaction.
    pub(super) async fn create_service(
        &self,
        key: &str,
        svc: &mut Value,
        r: ObjectRef<'_>,
    ) -> Result<KeyValue, ApiError> {
        for _ in 0..MAX_ATTEMPTS {
            let (ip_kv, _) = self
                .store
                .get(IP_RECORD, None)
                .await
                .map_err(|e| ApiError::from_store(e, r.target()))?;
            let (port_kv, _) = self
                .store
                .get(PORT_RECORD, None)
                .await
                .map_err(|e| ApiError::from_store(e, r.target()))?;
            let mut ips = read_record(&ip_kv);
            let mut ports = read_record(&port_kv);
            let mut candidate = svc.clone();
            self.allocate(&mut candidate, &mut ips, &mut ports)?;
            let txn = store::Txn {
                compares: vec![
                    Compare::Absent(key.to_string()),
                    compare_for(IP_RECORD, &ip_kv),
                    compare_for(PORT_RECORD, &port_kv),
                ],
                ops: vec![
                    Op::Put {
                        key: key.to_string(),
                        value: meta::encode_for_store(&candidate)?,
                    },
                    Op::Put {
                        key: IP_RECORD.into(),
                        value: encode(&ips)?,
                    },
                    Op::Put {
                        key: PORT_RECORD.into(),
                        value: encode(&ports)?,
                    },
                ],
            };
            match self
                .store
                .txn(txn)
                .await
                .map_err(|e| ApiError::from_store(e, r.target()))?
            {
                TxnResult::Succeeded { mut results, .. } => {
                    results.truncate(1);
                    if let Some(OpResult::Put(kv)) = results.pop() {
                        *svc = candidate;
                        return Ok(kv);
                    }
                    return Err(ApiError::internal("service create returned no object"));
                }
                TxnResult::Failed { current, .. } => {
                    if current.first().is_some_and(Option::is_some) {
                        return Err(ApiError::already_exists(r.target()));
                    }
                }
            }
        }
        Err(ApiError::conflict_with(
            r.target(),
            "could not allocate addresses; try again",
        ))
    }

    /// Returns a deleted Service's addresses to the pools.
    pub(crate) async fn release_service(&self, svc: &Value) {
        let who = owner(svc);
        for record in [IP_RECORD, PORT_RECORD] {
            for _ in 0..MAX_ATTEMPTS {
                let Ok((Some(kv), _)) = self.store.get(record, None).await else {
                    break;
                };
                let mut rec = read_record(&Some(kv.clone()));
                let before = rec.allocated.len();
                rec.allocated.retain(|_, holder| *holder != who);
                if rec.allocated.len() == before {
                    break;
                }
                let Ok(bytes) = encode(&rec) else { break };
                match self.store.update(record, bytes, kv.mod_revision).await {
                    Ok(_) => break,
                    Err(store::StoreError::Conflict { .. }) => continue,
                    Err(e) => {
                        warn!(record, error = %e, "could not release service addresses");
                        break;
                    }
                }
            }
        }
    }

    /// Revision-independent view of the allocated cluster IPs (for tests and status).
    pub async fn allocated_service_ips(&self) -> Result<Vec<String>, ApiError> {
        let (kv, _): (Option<KeyValue>, Revision) = self
            .store
            .get(IP_RECORD, None)
            .await
            .map_err(|e| ApiError::service_unavailable(e.to_string()))?;
        Ok(read_record(&kv).allocated.into_keys().collect())
    }
}

fn free_port(ports: &Record, range: &std::ops::RangeInclusive<u16>) -> Option<u16> {
    let (lo, hi) = (u32::from(*range.start()), u32::from(*range.end()));
    let size = hi.checked_sub(lo)? + 1;
    let start = rand::rng().random_range(0..size);
    (0..size)
        .filter_map(|i| u16::try_from(lo + (start + i) % size).ok())
        .find(|p| !ports.allocated.contains_key(&p.to_string()))
}

fn encode(r: &Record) -> Result<Bytes, ApiError> {
    serde_json::to_vec(r)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_and_membership() {
        let c: Ipv4Cidr = "10.43.0.0/16".parse().unwrap();
        assert!(c.contains(Ipv4Addr::new(10, 43, 255, 254)));
        assert!(!c.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert_eq!(c.nth(10), Ipv4Addr::new(10, 43, 0, 10));
        assert!("10.43.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.43.0.0/31".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn ports_come_from_the_range_without_duplicates() {
        let mut rec = Record::default();
        let range = 30000..=30002;
        for _ in 0..3 {
            let p = free_port(&rec, &range).unwrap();
            assert!(range.contains(&p));
            assert!(rec.allocated.insert(p.to_string(), "x".into()).is_none());
        }
        assert_eq!(free_port(&rec, &range), None);
    }
}
