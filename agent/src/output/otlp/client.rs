//! Sends a batch of spanlets through opentelemetry-otlp's log and span
//! exporters, process by process (each request carries one resource), and
//! says exactly how many spanlets arrived when one does not.
use opentelemetry_otlp::{LogExporter, SpanExporter};
use opentelemetry_sdk::{logs::LogBatch, logs::LogExporter as _, trace::SpanExporter as _};

pub use super::exporters::retry_policy;
use super::{
    endpoint::redact_url,
    exporters::{Built, SendError, log_exporter, span_exporter},
    mapping::{Batch, ProcessBatch, scope},
    settings::{Settings, Signal},
};
pub use opentelemetry_otlp::RetryPolicy;

/// A batch that did not all arrive: the spanlets whose event (and span)
/// did, and why the rest did not.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct Incomplete {
    pub delivered: u64,
    #[source]
    pub source: SendError,
}

/// The exporters of one collector (connections made lazily, re-made as
/// needed).
pub struct Sender {
    settings: Settings,
    logs: Built<LogExporter>,
    spans: Built<SpanExporter>,
}

impl Sender {
    /// `retry` says how often the exporters try each request.
    pub fn new(settings: Settings, retry: RetryPolicy) -> Result<Self, SendError> {
        Ok(Self {
            logs: log_exporter(&settings, retry.clone())?,
            spans: span_exporter(&settings, retry)?,
            settings,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Sends each process's events, then its spans; stops at the first
    /// request that fails after its retries. A spanlet is delivered when
    /// its event and its span (if it has one) were.
    pub async fn send(&mut self, batch: Batch) -> Result<(), Incomplete> {
        let mut delivered = 0;
        for process in batch.processes {
            let spanlets = process.logs.len() as u64;
            if let Err(source) = self.send_process(process).await {
                return Err(Incomplete { delivered, source });
            }
            delivered += spanlets;
        }
        Ok(())
    }

    async fn send_process(&mut self, process: ProcessBatch) -> Result<(), SendError> {
        if !process.logs.is_empty() {
            let pairs: Vec<_> = process.logs.iter().map(|l| (l, scope())).collect();
            self.logs.exporter.set_resource(&process.resource);
            let result = self.logs.exporter.export(LogBatch::new(&pairs)).await;
            self.check(Signal::Logs, result)?;
        }
        if !process.spans.is_empty() {
            self.spans.exporter.set_resource(&process.resource);
            let result = self.spans.exporter.export(process.spans).await;
            self.check(Signal::Traces, result)?;
        }
        Ok(())
    }

    fn check(
        &self,
        signal: Signal,
        result: opentelemetry_sdk::error::OTelSdkResult,
    ) -> Result<(), SendError> {
        let Err(e) = result else { return Ok(()) };
        let last = match signal {
            Signal::Traces => self.spans.last_failure.take(),
            Signal::Logs | Signal::Metrics => self.logs.last_failure.take(),
        };
        let reason = match last {
            Some(cause) => format!("{e} ({cause})"),
            None => e.to_string(),
        };
        Err(SendError::Export {
            signal: signal.noun(),
            endpoint: redact_url(signal.endpoint(&self.settings)).into_owned(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::output::otlp::{Overrides, Protocol, mapping};

    #[tokio::test]
    async fn a_refused_http_connection_says_why() {
        // Nothing listens on port 1.
        let flags = Overrides {
            endpoint: Some("http://127.0.0.1:1".into()),
            protocol: Some(Protocol::HttpProtobuf),
            ..Default::default()
        };
        let s = Settings::resolve(&Default::default(), &flags).unwrap();
        let mut sender = Sender::new(s, retry_policy(1, Duration::ZERO, Duration::ZERO)).unwrap();
        let spanlet = crate::model::Spanlet::new(crate::model::SpanletKind::FutexWait, 1, 1);
        let batch = mapping::batch([&spanlet], &Default::default(), &Default::default());
        let err = sender.send(batch).await.unwrap_err();
        assert_eq!(err.delivered, 0);
        let text = err.to_string();
        assert!(
            text.starts_with("cannot reach the OTLP collector at http://127.0.0.1:1/v1/logs")
                && text.contains("Connection refused"),
            "{text}"
        );
    }
}
