//! Spanlets as OTLP: each one a log **event** (`event_name`
//! `spanlet.wait` / `spanlet.hold`) carrying the waiter's trace and span
//! ids, and, when the waiter had a span context, a **span** (`lock wait`,
//! `futex wait`) that is a child of the waiter's span, spans the wait, and
//! links to the holder's span. Attribute names are listed in the README.
use std::{collections::BTreeMap, fmt::Debug, sync::Arc};

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, span::Link, span::SpanKind},
};

use crate::model::{Names, ProcessInfo, SpanContext, Spanlet, SpanletKind, kernel_lock_type};

/// The instrumentation scope of everything spanlet exports.
pub const SCOPE: &str = "spanlet";
pub const EVENT_WAIT: &str = "spanlet.wait";
pub const EVENT_HOLD: &str = "spanlet.hold";

/// What the resource of a traced process is built from.
#[derive(Clone, Debug, Default)]
pub struct ResourceSettings {
    /// `OTEL_SERVICE_NAME` (wins over `service.name` in the attributes).
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, parsed.
    pub attributes: Vec<(String, String)>,
    pub host_name: String,
    /// In a Kubernetes cluster: this node's name and its pods, for the
    /// `k8s.*` attributes of the processes in them.
    pub k8s: Option<K8sResource>,
}

/// Where a node agent finds the Kubernetes names of a process.
#[derive(Clone, Debug)]
pub struct K8sResource {
    pub node_name: String,
    pub pods: Arc<dyn PodLookup>,
}

/// The pods of this node, as the mapping needs them. A trait because the
/// pod cache belongs to the node agent, a layer above this one, which
/// implements it.
pub trait PodLookup: Debug + Send + Sync {
    /// The pod of a process whose cgroup paths name this container and pod
    /// (either may be missing), with the container's name when known.
    fn pod_names(&self, container_id: Option<&str>, pod_uid: Option<&str>) -> Option<PodNames>;
}

/// The Kubernetes names of the pod (and container) a process runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodNames {
    pub name: String,
    /// With dashes, lowercase.
    pub uid: String,
    pub namespace: String,
    pub container: Option<String>,
}

impl PodNames {
    /// The OpenTelemetry resource attributes of the pod, and of the
    /// container if known.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut attributes = vec![
            ("k8s.pod.name", self.name.clone()),
            ("k8s.pod.uid", self.uid.clone()),
            ("k8s.namespace.name", self.namespace.clone()),
        ];
        if let Some(container) = &self.container {
            attributes.push(("k8s.container.name", container.clone()));
        }
        attributes
    }
}

/// One batch of spanlets, as the two OTLP requests that carry it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Requests {
    pub logs: ExportLogsServiceRequest,
    pub traces: ExportTraceServiceRequest,
}

impl Requests {
    pub fn log_records(&self) -> usize {
        self.logs
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum()
    }

    pub fn spans(&self) -> usize {
        self.traces
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }
}

/// Builds the requests for a batch of spanlets, one resource per process.
pub fn requests<'a>(
    spanlets: impl IntoIterator<Item = &'a Spanlet>,
    settings: &ResourceSettings,
    names: &Names,
) -> Requests {
    let mut by_pid: BTreeMap<u32, (Vec<LogRecord>, Vec<Span>)> = BTreeMap::new();
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
    let scope = Some(InstrumentationScope {
        name: SCOPE.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    });
    let mut out = Requests::default();
    for (pid, (logs, spans)) in by_pid {
        let resource = Some(resource(pid, settings, names.process(pid)));
        if !spans.is_empty() {
            out.traces.resource_spans.push(ResourceSpans {
                resource: resource.clone(),
                scope_spans: vec![ScopeSpans {
                    scope: scope.clone(),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        out.logs.resource_logs.push(ResourceLogs {
            resource,
            scope_logs: vec![ScopeLogs {
                scope: scope.clone(),
                log_records: logs,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    out
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

fn int(key: &str, value: impl Into<i64>) -> KeyValue {
    kv(key, Value::IntValue(value.into()))
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

fn resource(pid: u32, settings: &ResourceSettings, process: Option<&ProcessInfo>) -> Resource {
    let mut attrs: Vec<KeyValue> = settings
        .attributes
        .iter()
        .filter(|(k, _)| k != "service.name" || settings.service_name.is_none())
        .map(|(k, v)| string(k, v.clone()))
        .collect();
    let has = |attrs: &[KeyValue], key: &str| attrs.iter().any(|a| a.key == key);
    let comm = process.map_or("", |p| p.comm.as_str());
    if let Some(name) = &settings.service_name {
        attrs.push(string("service.name", name.clone()));
    } else if !has(&attrs, "service.name") {
        // The SDK specification's default, naming the traced program.
        attrs.push(string("service.name", format!("unknown_service:{comm}")));
    }
    if !has(&attrs, "host.name") && !settings.host_name.is_empty() {
        attrs.push(string("host.name", settings.host_name.clone()));
    }
    attrs.push(int("process.pid", pid));
    if let Some(ns_pid) = process.and_then(|p| p.ns_pid) {
        attrs.push(int("process.vpid", ns_pid));
    }
    if let Some(id) = process.and_then(|p| p.container_id.as_deref()) {
        attrs.push(string("container.id", id));
    }
    if let Some(k8s) = &settings.k8s {
        attrs.push(string("k8s.node.name", k8s.node_name.clone()));
        let pod = process.and_then(|p| {
            k8s.pods
                .pod_names(p.container_id.as_deref(), p.pod_uid.as_deref())
        });
        for (key, value) in pod.iter().flat_map(PodNames::attributes) {
            attrs.push(string(key, value));
        }
    }
    if !comm.is_empty() {
        attrs.push(string("process.executable.name", comm));
    }
    if let Some(p) = process.filter(|p| !p.cmdline.is_empty()) {
        attrs.push(string("process.command_line", p.cmdline.join(" ")));
    }
    Resource {
        attributes: attrs,
        ..Default::default()
    }
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

fn ids(ctx: Option<&SpanContext>) -> (Vec<u8>, Vec<u8>) {
    ctx.map_or((Vec::new(), Vec::new()), |c| {
        (c.trace_id.to_vec(), c.span_id.to_vec())
    })
}

fn log_record(s: &Spanlet, attributes: Vec<KeyValue>) -> LogRecord {
    let end = s.start_unix_nano.saturating_add(s.wait_ns);
    let (trace_id, span_id) = ids(s.context.as_ref());
    LogRecord {
        time_unix_nano: end,
        observed_time_unix_nano: end,
        event_name: match s.kind {
            SpanletKind::MutexHold => EVENT_HOLD,
            SpanletKind::MutexWait
            | SpanletKind::FutexWait
            | SpanletKind::KernelLockWait
            | SpanletKind::SocketWait => EVENT_WAIT,
        }
        .to_owned(),
        attributes,
        trace_id,
        span_id,
        ..Default::default()
    }
}

/// A span for a wait whose thread was inside a span: a child of that span,
/// linked to the holder's span when the holder's context is known.
fn span(s: &Spanlet, attributes: &[KeyValue]) -> Option<Span> {
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
    let links = [(s.holder_context, "holder"), (waker, "waker")]
        .into_iter()
        .filter_map(|(c, role)| c.map(|c| (c, role)))
        .map(|(c, role)| Link {
            trace_id: c.trace_id.to_vec(),
            span_id: c.span_id.to_vec(),
            attributes: vec![string("spanlet.link", role)],
            ..Default::default()
        })
        .collect();
    Some(Span {
        trace_id: ctx.trace_id.to_vec(),
        span_id: span_id(s).to_vec(),
        parent_span_id: ctx.span_id.to_vec(),
        name: name.to_owned(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: s.start_unix_nano,
        end_time_unix_nano: s.start_unix_nano.saturating_add(s.wait_ns),
        attributes: attributes.to_vec(),
        links,
        ..Default::default()
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
    use super::*;
    use crate::model::WaitOutcome;

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
        assert_eq!(again.traces, r.traces);
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
        let k8s: Vec<(&str, Option<&Value>)> = res
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
        let s = |v: &str| Value::StringValue(v.into());
        assert_eq!(
            k8s,
            [
                ("k8s.node.name", Some(&s("node-1"))),
                ("k8s.pod.name", Some(&s("web"))),
                ("k8s.pod.uid", Some(&s("u-1"))),
                ("k8s.namespace.name", Some(&s("shop"))),
                ("k8s.container.name", Some(&s("nginx"))),
            ]
        );
    }
}
