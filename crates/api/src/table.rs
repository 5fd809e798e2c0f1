//! Server-side printing: the columns and cells `kubectl get` shows for each kind, as
//! meta.k8s.io/v1 Table. Columns match a real cluster's, `-o wide` ones at priority 1.

use serde_json::Value;

use crate::catalogue::ResourceInfo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// "string", "integer", "date", ...
    pub type_: &'static str,
    /// "name" for the name column, "" otherwise.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: i32,
}

/// The columns and cells of one kind.
pub trait TablePrinter: Send + Sync {
    fn columns(&self) -> Vec<Column>;
    /// One cell per column. `now` lets ages be computed at request time.
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value>;
}

/// The printer for a resource: its own, or NAME and AGE (as Kubernetes' default).
pub fn printer_for(_info: &ResourceInfo) -> &'static dyn TablePrinter {
    &DefaultPrinter
}

pub struct DefaultPrinter;

impl TablePrinter for DefaultPrinter {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column {
                name: "Name",
                type_: "string",
                format: "name",
                description: "Name must be unique within a namespace.",
                priority: 0,
            },
            Column {
                name: "Created At",
                type_: "date",
                format: "",
                description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
                priority: 0,
            },
        ]
    }

    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![
            obj.pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::Null),
            obj.pointer("/metadata/creationTimestamp")
                .cloned()
                .unwrap_or(Value::Null),
        ]
    }
}
