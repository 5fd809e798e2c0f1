//! The part of etcd's keyspace a store owns: every key is stored under a fixed prefix, so
//! several clusters (or tests) can share one etcd, as kube-apiserver's `--etcd-prefix` does.

use bytes::Bytes;
use etcd_client::proto::PbKeyValue;

use crate::{KeyValue, StoreError, StoreResult};

#[derive(Debug, Clone, Default)]
pub(crate) struct Keyspace {
    prefix: Vec<u8>,
}

impl Keyspace {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.as_bytes().to_vec(),
        }
    }

    /// The etcd key for a contract key.
    pub(crate) fn key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The exclusive end of the etcd range holding every key that starts with `prefix`.
    pub(crate) fn prefix_end(&self, prefix: &str) -> Vec<u8> {
        range_end(&self.key(prefix))
    }

    /// A key that no contract key can equal (contract keys have no NUL), used for requests
    /// that only want a response header or a revision check.
    pub(crate) fn probe_key(&self) -> Vec<u8> {
        let mut key = self.prefix.clone();
        key.push(0);
        key
    }

    /// The contract key for an etcd key.
    pub(crate) fn strip(&self, key: Vec<u8>) -> StoreResult<String> {
        let Some(rest) = key.strip_prefix(self.prefix.as_slice()) else {
            return Err(StoreError::Internal(format!(
                "etcd returned key {:?} outside the store's prefix",
                String::from_utf8_lossy(&key)
            )));
        };
        String::from_utf8(rest.to_vec())
            .map_err(|_| StoreError::Internal("etcd returned a key that is not UTF-8".into()))
    }

    pub(crate) fn key_value(&self, kv: PbKeyValue) -> StoreResult<KeyValue> {
        Ok(KeyValue {
            key: self.strip(kv.key)?,
            value: Bytes::from(kv.value),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        })
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's `GetPrefix`).
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: no key is greater, so the range runs to the end ("\0").
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_the_prefix() {
        let ks = Keyspace::new("/flotilla");
        let full = ks.key("/registry/pods/a");
        assert_eq!(full, b"/flotilla/registry/pods/a");
        assert_eq!(ks.strip(full).unwrap(), "/registry/pods/a");
        assert!(matches!(
            ks.strip(b"/other/x".to_vec()),
            Err(StoreError::Internal(_))
        ));
    }

    #[test]
    fn range_end_increments_the_last_byte() {
        assert_eq!(range_end(b"/a/"), b"/a0");
        assert_eq!(range_end(b"a\xff"), b"b");
        assert_eq!(range_end(b"\xff\xff"), vec![0]);
        let ks = Keyspace::new("p");
        assert_eq!(ks.prefix_end("/x"), b"p/y");
    }

    #[test]
    fn probe_key_is_no_contract_key() {
        let ks = Keyspace::new("");
        assert_eq!(ks.probe_key(), vec![0]);
        assert!(crate::validate_key("\0").is_err());
    }
}
