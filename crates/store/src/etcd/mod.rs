//! The etcd backend: the store contract served by an etcd v3 cluster, for deployments that
//! scale the control plane out.
//!
//! Contract revisions are etcd revisions, one to one. etcd does not report its compacted
//! revision directly, so the store keeps the highest one it has seen (its own compactions,
//! watch cancellations) and, when that may be stale, finds the exact value by probing reads:
//! a read at `r` fails exactly when `r` is below the compacted revision.
//!
//! etcd must accept what the contract accepts: run it with `--max-request-bytes` above
//! 1.5 MiB plus key and framing (the default is exactly 1.5 MiB) and, for transactions of
//! more than 128 ops, a larger `--max-txn-ops`; a request over either limit fails with
//! [`StoreError::InvalidRequest`].

mod error;
mod keyspace;
mod txn;
mod watch;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, CompactionOptions, ConnectOptions, GetOptions, KvClient, MaintenanceClient, WatchClient,
};

use self::error::{classify, EtcdFailure};
use self::keyspace::Keyspace;
use crate::{
    validate_key, ContinueToken, KeyRange, KeyValue, ListOptions, ListResult, Revision, Store,
    StoreError, StoreResult, Txn, TxnResult, WatchStream,
};

/// How to reach etcd and which part of its keyspace to use.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client URLs, such as `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Prepended to every key (kube-apiserver's `--etcd-prefix`); empty for none.
    pub prefix: String,
    pub connect_timeout: Duration,
    /// Deadline for each unary request and for creating a watch; a request that misses it
    /// fails with [`StoreError::Unavailable`].
    pub request_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: String::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Responses may hold many large values (a list of thousands of objects, a watch batch of
/// 1.5 MiB values); tonic's 4 MiB default would refuse them. etcd caps its own at 2 GiB.
const MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    maintenance: MaintenanceClient,
    keyspace: Keyspace,
    request_timeout: Duration,
    /// The highest compacted revision seen; never above etcd's.
    compacted: Arc<AtomicI64>,
}

impl EtcdStore {
    /// Connects to etcd at `endpoints`, storing keys under `prefix`, and checks that it
    /// answers.
    pub async fn connect(endpoints: &[String], prefix: Option<&str>) -> StoreResult<Self> {
        Self::connect_with(EtcdConfig {
            endpoints: endpoints.to_vec(),
            prefix: prefix.unwrap_or_default().to_string(),
            ..EtcdConfig::default()
        })
        .await
    }

    pub async fn connect_with(config: EtcdConfig) -> StoreResult<Self> {
        if config.endpoints.is_empty() {
            return Err(StoreError::InvalidRequest {
                reason: "no etcd endpoints given".into(),
            });
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        let client = Client::connect(&config.endpoints, Some(options))
            .await
            .map_err(|e| classify(e).into_store_error())?;
        let store = Self {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            maintenance: client.maintenance_client(),
            keyspace: Keyspace::new(&config.prefix),
            request_timeout: config.request_timeout,
            compacted: Arc::new(AtomicI64::new(0)),
        };
        let revision = store.current_revision().await?;
        tracing::info!(endpoints = ?config.endpoints, revision, "connected to etcd");
        Ok(store)
    }

    /// Rewrites etcd's database file without the space compaction freed (etcd's
    /// `defragment`). Blocks the member while it runs; an operator's tool, not a hot path.
    pub async fn defragment(&self) -> StoreResult<()> {
        let mut maintenance = self.maintenance.clone();
        self.deadline(async move { maintenance.defragment().await })
            .await
            .map_err(EtcdFailure::into_store_error)?;
        Ok(())
    }

    /// Runs one etcd request under the request deadline.
    async fn deadline<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, EtcdFailure> {
        match tokio::time::timeout(self.request_timeout, request).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(EtcdFailure::Other(StoreError::Unavailable(format!(
                "etcd did not answer within {:?}",
                self.request_timeout
            )))),
        }
    }

    /// A range request over `key` (up to `options`' range end), read at `revision`.
    async fn range(
        &self,
        key: Vec<u8>,
        options: GetOptions,
        revision: Option<Revision>,
    ) -> StoreResult<etcd_client::proto::PbRangeResponse> {
        let options = match revision {
            Some(rev) => options.with_revision(rev),
            None => options,
        };
        let mut kv = self.kv.clone();
        match self
            .deadline(async move { kv.get(key, Some(options)).await })
            .await
        {
            Ok(response) => Ok(response.0),
            Err(failure) => Err(self.revision_error(failure, revision).await),
        }
    }

    /// Adds the revisions a contract error carries to an etcd revision failure.
    async fn revision_error(
        &self,
        failure: EtcdFailure,
        requested: Option<Revision>,
    ) -> StoreError {
        let requested = requested.unwrap_or_default();
        match failure {
            EtcdFailure::Other(err) => err,
            EtcdFailure::Compacted => match self.compacted_revision().await {
                Ok(compacted) => StoreError::Compacted {
                    requested,
                    compacted,
                },
                Err(err) => err,
            },
            EtcdFailure::FutureRevision => match self.current_revision().await {
                Ok(current) => StoreError::FutureRevision { requested, current },
                Err(err) => err,
            },
        }
    }

    /// Whether `revision` is not below the compaction (a future one is not).
    async fn readable_at(&self, revision: Revision) -> StoreResult<bool> {
        let options = GetOptions::new().with_count_only().with_revision(revision);
        let mut kv = self.kv.clone();
        let key = self.keyspace.probe_key();
        match self
            .deadline(async move { kv.get(key, Some(options)).await })
            .await
        {
            Ok(_) | Err(EtcdFailure::FutureRevision) => Ok(true),
            Err(EtcdFailure::Compacted) => Ok(false),
            Err(failure) => Err(self.revision_error(failure, Some(revision)).await),
        }
    }

    fn full_range(&self, range: &KeyRange) -> StoreResult<(Vec<u8>, Option<Vec<u8>>)> {
        Ok(match range {
            KeyRange::Key(key) => {
                validate_key(key)?;
                (self.keyspace.key(key), None)
            }
            KeyRange::Prefix(prefix) => {
                validate_key(prefix)?;
                (
                    self.keyspace.key(prefix),
                    Some(self.keyspace.prefix_end(prefix)),
                )
            }
        })
    }
}

/// A read revision as etcd takes it: the contract, like etcd, reads "0 or less" as "latest".
fn read_revision(revision: Option<Revision>) -> Option<Revision> {
    revision.filter(|rev| *rev > 0)
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> StoreResult<(Option<KeyValue>, Revision)> {
        validate_key(key)?;
        let revision = read_revision(revision);
        let response = self
            .range(self.keyspace.key(key), GetOptions::new(), revision)
            .await?;
        let read_at = match revision {
            Some(rev) => rev,
            None => header_revision(response.header.as_ref())?,
        };
        let kv = match response.kvs.into_iter().next() {
            Some(kv) => Some(self.keyspace.key_value(kv)?),
            None => None,
        };
        Ok((kv, read_at))
    }

    async fn list(&self, options: ListOptions) -> StoreResult<ListResult> {
        validate_key(&options.prefix)?;
        let (start, revision) = match &options.continue_token {
            Some(token) => {
                let token = ContinueToken::decode(token, &options.prefix)?;
                // Resume just after the last key returned: the next key in byte order.
                let mut start = self.keyspace.key(&token.last_key);
                start.push(0);
                (start, Some(token.revision))
            }
            None => (
                self.keyspace.key(&options.prefix),
                read_revision(options.revision),
            ),
        };
        let limit = options.limit.unwrap_or(0);
        let mut get = GetOptions::new().with_range(self.keyspace.prefix_end(&options.prefix));
        if limit > 0 {
            get = get.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let response = self.range(start, get, revision).await?;
        let read_at = match revision {
            Some(rev) => rev,
            None => header_revision(response.header.as_ref())?,
        };
        let count = response.count;
        let more = response.more;
        let kvs = response
            .kvs
            .into_iter()
            .map(|kv| self.keyspace.key_value(kv))
            .collect::<StoreResult<Vec<_>>>()?;
        let continue_token = match (more, kvs.last()) {
            (true, Some(last)) => Some(
                ContinueToken {
                    revision: read_at,
                    last_key: last.key.clone(),
                    prefix: options.prefix.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        let remaining = if continue_token.is_some() {
            count.saturating_sub(kvs.len() as i64).max(0)
        } else {
            0
        };
        Ok(ListResult {
            kvs,
            revision: read_at,
            continue_token,
            remaining,
        })
    }

    async fn txn(&self, txn: Txn) -> StoreResult<TxnResult> {
        txn.validate()?;
        let (request, prepared) = txn::prepare(&self.keyspace, txn);
        let mut kv = self.kv.clone();
        let response = self
            .deadline(async move { kv.txn(request).await })
            .await
            .map_err(EtcdFailure::into_store_error)?;
        prepared.result(&self.keyspace, response.0)
    }

    async fn watch(&self, range: KeyRange, start: Option<Revision>) -> StoreResult<WatchStream> {
        let (key, range_end) = self.full_range(&range)?;
        let start = read_revision(start);
        // etcd accepts a watch below the compaction and cancels it a moment later; the
        // contract refuses it up front.
        if let Some(start) = start {
            if !self.readable_at(start).await? {
                return Err(StoreError::Compacted {
                    requested: start,
                    compacted: self.compacted_revision().await?,
                });
            }
        }
        watch::open(
            self.watch.clone(),
            self.keyspace.clone(),
            watch::WatchRequest {
                key,
                range_end,
                start,
            },
            self.compacted.clone(),
            self.request_timeout,
        )
        .await
    }

    async fn compact(&self, revision: Revision) -> StoreResult<()> {
        // etcd would accept 0 (its compacted revision starts at -1); the contract has
        // nothing below revision 1 to discard.
        if revision <= 0 {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: self.compacted_revision().await?,
            });
        }
        let mut kv = self.kv.clone();
        // Physical: return only once the old revisions are gone from the backend, so that
        // a defragment right after reclaims their space.
        let options = CompactionOptions::new().with_physical();
        match self
            .deadline(async move { kv.compact(revision, Some(options)).await })
            .await
        {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::Relaxed);
                tracing::debug!(revision, "compacted etcd");
                Ok(())
            }
            Err(failure) => Err(self.revision_error(failure, Some(revision)).await),
        }
    }

    async fn current_revision(&self) -> StoreResult<Revision> {
        let response = self
            .range(
                self.keyspace.probe_key(),
                GetOptions::new().with_count_only(),
                None,
            )
            .await?;
        header_revision(response.header.as_ref())
    }

    async fn compacted_revision(&self) -> StoreResult<Revision> {
        let known = self.compacted.load(Ordering::Relaxed);
        // The common case: nobody else compacted, and a read at what we know still works.
        if self.readable_at(known.max(1)).await? {
            return Ok(known);
        }
        // Someone compacted past what we saw: find the lowest readable revision in
        // (known, current] by bisection; compaction only moves forward, so this converges.
        let (mut unreadable, mut readable) = (known.max(1), self.current_revision().await?);
        while readable - unreadable > 1 {
            let mid = unreadable + (readable - unreadable) / 2;
            if self.readable_at(mid).await? {
                readable = mid;
            } else {
                unreadable = mid;
            }
        }
        self.compacted.fetch_max(readable, Ordering::Relaxed);
        Ok(readable)
    }
}

fn header_revision(header: Option<&etcd_client::proto::PbResponseHeader>) -> StoreResult<Revision> {
    header
        .map(|h| h.revision)
        .ok_or_else(|| StoreError::Internal("etcd response without a header".into()))
}
