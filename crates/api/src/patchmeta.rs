//! Patch metadata of the built-in types: which lists merge by which key
//! (`x-kubernetes-patch-merge-key`), which replace or retain keys
//! (`x-kubernetes-patch-strategy`). Strategic merge patch and OpenAPI both read it.
