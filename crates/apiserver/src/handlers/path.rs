//! Parsing request paths: discovery documents and the resource paths
//! `/api/v1/[namespaces/<ns>/]<resource>[/<name>[/<subresource>]]`, the
//! `/apis/<group>/<version>/...` forms and the legacy `/watch/` prefix.

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiPath {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    GroupVersion {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Reached through the deprecated `/watch/` prefix.
    pub watch: bool,
}

/// Parses `path`; None for anything that is not an API path.
pub fn parse(path: &str) -> Option<ApiPath> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api"] => return Some(ApiPath::CoreVersions),
        ["apis"] => return Some(ApiPath::Groups),
        ["apis", g] => return Some(ApiPath::Group((*g).to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    if rest.is_empty() {
        return Some(ApiPath::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        });
    }
    let (watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    if rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    let own = |s: &&str| (*s).to_string();
    let (namespace, resource, name, subresource) = match rest {
        // A namespace itself: /namespaces/<ns>[/status|/finalize].
        ["namespaces"] => (None, "namespaces", None, None),
        ["namespaces", ns] => (None, "namespaces", Some(own(ns)), None),
        ["namespaces", ns, res] if is_namespace_subresource(res) => {
            (None, "namespaces", Some(own(ns)), Some(own(res)))
        }
        ["namespaces", ns, res] => (Some(own(ns)), *res, None, None),
        ["namespaces", ns, res, name] => (Some(own(ns)), *res, Some(own(name)), None),
        ["namespaces", ns, res, name, sub] => {
            (Some(own(ns)), *res, Some(own(name)), Some(own(sub)))
        }
        [res] => (None, *res, None, None),
        [res, name] => (None, *res, Some(own(name)), None),
        [res, name, sub] => (None, *res, Some(own(name)), Some(own(sub))),
        _ => return None,
    };
    Some(ApiPath::Resource(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        resource: resource.to_string(),
        name,
        subresource,
        watch,
    }))
}

fn is_namespace_subresource(s: &str) -> bool {
    matches!(s, "status" | "finalize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse(path) {
            Some(ApiPath::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(parse("/api"), Some(ApiPath::CoreVersions));
        assert_eq!(parse("/apis/"), Some(ApiPath::Groups));
        assert_eq!(parse("/apis/apps"), Some(ApiPath::Group("apps".into())));
        assert_eq!(
            parse("/api/v1"),
            Some(ApiPath::GroupVersion {
                group: "".into(),
                version: "v1".into()
            })
        );
        assert_eq!(parse("/healthz"), None);
    }

    #[test]
    fn resource_paths() {
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.resource, "pods");
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("status"));

        let r = res("/api/v1/namespaces/default");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref()),
            ("namespaces", Some("default"))
        );
        assert_eq!(r.namespace, None);

        let r = res("/api/v1/namespaces/x/finalize");
        assert_eq!(r.subresource.as_deref(), Some("finalize"));

        let r = res("/apis/apps/v1/watch/namespaces/ns/deployments");
        assert!(r.watch);
        assert_eq!(
            (r.group.as_str(), r.resource.as_str()),
            ("apps", "deployments")
        );

        let r = res("/api/v1/nodes/n1");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref()),
            ("nodes", Some("n1"))
        );
        assert_eq!(parse("/api/v1/namespaces/a/pods/b/c/d"), None);
        assert_eq!(parse("/api/v1/pods//x"), None);
    }
}
