//! Why pod metadata could not be had, as one error type for the whole
//! folder.
use std::path::PathBuf;

use super::node_name::NODE_NAME_ENV;

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
