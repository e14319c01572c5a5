//! OpenTelemetry export: spanlets as OTLP log events and spans with links,
//! sent to any collector over gRPC or HTTP/protobuf.
pub mod client;
pub mod endpoint;
pub mod error;
pub mod exporters;
pub mod kv_list;
pub mod live;
pub mod mapping;
pub mod resource;
pub mod settings;

use std::{io::Read, time::Duration};

use crate::capture::{Capture, CaptureError, CaptureReader, Record};
pub use client::{Incomplete, RetryPolicy, Sender};
pub use error::SettingsError;
pub use exporters::SendError;
pub use mapping::Batch;
pub use resource::{K8sResource, ResourceSettings};
pub use settings::{Overrides, Protocol, Settings, Signal};

/// A replay tries a failing request 5 times, backing off from 0.2 s to 5 s.
pub fn replay_retry() -> RetryPolicy {
    client::retry_policy(5, Duration::from_millis(200), Duration::from_secs(5))
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
        let batch = mapping::batch(&chunk, resource, &names.names);
        let (events, spans) = (batch.log_records() as u64, batch.spans() as u64);
        if let Err(incomplete) = sender.send(batch).await {
            delivered.spanlets += incomplete.delivered;
            return Err(ReplayError {
                delivered,
                total,
                source: incomplete.source.into(),
            });
        }
        delivered.spanlets += chunk.len() as u64;
        delivered.events += events;
        delivered.spans += spans;
    }
}
