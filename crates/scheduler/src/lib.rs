//! The scheduler (issue 5): binds pending pods to nodes through a plugin framework.
