//! The query and path parameters of Kubernetes API operations.

use serde_json::{json, Map, Value};

use super::schemas::Dialect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    Boolean,
}

impl ParamType {
    fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Query,
    Path,
}

/// One parameter of an operation.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub location: Location,
    pub ty: ParamType,
    pub description: &'static str,
}

const fn query(name: &'static str, ty: ParamType, description: &'static str) -> Param {
    Param {
        name,
        location: Location::Query,
        ty,
        description,
    }
}

impl Param {
    pub fn path(name: &'static str, description: &'static str) -> Self {
        Param {
            name,
            location: Location::Path,
            ty: ParamType::String,
            description,
        }
    }

    pub fn render(&self, dialect: Dialect) -> Value {
        let mut p = Map::new();
        p.insert("name".into(), json!(self.name));
        p.insert(
            "in".into(),
            json!(match self.location {
                Location::Query => "query",
                Location::Path => "path",
            }),
        );
        p.insert("description".into(), json!(self.description));
        if self.location == Location::Path {
            p.insert("required".into(), json!(true));
        }
        match dialect {
            // Kubernetes marks every parameter uniqueItems; clients ignore it, so do we.
            Dialect::V3 => {
                p.insert("schema".into(), json!({ "type": self.ty.as_str() }));
            }
            Dialect::V2 => {
                p.insert("type".into(), json!(self.ty.as_str()));
            }
        }
        Value::Object(p)
    }
}

use ParamType::{Boolean, Integer, String as Str};

pub const PRETTY: Param = query("pretty", Str, "If 'true', the output is pretty printed.");
pub const DRY_RUN: Param = query(
    "dryRun",
    Str,
    "When present, the request is processed through every stage but nothing is persisted. The only valid value is All.",
);
pub const FIELD_MANAGER: Param = query(
    "fieldManager",
    Str,
    "The name of the actor making the change, recorded in managedFields. Required for apply patches; at most 128 printable characters.",
);
pub const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    Str,
    "How the server treats unknown and duplicate fields in the request body: Ignore drops them silently, Warn (the default) drops them and returns a warning header per field, Strict rejects the request with a BadRequest naming every such field.",
);
pub const FORCE: Param = query(
    "force",
    Boolean,
    "Apply patches only: take ownership of fields other managers own instead of failing with a conflict. Must be unset for other patch types.",
);
pub const GRACE_PERIOD_SECONDS: Param = query(
    "gracePeriodSeconds",
    Integer,
    "Seconds the object is given before it is deleted; zero deletes immediately. Unset uses the kind's default.",
);
pub const ORPHAN_DEPENDENTS: Param = query(
    "orphanDependents",
    Boolean,
    "Deprecated in favour of propagationPolicy: whether the dependents of the object are orphaned.",
);
pub const PROPAGATION_POLICY: Param = query(
    "propagationPolicy",
    Str,
    "How dependents are garbage collected: Orphan leaves them, Background deletes them after the owner, Foreground deletes them before the owner.",
);
pub const IGNORE_STORE_READ_ERROR: Param = query(
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    Boolean,
    "Deletes an object that cannot be read from storage (corrupt or undecryptable), bypassing admission. Dangerous: use only to recover.",
);

pub const ALLOW_WATCH_BOOKMARKS: Param = query(
    "allowWatchBookmarks",
    Boolean,
    "Asks a watch to send BOOKMARK events, which carry only the latest resourceVersion. Ignored for lists.",
);
pub const CONTINUE: Param = query(
    "continue",
    Str,
    "The token from the previous page of a paged list, to fetch the next page.",
);
pub const FIELD_SELECTOR: Param = query(
    "fieldSelector",
    Str,
    "Restricts the returned objects by their fields. Defaults to everything.",
);
pub const LABEL_SELECTOR: Param = query(
    "labelSelector",
    Str,
    "Restricts the returned objects by their labels. Defaults to everything.",
);
pub const LIMIT: Param = query(
    "limit",
    Integer,
    "The largest number of objects to return in one page; a continue token is returned when more remain.",
);
pub const RESOURCE_VERSION: Param = query(
    "resourceVersion",
    Str,
    "Constrains which resourceVersion a list or watch is served from. Unset means the most recent.",
);
pub const RESOURCE_VERSION_MATCH: Param = query(
    "resourceVersionMatch",
    Str,
    "How resourceVersion is matched for a list: Exact or NotOlderThan.",
);
pub const SEND_INITIAL_EVENTS: Param = query(
    "sendInitialEvents",
    Boolean,
    "Starts a watch with synthetic ADDED events for the current state, followed by a bookmark marking their end.",
);
pub const TIMEOUT_SECONDS: Param = query(
    "timeoutSeconds",
    Integer,
    "How long a list or watch call may last, whatever the activity.",
);
pub const WATCH: Param = query(
    "watch",
    Boolean,
    "Turns the list into a stream of add, update and remove notifications.",
);

/// Parameters of list, watch and deletecollection.
pub const LIST: &[Param] = &[
    ALLOW_WATCH_BOOKMARKS,
    CONTINUE,
    FIELD_SELECTOR,
    LABEL_SELECTOR,
    LIMIT,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
    WATCH,
];
pub const CREATE: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
pub const UPDATE: &[Param] = CREATE;
pub const PATCH: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];
pub const DELETE: &[Param] = &[
    DRY_RUN,
    GRACE_PERIOD_SECONDS,
    IGNORE_STORE_READ_ERROR,
    ORPHAN_DEPENDENTS,
    PROPAGATION_POLICY,
];
pub const DELETE_COLLECTION: &[Param] = &[
    CONTINUE,
    DRY_RUN,
    FIELD_SELECTOR,
    GRACE_PERIOD_SECONDS,
    IGNORE_STORE_READ_ERROR,
    LABEL_SELECTOR,
    LIMIT,
    ORPHAN_DEPENDENTS,
    PROPAGATION_POLICY,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
];

pub const LOG: &[Param] = &[
    query(
        "container",
        Str,
        "The container to stream logs of; may be omitted when the pod has one container.",
    ),
    query("follow", Boolean, "Keep streaming as the log grows."),
    query(
        "insecureSkipTLSVerifyBackend",
        Boolean,
        "Do not verify the serving certificate of the node the logs come from.",
    ),
    query(
        "limitBytes",
        Integer,
        "Stop after this many bytes of log output.",
    ),
    query(
        "previous",
        Boolean,
        "Return the log of the previous, terminated instance of the container.",
    ),
    query(
        "sinceSeconds",
        Integer,
        "Only lines newer than this many seconds.",
    ),
    query(
        "stream",
        Str,
        "Which stream to return: All, Stdout or Stderr.",
    ),
    query(
        "tailLines",
        Integer,
        "Only this many lines from the end of the log.",
    ),
    query(
        "timestamps",
        Boolean,
        "Prefix every line with an RFC3339 timestamp.",
    ),
];

pub const EXEC: &[Param] = &[
    query(
        "command",
        Str,
        "The command to run, one argument per parameter; not run in a shell.",
    ),
    query("container", Str, "The container to run the command in."),
    query("stderr", Boolean, "Redirect the standard error stream."),
    query("stdin", Boolean, "Redirect the standard input stream."),
    query("stdout", Boolean, "Redirect the standard output stream."),
    query("tty", Boolean, "Allocate a terminal."),
];

pub const ATTACH: &[Param] = &[
    query("container", Str, "The container to attach to."),
    query("stderr", Boolean, "Stream standard error."),
    query("stdin", Boolean, "Pass standard input to the container."),
    query("stdout", Boolean, "Stream standard output."),
    query("tty", Boolean, "The stdin of the container is a terminal."),
];

pub const PORT_FORWARD: &[Param] = &[query("ports", Integer, "The container ports to forward.")];

pub const PROXY: &[Param] = &[query(
    "path",
    Str,
    "The path to send the proxied request to.",
)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_dialect() {
        let v3 = FIELD_VALIDATION.render(Dialect::V3);
        assert_eq!(v3["name"], "fieldValidation");
        assert_eq!(v3["in"], "query");
        assert_eq!(v3["schema"]["type"], "string");
        let v2 = Param::path("name", "name of the object").render(Dialect::V2);
        assert_eq!(v2["type"], "string");
        assert_eq!(v2["required"], true);
        assert!(v2.get("schema").is_none());
    }
}
