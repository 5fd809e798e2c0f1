//! Server-side printing: the columns and cells `kubectl get` shows for each kind, as
//! meta.k8s.io/v1 Table. Columns match a real cluster's, `-o wide` ones at priority 1.
//! The per-kind printers live in [`crate::tables`].

use serde_json::{json, Value};

use crate::catalogue::ResourceInfo;
use crate::tables;
use crate::tables::columns::{CREATED_DOC, NAME};

pub use crate::tables::duration::human_duration;

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

impl Column {
    /// The column as a Table's `columnDefinitions` entry.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// The columns and cells of one kind.
pub trait TablePrinter: Send + Sync {
    fn columns(&self) -> Vec<Column>;
    /// One cell per column, `-o wide` ones included. `now` lets ages be computed at
    /// request time, so a row must not be cached across requests.
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value>;
}

/// The printer for a resource: its own, or NAME and CREATED AT (as Kubernetes' default).
pub fn printer_for(info: &ResourceInfo) -> &'static dyn TablePrinter {
    tables::printer(info.group, info.kind).unwrap_or(&DefaultPrinter)
}

/// The printer for a subresource's object (`kubectl get --subresource=status|scale`): the
/// kind the subresource returns decides, so `status` prints like its parent and `scale`
/// prints autoscaling/v1 Scale. None for subresources that return no object to print
/// (log, exec, ...) or that the resource does not have.
pub fn printer_for_subresource(
    info: &ResourceInfo,
    subresource: &str,
) -> Option<&'static dyn TablePrinter> {
    let sub = info.subresource(subresource)?;
    // `log` answers text, and the connect subresources (exec, proxy, ...) take *Options.
    if !sub.verbs.contains(&"get") || sub.name == "log" || sub.kind.ends_with("Options") {
        return None;
    }
    Some(tables::printer(sub.group, sub.kind).unwrap_or(&DefaultPrinter))
}

/// Kubernetes' default table for kinds without a printer of their own.
pub struct DefaultPrinter;

impl TablePrinter for DefaultPrinter {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column {
                name: "Created At",
                type_: "date",
                format: "",
                description: CREATED_DOC,
                priority: 0,
            },
        ]
    }

    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        // Go formats the (possibly zero) time with RFC 3339 at second precision, in UTC.
        let created = tables::fields::time_at(obj, "/metadata/creationTimestamp").map_or_else(
            || "0001-01-01T00:00:00Z".to_string(),
            |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        vec![tables::fields::name(obj), Value::String(created)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;

    fn now() -> jiff::Timestamp {
        "2024-06-01T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn every_printer_has_one_cell_per_column() {
        let cat = Catalogue::builtin();
        let objects = [
            json!({}),
            json!({"metadata": {"name": "x", "creationTimestamp": "2024-06-01T11:00:00Z"}}),
            // Wrong types everywhere must not panic, only read as unset.
            json!({"metadata": {"name": 1, "labels": []}, "spec": [], "status": "x"}),
        ];
        for info in cat.iter() {
            let printer = printer_for(info);
            let columns = printer.columns();
            assert!(!columns.is_empty(), "{}", info.kind);
            assert!(
                columns
                    .iter()
                    .any(|c| c.name == "Name" && c.format == "name"),
                "{} has a name column",
                info.kind
            );
            for obj in &objects {
                assert_eq!(
                    printer.cells(obj, now()).len(),
                    columns.len(),
                    "{}",
                    info.kind
                );
            }
        }
    }

    #[test]
    fn name_comes_first_except_for_events() {
        let cat = Catalogue::builtin();
        for info in cat.iter().filter(|r| r.kind != "Event") {
            let first = &printer_for(info).columns()[0];
            assert_eq!(
                (first.name, first.format),
                ("Name", "name"),
                "{}",
                info.kind
            );
        }
        let events = cat.lookup("", "v1", "events").expect("events");
        assert_eq!(printer_for(events).columns()[0].name, "Last Seen");
    }

    #[test]
    fn kinds_without_a_printer_get_created_at() {
        let cat = Catalogue::builtin();
        let limits = cat.lookup("", "v1", "limitranges").expect("limitranges");
        let printer = printer_for(limits);
        let names: Vec<&str> = printer.columns().iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Created At"]);
        let obj =
            json!({"metadata": {"name": "lr", "creationTimestamp": "2024-06-01T11:00:00.5Z"}});
        assert_eq!(
            printer.cells(&obj, now()),
            [json!("lr"), json!("2024-06-01T11:00:00Z")]
        );
    }

    #[test]
    fn kubectl_get_shapes() {
        let cat = Catalogue::builtin();
        let wide_columns = |plural: &str, group: &str| -> (Vec<&'static str>, Vec<&'static str>) {
            let info = cat.lookup(group, "v1", plural).expect("resource");
            let cols = printer_for(info).columns();
            let upper = |c: &Column| c.name;
            (
                cols.iter().filter(|c| c.priority == 0).map(upper).collect(),
                cols.iter().filter(|c| c.priority == 1).map(upper).collect(),
            )
        };
        assert_eq!(
            wide_columns("services", ""),
            (
                vec![
                    "Name",
                    "Type",
                    "Cluster-IP",
                    "External-IP",
                    "Port(s)",
                    "Age"
                ],
                vec!["Selector"]
            )
        );
        assert_eq!(
            wide_columns("nodes", ""),
            (
                vec!["Name", "Status", "Roles", "Age", "Version"],
                vec![
                    "Internal-IP",
                    "External-IP",
                    "OS-Image",
                    "Kernel-Version",
                    "Container-Runtime"
                ]
            )
        );
        assert_eq!(
            wide_columns("jobs", "batch").0,
            ["Name", "Status", "Completions", "Duration", "Age"]
        );
        assert_eq!(
            wide_columns("secrets", "").0,
            ["Name", "Type", "Data", "Age"]
        );
        assert_eq!(wide_columns("configmaps", "").0, ["Name", "Data", "Age"]);
        assert_eq!(wide_columns("namespaces", "").0, ["Name", "Status", "Age"]);
    }

    #[test]
    fn subresource_printers() {
        let cat = Catalogue::builtin();
        let deploy = cat
            .lookup("apps", "v1", "deployments")
            .expect("deployments");
        let scale = printer_for_subresource(deploy, "scale").expect("scale");
        let names: Vec<&str> = scale.columns().iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Desired", "Available", "Age"]);
        let status = printer_for_subresource(deploy, "status").expect("status");
        assert_eq!(status.columns(), printer_for(deploy).columns());
        let pods = cat.lookup("", "v1", "pods").expect("pods");
        assert!(printer_for_subresource(pods, "exec").is_none());
        assert!(printer_for_subresource(pods, "log").is_none());
        assert!(printer_for_subresource(pods, "eviction").is_none());
        assert!(printer_for_subresource(pods, "scale").is_none());
    }

    #[test]
    fn column_json() {
        assert_eq!(NAME.to_json()["format"], json!("name"),);
        assert_eq!(NAME.to_json()["priority"], json!(0));
    }
}
