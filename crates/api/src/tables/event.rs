//! Events, core/v1 and events.k8s.io/v1 alike: LAST SEEN TYPE REASON OBJECT MESSAGE, with
//! SUBOBJECT SOURCE FIRST SEEN COUNT NAME for `-o wide`. Kubernetes prints both versions
//! through one printer; [`Fields`] says where each version keeps what the printer reads.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::columns::{col, wide, NAME_DOC};
use super::duration::since;
use super::fields::{int_at, str_at, time_at};
use crate::table::{Column, TablePrinter};

/// Where an Event version keeps the fields the printer reads.
struct Fields {
    regarding: &'static str,
    message: &'static str,
    first_timestamp: &'static str,
    last_timestamp: &'static str,
    count: &'static str,
    source: &'static str,
    reporting_controller: &'static str,
}

const CORE: Fields = Fields {
    regarding: "/involvedObject",
    message: "/message",
    first_timestamp: "/firstTimestamp",
    last_timestamp: "/lastTimestamp",
    count: "/count",
    source: "/source",
    reporting_controller: "/reportingComponent",
};

const EVENTS_V1: Fields = Fields {
    regarding: "/regarding",
    message: "/note",
    first_timestamp: "/deprecatedFirstTimestamp",
    last_timestamp: "/deprecatedLastTimestamp",
    count: "/deprecatedCount",
    source: "/deprecatedSource",
    reporting_controller: "/reportingController",
};

pub struct EventPrinter {
    fields: Fields,
}

/// The printer for core/v1 Events.
pub const CORE_EVENTS: EventPrinter = EventPrinter { fields: CORE };
/// The printer for events.k8s.io/v1 Events.
pub const EVENTS_K8S_IO: EventPrinter = EventPrinter { fields: EVENTS_V1 };

const COLUMNS: &[Column] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: NAME_DOC,
        priority: 1,
    },
];

impl TablePrinter for EventPrinter {
    fn columns(&self) -> Vec<Column> {
        COLUMNS.to_vec()
    }

    fn cells(&self, ev: &Value, now: Timestamp) -> Vec<Value> {
        let f = &self.fields;
        // Events recorded through events.k8s.io carry eventTime and no first/last timestamps.
        let first_seen = match time_at(ev, f.first_timestamp) {
            Some(t) => since(Some(t), now),
            None => since(time_at(ev, "/eventTime"), now),
        };
        let mut last_seen = match time_at(ev, f.last_timestamp) {
            Some(t) => since(Some(t), now),
            None => first_seen.clone(),
        };
        let mut count = int_at(ev, f.count);
        if ev.get("series").is_some_and(Value::is_object) {
            last_seen = since(time_at(ev, "/series/lastObservedTime"), now);
            count = int_at(ev, "/series/count");
        } else if count == 0 {
            // A singleton event of the new API has no count.
            count = 1;
        }
        let regarding = ev.pointer(f.regarding).unwrap_or(&Value::Null);
        let kind = str_at(regarding, "/kind").to_lowercase();
        let object = match str_at(regarding, "/name") {
            "" => kind,
            n => format!("{kind}/{n}"),
        };
        let component = first_non_empty(
            str_at(ev, &format!("{}/component", f.source)),
            str_at(ev, f.reporting_controller),
        );
        let host = first_non_empty(
            str_at(ev, &format!("{}/host", f.source)),
            str_at(ev, "/reportingInstance"),
        );
        let source = if host.is_empty() {
            component.to_string()
        } else {
            format!("{component}, {host}")
        };
        vec![
            json!(last_seen),
            json!(str_at(ev, "/type")),
            json!(str_at(ev, "/reason")),
            json!(object),
            json!(str_at(regarding, "/fieldPath")),
            json!(source),
            json!(str_at(ev, f.message).trim()),
            json!(first_seen),
            json!(count),
            json!(str_at(ev, "/metadata/name")),
        ]
    }
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-06-01T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn core_event_row() {
        let ev = json!({
            "metadata": {"name": "web-1.17d", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{nginx}"},
            "reason": "Pulled", "type": "Normal", "message": "Successfully pulled image \"nginx\"\n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-06-01T11:50:00Z", "lastTimestamp": "2024-06-01T11:59:30Z", "count": 4,
        });
        assert_eq!(
            CORE_EVENTS.cells(&ev, now()),
            [
                json!("30s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web-1"),
                json!("spec.containers{nginx}"),
                json!("kubelet, n1"),
                json!("Successfully pulled image \"nginx\""),
                json!("10m"),
                json!(4),
                json!("web-1.17d")
            ]
        );
        let names: Vec<&str> = CORE_EVENTS
            .columns()
            .iter()
            .filter(|c| c.priority == 0)
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["Last Seen", "Type", "Reason", "Object", "Message"]);
    }

    #[test]
    fn events_k8s_io_row_with_series() {
        let ev = json!({
            "metadata": {"name": "e2"},
            "regarding": {"kind": "Node", "name": "n1"},
            "reason": "Rebooted", "type": "Warning", "note": "node rebooted",
            "reportingController": "flotilla/agent", "reportingInstance": "n1",
            "eventTime": "2024-06-01T10:00:00.000000Z",
            // Truncated like Go: 119.88s is "119s".
            "series": {"count": 7, "lastObservedTime": "2024-06-01T11:58:00.123456Z"},
        });
        let c = EVENTS_K8S_IO.cells(&ev, now());
        assert_eq!(
            &c[..9],
            &[
                json!("119s"),
                json!("Warning"),
                json!("Rebooted"),
                json!("node/n1"),
                json!(""),
                json!("flotilla/agent, n1"),
                json!("node rebooted"),
                json!("120m"),
                json!(7)
            ]
        );
    }

    #[test]
    fn singleton_event_without_times() {
        let ev = json!({"involvedObject": {"kind": "Namespace"}, "reason": "X"});
        let c = CORE_EVENTS.cells(&ev, now());
        assert_eq!(
            (&c[0], &c[3], &c[7], &c[8]),
            (
                &json!("<unknown>"),
                &json!("namespace"),
                &json!("<unknown>"),
                &json!(1)
            )
        );
    }
}
