//! Starting the pod watcher, or not, depending on whether the agent runs in a
//! cluster.
use tokio::task::JoinHandle;

use super::{
    cache::PodCache, config::InClusterConfig, error::K8sError, node_name::node_name,
    watch::spawn_watcher,
};

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
}
