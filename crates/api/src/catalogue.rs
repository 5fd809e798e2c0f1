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

    /// "Namespaced" or "Cluster", as aggregated discovery spells the scope.
    pub fn scope(&self) -> &'static str {
        if self.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        }
    }

    /// Whether `name` is this resource's plural, singular or one of its short names
    /// (case-insensitive, as kubectl resolves them).
    pub fn answers_to(&self, name: &str) -> bool {
        self.plural.eq_ignore_ascii_case(name)
            || self.singular.eq_ignore_ascii_case(name)
            || self
                .short_names
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name))
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

// Verb sets as Kubernetes' discovery lists them (sorted, as the API server sorts them).
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces cannot be deleted as a collection.
const NO_COLLECTION_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const CREATE: &[&str] = &["create"];
const GET: &[&str] = &["get"];
const UPDATE: &[&str] = &["update"];
const CREATE_GET: &[&str] = &["create", "get"];
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

/// A subresource that takes and returns its parent's kind (`status`).
const fn status(group: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version: "v1",
        kind,
        verbs: GET_PATCH_UPDATE,
    }
}

/// The `scale` subresource, which speaks autoscaling/v1 Scale.
const SCALE: Subresource = Subresource {
    name: "scale",
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    verbs: GET_PATCH_UPDATE,
};

const fn core_sub(
    name: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        group: "",
        version: "v1",
        kind,
        verbs,
    }
}

/// A resource served at version v1 with the full verb set and no categories; the table
/// below overrides what differs.
const fn v1(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names: NONE,
        categories: NONE,
        verbs: ALL_VERBS,
        subresources: &[],
    }
}

const NAMESPACED: bool = true;
const CLUSTER: bool = false;

/// The built-in resources of Kubernetes v1.33 that Flotilla serves, core group first, then
/// the named groups in the order kube-apiserver prefers them. Within a group-version,
/// resources are sorted by name, as `/api/v1` lists them.
static BUILTIN: &[ResourceInfo] = &[
    // core/v1
    ResourceInfo {
        verbs: CREATE,
        ..v1("", "Binding", "bindings", "binding", NAMESPACED)
    },
    ResourceInfo {
        short_names: &["cm"],
        ..v1("", "ConfigMap", "configmaps", "configmap", NAMESPACED)
    },
    ResourceInfo {
        short_names: &["ep"],
        ..v1("", "Endpoints", "endpoints", "endpoints", NAMESPACED)
    },
    ResourceInfo {
        short_names: &["ev"],
        ..v1("", "Event", "events", "event", NAMESPACED)
    },
    ResourceInfo {
        short_names: &["limits"],
        ..v1("", "LimitRange", "limitranges", "limitrange", NAMESPACED)
    },
    ResourceInfo {
        short_names: &["ns"],
        verbs: NO_COLLECTION_VERBS,
        subresources: &[
            core_sub("finalize", "Namespace", UPDATE),
            status("", "Namespace"),
        ],
        ..v1("", "Namespace", "namespaces", "namespace", CLUSTER)
    },
    ResourceInfo {
        short_names: &["no"],
        subresources: &[
            core_sub("proxy", "NodeProxyOptions", PROXY_VERBS),
            status("", "Node"),
        ],
        ..v1("", "Node", "nodes", "node", CLUSTER)
    },
    ResourceInfo {
        short_names: &["pvc"],
        subresources: &[status("", "PersistentVolumeClaim")],
        ..v1(
            "",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            NAMESPACED,
        )
    },
    ResourceInfo {
        short_names: &["pv"],
        subresources: &[status("", "PersistentVolume")],
        ..v1(
            "",
            "PersistentVolume",
            "persistentvolumes",
            "persistentvolume",
            CLUSTER,
        )
    },
    ResourceInfo {
        short_names: &["po"],
        categories: ALL,
        subresources: &[
            core_sub("attach", "PodAttachOptions", CREATE_GET),
            core_sub("binding", "Binding", CREATE),
            Subresource {
                name: "eviction",
                group: "policy",
                version: "v1",
                kind: "Eviction",
                verbs: CREATE,
            },
            core_sub("exec", "PodExecOptions", CREATE_GET),
            core_sub("log", "Pod", GET),
            core_sub("portforward", "PodPortForwardOptions", CREATE_GET),
            status("", "Pod"),
        ],
        ..v1("", "Pod", "pods", "pod", NAMESPACED)
    },
    ResourceInfo {
        short_names: &["quota"],
        subresources: &[status("", "ResourceQuota")],
        ..v1(
            "",
            "ResourceQuota",
            "resourcequotas",
            "resourcequota",
            NAMESPACED,
        )
    },
    v1("", "Secret", "secrets", "secret", NAMESPACED),
    ResourceInfo {
        short_names: &["sa"],
        subresources: &[Subresource {
            name: "token",
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: CREATE,
        }],
        ..v1(
            "",
            "ServiceAccount",
            "serviceaccounts",
            "serviceaccount",
            NAMESPACED,
        )
    },
    ResourceInfo {
        short_names: &["svc"],
        categories: ALL,
        subresources: &[
            core_sub("proxy", "ServiceProxyOptions", PROXY_VERBS),
            status("", "Service"),
        ],
        ..v1("", "Service", "services", "service", NAMESPACED)
    },
    // apps/v1
    v1(
        "apps",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        NAMESPACED,
    ),
    ResourceInfo {
        short_names: &["ds"],
        categories: ALL,
        subresources: &[status("apps", "DaemonSet")],
        ..v1("apps", "DaemonSet", "daemonsets", "daemonset", NAMESPACED)
    },
    ResourceInfo {
        short_names: &["deploy"],
        categories: ALL,
        subresources: &[SCALE, status("apps", "Deployment")],
        ..v1(
            "apps",
            "Deployment",
            "deployments",
            "deployment",
            NAMESPACED,
        )
    },
    ResourceInfo {
        short_names: &["rs"],
        categories: ALL,
        subresources: &[SCALE, status("apps", "ReplicaSet")],
        ..v1(
            "apps",
            "ReplicaSet",
            "replicasets",
            "replicaset",
            NAMESPACED,
        )
    },
    ResourceInfo {
        short_names: &["sts"],
        categories: ALL,
        subresources: &[SCALE, status("apps", "StatefulSet")],
        ..v1(
            "apps",
            "StatefulSet",
            "statefulsets",
            "statefulset",
            NAMESPACED,
        )
    },
    // events.k8s.io/v1
    ResourceInfo {
        short_names: &["ev"],
        ..v1("events.k8s.io", "Event", "events", "event", NAMESPACED)
    },
    // authorization.k8s.io/v1: reviews are created and answered, never stored.
    ResourceInfo {
        verbs: CREATE,
        ..v1(
            "authorization.k8s.io",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            CLUSTER,
        )
    },
    ResourceInfo {
        verbs: CREATE,
        ..v1(
            "authorization.k8s.io",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            "selfsubjectrulesreview",
            CLUSTER,
        )
    },
    // batch/v1
    ResourceInfo {
        short_names: &["cj"],
        categories: ALL,
        subresources: &[status("batch", "CronJob")],
        ..v1("batch", "CronJob", "cronjobs", "cronjob", NAMESPACED)
    },
    ResourceInfo {
        categories: ALL,
        subresources: &[status("batch", "Job")],
        ..v1("batch", "Job", "jobs", "job", NAMESPACED)
    },
    // networking.k8s.io/v1
    v1(
        "networking.k8s.io",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        CLUSTER,
    ),
    ResourceInfo {
        short_names: &["ing"],
        subresources: &[status("networking.k8s.io", "Ingress")],
        ..v1(
            "networking.k8s.io",
            "Ingress",
            "ingresses",
            "ingress",
            NAMESPACED,
        )
    },
    ResourceInfo {
        short_names: &["netpol"],
        ..v1(
            "networking.k8s.io",
            "NetworkPolicy",
            "networkpolicies",
            "networkpolicy",
            NAMESPACED,
        )
    },
    // storage.k8s.io/v1
    ResourceInfo {
        short_names: &["sc"],
        ..v1(
            "storage.k8s.io",
            "StorageClass",
            "storageclasses",
            "storageclass",
            CLUSTER,
        )
    },
    // policy/v1
    ResourceInfo {
        short_names: &["pdb"],
        subresources: &[status("policy", "PodDisruptionBudget")],
        ..v1(
            "policy",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            NAMESPACED,
        )
    },
    // scheduling.k8s.io/v1
    ResourceInfo {
        short_names: &["pc"],
        ..v1(
            "scheduling.k8s.io",
            "PriorityClass",
            "priorityclasses",
            "priorityclass",
            CLUSTER,
        )
    },
    // coordination.k8s.io/v1
    v1(
        "coordination.k8s.io",
        "Lease",
        "leases",
        "lease",
        NAMESPACED,
    ),
    // discovery.k8s.io/v1
    v1(
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        NAMESPACED,
    ),
];

fn builtin_resources() -> Vec<ResourceInfo> {
    BUILTIN.to_vec()
}

#[cfg(test)]
mod tests {
    use std::any::TypeId;
    use std::collections::HashSet;

    use k8s_openapi::api::{
        apps::v1 as apps, authorization::v1 as authz, batch::v1 as batch,
        coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
        events::v1 as events, networking::v1 as networking, policy::v1 as policy,
        scheduling::v1 as scheduling, storage::v1 as storage,
    };
    use k8s_openapi::{NamespaceResourceScope, Resource};

    use super::*;

    /// Checks one entry against k8s-openapi's generated facts (which come from the
    /// upstream OpenAPI document), so a typo in the table cannot go unnoticed.
    fn check<T: Resource>(cat: &Catalogue)
    where
        T::Scope: 'static,
    {
        let info = cat
            .by_kind(T::GROUP, T::VERSION, T::KIND)
            .unwrap_or_else(|| panic!("{} {} not in catalogue", T::API_VERSION, T::KIND));
        assert_eq!(info.plural, T::URL_PATH_SEGMENT, "{}", T::KIND);
        assert_eq!(info.api_version(), T::API_VERSION);
        let namespaced = TypeId::of::<T::Scope>() == TypeId::of::<NamespaceResourceScope>();
        assert_eq!(info.namespaced, namespaced, "scope of {}", T::KIND);
    }

    #[test]
    fn entries_match_upstream_types() {
        let cat = Catalogue::builtin();
        check::<core::Binding>(&cat);
        check::<core::ConfigMap>(&cat);
        check::<core::Endpoints>(&cat);
        check::<core::Event>(&cat);
        check::<core::LimitRange>(&cat);
        check::<core::Namespace>(&cat);
        check::<core::Node>(&cat);
        check::<core::PersistentVolumeClaim>(&cat);
        check::<core::PersistentVolume>(&cat);
        check::<core::Pod>(&cat);
        check::<core::ResourceQuota>(&cat);
        check::<core::Secret>(&cat);
        check::<core::ServiceAccount>(&cat);
        check::<core::Service>(&cat);
        check::<apps::ControllerRevision>(&cat);
        check::<apps::DaemonSet>(&cat);
        check::<apps::Deployment>(&cat);
        check::<apps::ReplicaSet>(&cat);
        check::<apps::StatefulSet>(&cat);
        check::<batch::CronJob>(&cat);
        check::<batch::Job>(&cat);
        check::<coordination::Lease>(&cat);
        check::<discovery::EndpointSlice>(&cat);
        check::<events::Event>(&cat);
        check::<networking::Ingress>(&cat);
        check::<networking::IngressClass>(&cat);
        check::<networking::NetworkPolicy>(&cat);
        check::<scheduling::PriorityClass>(&cat);
        check::<policy::PodDisruptionBudget>(&cat);
        check::<storage::StorageClass>(&cat);
        check::<authz::SelfSubjectAccessReview>(&cat);
        check::<authz::SelfSubjectRulesReview>(&cat);
        assert_eq!(cat.iter().count(), 32);
    }

    #[test]
    fn resources_are_unique_and_verbs_sorted() {
        let cat = Catalogue::builtin();
        let mut seen = HashSet::new();
        for r in cat.iter() {
            assert!(
                seen.insert((r.group, r.version, r.plural)),
                "{} twice",
                r.plural
            );
            assert!(
                r.verbs.windows(2).all(|w| w[0] < w[1]),
                "{} verbs",
                r.plural
            );
            assert!(!r.verbs.is_empty());
            assert_eq!(r.singular, r.kind.to_ascii_lowercase());
            for s in r.subresources {
                assert!(
                    s.verbs.windows(2).all(|w| w[0] < w[1]),
                    "{}/{}",
                    r.plural,
                    s.name
                );
            }
        }
    }

    #[test]
    fn the_all_category_is_kubernetes_own() {
        let cat = Catalogue::builtin();
        let mut all: Vec<&str> = cat
            .iter()
            .filter(|r| r.categories.contains(&"all"))
            .map(|r| r.plural)
            .collect();
        all.sort_unstable();
        assert_eq!(
            all,
            [
                "cronjobs",
                "daemonsets",
                "deployments",
                "jobs",
                "pods",
                "replicasets",
                "services",
                "statefulsets"
            ]
        );
    }

    #[test]
    fn pods_and_deployments() {
        let cat = Catalogue::builtin();
        let pods = cat.lookup("", "v1", "pods").expect("pods");
        assert_eq!(pods.short_names, ["po"]);
        assert!(pods.answers_to("PO") && pods.answers_to("pod") && !pods.answers_to("svc"));
        let eviction = pods.subresource("eviction").expect("eviction");
        assert_eq!((eviction.group, eviction.kind), ("policy", "Eviction"));
        assert_eq!(pods.subresource("log").map(|s| s.verbs), Some(GET));
        assert!(pods.subresource("scale").is_none());

        let deploy = cat
            .lookup("apps", "v1", "deployments")
            .expect("deployments");
        let scale = deploy.subresource("scale").expect("scale");
        assert_eq!(
            (scale.group, scale.version, scale.kind),
            ("autoscaling", "v1", "Scale")
        );
        assert_eq!(
            deploy.subresource("status").map(|s| s.kind),
            Some("Deployment")
        );
        assert_eq!(
            deploy.storage_key(Some("default"), "web"),
            "/registry/apps/deployments/default/web"
        );

        let ns = cat.lookup("", "v1", "namespaces").expect("namespaces");
        assert!(!ns.verbs.contains(&"deletecollection"));
        assert_eq!(ns.scope(), "Cluster");
        assert_eq!(
            ns.storage_key(Some("x"), "kube-system"),
            "/registry/namespaces/kube-system"
        );

        let ssar = cat
            .lookup("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
            .expect("ssar");
        assert_eq!(ssar.verbs, ["create"]);
    }

    #[test]
    fn groups_start_with_core() {
        let groups = Catalogue::builtin().groups();
        assert_eq!(groups[0], ("", vec!["v1"]));
        assert_eq!(groups[1].0, "apps");
        assert_eq!(groups.len(), 11);
    }
}
