//! Where and how to send OTLP, from the standard `OTEL_EXPORTER_OTLP_*`
//! variables (the OpenTelemetry SDK configuration specification), with
//! spanlet's flags taking precedence. Everything is checked here, once,
//! before anything starts: a value the clients would refuse later would
//! otherwise fail every batch. Errors name the flag or variable, and never
//! show a header's value or a URL's credentials.
use std::{collections::HashMap, time::Duration};

use super::{endpoint::check_endpoint, error::SettingsError, kv_list::parse_list};

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with binary protobuf bodies (default port 4318).
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    fn parse(s: &str) -> Result<Self, SettingsError> {
        match s.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            other => Err(SettingsError::Protocol(other.to_owned())),
        }
    }
}

/// What is sent: each goes to its own endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Traces,
    Metrics,
}

impl Signal {
    /// As errors name what was sent.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Logs => "log events",
            Self::Traces => "spans",
            Self::Metrics => "metrics",
        }
    }

    pub fn endpoint(self, settings: &Settings) -> &str {
        match self {
            Self::Logs => &settings.logs_endpoint,
            Self::Traces => &settings.traces_endpoint,
            Self::Metrics => &settings.metrics_endpoint,
        }
    }
}

/// Everything a sender needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub protocol: Protocol,
    /// Full URLs: for HTTP the signal paths (`/v1/logs`, `/v1/traces`,
    /// `/v1/metrics`) are already appended where the specification says so.
    pub logs_endpoint: String,
    pub traces_endpoint: String,
    /// Where the agent's own metrics go.
    pub metrics_endpoint: String,
    pub headers: Vec<(String, String)>,
    /// For every signal, unless `signal_timeouts` has its own.
    pub timeout: Duration,
    /// `OTEL_EXPORTER_OTLP_{LOGS,TRACES,METRICS}_TIMEOUT` (when no
    /// `--otlp-timeout` is given).
    pub signal_timeouts: Vec<(Signal, Duration)>,
    pub gzip: bool,
    /// For `https://` endpoints.
    pub tls: Tls,
    /// The agent's own metrics: whether to send them
    /// (`OTEL_METRICS_EXPORTER`), how often (`OTEL_METRIC_EXPORT_INTERVAL`)
    /// and for how long one export may take (`OTEL_METRIC_EXPORT_TIMEOUT`).
    pub metrics: MetricsExport,
}

/// The periodic metric reader's settings (SDK specification defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsExport {
    pub enabled: bool,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for MetricsExport {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
        }
    }
}

/// TLS material, as PEM read from the files the variables name. The
/// server is verified against the Mozilla roots plus `ca`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`: trusted CA certificate(s).
    pub ca: Option<Vec<u8>>,
    /// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `_CLIENT_KEY`: mutual TLS.
    pub client_cert: Option<Vec<u8>>,
    pub client_key: Option<Vec<u8>>,
}

/// Flags that override the variables.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub endpoint: Option<String>,
    pub protocol: Option<Protocol>,
    /// `--otlp-header` values as given, `KEY=VALUE` (not percent-decoded).
    pub headers: Vec<String>,
    pub timeout: Option<Duration>,
    pub compression: Option<String>,
    pub certificate: Option<String>,
    pub client_certificate: Option<String>,
    pub client_key: Option<String>,
}

const HEADERS_VAR: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// The per-signal variables opentelemetry-otlp reads by itself (spanlet
/// sets the general ones explicitly): checked here like the general ones.
const SIGNAL_HEADERS_VARS: [&str; 3] = [
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
];
const SIGNAL_TIMEOUT_VARS: [(Signal, &str); 3] = [
    (Signal::Logs, "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT"),
    (Signal::Traces, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"),
    (Signal::Metrics, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"),
];
const COMPRESSION_VARS: [&str; 4] = [
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
];
const HEADER_FLAG: &str = "--otlp-header";

impl Settings {
    /// From the process environment and `flags`.
    pub fn from_env(flags: &Overrides) -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("OTEL_"))
            .collect();
        Self::resolve(&env, flags)
    }

    /// From `env` (the `OTEL_*` variables) and `flags`.
    pub fn resolve(
        env: &HashMap<String, String>,
        flags: &Overrides,
    ) -> Result<Self, SettingsError> {
        let var = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        // A signal's own variable wins over the general one; spanlet sends
        // every signal with one protocol, the general one's.
        let protocol = match (flags.protocol, var("OTEL_EXPORTER_OTLP_PROTOCOL")) {
            (Some(p), _) => p,
            (None, Some(p)) => Protocol::parse(p)?,
            (None, None) => Protocol::HttpProtobuf,
        };
        let signal_endpoint = |signal: &str, path: &str| -> Result<String, SettingsError> {
            let signal_var = format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT");
            if flags.endpoint.is_none()
                && let Some(url) = var(&signal_var)
            {
                return check_endpoint(&signal_var, url);
            }
            let base = match (
                flags.endpoint.as_deref(),
                var("OTEL_EXPORTER_OTLP_ENDPOINT"),
            ) {
                (Some(e), _) => check_endpoint("--otlp-endpoint", e)?,
                (None, Some(e)) => check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", e)?,
                (None, None) => match protocol {
                    Protocol::Grpc => "http://localhost:4317".to_owned(),
                    Protocol::HttpProtobuf => "http://localhost:4318".to_owned(),
                },
            };
            Ok(match protocol {
                Protocol::Grpc => base,
                Protocol::HttpProtobuf => format!("{}/{path}", base.trim_end_matches('/')),
            })
        };
        let logs_endpoint = signal_endpoint("LOGS", "v1/logs")?;
        let traces_endpoint = signal_endpoint("TRACES", "v1/traces")?;
        let metrics_endpoint = signal_endpoint("METRICS", "v1/metrics")?;

        let headers = headers(protocol, var(HEADERS_VAR), &flags.headers)?;
        let mut signal_timeouts = Vec::new();
        for (signal, name) in SIGNAL_TIMEOUT_VARS {
            if let Some(ms) = var(name).filter(|_| flags.timeout.is_none()) {
                signal_timeouts.push((signal, positive_millis(name, ms)?));
            }
        }
        let timeout = match (flags.timeout, var("OTEL_EXPORTER_OTLP_TIMEOUT")) {
            (Some(Duration::ZERO), _) => return Err(SettingsError::ZeroTimeout),
            (Some(t), _) => t,
            (None, Some(ms)) => positive_millis("OTEL_EXPORTER_OTLP_TIMEOUT", ms)?,
            (None, None) => Duration::from_secs(10),
        };
        let (compression_source, compression) = match &flags.compression {
            Some(c) => ("--otlp-compression", Some(c.as_str())),
            None => (
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                var("OTEL_EXPORTER_OTLP_COMPRESSION"),
            ),
        };
        let gzip = match compression {
            None | Some("none") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(SettingsError::Compression {
                    setting: compression_source,
                    value: other.to_owned(),
                });
            }
        };
        for name in COMPRESSION_VARS {
            match var(name) {
                None | Some("none") => {}
                // Without a compression set, the exporter reads these
                // itself: a flag's `none` cannot undo them.
                Some("gzip") if compression == Some("none") => {
                    return Err(SettingsError::CompressionConflict { var: name });
                }
                Some("gzip") => {}
                Some(other) => {
                    return Err(SettingsError::Compression {
                        setting: name,
                        value: other.to_owned(),
                    });
                }
            }
        }
        for name in SIGNAL_HEADERS_VARS {
            for (k, v) in parse_list(name, var(name).unwrap_or_default())? {
                check_header(name, protocol, &k, &v)?;
            }
        }
        let file = |what: &'static str, flag: &Option<String>, name: &str| {
            let path = flag.as_deref().or(var(name));
            path.map(|p| {
                std::fs::read(p).map_err(|e| SettingsError::TlsFile {
                    what,
                    path: p.to_owned(),
                    reason: e.to_string(),
                })
            })
            .transpose()
        };
        let tls = Tls {
            ca: file(
                "the CA certificate",
                &flags.certificate,
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
            )?,
            client_cert: file(
                "the client certificate",
                &flags.client_certificate,
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            )?,
            client_key: file(
                "the client key",
                &flags.client_key,
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            )?,
        };
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            return Err(SettingsError::ClientIdentity);
        }
        Ok(Self {
            protocol,
            logs_endpoint,
            traces_endpoint,
            metrics_endpoint,
            headers,
            timeout,
            signal_timeouts,
            gzip,
            tls,
            metrics: MetricsExport::resolve(&var)?,
        })
    }
}

impl Settings {
    /// How long one request of `signal` may take.
    pub fn timeout_for(&self, signal: Signal) -> Duration {
        let own = self.signal_timeouts.iter().find(|(s, _)| *s == signal);
        own.map_or(self.timeout, |(_, t)| *t)
    }
}

impl MetricsExport {
    fn resolve<'a>(var: &impl Fn(&str) -> Option<&'a str>) -> Result<Self, SettingsError> {
        let defaults = Self::default();
        let millis = |name: &'static str, default: Duration| match var(name) {
            None => Ok(default),
            Some(v) => positive_millis(name, v),
        };
        Ok(Self {
            enabled: match var("OTEL_METRICS_EXPORTER") {
                None | Some("otlp") => true,
                Some("none") => false,
                Some(other) => return Err(SettingsError::MetricsExporter(other.to_owned())),
            },
            interval: millis("OTEL_METRIC_EXPORT_INTERVAL", defaults.interval)?,
            timeout: millis("OTEL_METRIC_EXPORT_TIMEOUT", defaults.timeout)?,
        })
    }
}

/// A variable's number of milliseconds. Zero would make a timeout never
/// succeed, or the metric reader spin.
fn positive_millis(name: &'static str, v: &str) -> Result<Duration, SettingsError> {
    match v.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(SettingsError::Milliseconds {
            name,
            value: v.to_owned(),
        }),
    }
}

/// The variable's headers, then the flags' (which replace a variable's
/// header of the same name), each checked as the protocol will send it.
fn headers(
    protocol: Protocol,
    list: Option<&str>,
    flags: &[String],
) -> Result<Vec<(String, String)>, SettingsError> {
    let mut headers = Vec::new();
    for (k, v) in parse_list(HEADERS_VAR, list.unwrap_or_default())? {
        check_header(HEADERS_VAR, protocol, &k, &v)?;
        headers.push((k, v));
    }
    for (i, item) in flags.iter().enumerate() {
        // Taken as given: a flag's value is not percent-encoded.
        let (k, v) = item
            .split_once('=')
            .map(|(k, v)| (k.trim(), v))
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| SettingsError::List {
                var: HEADER_FLAG.to_owned(),
                reason: format!("value {} is not KEY=VALUE with a non-empty KEY", i + 1),
            })?;
        check_header(HEADER_FLAG, protocol, k, v)?;
        headers.retain(|(hk, _): &(String, String)| !hk.eq_ignore_ascii_case(k));
        headers.push((k.to_owned(), v.to_owned()));
    }
    Ok(headers)
}

/// What the HTTP and gRPC clients would refuse when sending.
fn check_header(
    source: &'static str,
    protocol: Protocol,
    key: &str,
    value: &str,
) -> Result<(), SettingsError> {
    let bad = |reason| SettingsError::Header {
        setting: source,
        key: key.to_owned(),
        reason,
    };
    if http::HeaderName::from_bytes(key.as_bytes()).is_err() {
        return Err(bad("is not a valid header name"));
    }
    if http::HeaderValue::from_str(value).is_err() {
        return Err(bad(
            "has a value with a control character (CR, LF, NUL...), which no header may carry",
        ));
    }
    if protocol == Protocol::Grpc {
        use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
        if AsciiMetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes()).is_err() {
            return Err(bad(
                "is not a valid gRPC metadata key (binary -bin keys are not supported)",
            ));
        }
        if AsciiMetadataValue::try_from(value).is_err() {
            return Err(bad("has a value gRPC metadata cannot carry"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_the_specification_s() {
        let s = Settings::resolve(&env(&[]), &Overrides::default()).unwrap();
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.logs_endpoint, "http://localhost:4318/v1/logs");
        assert_eq!(s.traces_endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(s.metrics_endpoint, "http://localhost:4318/v1/metrics");
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert!(!s.gzip);
        assert_eq!(s.metrics, MetricsExport::default());
        assert_eq!(s.metrics.interval, Duration::from_secs(60));
        let grpc = Overrides {
            protocol: Some(Protocol::Grpc),
            ..Default::default()
        };
        let s = Settings::resolve(&env(&[]), &grpc).unwrap();
        assert_eq!(s.logs_endpoint, "http://localhost:4317");
        assert_eq!(s.metrics_endpoint, "http://localhost:4317");
    }

    #[test]
    fn metrics_have_their_own_endpoint_and_reader_settings() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://metrics:9090/otlp",
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
            ("OTEL_METRIC_EXPORT_TIMEOUT", "5000"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ]);
        let s = Settings::resolve(&e, &Overrides::default()).unwrap();
        assert_eq!(s.metrics_endpoint, "http://metrics:9090/otlp");
        assert_eq!(s.logs_endpoint, "http://collector:4318/v1/logs");
        assert_eq!(
            s.metrics,
            MetricsExport {
                enabled: false,
                interval: Duration::from_secs(15),
                timeout: Duration::from_secs(5),
            }
        );
        // The --otlp-endpoint flag wins over every signal's variable.
        let flags = Overrides {
            endpoint: Some("http://flag:4318".into()),
            ..Default::default()
        };
        let s = Settings::resolve(&e, &flags).unwrap();
        assert_eq!(s.metrics_endpoint, "http://flag:4318/v1/metrics");
    }

    #[test]
    fn variables_then_flags() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x=1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ]);
        let s = Settings::resolve(&e, &Overrides::default()).unwrap();
        assert_eq!(s.timeout_for(Signal::Traces), Duration::from_millis(700));
        assert_eq!(s.timeout_for(Signal::Logs), Duration::from_millis(2500));
        assert_eq!(s.logs_endpoint, "http://collector:4318/v1/logs");
        assert_eq!(s.traces_endpoint, "http://traces:9999/custom");
        assert_eq!(
            s.headers,
            vec![("api-key".into(), "a b".into()), ("x".into(), "1".into())]
        );
        assert_eq!(s.timeout, Duration::from_millis(2500));
        assert!(s.gzip);

        let flags = Overrides {
            endpoint: Some("http://flag:4317".into()),
            protocol: Some(Protocol::Grpc),
            headers: vec!["x=2".into()],
            timeout: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let s = Settings::resolve(&e, &flags).unwrap();
        assert_eq!(s.logs_endpoint, "http://flag:4317");
        assert_eq!(s.traces_endpoint, "http://flag:4317");
        assert_eq!(
            s.headers,
            vec![("api-key".into(), "a b".into()), ("x".into(), "2".into())]
        );
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!(s.timeout_for(Signal::Traces), Duration::from_secs(1));
    }

    #[test]
    fn bad_flags_are_named_without_their_secrets() {
        let bad = |flags: Overrides| Settings::resolve(&env(&[]), &flags).unwrap_err();
        let zero = bad(Overrides {
            timeout: Some(Duration::ZERO),
            ..Default::default()
        });
        assert_eq!(zero, SettingsError::ZeroTimeout);
        for header in [
            "Authorization=Bearer s3cret\r\nX-Evil: 1",
            "Authorization=s3cret\n",
        ] {
            let err = bad(Overrides {
                headers: vec![header.into()],
                ..Default::default()
            });
            let text = err.to_string();
            assert!(
                text.starts_with("--otlp-header: OTLP header \"Authorization\""),
                "{text}"
            );
            assert!(!text.contains("s3cret"), "{text}");
        }
        let err = bad(Overrides {
            headers: vec!["s3cret".into()],
            ..Default::default()
        })
        .to_string();
        assert!(
            err.starts_with("--otlp-header:") && !err.contains("s3cret"),
            "{err}"
        );
        // A binary (-bin) key: HTTP carries it, gRPC ASCII metadata does not.
        let binary = || vec!["x-ctx-bin=abc".to_owned()];
        let http = Overrides {
            headers: binary(),
            ..Default::default()
        };
        assert!(Settings::resolve(&env(&[]), &http).is_ok());
        let grpc = Overrides {
            headers: binary(),
            protocol: Some(Protocol::Grpc),
            ..Default::default()
        };
        assert!(matches!(bad(grpc), SettingsError::Header { .. }));
        let endpoint = bad(Overrides {
            endpoint: Some("http://127.0.0.1:99999".into()),
            ..Default::default()
        })
        .to_string();
        assert!(endpoint.starts_with("--otlp-endpoint:"), "{endpoint}");
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |k: &str, v: &str| Settings::resolve(&env(&[(k, v)]), &Overrides::default());
        assert_eq!(
            bad("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            Err(SettingsError::Protocol("http/json".into()))
        );
        assert!(matches!(
            bad("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            Err(SettingsError::Endpoint { setting, .. }) if setting == "OTEL_EXPORTER_OTLP_ENDPOINT"
        ));
        assert!(matches!(
            bad("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://c:99999"),
            Err(SettingsError::Endpoint { setting, .. }) if setting == "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"
        ));
        assert!(matches!(
            bad("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
            Err(SettingsError::TlsFile { .. })
        ));
        assert_eq!(
            bad("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/hostname"),
            Err(SettingsError::ClientIdentity)
        );
        assert_eq!(
            bad("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "0"),
            Err(SettingsError::Milliseconds {
                name: "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
                value: "0".into()
            })
        );
        for v in ["10s", "0"] {
            assert_eq!(
                bad("OTEL_EXPORTER_OTLP_TIMEOUT", v),
                Err(SettingsError::Milliseconds {
                    name: "OTEL_EXPORTER_OTLP_TIMEOUT",
                    value: v.into()
                })
            );
        }
        assert!(matches!(
            bad("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            Err(SettingsError::List { var, .. }) if var == "OTEL_EXPORTER_OTLP_HEADERS"
        ));
        assert!(matches!(
            bad("OTEL_EXPORTER_OTLP_HEADERS", "api-key=%zz"),
            Err(SettingsError::List { var, .. }) if var == "OTEL_EXPORTER_OTLP_HEADERS"
        ));
        assert!(matches!(
            bad("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%0D%0AX-Evil: 1"),
            Err(SettingsError::Header {
                setting: "OTEL_EXPORTER_OTLP_HEADERS",
                ..
            })
        ));
        assert!(matches!(
            bad("OTEL_EXPORTER_OTLP_HEADERS", "bad key=1"),
            Err(SettingsError::Header {
                setting: "OTEL_EXPORTER_OTLP_HEADERS",
                ..
            })
        ));
        for v in ["0", "1m", "-5"] {
            assert_eq!(
                bad("OTEL_METRIC_EXPORT_INTERVAL", v),
                Err(SettingsError::Milliseconds {
                    name: "OTEL_METRIC_EXPORT_INTERVAL",
                    value: v.into()
                })
            );
        }
        assert_eq!(
            bad("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "brotli"),
            Err(SettingsError::Compression {
                setting: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                value: "brotli".into()
            })
        );
        assert!(matches!(
            bad(
                "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
                "api-key=a%0D%0AX-Evil: 1"
            ),
            Err(SettingsError::Header {
                setting: "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
                ..
            })
        ));
        let none = Overrides {
            compression: Some("none".into()),
            ..Default::default()
        };
        assert_eq!(
            Settings::resolve(&env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]), &none),
            Err(SettingsError::CompressionConflict {
                var: "OTEL_EXPORTER_OTLP_COMPRESSION"
            })
        );
        assert_eq!(
            bad("OTEL_METRICS_EXPORTER", "prometheus"),
            Err(SettingsError::MetricsExporter("prometheus".into()))
        );
    }
}
