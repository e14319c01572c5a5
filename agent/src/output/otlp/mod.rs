//! OpenTelemetry export: spanlets as OTLP log events and spans with links,
//! sent to any collector over gRPC or HTTP/protobuf.
pub mod client;
pub mod endpoint;
pub mod error;
pub mod kv_list;
pub mod live;
pub mod mapping;
pub mod settings;

use std::{io::Read, time::Duration};

use crate::capture::{Capture, CaptureError, CaptureReader, Record};
pub use client::{SendError, Sender};
pub use error::SettingsError;
pub use mapping::{K8sResource, Requests, ResourceSettings};
pub use settings::{Overrides, Protocol, Settings};

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

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayFailure {
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Read(#[from] CaptureError),
}

#[derive(Debug, thiserror::Error)]
#[error("{source} ({} of {total} spanlets delivered)", delivered.spanlets)]
pub struct ReplayError {
    pub delivered: Delivered,
    pub total: u64,
    #[source]
    pub source: ReplayFailure,
}

/// Sends a capture's spanlets, `batch` at a time, in recording order,
/// reading them from `spanlets` one batch at a time. `names` is the same
/// capture read without its spanlets ([`Capture::read_names`]): its
/// processes and threads name every spanlet, and it says how many
/// spanlets to send.
pub async fn replay<R: Read>(
    spanlets: &mut CaptureReader<R>,
    names: &Capture,
    sender: &mut Sender,
    resource: &ResourceSettings,
    batch: usize,
    policy: RetryPolicy,
) -> Result<Delivered, ReplayError> {
    let total = names.integrity.spanlets_read;
    let mut delivered = Delivered::default();
    let mut left = total;
    let mut chunk = Vec::new();
    loop {
        chunk.clear();
        while chunk.len() < batch.max(1) && left > 0 {
            match spanlets.next_record() {
                Ok(Some(Record::Spanlet(s))) => {
                    chunk.push(s);
                    left -= 1;
                }
                Ok(Some(_)) => {}
                Ok(None) => left = 0,
                Err(e) => {
                    return Err(ReplayError {
                        delivered,
                        total,
                        source: e.into(),
                    });
                }
            }
        }
        if chunk.is_empty() {
            return Ok(delivered);
        }
        let requests = mapping::requests(&chunk, resource, &names.names);
        send_with_retry(sender, &requests, policy)
            .await
            .map_err(|source| ReplayError {
                delivered,
                total,
                source: source.into(),
            })?;
        delivered.spanlets += chunk.len() as u64;
        delivered.events += requests.log_records() as u64;
        delivered.spans += requests.spans() as u64;
    }
}
