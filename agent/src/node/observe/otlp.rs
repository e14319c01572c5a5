//! The agent's own figures as OTLP metrics: the same table as the
//! Prometheus endpoint, held by the OpenTelemetry SDK's meter provider (one
//! observable instrument per metric) and sent by opentelemetry-otlp's
//! metric exporter to the collector that receives the spanlets.
//!
//! The reader is the SDK's manual reader, collected by spanlet's own
//! periodic task rather than the SDK's `PeriodicReader`: that one runs on
//! a thread of its own without the tokio runtime the gRPC and hyper clients
//! need (it panics there), and it only logs a failed export, which spanlet
//! counts in `spanlet.metrics.export.errors`.
use std::{
    sync::{Arc, Mutex, PoisonError, Weak},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use opentelemetry::{KeyValue, metrics::MeterProvider as _};
use opentelemetry_otlp::MetricExporter;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{
        InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
        data::ResourceMetrics, exporter::PushMetricExporter as _, reader::MetricReader,
    },
};
use tokio::sync::watch;

use super::{
    Snapshot, State,
    table::{METRICS, Metric, Number, Values},
};
use crate::output::otlp::{
    ResourceSettings, SendError, Settings,
    exporters::{Built, metric_exporter, retry_policy},
    mapping::scope,
};

/// How often at most a failing export is logged.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(300);

/// The resource of the agent itself (not of the processes it traces):
/// `OTEL_RESOURCE_ATTRIBUTES`, `service.name` from `OTEL_SERVICE_NAME`
/// or else `spanlet`, `host.name`, `service.version`.
pub fn agent_resource(settings: &ResourceSettings) -> Resource {
    let mut attributes: Vec<KeyValue> = settings
        .attributes
        .iter()
        .filter(|(k, _)| k != "service.name" || settings.service_name.is_none())
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let has = |attrs: &[KeyValue], key: &str| attrs.iter().any(|a| a.key.as_str() == key);
    if let Some(name) = &settings.service_name {
        attributes.push(KeyValue::new("service.name", name.clone()));
    } else if !has(&attributes, "service.name") {
        attributes.push(KeyValue::new("service.name", "spanlet"));
    }
    if !has(&attributes, "service.version") {
        attributes.push(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    }
    if !has(&attributes, "host.name") && !settings.host_name.is_empty() {
        attributes.push(KeyValue::new("host.name", settings.host_name.clone()));
    }
    Resource::builder_empty()
        .with_attributes(attributes)
        .build()
}

/// The SDK's manual reader, shared between the meter provider (which owns
/// its readers) and the task that collects it.
#[derive(Clone, Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The agent's metrics in the SDK: one observable instrument per entry of
/// [`METRICS`], each reading the snapshot of the collection in progress.
pub struct AgentMetrics {
    /// Kept for its instruments' callbacks.
    _provider: SdkMeterProvider,
    reader: SharedReader,
    current: Arc<Mutex<Snapshot>>,
}

impl AgentMetrics {
    pub fn new(resource: Resource) -> Self {
        let reader = SharedReader(Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        ));
        let provider = SdkMeterProvider::builder()
            .with_reader(reader.clone())
            .with_resource(resource)
            .build();
        let meter = provider.meter_with_scope(scope().clone());
        let current = Arc::new(Mutex::new(Snapshot::default()));
        for metric in METRICS {
            instrument(&meter, metric, current.clone());
        }
        Self {
            _provider: provider,
            reader,
            current,
        }
    }

    /// What the SDK makes of `snapshot`: counters as monotonic cumulative
    /// sums since the agent started, the rest as gauges.
    pub fn collect(&self, snapshot: Snapshot) -> Result<ResourceMetrics, String> {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = snapshot;
        let mut rm = ResourceMetrics::default();
        self.reader.collect(&mut rm).map_err(|e| e.to_string())?;
        Ok(rm)
    }
}

/// Registers `metric` with `meter`; its type follows what the table gives.
fn instrument(
    meter: &opentelemetry::metrics::Meter,
    metric: &'static Metric,
    current: Arc<Mutex<Snapshot>>,
) {
    let values = move || (metric.values)(&current.lock().unwrap_or_else(PoisonError::into_inner));
    // One builder per instrument type: name, unit, help and callback.
    macro_rules! observable {
        ($kind:ident, $callback:expr) => {{
            let builder = meter.$kind(metric.otlp).with_unit(metric.unit);
            builder
                .with_description(metric.help)
                .with_callback($callback)
                .build();
        }};
    }
    // The table decides the type; a default snapshot shows which it is
    // (an absent gauge is a count of things).
    match (metric.values)(&Snapshot::default()) {
        Values::Count(_) | Values::PerLabel { .. } => {
            observable!(u64_observable_counter, move |o| match values() {
                Values::Count(n) => o.observe(n, &[]),
                Values::PerLabel {
                    attribute, counts, ..
                } => {
                    for (value, n) in counts {
                        o.observe(n, &[KeyValue::new(attribute, value)]);
                    }
                }
                Values::Gauge(_) | Values::Absent => {}
            })
        }
        Values::Gauge(Number::Float(_)) => observable!(f64_observable_gauge, move |o| {
            if let Values::Gauge(Number::Float(v)) = values() {
                o.observe(v, &[]);
            }
        }),
        Values::Gauge(Number::Int(_)) | Values::Absent => {
            observable!(u64_observable_gauge, move |o| {
                if let Values::Gauge(Number::Int(v)) = values() {
                    o.observe(v, &[]);
                }
            })
        }
    }
}

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The agent's metrics and the exporter that sends them.
pub struct MetricsExport {
    metrics: AgentMetrics,
    exporter: Built<MetricExporter>,
    /// `OTEL_METRIC_EXPORT_TIMEOUT`: how long one export may take.
    timeout: Duration,
}

impl MetricsExport {
    /// A failed export is not retried: the next one carries the same
    /// cumulative counts.
    pub fn new(settings: &Settings, resource: &ResourceSettings) -> Result<Self, SendError> {
        let no_retry = retry_policy(1, Duration::ZERO, Duration::ZERO);
        Ok(Self {
            metrics: AgentMetrics::new(agent_resource(resource)),
            exporter: metric_exporter(settings, no_retry)?,
            timeout: settings.metrics.timeout,
        })
    }

    /// Sends `snapshot`, within the export timeout.
    pub async fn export(&self, snapshot: Snapshot) -> Result<(), String> {
        let rm = self.metrics.collect(snapshot)?;
        match tokio::time::timeout(self.timeout, self.exporter.exporter.export(&rm)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(match self.exporter.last_failure.take() {
                Some(cause) => format!("{e} ({cause})"),
                None => e.to_string(),
            }),
            Err(_) => Err(format!("export did not finish within {:?}", self.timeout)),
        }
    }
}

/// Sends `state`'s snapshot every `interval`, and once more when
/// `shutdown` turns true (or its sender goes away). A failed export is
/// counted in [`State::metrics_export_failures`] and logged, at most every
/// few minutes while the failures go on.
pub async fn export_periodically(
    export: MetricsExport,
    state: Arc<State>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = FailureLog::default();
    loop {
        let last = tokio::select! {
            _ = ticks.tick() => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        match export.export(state.snapshot()).await {
            Ok(()) => failures.recovered(),
            Err(err) => {
                state.count_metrics_export_failure();
                failures.failed(&err);
            }
        }
        if last {
            return;
        }
    }
}

/// Logs the first failure of a run of them, then at most every
/// [`FAILURE_LOG_EVERY`] with how many there were, and the recovery.
#[derive(Default)]
struct FailureLog {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl FailureLog {
    fn failed(&mut self, err: &str) {
        if self
            .last_logged
            .is_some_and(|t| t.elapsed() < FAILURE_LOG_EVERY)
        {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(
            err,
            "OTLP metrics export failed{}",
            match self.unlogged {
                0 => String::new(),
                n => format!(" ({n} more failures since the last warning)"),
            }
        );
        self.last_logged = Some(Instant::now());
        self.unlogged = 0;
    }

    fn recovered(&mut self) {
        if self.last_logged.take().is_some() {
            tracing::info!("OTLP metrics export works again");
        }
        self.unlogged = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use opentelemetry_proto::tonic::{
        collector::metrics::v1::ExportMetricsServiceRequest,
        common::v1::{KeyValue, any_value::Value},
        metrics::v1::{
            AggregationTemporality, Metric, NumberDataPoint, metric::Data, number_data_point,
        },
    };

    use super::*;
    use crate::output::otlp::{Overrides, Protocol};

    /// What the exporter sends for `s`.
    fn metrics_request(s: &Snapshot, resource: Resource) -> ExportMetricsServiceRequest {
        let rm = AgentMetrics::new(resource).collect(s.clone()).unwrap();
        ExportMetricsServiceRequest::from(&rm)
    }

    fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
        attrs.iter().find(|a| a.key == key).and_then(|a| {
            match a.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            }
        })
    }

    fn by_name(req: &ExportMetricsServiceRequest) -> BTreeMap<String, Metric> {
        req.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.clone()))
            .collect()
    }

    fn int(p: &NumberDataPoint) -> Option<i64> {
        match p.value? {
            number_data_point::Value::AsInt(i) => Some(i),
            number_data_point::Value::AsDouble(_) => None,
        }
    }

    #[test]
    fn counters_are_cumulative_sums_and_gauges_are_gauges() {
        let mut s = Snapshot::busy();
        s.k8s_pods = None;
        let req = metrics_request(&s, Resource::builder_empty().build());
        let m = by_name(&req);

        let Some(Data::Sum(spanlets)) = &m["spanlet.spanlets"].data else {
            panic!("spanlet.spanlets is a sum: {:?}", m["spanlet.spanlets"]);
        };
        assert!(spanlets.is_monotonic);
        assert_eq!(
            spanlets.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(spanlets.data_points.len(), 5, "every kind, zeros included");
        let mutex = spanlets
            .data_points
            .iter()
            .find(|p| attr(&p.attributes, "spanlet.kind").as_deref() == Some("mutex_wait"))
            .expect("a mutex_wait point");
        assert_eq!(int(mutex), Some(12));
        assert!(
            0 < mutex.start_time_unix_nano && mutex.start_time_unix_nano <= mutex.time_unix_nano,
            "{mutex:?}"
        );

        let Some(Data::Sum(dropped)) = &m["spanlet.dropped"].data else {
            panic!("spanlet.dropped is a sum");
        };
        assert_eq!(dropped.data_points.len(), 10);
        assert!(dropped.data_points.iter().any(|p| {
            attr(&p.attributes, "spanlet.drop.cause").as_deref() == Some("ringbuf_full")
                && int(p) == Some(7)
        }));

        let Some(Data::Gauge(used)) = &m["spanlet.ringbuf.used"].data else {
            panic!("spanlet.ringbuf.used is a gauge");
        };
        assert_eq!(m["spanlet.ringbuf.used"].unit, "By");
        assert_eq!(int(&used.data_points[0]), Some(1 << 18));
        let Some(Data::Gauge(ratio)) = &m["spanlet.ringbuf.fill_ratio"].data else {
            panic!("fill ratio is a gauge");
        };
        assert_eq!(
            ratio.data_points[0].value,
            Some(number_data_point::Value::AsDouble(0.25))
        );
        let Some(Data::Sum(seen)) = &m["spanlet.waits.seen"].data else {
            panic!("waits.seen is a sum");
        };
        assert_eq!(int(&seen.data_points[0]), Some(100));
        for (name, want) in [
            ("spanlet.waits.thread_exited", 2),
            ("spanlet.waits.ended_at_wake", 1),
        ] {
            let Some(Data::Sum(sum)) = &m[name].data else {
                panic!("{name} is a sum: {:?}", m[name]);
            };
            assert!(sum.is_monotonic, "{name}");
            assert_eq!(int(&sum.data_points[0]), Some(want), "{name}");
        }

        for name in [
            "spanlet.exported",
            "spanlet.export.errors",
            "spanlet.ringbuf.size",
            "spanlet.traced_processes",
            "spanlet.probe.attach_failures",
            "spanlet.selection.reloads",
            "spanlet.waits.below_min_wait",
        ] {
            assert!(m.contains_key(name), "{name}");
            assert!(!m[name].unit.is_empty(), "{name} has a unit");
        }
        assert!(!m.contains_key("spanlet.k8s.pods"), "outside a cluster");
        s.k8s_pods = Some(7);
        let m = by_name(&metrics_request(&s, Resource::builder_empty().build()));
        assert!(matches!(m["spanlet.k8s.pods"].data, Some(Data::Gauge(_))));
    }

    #[test]
    fn the_agent_s_resource_is_spanlet_unless_named() {
        let mut settings = ResourceSettings {
            host_name: "node-1".into(),
            attributes: vec![("k8s.node.name".into(), "node-1".into())],
            ..Default::default()
        };
        let get = |r: &Resource, key: &'static str| {
            r.get(&opentelemetry::Key::from_static_str(key))
                .map(|v| v.to_string())
        };
        let r = agent_resource(&settings);
        assert_eq!(get(&r, "service.name").as_deref(), Some("spanlet"));
        assert_eq!(
            get(&r, "service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(get(&r, "host.name").as_deref(), Some("node-1"));
        assert_eq!(get(&r, "k8s.node.name").as_deref(), Some("node-1"));
        settings.service_name = Some("node-agent".into());
        settings
            .attributes
            .push(("service.name".into(), "ignored".into()));
        let r = agent_resource(&settings);
        assert_eq!(get(&r, "service.name").as_deref(), Some("node-agent"));
    }

    #[tokio::test]
    async fn failures_are_counted_and_the_last_export_happens_at_shutdown() {
        // Nothing listens on port 1: every send fails at once.
        let overrides = Overrides {
            endpoint: Some("http://127.0.0.1:1".into()),
            protocol: Some(Protocol::HttpProtobuf),
            timeout: Some(Duration::from_millis(500)),
            ..Default::default()
        };
        let settings = Settings::resolve(&Default::default(), &overrides).unwrap();
        let export = MetricsExport::new(&settings, &ResourceSettings::default()).unwrap();
        let state = Arc::new(State::default());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(export_periodically(
            export,
            state.clone(),
            Duration::from_millis(20),
            stopped,
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        while state.metrics_export_failures() < 2 {
            assert!(Instant::now() < deadline, "exports were attempted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the exporter stops at shutdown")
            .unwrap();
        let before = state.metrics_export_failures();
        assert!(before >= 3, "the final export was attempted too: {before}");
        assert_eq!(state.snapshot().metrics_export_failures, before);
    }
}
