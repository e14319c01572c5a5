//! Sends OTLP requests over gRPC (tonic) or HTTP/protobuf (hyper), with the
//! settings' headers, timeout and compression.
use std::{error::Error as _, io::Write as _, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsServiceRequest, logs_service_client::LogsServiceClient},
    metrics::v1::{ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient},
    trace::v1::{ExportTraceServiceRequest, trace_service_client::TraceServiceClient},
};
use prost::Message as _;
use tonic::{
    codec::CompressionEncoding,
    metadata::{MetadataKey, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::{
    error_text::{causes, error_chain},
    output::https::{self, HttpsClient, RequestError, Trust},
};

use super::{
    endpoint::redact_url,
    mapping::Requests,
    settings::{Protocol, Settings, Tls},
};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("invalid OTLP endpoint {endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("invalid OTLP header {0:?}")]
    Header(String),
    #[error("OTLP TLS settings: {0}")]
    Tls(String),
    #[error("cannot reach the OTLP collector at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("the OTLP collector at {endpoint} did not answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("the OTLP collector at {endpoint} refused the data: {reason}")]
    Rejected {
        endpoint: String,
        reason: String,
        /// Worth sending again later (the specification's retryable codes).
        retryable: bool,
    },
}

impl SendError {
    /// Whether sending again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } => true,
            Self::Rejected { retryable, .. } => *retryable,
            Self::Endpoint { .. } | Self::Header(_) | Self::Tls(_) => false,
        }
    }
}

struct GrpcClients {
    logs: LogsServiceClient<Channel>,
    traces: TraceServiceClient<Channel>,
    metrics: MetricsServiceClient<Channel>,
}

enum Transport {
    /// Boxed: the generated clients are large, the HTTP client is not.
    Grpc(Box<GrpcClients>),
    Http(HttpsClient<Full<Bytes>>),
}

/// A connection to one collector (made lazily, re-made as needed). The
/// settings were checked by [`Settings::resolve`]; what is checked again
/// here only guards against settings built another way.
pub struct Sender {
    settings: Settings,
    transport: Transport,
}

impl Sender {
    pub fn new(settings: Settings) -> Result<Self, SendError> {
        for (k, _) in &settings.headers {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(SendError::Header(k.clone()));
            }
        }
        let transport = match settings.protocol {
            Protocol::Grpc => {
                let channel = |url: &str| -> Result<Channel, SendError> {
                    let mut endpoint = Endpoint::from_shared(url.to_owned())
                        .map_err(|e| SendError::Endpoint {
                            endpoint: redact_url(url).into_owned(),
                            reason: e.to_string(),
                        })?
                        .connect_timeout(settings.timeout)
                        .timeout(settings.timeout);
                    if url.starts_with("https://") {
                        endpoint = endpoint
                            .tls_config(grpc_tls(&settings.tls))
                            .map_err(|e| SendError::Tls(error_chain(&e)))?;
                    }
                    Ok(endpoint.connect_lazy())
                };
                let mut logs = LogsServiceClient::new(channel(&settings.logs_endpoint)?);
                let mut traces = TraceServiceClient::new(channel(&settings.traces_endpoint)?);
                let mut metrics = MetricsServiceClient::new(channel(&settings.metrics_endpoint)?);
                if settings.gzip {
                    logs = logs.send_compressed(CompressionEncoding::Gzip);
                    traces = traces.send_compressed(CompressionEncoding::Gzip);
                    metrics = metrics.send_compressed(CompressionEncoding::Gzip);
                }
                Transport::Grpc(Box::new(GrpcClients {
                    logs,
                    traces,
                    metrics,
                }))
            }
            Protocol::HttpProtobuf => {
                for url in [
                    &settings.logs_endpoint,
                    &settings.traces_endpoint,
                    &settings.metrics_endpoint,
                ] {
                    url.parse::<http::Uri>().map_err(|e| SendError::Endpoint {
                        endpoint: redact_url(url).into_owned(),
                        reason: e.to_string(),
                    })?;
                }
                let tls = rustls_config(&settings.tls)?;
                Transport::Http(https::client(tls, settings.timeout, true))
            }
        };
        Ok(Self {
            settings,
            transport,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Sends the logs, then the spans (each only if there are any).
    pub async fn send(&mut self, requests: &Requests) -> Result<(), SendError> {
        if !requests.logs.resource_logs.is_empty() {
            self.send_one(Payload::Logs(&requests.logs)).await?;
        }
        if !requests.traces.resource_spans.is_empty() {
            self.send_one(Payload::Traces(&requests.traces)).await?;
        }
        Ok(())
    }

    /// Sends metrics (if there are any) to the metrics endpoint.
    pub async fn send_metrics(
        &mut self,
        request: &ExportMetricsServiceRequest,
    ) -> Result<(), SendError> {
        if request.resource_metrics.is_empty() {
            return Ok(());
        }
        self.send_one(Payload::Metrics(request)).await
    }

    async fn send_one(&mut self, payload: Payload<'_>) -> Result<(), SendError> {
        let url = match payload {
            Payload::Logs(_) => &self.settings.logs_endpoint,
            Payload::Traces(_) => &self.settings.traces_endpoint,
            Payload::Metrics(_) => &self.settings.metrics_endpoint,
        };
        let url = url.clone();
        // For messages: settings reject credentials in a URL, but a message
        // must not show them even so.
        let endpoint = redact_url(&url).into_owned();
        let timeout = self.settings.timeout;
        match &mut self.transport {
            Transport::Grpc(clients) => {
                let GrpcClients {
                    logs,
                    traces,
                    metrics,
                } = clients.as_mut();
                let headers = &self.settings.headers;
                // The generated clients differ in type, so each call is its
                // own arm; what is done with the answer is shared below.
                let outcome = match payload {
                    Payload::Logs(m) => {
                        let req = grpc_request(m.clone(), headers)?;
                        tokio::time::timeout(timeout, logs.export(req))
                            .await
                            .map(|r| r.map(drop))
                    }
                    Payload::Traces(m) => {
                        let req = grpc_request(m.clone(), headers)?;
                        tokio::time::timeout(timeout, traces.export(req))
                            .await
                            .map(|r| r.map(drop))
                    }
                    Payload::Metrics(m) => {
                        let req = grpc_request(m.clone(), headers)?;
                        tokio::time::timeout(timeout, metrics.export(req))
                            .await
                            .map(|r| r.map(drop))
                    }
                };
                match outcome {
                    Err(_) => Err(SendError::Timeout { endpoint, timeout }),
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(status)) => Err(grpc_error(endpoint, &status)),
                }
            }
            Transport::Http(client) => {
                let body = match payload {
                    Payload::Logs(m) => m.encode_to_vec(),
                    Payload::Traces(m) => m.encode_to_vec(),
                    Payload::Metrics(m) => m.encode_to_vec(),
                };
                let body = if self.settings.gzip {
                    gzip(&body)
                } else {
                    body
                };
                let mut req = http::Request::post(&url)
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf");
                if self.settings.gzip {
                    req = req.header(http::header::CONTENT_ENCODING, "gzip");
                }
                for (k, v) in &self.settings.headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                let req = req
                    .body(Full::new(Bytes::from(body)))
                    .map_err(|e| SendError::Header(e.to_string()))?;
                let response = match https::request(client, req, timeout).await {
                    Err(RequestError::Timeout) => {
                        return Err(SendError::Timeout { endpoint, timeout });
                    }
                    Err(RequestError::Failed(reason)) => {
                        return Err(SendError::Unreachable { endpoint, reason });
                    }
                    Ok(r) => r,
                };
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let text = match tokio::time::timeout(timeout, response.into_body().collect()).await
                {
                    Ok(Ok(body)) => String::from_utf8_lossy(&body.to_bytes())
                        .chars()
                        .take(200)
                        .collect(),
                    _ => String::new(),
                };
                Err(SendError::Rejected {
                    endpoint,
                    reason: format!("HTTP {status} {text}").trim().to_owned(),
                    retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
                })
            }
        }
    }
}

/// tonic's TLS: the built-in roots, the given CA, the client identity.
fn grpc_tls(tls: &Tls) -> ClientTlsConfig {
    let mut config = ClientTlsConfig::new().with_webpki_roots();
    if let Some(ca) = &tls.ca {
        config = config.ca_certificate(Certificate::from_pem(ca));
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        config = config.identity(Identity::from_pem(cert, key));
    }
    config
}

/// rustls for HTTP: the same trust and identity as [`grpc_tls`].
fn rustls_config(tls: &Tls) -> Result<rustls::ClientConfig, SendError> {
    let trust = Trust {
        public_roots: true,
        ca_pem: tls.ca.as_deref(),
        identity: tls.client_cert.as_deref().zip(tls.client_key.as_deref()),
    };
    https::rustls_config(&trust).map_err(|e| SendError::Tls(e.to_string()))
}

/// One signal's request, borrowed for one send.
#[derive(Clone, Copy)]
enum Payload<'a> {
    Logs(&'a ExportLogsServiceRequest),
    Traces(&'a ExportTraceServiceRequest),
    Metrics(&'a ExportMetricsServiceRequest),
}

fn grpc_request<T>(
    message: T,
    headers: &[(String, String)],
) -> Result<tonic::Request<T>, SendError> {
    let mut req = tonic::Request::new(message);
    for (k, v) in headers {
        let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|_| SendError::Header(k.clone()))?;
        let value =
            MetadataValue::try_from(v.as_str()).map_err(|_| SendError::Header(k.clone()))?;
        req.metadata_mut().insert(key, value);
    }
    Ok(req)
}

fn grpc_error(endpoint: String, status: &tonic::Status) -> SendError {
    use tonic::Code;
    let reason = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unavailable if status.message().contains("connect") || status.source().is_some() => {
            SendError::Unreachable {
                endpoint,
                reason: causes(status.message().to_owned(), status.source()),
            }
        }
        code => SendError::Rejected {
            endpoint,
            reason,
            retryable: matches!(
                code,
                Code::Cancelled
                    | Code::DeadlineExceeded
                    | Code::Aborted
                    | Code::OutOfRange
                    | Code::Unavailable
                    | Code::DataLoss
                    | Code::ResourceExhausted
            ),
        },
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}
