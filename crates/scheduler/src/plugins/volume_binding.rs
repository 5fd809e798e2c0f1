//! VolumeBinding: a pod's PersistentVolumeClaims must exist, their bound volumes' node
//! affinity must admit the node, and claims waiting for their first consumer
//! (WaitForFirstConsumer) get the chosen node before the pod is bound.
//!
//! PLACEHOLDER seam: the owner replaces this with the real plugin and registers it in
//! the default profile.
