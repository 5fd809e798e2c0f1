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

use etcd_client::proto::{PbEvent, PbWatchResponse};
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
    decoder: Decoder,
    finished: bool,
}

/// Turns etcd's watch responses into contract events, or into the error that ends the watch.
struct Decoder {
    keyspace: Keyspace,
    pending: VecDeque<Event>,
    /// The lowest revision the next event may have: what a resumed watch would ask for.
    next: Revision,
    compacted: Arc<AtomicI64>,
}

impl Decoder {
    fn pop(&mut self) -> Option<Event> {
        let event = self.pending.pop_front()?;
        self.next = event.revision() + 1;
        Some(event)
    }

    /// Queues the events of one response; an error means the watch is over.
    fn absorb(&mut self, response: PbWatchResponse) -> StoreResult<()> {
        if response.compact_revision > 0 {
            self.compacted
                .fetch_max(response.compact_revision, Ordering::Relaxed);
            return Err(StoreError::Compacted {
                requested: self.next,
                compacted: response.compact_revision,
            });
        }
        if response.canceled {
            return Err(StoreError::Unavailable(format!(
                "etcd cancelled the watch: {}",
                response.cancel_reason
            )));
        }
        // Progress notifications carry no events and need nothing.
        for event in response.events {
            let event = convert(&self.keyspace, event)?;
            self.pending.push_back(event);
        }
        Ok(())
    }
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
        decoder: Decoder {
            keyspace,
            pending: VecDeque::new(),
            next,
            compacted,
        },
        finished: false,
    };
    Ok(futures::stream::unfold(state, next_item).boxed())
}

async fn next_item(mut st: State) -> Option<(StoreResult<Event>, State)> {
    loop {
        if let Some(event) = st.decoder.pop() {
            return Some((Ok(event), st));
        }
        if st.finished {
            return None;
        }
        let outcome = match st.stream.message().await {
            Ok(Some(response)) => st.decoder.absorb(response.0),
            Ok(None) => Err(StoreError::Unavailable(
                "etcd closed the watch stream".into(),
            )),
            Err(e) => Err(classify(e).into_store_error()),
        };
        if let Err(err) = outcome {
            tracing::debug!(error = %err, "etcd watch ended");
            st.finished = true;
            st.decoder.pending.clear();
            return Some((Err(err), st));
        }
    }
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

    fn decoder(next: Revision) -> Decoder {
        Decoder {
            keyspace: Keyspace::new("/p"),
            pending: VecDeque::new(),
            next,
            compacted: Arc::new(AtomicI64::new(0)),
        }
    }

    fn put(key: &[u8], rev: i64) -> PbEvent {
        PbEvent {
            r#type: 0,
            kv: Some(PbKeyValue {
                key: key.to_vec(),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
                value: b"v".to_vec(),
                lease: 0,
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn a_compaction_ends_the_watch_where_it_would_resume() {
        let mut d = decoder(5);
        d.absorb(PbWatchResponse {
            events: vec![put(b"/p/a", 5), put(b"/p/b", 6)],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(d.pop().unwrap().revision(), 5);
        assert_eq!(d.pop().unwrap().revision(), 6);
        assert!(d.pop().is_none());
        let ended = d.absorb(PbWatchResponse {
            canceled: true,
            compact_revision: 40,
            ..Default::default()
        });
        assert_eq!(
            ended,
            Err(StoreError::Compacted {
                requested: 7,
                compacted: 40
            })
        );
        assert_eq!(d.compacted.load(Ordering::Relaxed), 40);
    }

    #[test]
    fn a_cancelled_watch_is_unavailable_and_progress_is_silent() {
        let mut d = decoder(1);
        d.absorb(PbWatchResponse::default()).unwrap();
        assert!(d.pop().is_none());
        let ended = d.absorb(PbWatchResponse {
            canceled: true,
            cancel_reason: "no leader".into(),
            ..Default::default()
        });
        assert!(matches!(ended, Err(StoreError::Unavailable(_))));
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
