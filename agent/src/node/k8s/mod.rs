//! Kubernetes pod metadata for the node agent: which pods run on this node,
//! their containers, and the `k8s.*` attributes of the processes in them.
//!
//! In a cluster (`spanlet run` as a DaemonSet), [`start`] lists and watches
//! this node's pods into a [`PodCache`]; processes are tied to pods through
//! their cgroup paths ([`container_id_from_cgroup`], [`pod_uid_from_cgroup`]).
//! Outside a cluster it logs one line and does nothing else.
//!
//! The agent's service account needs `get`, `list` and `watch` on `pods`,
//! and the pod needs its node's name, e.g. from the downward API:
//! `env: [{name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]`.
mod cache;

mod client;
mod config;
mod error;
mod lines;
mod node_name;
mod pod;
mod start;
mod watch;

#[cfg(test)]
mod fake_apiserver;
#[cfg(test)]
mod watch_tests;

pub use cache::PodCache;

pub use config::{DEFAULT_SERVICEACCOUNT_DIR, InClusterConfig, SERVICEACCOUNT_DIR_ENV};
pub use error::K8sError;
pub use node_name::{NODE_NAME_ENV, node_name};
pub use pod::{ContainerMeta, PodMeta};
pub use start::start;
pub use watch::spawn_watcher;
