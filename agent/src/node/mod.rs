//! The node agent (`spanlet run`), on top of everything else: its settings,
//! which processes it traces (PIDs, cgroups, containers, Kubernetes pods),
//! and its health and self-metrics.
pub mod agent;
pub mod cgroup;
pub mod config;
pub mod k8s;
pub mod observe;
pub mod selection;
pub mod targets;
pub mod units;

pub use agent::Node;
