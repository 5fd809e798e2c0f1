//! The controller manager: one module per controller, each level-triggered (it reconciles
//! from the current state, whatever woke it), with rate-limited retries, built on
//! kube-runtime's `Controller` (watch → reflector store → reconcile with back-off).
//!
//! Every controller exposes `pub async fn run(…, shutdown) -> Result<(), Error>`, given the
//! client or, for those that watch pods or nodes, the controller manager's shared
//! `informers::Informers`.

pub mod controller_utils;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoint_reconciler;
pub mod endpoints;
pub mod endpointslice;
pub mod garbage_collector;
pub mod history;
pub mod informers;
pub mod job;
pub mod leader_election;
pub mod node_lifecycle;
pub mod nodeipam;
pub mod podgc;
pub mod replicaset;
pub mod runner;
pub mod serviceaccount;
pub mod statefulset;
pub mod volume;
