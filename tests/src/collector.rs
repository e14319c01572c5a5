//! rotel, an independent OpenTelemetry collector (PyPI `rotel`, pinned and
//! installed by `cargo xtask setup`), run with its debug exporter so a test
//! can check what a collector actually received, and parsed back into the
//! log records, spans and metric data points it printed.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running rotel printing every log record, span and metric it receives.
pub struct Rotel {
    child: Child,
    pub grpc_port: u16,
    pub http_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The rotel-agent binary: `$SPANLET_ROTEL` (set by `cargo xtask test`),
/// else where `cargo xtask setup` installs it in this workspace.
fn rotel_agent() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SPANLET_ROTEL") {
        return Some(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let lib = root.join("target/venv-rotel/lib");
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/rotel/rotel-agent"))
        .find(|p| p.is_file())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

impl Rotel {
    /// Starts rotel on two free local ports and waits until both accept
    /// connections. `None`: rotel is not installed and `$CI` is not set.
    pub fn start() -> Option<Self> {
        Self::start_on(free_port(), free_port())
    }

    /// Two free local ports, for a collector started later.
    pub fn free_ports() -> (u16, u16) {
        (free_port(), free_port())
    }

    /// Starts rotel on the given ports (e.g. again after [`Rotel::stop`]).
    pub fn start_on(grpc_port: u16, http_port: u16) -> Option<Self> {
        let Some(agent) = rotel_agent() else {
            let reason = "rotel is not installed (run `cargo xtask setup`)";
            if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
                panic!("OTLP test cannot run, and CI is set: {reason}");
            }
            println!("skipping: {reason}");
            return None;
        };
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = dir.path().join("rotel.log");
        let out = std::fs::File::create(&log).expect("rotel log file");
        let child = Command::new(&agent)
            .args(["start", "--exporter", "blackhole"])
            .args(["--debug-log", "traces", "--debug-log", "logs"])
            .args(["--debug-log", "metrics"])
            .args(["--debug-log-verbosity", "detailed"])
            .arg("--otlp-grpc-endpoint")
            .arg(format!("127.0.0.1:{grpc_port}"))
            .arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{http_port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", agent.display()));
        let mut rotel = Self {
            child,
            grpc_port,
            http_port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while [grpc_port, http_port]
            .iter()
            .any(|p| TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            if let Ok(Some(status)) = rotel.child.try_wait() {
                panic!("rotel exited ({status}):\n{}", rotel.output());
            }
            assert!(
                Instant::now() < deadline,
                "rotel did not listen within 20 s:\n{}",
                rotel.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(rotel)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Everything rotel printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `spanlet replay CAPTURE` to this rotel over gRPC, then what it
    /// received once it has printed at least `logs` log records.
    pub fn replay_grpc(&self, capture: &Path, logs: usize) -> Received {
        let url = self.grpc_url();
        let out = crate::spanlet(
            [
                OsStr::new("replay"),
                capture.as_os_str(),
                OsStr::new("--otlp-protocol"),
                OsStr::new("grpc"),
                OsStr::new("--otlp-endpoint"),
                OsStr::new(&url),
            ],
            None,
        );
        crate::assert_success("spanlet replay", &out);
        self.received(logs, 0)
    }

    /// What rotel received, once it has printed at least `logs` log records
    /// and `spans` spans (rotel prints as it receives; give it time).
    pub fn received(&self, logs: usize, spans: usize) -> Received {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = Received::parse(&self.output());
            if got.logs.len() >= logs && got.spans.len() >= spans {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "rotel received {} log records and {} spans, expected {logs} and {spans}:\n{}",
                got.logs.len(),
                got.spans.len(),
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What rotel received, once `done` says it is enough (within 20 s).
    pub fn received_until(&self, what: &str, done: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = Received::parse(&self.output());
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "rotel did not receive {what} within 20 s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops rotel (as the tests do to see what a dead collector does).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One log record or span as rotel printed it.
#[derive(Clone, Debug, Default)]
pub struct Item {
    pub trace_id: String,
    pub span_id: String,
    /// Spans only.
    pub parent_id: String,
    /// `EventName` of a log record, `Name` of a span.
    pub name: String,
    /// Attribute values as printed, e.g. `Int(42)`, `Str(abc)`.
    pub attributes: BTreeMap<String, String>,
    /// (trace id, span id) of each span link.
    pub links: Vec<(String, String)>,
    /// Index of its resource in [`Received::resources`].
    pub resource: usize,
}

impl Item {
    /// An `Int(..)` attribute.
    pub fn int(&self, key: &str) -> Option<i64> {
        let v = self.attributes.get(key)?;
        v.strip_prefix("Int(")?.strip_suffix(')')?.parse().ok()
    }

    /// A `Str(..)` attribute.
    pub fn str(&self, key: &str) -> Option<&str> {
        let v = self.attributes.get(key)?;
        v.strip_prefix("Str(")?.strip_suffix(')')
    }
}

/// One metric data point as rotel printed it, with its metric's descriptor.
#[derive(Clone, Debug, Default)]
pub struct Point {
    pub metric: String,
    /// `Sum`, `Gauge`, ...
    pub data_type: String,
    pub unit: String,
    /// Sums only: `true` or `false`.
    pub monotonic: String,
    /// Attribute values as printed, e.g. `Str(mutex_wait)`.
    pub attributes: BTreeMap<String, String>,
    /// `Value:` as printed, e.g. `12` or `0.25`.
    pub value: String,
}

impl Point {
    pub fn value(&self) -> Option<f64> {
        self.value.parse().ok()
    }

    /// A `Str(..)` attribute.
    pub fn str(&self, key: &str) -> Option<&str> {
        let v = self.attributes.get(key)?;
        v.strip_prefix("Str(")?.strip_suffix(')')
    }
}

/// All log records, spans and metric data points in rotel's debug output.
#[derive(Debug, Default)]
pub struct Received {
    pub logs: Vec<Item>,
    pub spans: Vec<Item>,
    pub points: Vec<Point>,
    /// Resource attributes, one map per resource printed.
    pub resources: Vec<BTreeMap<String, String>>,
}

impl Received {
    /// The points of metric `name`, in the order received.
    pub fn points(&self, name: &str) -> Vec<&Point> {
        self.points.iter().filter(|p| p.metric == name).collect()
    }

    pub fn parse(text: &str) -> Self {
        enum In {
            Nothing,
            Resource,
            Log,
            Span,
            Link,
            Metric,
            Point,
        }
        let mut out = Self::default();
        let mut state = In::Nothing;
        // The descriptor of the metric whose points are being read.
        let mut metric = Point::default();
        for raw in text.lines() {
            let line = raw.trim();
            if line.starts_with("ResourceLog #")
                || line.starts_with("ResourceSpans #")
                || line.starts_with("ResourceMetrics #")
            {
                out.resources.push(BTreeMap::new());
                state = In::Resource;
            } else if line.starts_with("Metric #") {
                metric = Point::default();
                state = In::Metric;
            } else if line.starts_with("NumberDataPoints #") {
                out.points.push(metric.clone());
                state = In::Point;
            } else if line.starts_with("LogRecord #") {
                out.logs.push(Item {
                    resource: out.resources.len().saturating_sub(1),
                    ..Item::default()
                });
                state = In::Log;
            } else if line.starts_with("Span #") {
                out.spans.push(Item {
                    resource: out.resources.len().saturating_sub(1),
                    ..Item::default()
                });
                state = In::Span;
            } else if line.starts_with("SpanLink #") {
                if let Some(span) = out.spans.last_mut() {
                    span.links.push(Default::default());
                }
                state = In::Link;
            } else if line.starts_with("Scope") || line.starts_with("InstrumentationScope") {
                state = In::Nothing;
            } else if let Some(attr) = line.strip_prefix("-> ") {
                let Some((k, v)) = attr.split_once(": ") else {
                    continue;
                };
                let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
                match state {
                    In::Resource => {
                        if let Some(r) = out.resources.last_mut() {
                            r.insert(k, v);
                        }
                    }
                    In::Log => {
                        if let Some(l) = out.logs.last_mut() {
                            l.attributes.insert(k, v);
                        }
                    }
                    In::Span => {
                        if let Some(s) = out.spans.last_mut() {
                            s.attributes.insert(k, v);
                        }
                    }
                    In::Link => {
                        if let Some(link) = out.spans.last_mut().and_then(|s| s.links.last_mut()) {
                            match k.as_str() {
                                "Trace ID" => link.0 = v,
                                "ID" => link.1 = v,
                                _ => {}
                            }
                        }
                    }
                    In::Metric => match k.as_str() {
                        "Name" => metric.metric = v,
                        "DataType" => metric.data_type = v,
                        "Unit" => metric.unit = v,
                        "IsMonotonic" => metric.monotonic = v,
                        _ => {}
                    },
                    In::Point => {
                        if let Some(p) = out.points.last_mut() {
                            p.attributes.insert(k, v);
                        }
                    }
                    In::Nothing => {}
                }
            } else if let (In::Point, Some(("Value", v))) = (&state, line.split_once(':')) {
                if let Some(p) = out.points.last_mut() {
                    p.value = v.trim().to_owned();
                }
            } else if let Some((k, v)) = line.split_once(':') {
                let item = match state {
                    In::Log => out.logs.last_mut(),
                    In::Span => out.spans.last_mut(),
                    _ => None,
                };
                let Some(item) = item else { continue };
                let v = v.trim().to_owned();
                match k.trim() {
                    "Trace ID" => item.trace_id = v,
                    "Span ID" | "ID" => item.span_id = v,
                    "Parent ID" => item.parent_id = v,
                    "EventName" | "Name" => item.name = v,
                    _ => {}
                }
            }
        }
        out
    }
}

/// A TLS server in front of a collector port (`workloads/tls_proxy.py`),
/// with a throwaway CA made by `openssl`: the server certificate names
/// `localhost` and 127.0.0.1; with `mutual`, clients must present a
/// certificate from the same CA (`client_cert`, `client_key`).
pub struct TlsFront {
    proxy: Child,
    pub port: u16,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    _dir: tempfile::TempDir,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA made by `openssl` in `d`: `ca.pem`, a server certificate
/// for `localhost` and 127.0.0.1 (`server.pem`, `server.key`) and a client
/// certificate (`client.pem`, `client.key`).
pub fn test_certificates(d: &std::path::Path) {
    {
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=spanlet test CA",
            ],
        );
        let leaf = |name: &str, cn: &str, ext: &str| {
            std::fs::write(d.join(format!("{name}.ext")), ext).expect("extension file");
            openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={cn}"),
                ],
            );
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &format!("{name}.pem"),
                    "-days",
                    "1",
                    "-extfile",
                    &format!("{name}.ext"),
                ],
            );
        };
        leaf(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        );
        leaf(
            "client",
            "spanlet",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        );
    }
}

impl TlsFront {
    pub fn start(target_port: u16, mutual: bool) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let d = dir.path();
        test_certificates(d);
        let port = free_port();
        let mut cmd = Command::new(crate::python());
        cmd.arg(env!("SPANLET_TLS_PROXY"))
            .arg(port.to_string())
            .arg(target_port.to_string())
            .arg(d.join("server.pem"))
            .arg(d.join("server.key"));
        if mutual {
            cmd.arg(d.join("ca.pem"));
        }
        let mut proxy = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the TLS proxy starts");
        let mut first = String::new();
        let stdout = proxy.stdout.take().expect("proxy stdout");
        let mut reader = std::io::BufReader::new(stdout);
        std::io::BufRead::read_line(&mut reader, &mut first).expect("proxy output");
        assert_eq!(first.trim(), "ready", "the TLS proxy did not start");
        // Keep draining its output (handshake failures) so it never blocks.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = std::io::Read::read_to_string(&mut reader, &mut sink);
        });
        Self {
            proxy,
            port,
            ca: d.join("ca.pem"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
    }
}
