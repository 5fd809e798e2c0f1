//! The scheduler: binds each pending pod to a node, through a framework of plugins with
//! kube-scheduler's extension points (pre-filter, filter, score) and its default plugins.
//!
//! - [`framework`]: the extension-point traits, per-cycle state, one scheduling cycle and
//!   Kubernetes' "0/N nodes are available: …" explanations.
//! - [`plugins`]: one module per rule, and the default profile.
//! - [`cache`], [`queue`], [`scheduler`]: the loop that watches, queues, schedules and binds.
//! - [`preemption`]: making room for a higher-priority pod.

pub mod cache;
pub mod framework;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod scheduler;

pub use scheduler::{Scheduler, SchedulerConfig, SchedulerError, Stats};
