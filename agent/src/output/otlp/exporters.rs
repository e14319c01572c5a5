//! OTLP transport: opentelemetry-otlp's span, log and metric exporters,
//! built from checked [`Settings`]. Every value is set explicitly, so the
//! crate's own reading of the `OTEL_EXPORTER_OTLP_*` variables changes
//! nothing spanlet has not checked. Two shims keep spanlet's promises
//! where the crate would not:
//! - headers are applied last, on each request: the crate lets a
//!   variable's header replace one given in code, so a `--otlp-header`
//!   would lose to `OTEL_EXPORTER_OTLP_HEADERS`;
//! - TLS (the CA file, the client certificate) is configured here from the
//!   files the variables name: the crate does not read
//!   `OTEL_EXPORTER_OTLP_CERTIFICATE` or `_CLIENT_*`, and its HTTP client
//!   has no TLS setting of its own.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry_http::{HttpClient, HttpError, hyper::HyperClient};
use opentelemetry_otlp::{
    Compression, LogExporter, MetricExporter, Protocol as OtlpProtocol, RetryPolicy, SpanExporter,
    WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use tonic::{
    metadata::{AsciiMetadataKey, AsciiMetadataValue},
    transport::{Certificate, ClientTlsConfig, Identity},
};

use super::{
    endpoint::redact_url,
    settings::{Protocol, Settings, Signal, Tls},
};
use crate::{
    error_text::error_chain,
    output::https::{self, Trust},
};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot set up OTLP export of {signal} to {endpoint}: {reason}")]
    Build {
        signal: &'static str,
        endpoint: String,
        reason: String,
    },
    #[error("OTLP TLS settings: {0}")]
    Tls(String),
    /// The exporter's own retries are spent. opentelemetry-otlp reports
    /// a refused connection and a refused batch alike, as one message.
    #[error("cannot reach the OTLP collector at {endpoint}, or it refused the {signal}: {reason}")]
    Export {
        signal: &'static str,
        endpoint: String,
        reason: String,
    },
}

/// How often the exporters try a batch: retryable failures (connection
/// refused, gRPC UNAVAILABLE and the like, HTTP 429/502/503/504) are
/// tried again with exponential backoff (and the crate's jitter).
pub fn retry_policy(attempts: u32, first_backoff: Duration, max_backoff: Duration) -> RetryPolicy {
    RetryPolicy::default()
        .with_max_retries(attempts.saturating_sub(1) as usize)
        .with_initial_delay(first_backoff)
        .with_max_delay(max_backoff)
}

/// The transport figures of one exporter, shared by its requests: the last
/// HTTP failure's cause, which the crate reduces to "network error".
#[derive(Clone, Debug, Default)]
pub struct LastFailure(Arc<Mutex<Option<String>>>);

impl LastFailure {
    pub fn take(&self) -> Option<String> {
        self.0.lock().ok()?.take()
    }

    fn set(&self, reason: String) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(reason);
        }
    }
}

/// An exporter and what its requests' failures said.
pub struct Built<E> {
    pub exporter: E,
    pub last_failure: LastFailure,
}

/// Builds one exporter per transport; `$builder` is the signal's
/// `Exporter::builder()`. The builders' types differ per signal and
/// transport, so the shared setup is the generic [`grpc`] and [`http`].
macro_rules! build {
    ($builder:expr, $signal:expr, $settings:expr, $retry:expr) => {{
        let (signal, settings, retry) = ($signal, $settings, $retry);
        let last_failure = LastFailure::default();
        let built = match settings.protocol {
            Protocol::Grpc => grpc($builder.with_tonic(), signal, settings, retry).build(),
            Protocol::HttpProtobuf => {
                http($builder.with_http(), signal, settings, retry, &last_failure)?.build()
            }
        };
        built
            .map(|exporter| Built {
                exporter,
                last_failure,
            })
            .map_err(|e| build_error(signal, settings, &e))
    }};
}

pub fn span_exporter(
    settings: &Settings,
    retry: RetryPolicy,
) -> Result<Built<SpanExporter>, SendError> {
    build!(SpanExporter::builder(), Signal::Traces, settings, retry)
}

pub fn log_exporter(
    settings: &Settings,
    retry: RetryPolicy,
) -> Result<Built<LogExporter>, SendError> {
    build!(LogExporter::builder(), Signal::Logs, settings, retry)
}

/// Cumulative temporality, as the agent's counters are totals since start.
pub fn metric_exporter(
    settings: &Settings,
    retry: RetryPolicy,
) -> Result<Built<MetricExporter>, SendError> {
    build!(MetricExporter::builder(), Signal::Metrics, settings, retry)
}

fn build_error(
    signal: Signal,
    settings: &Settings,
    e: &(dyn std::error::Error + 'static),
) -> SendError {
    SendError::Build {
        signal: signal.noun(),
        endpoint: redact_url(signal.endpoint(settings)).into_owned(),
        reason: error_chain(e),
    }
}

fn grpc<B: WithExportConfig + WithTonicConfig>(
    builder: B,
    signal: Signal,
    settings: &Settings,
    retry: RetryPolicy,
) -> B {
    let url = signal.endpoint(settings);
    let mut builder = builder
        .with_endpoint(url)
        .with_protocol(OtlpProtocol::Grpc)
        .with_timeout(settings.timeout_for(signal))
        .with_retry_policy(retry)
        .with_interceptor(GrpcHeaders::new(settings));
    if url.starts_with("https://") {
        builder = builder.with_tls_config(grpc_tls(&settings.tls));
    }
    if settings.gzip {
        builder = builder.with_compression(Compression::Gzip);
    }
    builder
}

fn http<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    signal: Signal,
    settings: &Settings,
    retry: RetryPolicy,
    last_failure: &LastFailure,
) -> Result<B, SendError> {
    let trust = Trust {
        public_roots: true,
        ca_pem: settings.tls.ca.as_deref(),
        identity: settings
            .tls
            .client_cert
            .as_deref()
            .zip(settings.tls.client_key.as_deref()),
    };
    let tls = https::rustls_config(&trust).map_err(|e| SendError::Tls(e.to_string()))?;
    let timeout = settings.timeout_for(signal);
    let connector = https::connector(tls, timeout, true);
    let client = HttpHeadersLast {
        inner: HyperClient::new(connector, timeout, None),
        headers: http_headers(settings),
        last_failure: last_failure.clone(),
    };
    let mut builder = builder
        .with_endpoint(signal.endpoint(settings))
        .with_protocol(OtlpProtocol::HttpBinary)
        .with_timeout(timeout)
        .with_retry_policy(retry)
        .with_http_client(client);
    if settings.gzip {
        builder = builder.with_compression(Compression::Gzip);
    }
    Ok(builder)
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

/// The settings' headers as gRPC metadata, put on every request after the
/// crate's own. [`Settings::resolve`] checked each for the protocol.
#[derive(Clone)]
struct GrpcHeaders(Arc<[(AsciiMetadataKey, AsciiMetadataValue)]>);

impl GrpcHeaders {
    fn new(settings: &Settings) -> Self {
        let headers = settings.headers.iter().filter_map(|(k, v)| {
            let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes());
            Some((key.ok()?, AsciiMetadataValue::try_from(v.as_str()).ok()?))
        });
        Self(headers.collect())
    }
}

impl tonic::service::Interceptor for GrpcHeaders {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        for (key, value) in self.0.iter() {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        Ok(request)
    }
}

/// The settings' headers for HTTP; [`Settings::resolve`] checked each.
fn http_headers(settings: &Settings) -> Arc<[(http::HeaderName, http::HeaderValue)]> {
    let headers = settings.headers.iter().filter_map(|(k, v)| {
        let key = http::HeaderName::from_bytes(k.as_bytes());
        Some((key.ok()?, http::HeaderValue::from_str(v).ok()?))
    });
    headers.collect()
}

/// The crate's hyper client over spanlet's rustls connector, setting the
/// settings' headers last and keeping the cause of a failed request.
#[derive(Debug)]
struct HttpHeadersLast {
    inner: HyperClient<HttpsConnector<HttpConnector>>,
    headers: Arc<[(http::HeaderName, http::HeaderValue)]>,
    last_failure: LastFailure,
}

#[async_trait::async_trait]
impl HttpClient for HttpHeadersLast {
    async fn send_bytes(
        &self,
        mut request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        for (key, value) in self.headers.iter() {
            request.headers_mut().insert(key.clone(), value.clone());
        }
        let result = self.inner.send_bytes(request).await;
        if let Err(e) = &result {
            self.last_failure.set(error_chain(e.as_ref()));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::output::otlp::Overrides;

    fn settings(protocol: Protocol, endpoint: String, headers: &[&str]) -> Settings {
        let flags = Overrides {
            endpoint: Some(endpoint),
            protocol: Some(protocol),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        Settings::resolve(&Default::default(), &flags).unwrap()
    }

    /// Answers one HTTP request with 200 and returns its head, lowercased.
    async fn one_request(listener: tokio::net::TcpListener) -> String {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed before its head");
            got.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
        head.split("\r\n\r\n").next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn http_headers_replace_those_the_crate_added() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/logs", listener.local_addr().unwrap());
        let server = tokio::spawn(one_request(listener));
        let s = settings(Protocol::HttpProtobuf, url.clone(), &["X-Tenant=flag"]);
        let trust = Trust {
            public_roots: true,
            ..Trust::default()
        };
        let tls = https::rustls_config(&trust).unwrap();
        let client = HttpHeadersLast {
            inner: HyperClient::new(https::connector(tls, s.timeout, true), s.timeout, None),
            headers: http_headers(&s),
            last_failure: LastFailure::default(),
        };
        // As the crate sends it when OTEL_EXPORTER_OTLP_HEADERS names the
        // same header.
        let request = http::Request::post(&url)
            .header("x-tenant", "from-the-variable")
            .body(Bytes::from_static(b"x"))
            .unwrap();
        let response = client.send_bytes(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let head = server.await.unwrap();
        let tenants: Vec<_> = head
            .lines()
            .filter(|l| l.starts_with("x-tenant:"))
            .collect();
        assert_eq!(tenants, ["x-tenant: flag"], "{head}");
    }

    #[test]
    fn grpc_headers_replace_those_the_crate_added() {
        use tonic::service::Interceptor as _;
        let s = settings(
            Protocol::Grpc,
            "http://127.0.0.1:4317".into(),
            &["x-tenant=flag"],
        );
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert("x-tenant", "from-the-variable".parse().unwrap());
        let request = GrpcHeaders::new(&s).call(request).unwrap();
        let tenants: Vec<_> = request.metadata().get_all("x-tenant").iter().collect();
        assert_eq!(tenants, ["flag"]);
    }
}
