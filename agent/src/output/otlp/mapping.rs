//! Spanlets as OTLP: each one a log **event** (`event_name`
//! `spanlet.wait` / `spanlet.hold`) carrying the waiter's trace and span
//! ids, and, when the waiter had a span context, a **span** (`lock wait`,
//! `futex wait`) that is a child of the waiter's span, spans the wait, and
//! links to the holder's span. Attribute names are listed in the README.
//! They are built as the OpenTelemetry SDK's span data and log records,
//! which opentelemetry-otlp's exporters send as they are: no sampler or
//! processor stands between a spanlet and its request.
use std::{
    borrow::Cow,
    collections::BTreeMap,
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use opentelemetry::{
    InstrumentationScope, KeyValue, Value,
    logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _},
    trace::{
        Link, SpanContext as OtelSpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId,
        TraceState,
    },
};
use opentelemetry_sdk::{
    Resource,
    logs::{SdkLogRecord, SdkLogger, SdkLoggerProvider},
    trace::{SpanData, SpanEvents, SpanLinks},
};

use super::resource::{ResourceSettings, resource};
use crate::model::{Names, SpanContext, Spanlet, SpanletKind, kernel_lock_type};

/// The instrumentation scope of everything spanlet exports.
pub const SCOPE: &str = "spanlet";
pub const EVENT_WAIT: &str = "spanlet.wait";
pub const EVENT_HOLD: &str = "spanlet.hold";

/// One batch of spanlets, per traced process: opentelemetry-otlp sends one
/// resource per request.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub processes: Vec<ProcessBatch>,
}

/// A process's spanlets: one log event each, and a span for those whose
/// thread was in a span.
#[derive(Clone, Debug)]
pub struct ProcessBatch {
    pub resource: Resource,
    pub logs: Vec<SdkLogRecord>,
    pub spans: Vec<SpanData>,
}

impl Batch {
    pub fn log_records(&self) -> usize {
        self.processes.iter().map(|p| p.logs.len()).sum()
    }

    pub fn spans(&self) -> usize {
        self.processes.iter().map(|p| p.spans.len()).sum()
    }
}

/// The scope of every span and event.
pub fn scope() -> &'static InstrumentationScope {
    static SCOPE_VALUE: OnceLock<InstrumentationScope> = OnceLock::new();
    SCOPE_VALUE.get_or_init(|| {
        InstrumentationScope::builder(SCOPE)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build()
    })
}

/// The SDK makes log records only through a logger; this one has no
/// processor, so it makes records and nothing else.
fn logger() -> &'static SdkLogger {
    static LOGGER: OnceLock<SdkLogger> = OnceLock::new();
    LOGGER.get_or_init(|| SdkLoggerProvider::builder().build().logger(SCOPE))
}

/// Builds a batch of spanlets, one resource per process.
pub fn batch<'a>(
    spanlets: impl IntoIterator<Item = &'a Spanlet>,
    settings: &ResourceSettings,
    names: &Names,
) -> Batch {
    let mut by_pid: BTreeMap<u32, (Vec<SdkLogRecord>, Vec<SpanData>)> = BTreeMap::new();
    for s in spanlets {
        let thread_name = names.thread_name(s.pid, s.tid).unwrap_or(&s.comm);
        let mut attributes = attributes(s, thread_name);
        if let Some(ns_tid) = names.ns_tid(s.pid, s.tid) {
            attributes.push(int("spanlet.thread.vtid", ns_tid));
        }
        if let Some(ns_tid) = s.holder_tid.and_then(|tid| names.ns_tid(s.pid, tid)) {
            attributes.push(int("spanlet.holder.vtid", ns_tid));
        }
        let (logs, spans) = by_pid.entry(s.pid).or_default();
        if let Some(span) = span(s, &attributes) {
            spans.push(span);
        }
        logs.push(log_record(s, attributes));
    }
    Batch {
        processes: by_pid
            .into_iter()
            .map(|(pid, (logs, spans))| ProcessBatch {
                resource: resource(pid, settings, names.process(pid)),
                logs,
                spans,
            })
            .collect(),
    }
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue::new(key.to_owned(), Value::String(value.into().into()))
}

fn int(key: &str, value: impl Into<i64>) -> KeyValue {
    KeyValue::new(key.to_owned(), Value::I64(value.into()))
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unix_time(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// The attributes a spanlet's event and span share.
fn attributes(s: &Spanlet, thread_name: &str) -> Vec<KeyValue> {
    let mut a = vec![
        int("thread.id", s.tid),
        string("thread.name", thread_name),
        string("spanlet.kind", s.kind.as_str()),
        string("spanlet.resource.kind", resource_kind(s.kind)),
        string("spanlet.resource.address", format!("{:#x}", s.addr)),
        int("spanlet.wait.duration_ns", saturating_i64(s.wait_ns)),
        string("spanlet.outcome", s.outcome.as_str()),
    ];
    if let Some(ns) = s.woken_after_ns {
        a.push(int("spanlet.wait.woken_after_ns", saturating_i64(ns)));
    }
    if let Some(tid) = s.holder_tid {
        a.push(int("spanlet.holder.tid", tid));
    }
    if let Some(c) = &s.holder_context {
        a.push(string("spanlet.holder.trace_id", hex(&c.trace_id)));
        a.push(string("spanlet.holder.span_id", hex(&c.span_id)));
    }
    if let Some(tid) = s.waker_tid {
        a.push(int("spanlet.waker.tid", tid));
    }
    if let Some(c) = &s.waker_context {
        a.push(string("spanlet.waker.trace_id", hex(&c.trace_id)));
        a.push(string("spanlet.waker.span_id", hex(&c.span_id)));
    }
    if let Some(pid) = s.waker_pid {
        a.push(int("spanlet.waker.pid", pid));
    }
    if let Some(name) = s.waker_comm.as_deref().filter(|n| !n.is_empty()) {
        a.push(string("spanlet.waker.name", name));
    }
    // What each kind adds of its own (holds add nothing).
    if let Some(flags) = s.kernel_lock_flags() {
        a.push(string("spanlet.kernel_lock.type", kernel_lock_type(flags)));
        a.push(int("spanlet.kernel_lock.flags", flags));
        if let Some(error) = s.kernel_lock_result().filter(|&r| r != 0) {
            a.push(int("spanlet.kernel_lock.error", error));
        }
    }
    if let (Some(fd), Some(op)) = (s.socket_fd(), s.socket_op()) {
        a.push(int("spanlet.syscall", s.syscall));
        a.push(string("spanlet.socket.op", op));
        a.push(int("spanlet.socket.inode", saturating_i64(s.addr)));
        a.push(int("spanlet.socket.fd", fd));
        if let Some(k) = &s.socket {
            a.push(string("network.transport", k.transport()));
            if let Some(local) = k.local() {
                a.push(string("network.local.address", local.ip().to_string()));
                a.push(int("network.local.port", local.port()));
            }
            if let Some(peer) = k.peer() {
                a.push(string("network.peer.address", peer.ip().to_string()));
                a.push(int("network.peer.port", peer.port()));
            }
        }
    }
    if let (Some(op), Some(val)) = (s.futex_op(), s.futex_val()) {
        a.push(int("spanlet.syscall", s.syscall));
        a.push(int("spanlet.futex.op", op));
        a.push(int("spanlet.futex.val", val));
    }
    a
}

fn resource_kind(kind: SpanletKind) -> &'static str {
    match kind {
        SpanletKind::MutexWait | SpanletKind::MutexHold => "mutex",
        SpanletKind::FutexWait => "futex",
        SpanletKind::KernelLockWait => "kernel_lock",
        SpanletKind::SocketWait => "socket",
    }
}

/// A span attribute's value as a log attribute's (spanlet's attributes
/// are strings and integers).
fn log_value(value: Value) -> AnyValue {
    match value {
        Value::I64(i) => AnyValue::Int(i),
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::F64(f) => AnyValue::Double(f),
        Value::String(s) => AnyValue::String(s),
        other => AnyValue::String(other.as_str().into_owned().into()),
    }
}

fn log_record(s: &Spanlet, attributes: Vec<KeyValue>) -> SdkLogRecord {
    let end = unix_time(s.start_unix_nano.saturating_add(s.wait_ns));
    let mut record = logger().create_log_record();
    record.set_timestamp(end);
    record.set_observed_timestamp(end);
    record.set_event_name(match s.kind {
        SpanletKind::MutexHold => EVENT_HOLD,
        SpanletKind::MutexWait
        | SpanletKind::FutexWait
        | SpanletKind::KernelLockWait
        | SpanletKind::SocketWait => EVENT_WAIT,
    });
    record.add_attributes(
        attributes
            .into_iter()
            .map(|kv| (kv.key, log_value(kv.value))),
    );
    if let Some(c) = &s.context {
        record.set_trace_context(
            TraceId::from_bytes(c.trace_id),
            SpanId::from_bytes(c.span_id),
            None,
        );
    }
    record
}

/// A span context from another process: sampled, since it is exported.
fn remote(c: &SpanContext) -> OtelSpanContext {
    OtelSpanContext::new(
        TraceId::from_bytes(c.trace_id),
        SpanId::from_bytes(c.span_id),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    )
}

/// A span for a wait whose thread was inside a span: a child of that span,
/// linked to the holder's span when the holder's context is known.
fn span(s: &Spanlet, attributes: &[KeyValue]) -> Option<SpanData> {
    let ctx = s.context.as_ref()?;
    let name = match s.kind {
        SpanletKind::MutexWait => "lock wait",
        SpanletKind::FutexWait => "futex wait",
        SpanletKind::MutexHold => "lock hold",
        SpanletKind::KernelLockWait => "kernel lock wait",
        SpanletKind::SocketWait => "socket wait",
    };
    // The holder's span, and the waker's when it is another one (a socket
    // peer that sent the data, a condition's signaller).
    let waker = s
        .waker_context
        .filter(|w| Some(w) != s.holder_context.as_ref());
    let mut links = SpanLinks::default();
    links.links = [(s.holder_context, "holder"), (waker, "waker")]
        .into_iter()
        .filter_map(|(c, role)| c.map(|c| (c, role)))
        .map(|(c, role)| Link::new(remote(&c), vec![string("spanlet.link", role)], 0))
        .collect();
    Some(SpanData {
        span_context: OtelSpanContext::new(
            TraceId::from_bytes(ctx.trace_id),
            SpanId::from_bytes(span_id(s)),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::from_bytes(ctx.span_id),
        // The waiter's span belongs to the traced program, not to spanlet.
        parent_span_is_remote: true,
        span_kind: SpanKind::Internal,
        name: Cow::Borrowed(name),
        start_time: unix_time(s.start_unix_nano),
        end_time: unix_time(s.start_unix_nano.saturating_add(s.wait_ns)),
        attributes: attributes.to_vec(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links,
        status: Status::Unset,
        instrumentation_scope: scope().clone(),
    })
}

/// A span id derived from what identifies the wait (thread, start,
/// resource), so exporting the same capture twice gives the same spans
/// rather than duplicates. FNV-1a, never zero (an invalid id).
fn span_id(s: &Spanlet) -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let fields = [
        u64::from(s.pid),
        u64::from(s.tid),
        s.start_unix_nano,
        s.addr,
        s.wait_ns,
    ];
    for byte in fields.iter().flat_map(|f| f.to_le_bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    if h == 0 {
        h = 1;
    }
    h.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry_proto::{
        tonic::{
            collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
            common::v1::{KeyValue, any_value::Value},
        },
        transform::{
            common::tonic::ResourceAttributesWithSchema,
            logs::tonic::group_logs_by_resource_and_scope,
            trace::tonic::group_spans_by_resource_and_scope,
        },
    };
    use opentelemetry_sdk::logs::LogBatch;

    use super::{
        super::resource::{K8sResource, PodLookup, PodNames},
        EVENT_WAIT, ResourceSettings, batch, hex,
    };
    use crate::model::{Names, ProcessInfo, SpanContext, Spanlet, SpanletKind, WaitOutcome};

    /// A batch as the exporters put it on the wire.
    struct Requests {
        logs: ExportLogsServiceRequest,
        traces: ExportTraceServiceRequest,
    }

    impl Requests {
        fn log_records(&self) -> usize {
            let scopes = self.logs.resource_logs.iter().flat_map(|r| &r.scope_logs);
            scopes.map(|s| s.log_records.len()).sum()
        }

        fn spans(&self) -> usize {
            let scopes = self
                .traces
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans);
            scopes.map(|s| s.spans.len()).sum()
        }
    }

    fn requests<'a>(
        spanlets: impl IntoIterator<Item = &'a Spanlet>,
        settings: &ResourceSettings,
        names: &Names,
    ) -> Requests {
        let mut out = Requests {
            logs: ExportLogsServiceRequest::default(),
            traces: ExportTraceServiceRequest::default(),
        };
        for p in batch(spanlets, settings, names).processes {
            let resource = ResourceAttributesWithSchema::from(&p.resource);
            let pairs: Vec<_> = p.logs.iter().map(|l| (l, super::scope())).collect();
            let logs = group_logs_by_resource_and_scope(&LogBatch::new(&pairs), &resource);
            out.logs.resource_logs.extend(logs);
            let spans = group_spans_by_resource_and_scope(p.spans, &resource);
            out.traces.resource_spans.extend(spans);
        }
        out
    }

    fn ctx(b: u8) -> SpanContext {
        SpanContext {
            trace_id: [b; 16],
            span_id: [b; 8],
        }
    }

    fn wait(context: Option<SpanContext>, holder: Option<SpanContext>) -> Spanlet {
        Spanlet {
            kind: SpanletKind::MutexWait,
            pid: 7,
            tid: 8,
            comm: "worker".into(),
            addr: 0x1000,
            start_unix_nano: 1_000,
            wait_ns: 500,
            woken_after_ns: Some(400),
            outcome: WaitOutcome::Woken,
            holder_tid: Some(9),
            waker_pid: Some(7),
            waker_tid: Some(9),
            waker_comm: Some("holder".into()),
            syscall: 202,
            op: 128,
            arg: 2,
            flags: 0,
            context,
            holder_context: holder,
            waker_context: None,
            socket: None,
        }
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attrs
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn a_wait_in_a_span_is_an_event_and_a_linked_child_span() {
        let s = wait(Some(ctx(0xa1)), Some(ctx(0xb2)));
        let r = requests([&s], &ResourceSettings::default(), &Names::default());
        assert_eq!((r.log_records(), r.spans()), (1, 1));

        let log = &r.logs.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(log.event_name, EVENT_WAIT);
        assert_eq!(log.trace_id, vec![0xa1; 16]);
        assert_eq!(log.span_id, vec![0xa1; 8]);
        assert_eq!(log.time_unix_nano, 1_500);
        assert_eq!(
            attr(&log.attributes, "spanlet.holder.trace_id"),
            Some(&Value::StringValue(hex(&[0xb2; 16])))
        );
        assert_eq!(
            attr(&log.attributes, "thread.id"),
            Some(&Value::IntValue(8))
        );

        let span = &r.traces.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.name, "lock wait");
        assert_eq!(span.trace_id, vec![0xa1; 16]);
        assert_eq!(span.parent_span_id, vec![0xa1; 8]);
        assert_ne!(span.span_id, vec![0; 8]);
        assert_eq!(
            (span.start_time_unix_nano, span.end_time_unix_nano),
            (1_000, 1_500)
        );
        assert_eq!(span.links.len(), 1);
        assert_eq!(span.links[0].trace_id, vec![0xb2; 16]);
        assert_eq!(span.links[0].span_id, vec![0xb2; 8]);
        // Replaying gives the same span, not a duplicate.
        let again = requests([&s], &ResourceSettings::default(), &Names::default());
        let spans = |r: &Requests| r.traces.resource_spans[0].scope_spans.clone();
        assert_eq!(spans(&again), spans(&r));
    }

    #[test]
    fn a_wait_outside_any_span_is_an_event_with_empty_ids_and_no_span() {
        let s = wait(None, None);
        let r = requests([&s], &ResourceSettings::default(), &Names::default());
        assert_eq!((r.log_records(), r.spans()), (1, 0));
        let log = &r.logs.resource_logs[0].scope_logs[0].log_records[0];
        assert!(log.trace_id.is_empty() && log.span_id.is_empty());
        assert_eq!(attr(&log.attributes, "spanlet.holder.trace_id"), None);
    }

    #[test]
    fn resource_follows_the_otel_variables() {
        let s = wait(None, None);
        let settings = ResourceSettings {
            service_name: Some("checkout".into()),
            attributes: vec![
                ("service.name".into(), "ignored".into()),
                ("deployment.environment.name".into(), "prod".into()),
            ],
            host_name: "node-1".into(),
            k8s: None,
        };
        let r = requests([&s], &settings, &Names::default());
        let res = r.logs.resource_logs[0].resource.as_ref().unwrap();
        let get = |k| attr(&res.attributes, k).cloned();
        assert_eq!(
            get("service.name"),
            Some(Value::StringValue("checkout".into()))
        );
        assert_eq!(
            res.attributes
                .iter()
                .filter(|a| a.key == "service.name")
                .count(),
            1
        );
        assert_eq!(
            get("deployment.environment.name"),
            Some(Value::StringValue("prod".into()))
        );
        assert_eq!(get("host.name"), Some(Value::StringValue("node-1".into())));
        assert_eq!(get("process.pid"), Some(Value::IntValue(7)));
    }

    /// One pod, found by its container id.
    #[derive(Debug)]
    struct OnePod;
    impl PodLookup for OnePod {
        fn pod_names(&self, container_id: Option<&str>, _: Option<&str>) -> Option<PodNames> {
            (container_id == Some("c1")).then(|| PodNames {
                name: "web".into(),
                uid: "u-1".into(),
                namespace: "shop".into(),
                container: Some("nginx".into()),
            })
        }
    }

    #[test]
    fn a_process_in_a_pod_carries_its_k8s_names() {
        let settings = ResourceSettings {
            k8s: Some(K8sResource {
                node_name: "node-1".into(),
                pods: Arc::new(OnePod),
            }),
            ..ResourceSettings::default()
        };
        let spanlet = wait(None, None);
        let mut names = Names::default();
        names.insert_process(ProcessInfo {
            pid: spanlet.pid,
            comm: "nginx".into(),
            container_id: Some("c1".into()),
            ..ProcessInfo::default()
        });
        let r = requests([&spanlet], &settings, &names);
        let res = r.logs.resource_logs[0].resource.as_ref().unwrap();
        // The SDK's resource is a map: its attributes come in any order.
        let mut k8s: Vec<(&str, Option<&Value>)> = res
            .attributes
            .iter()
            .filter(|a| a.key.starts_with("k8s."))
            .map(|a| {
                (
                    a.key.as_str(),
                    a.value.as_ref().and_then(|v| v.value.as_ref()),
                )
            })
            .collect();
        k8s.sort_by_key(|(k, _)| *k);
        let s = |v: &str| Value::StringValue(v.into());
        assert_eq!(
            k8s,
            [
                ("k8s.container.name", Some(&s("nginx"))),
                ("k8s.namespace.name", Some(&s("shop"))),
                ("k8s.node.name", Some(&s("node-1"))),
                ("k8s.pod.name", Some(&s("web"))),
                ("k8s.pod.uid", Some(&s("u-1"))),
            ]
        );
    }
}
