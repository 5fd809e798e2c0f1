//! Translating a contract transaction into an etcd `Txn` and its response back.
//!
//! The success branch runs the ops with `prev_kv`, because etcd's put response carries only
//! the previous value: the new key's `create_revision` and `version` follow from it. The
//! failure branch reads every compared key, so a losing compare-and-swap returns the values
//! it lost against, read in the same revision as the failed compare.

use bytes::Bytes;
use etcd_client::proto::{PbTxnOpResponse, PbTxnResponse};
use etcd_client::{Compare as EtcdCompare, CompareOp, DeleteOptions, PutOptions, TxnOp};

use super::keyspace::Keyspace;
use crate::{Compare, KeyValue, Op, OpResult, Revision, StoreError, StoreResult, Txn, TxnResult};

/// What is needed to read the response of a transaction sent to etcd.
pub(crate) struct Prepared {
    /// The key and value of each op, in order; puts return these with the new revisions.
    written: Vec<(String, Option<Bytes>)>,
}

/// The etcd request for `txn`, and what reads its response.
pub(crate) fn prepare(ks: &Keyspace, txn: Txn) -> (etcd_client::Txn, Prepared) {
    let mut compares = Vec::with_capacity(txn.compares.len());
    let mut reads = Vec::with_capacity(txn.compares.len());
    for compare in &txn.compares {
        let key = ks.key(compare.key());
        match compare {
            // An absent key has create_revision 0 in etcd's compare semantics.
            Compare::Absent(_) => compares.push(EtcdCompare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )),
            Compare::Exists(_) => compares.push(EtcdCompare::create_revision(
                key.clone(),
                CompareOp::Greater,
                0,
            )),
            Compare::ModRevision(_, rev) => {
                compares.push(EtcdCompare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    *rev,
                ));
                // etcd compares an absent key's mod_revision as 0; the contract requires the
                // key to exist, so `ModRevision(k, 0)` must not match a missing key.
                if *rev <= 0 {
                    compares.push(EtcdCompare::create_revision(
                        key.clone(),
                        CompareOp::Greater,
                        0,
                    ));
                }
            }
        }
        reads.push(TxnOp::get(key, None));
    }

    let mut ops = Vec::with_capacity(txn.ops.len());
    let mut written = Vec::with_capacity(txn.ops.len());
    for op in txn.ops {
        match op {
            Op::Put { key, value } => {
                ops.push(TxnOp::put(
                    ks.key(&key),
                    value.to_vec(),
                    Some(PutOptions::new().with_prev_key()),
                ));
                written.push((key, Some(value)));
            }
            Op::Delete { key } => {
                ops.push(TxnOp::delete(
                    ks.key(&key),
                    Some(DeleteOptions::new().with_prev_key()),
                ));
                written.push((key, None));
            }
        }
    }

    let request = etcd_client::Txn::new()
        .when(compares)
        .and_then(ops)
        .or_else(reads);
    (request, Prepared { written })
}

impl Prepared {
    pub(crate) fn result(self, ks: &Keyspace, response: PbTxnResponse) -> StoreResult<TxnResult> {
        let revision = response
            .header
            .as_ref()
            .map(|h| h.revision)
            .ok_or_else(|| StoreError::Internal("etcd txn response without a header".into()))?;
        let responses = response.responses.into_iter().map(|r| r.response);

        if !response.succeeded {
            let mut current = Vec::new();
            for r in responses {
                let Some(PbTxnOpResponse::ResponseRange(range)) = r else {
                    return Err(unexpected("a range response in the failure branch"));
                };
                current.push(match range.kvs.into_iter().next() {
                    Some(kv) => Some(ks.key_value(kv)?),
                    None => None,
                });
            }
            return Ok(TxnResult::Failed { revision, current });
        }

        if responses.len() != self.written.len() {
            return Err(unexpected("one response per op"));
        }
        let mut results = Vec::with_capacity(self.written.len());
        for ((key, value), r) in self.written.into_iter().zip(responses) {
            results.push(match (value, r) {
                (Some(value), Some(PbTxnOpResponse::ResponsePut(put))) => {
                    OpResult::Put(written_kv(key, value, revision, put.prev_kv.as_ref()))
                }
                (None, Some(PbTxnOpResponse::ResponseDeleteRange(del))) => {
                    OpResult::Delete(match del.prev_kvs.into_iter().next() {
                        Some(kv) => Some(ks.key_value(kv)?),
                        None => None,
                    })
                }
                _ => return Err(unexpected("the op's own response type")),
            });
        }
        Ok(TxnResult::Succeeded { revision, results })
    }
}

/// The key as a put at `revision` left it, given the value it replaced.
fn written_kv(
    key: String,
    value: Bytes,
    revision: Revision,
    prev: Option<&etcd_client::proto::PbKeyValue>,
) -> KeyValue {
    let (create_revision, version) = match prev {
        Some(prev) => (prev.create_revision, prev.version + 1),
        None => (revision, 1),
    };
    KeyValue {
        key,
        value,
        create_revision,
        mod_revision: revision,
        version,
    }
}

fn unexpected(what: &str) -> StoreError {
    StoreError::Internal(format!("etcd txn response lacks {what}"))
}

#[cfg(test)]
mod tests {
    use etcd_client::proto::{PbKeyValue, PbPutResponse, PbResponseHeader, PbResponseOp};

    use super::*;

    fn header(revision: i64) -> Option<PbResponseHeader> {
        Some(PbResponseHeader {
            revision,
            ..Default::default()
        })
    }

    #[test]
    fn put_over_an_existing_key_keeps_its_create_revision() {
        let ks = Keyspace::new("/p");
        let (_, prepared) = prepare(
            &ks,
            Txn {
                compares: vec![],
                ops: vec![Op::Put {
                    key: "/a".into(),
                    value: Bytes::from_static(b"v2"),
                }],
            },
        );
        let response = PbTxnResponse {
            header: header(9),
            succeeded: true,
            responses: vec![PbResponseOp {
                response: Some(PbTxnOpResponse::ResponsePut(PbPutResponse {
                    header: header(9),
                    prev_kv: Some(PbKeyValue {
                        key: b"/p/a".to_vec(),
                        create_revision: 3,
                        mod_revision: 5,
                        version: 2,
                        value: b"v1".to_vec(),
                        lease: 0,
                    }),
                })),
            }],
        };
        let result = prepared.result(&ks, response).unwrap();
        assert_eq!(
            result,
            TxnResult::Succeeded {
                revision: 9,
                results: vec![OpResult::Put(KeyValue {
                    key: "/a".into(),
                    value: Bytes::from_static(b"v2"),
                    create_revision: 3,
                    mod_revision: 9,
                    version: 3,
                })],
            }
        );
    }

    #[test]
    fn a_response_of_the_wrong_shape_is_an_internal_error() {
        let ks = Keyspace::default();
        let (_, prepared) = prepare(
            &ks,
            Txn {
                compares: vec![],
                ops: vec![Op::Delete { key: "/a".into() }],
            },
        );
        let response = PbTxnResponse {
            header: header(2),
            succeeded: true,
            responses: vec![],
        };
        assert!(matches!(
            prepared.result(&ks, response),
            Err(StoreError::Internal(_))
        ));
    }
}
