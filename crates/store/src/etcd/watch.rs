//! One contract watch as one etcd watch stream.
//!
//! etcd acknowledges a new watcher with a `created` response before any event; waiting for
//! it means every write made after [`open`] returns is seen. A watcher that falls behind a
//! compaction is cancelled by etcd with `compact_revision` set: the stream then ends with
//! [`StoreError::Compacted`]. Dropping the stream drops the gRPC call, which cancels the
//! watcher on the server.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::proto::PbEvent;
use etcd_client::{WatchClient, WatchOptions};
use futures::StreamExt;

use super::error::classify;
use super::keyspace::Keyspace;
use crate::{Event, EventKind, KeyValue, Revision, StoreError, StoreResult, WatchStream};

/// Where an etcd watch starts and what it covers.
pub(crate) struct WatchRequest {
    pub(crate) key: Vec<u8>,
    /// Exclusive end of the range; `None` watches `key` alone.
    pub(crate) range_end: Option<Vec<u8>>,
    /// First revision to deliver; `None` for "after the current revision".
    pub(crate) start: Option<Revision>,
}

struct State {
    stream: etcd_client::WatchStream,
    keyspace: Keyspace,
    pending: VecDeque<Event>,
    /// The lowest revision the next event may have: what a resumed watch would ask for.
    next: Revision,
    compacted: Arc<AtomicI64>,
    finished: bool,
}

pub(crate) async fn open(
    mut client: WatchClient,
    keyspace: Keyspace,
    request: WatchRequest,
    compacted: Arc<AtomicI64>,
    timeout: Duration,
) -> StoreResult<WatchStream> {
    let mut options = WatchOptions::new().with_prev_key();
    if let Some(end) = request.range_end {
        options = options.with_range(end);
    }
    if let Some(start) = request.start {
        options = options.with_start_revision(start);
    }
    let handshake = async {
        let mut stream = client
            .watch(request.key, Some(options))
            .await
            .map_err(|e| classify(e).into_store_error())?;
        let created = stream
            .message()
            .await
            .map_err(|e| classify(e).into_store_error())?
            .ok_or_else(|| StoreError::Unavailable("etcd closed the watch at creation".into()))?;
        Ok::<_, StoreError>((stream, created))
    };
    let (stream, created) = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| StoreError::Unavailable("etcd did not create the watch in time".into()))??;
    let created = created.0;
    if !created.created || created.canceled {
        return Err(StoreError::Unavailable(format!(
            "etcd refused the watch: {}",
            created.cancel_reason
        )));
    }
    // A watch from "now" starts after the revision etcd created it at.
    let next = match request.start {
        Some(start) => start,
        None => created.header.as_ref().map_or(0, |h| h.revision) + 1,
    };
    let state = State {
        stream,
        keyspace,
        pending: VecDeque::new(),
        next,
        compacted,
        finished: false,
    };
    Ok(futures::stream::unfold(state, next_item).boxed())
}

async fn next_item(mut st: State) -> Option<(StoreResult<Event>, State)> {
    loop {
        if let Some(event) = st.pending.pop_front() {
            st.next = event.revision() + 1;
            return Some((Ok(event), st));
        }
        if st.finished {
            return None;
        }
        let response = match st.stream.message().await {
            Ok(Some(response)) => response.0,
            Ok(None) => {
                return finish(
                    st,
                    StoreError::Unavailable("etcd closed the watch stream".into()),
                )
            }
            Err(e) => {
                let err = classify(e).into_store_error();
                return finish(st, err);
            }
        };
        if response.compact_revision > 0 {
            st.compacted
                .fetch_max(response.compact_revision, Ordering::Relaxed);
            let err = StoreError::Compacted {
                requested: st.next,
                compacted: response.compact_revision,
            };
            return finish(st, err);
        }
        if response.canceled {
            let err = StoreError::Unavailable(format!(
                "etcd cancelled the watch: {}",
                response.cancel_reason
            ));
            return finish(st, err);
        }
        for event in response.events {
            match convert(&st.keyspace, event) {
                Ok(event) => st.pending.push_back(event),
                Err(err) => return finish(st, err),
            }
        }
    }
}

fn finish(mut st: State, err: StoreError) -> Option<(StoreResult<Event>, State)> {
    tracing::debug!(error = %err, "etcd watch ended");
    st.finished = true;
    st.pending.clear();
    Some((Err(err), st))
}

fn convert(keyspace: &Keyspace, event: PbEvent) -> StoreResult<Event> {
    let kind = match event.r#type {
        0 => EventKind::Put,
        1 => EventKind::Delete,
        other => {
            return Err(StoreError::Internal(format!(
                "etcd sent an event of unknown type {other}"
            )))
        }
    };
    let kv = event
        .kv
        .ok_or_else(|| StoreError::Internal("etcd sent an event without a key".into()))?;
    let kv: KeyValue = keyspace.key_value(kv)?;
    let prev = match event.prev_kv {
        Some(prev) => Some(keyspace.key_value(prev)?),
        None => None,
    };
    Ok(Event { kind, kv, prev })
}

#[cfg(test)]
mod tests {
    use etcd_client::proto::PbKeyValue;

    use super::*;

    #[test]
    fn delete_events_carry_the_previous_value() {
        let ks = Keyspace::new("/p");
        let event = PbEvent {
            r#type: 1,
            kv: Some(PbKeyValue {
                key: b"/p/a".to_vec(),
                mod_revision: 7,
                ..Default::default()
            }),
            prev_kv: Some(PbKeyValue {
                key: b"/p/a".to_vec(),
                value: b"old".to_vec(),
                create_revision: 2,
                mod_revision: 4,
                version: 3,
                lease: 0,
            }),
        };
        let event = convert(&ks, event).unwrap();
        assert_eq!(event.kind, EventKind::Delete);
        assert_eq!(event.revision(), 7);
        assert_eq!(event.kv.key, "/a");
        assert!(event.kv.value.is_empty());
        assert_eq!(event.prev.unwrap().value.as_ref(), b"old");
    }

    #[test]
    fn unknown_event_types_are_errors_not_panics() {
        let event = PbEvent {
            r#type: 9,
            kv: None,
            prev_kv: None,
        };
        assert!(matches!(
            convert(&Keyspace::default(), event),
            Err(StoreError::Internal(_))
        ));
    }
}
