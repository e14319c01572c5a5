//! OpenTelemetry export: spanlets as OTLP log events and spans with links,
//! sent to any collector over gRPC or HTTP/protobuf.
pub mod client;
pub mod endpoint;
pub mod kv_list;
pub mod live;
pub mod mapping;
pub mod settings;

use std::time::Duration;

use crate::{capture::Capture, spanlet::ProcessInfo};
pub use client::{SendError, Sender};
pub use mapping::{K8sResource, Names, Requests, ResourceSettings};
pub use settings::{Overrides, Protocol, Settings, SettingsError};

impl Names for Capture {
    fn process(&self, pid: u32) -> Option<&ProcessInfo> {
        self.processes.get(&pid)
    }

    fn thread_name(&self, pid: u32, tid: u32) -> Option<&str> {
        Capture::thread_name(self, pid, tid)
    }

    fn ns_tid(&self, pid: u32, tid: u32) -> Option<u32> {
        self.thread_ns_tids.get(&(pid, tid)).copied()
    }
}

impl ResourceSettings {
    /// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; `host_name` is
    /// the machine the spanlets were recorded on.
    pub fn from_env(host_name: &str) -> Result<Self, SettingsError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Ok(Self {
            service_name: var("OTEL_SERVICE_NAME").map(|v| v.trim().to_owned()),
            attributes: match var("OTEL_RESOURCE_ATTRIBUTES") {
                Some(list) => kv_list::parse_list("OTEL_RESOURCE_ATTRIBUTES", &list)?,
                None => Vec::new(),
            },
            host_name: host_name.to_owned(),
            k8s: None,
        })
    }
}

/// How hard to try before giving a batch up.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Sends one batch, retrying what the specification calls retryable with
/// exponential backoff.
pub async fn send_with_retry(
    sender: &mut Sender,
    requests: &Requests,
    policy: RetryPolicy,
) -> Result<(), SendError> {
    let mut backoff = policy.first_backoff;
    let mut attempt = 1;
    loop {
        match sender.send(requests).await {
            Ok(()) => return Ok(()),
            Err(err) if err.retryable() && attempt < policy.attempts => {
                tracing::debug!(%err, attempt, ?backoff, "OTLP send failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(policy.max_backoff);
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// What a replay delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    pub spanlets: u64,
    pub events: u64,
    pub spans: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{source} ({} of {total} spanlets delivered)", delivered.spanlets)]
pub struct ReplayError {
    pub delivered: Delivered,
    pub total: u64,
    #[source]
    pub source: SendError,
}

/// Sends a capture's spanlets, `batch` at a time, in recording order.
pub async fn replay(
    capture: &Capture,
    sender: &mut Sender,
    resource: &ResourceSettings,
    batch: usize,
    policy: RetryPolicy,
) -> Result<Delivered, ReplayError> {
    let total = capture.spanlets.len() as u64;
    let mut delivered = Delivered::default();
    for chunk in capture.spanlets.chunks(batch.max(1)) {
        let requests = mapping::requests(chunk, resource, capture);
        send_with_retry(sender, &requests, policy)
            .await
            .map_err(|source| ReplayError {
                delivered,
                total,
                source,
            })?;
        delivered.spanlets += chunk.len() as u64;
        delivered.events += requests.log_records() as u64;
        delivered.spans += requests.spans() as u64;
    }
    Ok(delivered)
}
