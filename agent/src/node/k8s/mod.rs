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
use std::path::PathBuf;

use tokio::task::JoinHandle;

mod cache;

mod client;
mod config;
mod lines;
mod pod;
mod watch;

#[cfg(test)]
mod fake_apiserver;
#[cfg(test)]
mod watch_tests;

pub use cache::PodCache;

pub use config::{DEFAULT_SERVICEACCOUNT_DIR, InClusterConfig, SERVICEACCOUNT_DIR_ENV};
pub use pod::{ContainerMeta, PodMeta};
pub use watch::spawn_watcher;

/// The variable the DaemonSet sets to its node's name (downward API).
pub const NODE_NAME_ENV: &str = "NODE_NAME";

/// Why pod metadata could not be had: a misconfigured pod (detection), or
/// a failed request (logged by the watcher, which retries).
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("Kubernetes environment: {0}")]
    Environment(String),
    #[error("cannot use the service account {what} at {}: {reason}", path.display())]
    ServiceAccount {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("Kubernetes API TLS settings: {0}")]
    Tls(String),
    #[error(
        "running in Kubernetes, but this node's name is unknown: give it (--node-name or SPANLET_NODE_NAME) or set {NODE_NAME_ENV} from the downward API (fieldPath spec.nodeName)"
    )]
    NodeName,
    #[error("cannot reach the Kubernetes API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the Kubernetes API at {url} did not answer within {timeout:?}")]
    Timeout {
        url: String,
        timeout: std::time::Duration,
    },
    #[error("the Kubernetes API answered {status} to {url}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("unexpected data from the Kubernetes API at {url}: {reason}")]
    Decode { url: String, reason: String },
}

/// Starts watching this node's pods when running in a cluster (see
/// [`node_name`] for `node_name`). Outside a cluster, logs one info line and
/// returns None. Must be called within a tokio runtime.
pub fn start(node_name: Option<String>) -> Result<Option<(PodCache, JoinHandle<()>)>, K8sError> {
    let Some(config) = InClusterConfig::detect()? else {
        tracing::info!(
            "not running in Kubernetes (KUBERNETES_SERVICE_HOST unset): no pod metadata"
        );
        return Ok(None);
    };
    let node_name = self::node_name(node_name).ok_or(K8sError::NodeName)?;
    let cache = PodCache::new();
    let task = spawn_watcher(config, node_name, cache.clone());
    Ok(Some((cache, task)))
}

/// This node's name: `given` (the agent's own setting), else `$NODE_NAME`
/// (the usual downward-API variable); None if neither is set.
pub fn node_name(given: Option<String>) -> Option<String> {
    given
        .or_else(|| std::env::var(NODE_NAME_ENV).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_cluster_nothing_starts() {
        // Only meaningful where the tests do not themselves run in a pod.
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            assert!(start(Some("node-1".to_owned())).unwrap().is_none());
        }
    }

    #[test]
    fn the_given_node_name_comes_first() {
        assert_eq!(
            node_name(Some(" node-1\n".to_owned())).as_deref(),
            Some("node-1")
        );
        if std::env::var_os(NODE_NAME_ENV).is_none() {
            assert_eq!(node_name(None), None);
            assert_eq!(node_name(Some(" ".to_owned())), None);
        }
    }
}
