//! Why OTLP settings were refused. Its own file because the settings and
//! the endpoint and list parsers they use all return it.

/// A setting that cannot be used, named as the user gave it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL: unknown OTLP protocol {0:?} (use grpc or http/protobuf)")]
    Protocol(String),
    #[error("{setting}: unknown OTLP compression {value:?} (use gzip or none)")]
    Compression {
        setting: &'static str,
        value: String,
    },
    #[error(
        "--otlp-compression none: {var} asks for gzip, and the OTLP exporter would still \
         compress; unset the variable instead"
    )]
    CompressionConflict { var: &'static str },
    #[error("--otlp-timeout must be longer than 0")]
    ZeroTimeout,
    #[error("{name} {value:?} is not a positive number of milliseconds")]
    Milliseconds { name: &'static str, value: String },
    #[error("unknown OTEL_METRICS_EXPORTER {0:?} (use otlp or none)")]
    MetricsExporter(String),
    /// `url` is redacted (no credentials).
    #[error("{setting}: OTLP endpoint {url} {reason}")]
    Endpoint {
        setting: String,
        url: String,
        reason: String,
    },
    #[error("cannot read {what} {path:?}: {reason}")]
    TlsFile {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("a client certificate needs its key, and a key its certificate (mutual TLS)")]
    ClientIdentity,
    #[error("{var}: {reason}")]
    List { var: String, reason: String },
    #[error("{setting}: OTLP header {key:?} {reason}")]
    Header {
        setting: &'static str,
        key: String,
        reason: &'static str,
    },
}
