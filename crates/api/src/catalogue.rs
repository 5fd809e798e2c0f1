//! Every resource the API server serves: group, version, kind, plural, scope, short names,
//! categories, verbs and subresources. Discovery, routing, storage keys and OpenAPI all
//! read this one list.

/// A subresource such as `status`, `scale`, `binding`, `eviction`, `log` or `exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// Group, version and kind of the object the subresource takes and returns
    /// (for `scale`: autoscaling/v1 Scale; for `status`: the parent kind).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The plural, lower-case resource name used in URLs ("deployments").
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
}

impl ResourceInfo {
    /// "v1" for the core group, "apps/v1" otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// The store key prefix for this resource: `/registry/<plural>/` for the core group and
    /// `/registry/<group>/<plural>/` otherwise, so that two groups' same-named resources
    /// never share keys.
    pub fn storage_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }

    /// The store key of one object. `namespace` is ignored for cluster-scoped resources.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{}/{}", self.storage_prefix(), ns, name),
            _ => format!("{}{}", self.storage_prefix(), name),
        }
    }
}

/// The set of served resources.
#[derive(Debug, Clone)]
pub struct Catalogue {
    resources: Vec<ResourceInfo>,
}

impl Catalogue {
    pub fn new(resources: Vec<ResourceInfo>) -> Self {
        Self { resources }
    }

    /// Every built-in resource Flotilla serves.
    pub fn builtin() -> Self {
        Self::new(builtin_resources())
    }

    pub fn iter(&self) -> impl Iterator<Item = &ResourceInfo> {
        self.resources.iter()
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// Groups in the order discovery lists them (core first), each with its versions.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for r in &self.resources {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version);
                    }
                }
                None => out.push((r.group, vec![r.version])),
            }
        }
        out
    }
}

fn builtin_resources() -> Vec<ResourceInfo> {
    Vec::new()
}
