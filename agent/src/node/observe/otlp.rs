//! The agent's own figures as OTLP metrics: the same counters as the
//! Prometheus endpoint, named the OpenTelemetry way, sent periodically to
//! the collector that receives the spanlets.
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    metrics::v1::{
        AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        metric::Data, number_data_point,
    },
    resource::v1::Resource,
};
use tokio::sync::watch;

use super::{
    Snapshot, State,
    table::{METRICS, Number, Values},
};
use crate::output::otlp::{ResourceSettings, Sender, mapping::SCOPE};

/// How often at most a failing export is logged.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(300);

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// The resource of the agent itself (not of the processes it traces):
/// `OTEL_RESOURCE_ATTRIBUTES`, `service.name` from `OTEL_SERVICE_NAME`
/// or else `spanlet`, `host.name`, `service.version`.
pub fn agent_resource(settings: &ResourceSettings) -> Resource {
    let mut attributes: Vec<KeyValue> = settings
        .attributes
        .iter()
        .filter(|(k, _)| k != "service.name" || settings.service_name.is_none())
        .map(|(k, v)| string(k, v))
        .collect();
    let has = |attrs: &[KeyValue], key: &str| attrs.iter().any(|a| a.key == key);
    if let Some(name) = &settings.service_name {
        attributes.push(string("service.name", name));
    } else if !has(&attributes, "service.name") {
        attributes.push(string("service.name", "spanlet"));
    }
    if !has(&attributes, "service.version") {
        attributes.push(string("service.version", env!("CARGO_PKG_VERSION")));
    }
    if !has(&attributes, "host.name") && !settings.host_name.is_empty() {
        attributes.push(string("host.name", &settings.host_name));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// Builds metrics for one snapshot; `now_unix_nano` is their time.
struct Builder {
    start: u64,
    now: u64,
    metrics: Vec<Metric>,
}

fn point(attributes: Vec<KeyValue>, start: u64, now: u64, value: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(Number::Int(value).into()),
        ..Default::default()
    }
}

impl Builder {
    fn metric(&mut self, name: &str, unit: &str, description: &str, data: Data) {
        self.metrics.push(Metric {
            name: name.to_owned(),
            description: description.to_owned(),
            unit: unit.to_owned(),
            data: Some(data),
            ..Default::default()
        });
    }

    /// A monotonic cumulative sum, one point per (attributes, value).
    fn counter(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        points: impl IntoIterator<Item = (Vec<KeyValue>, u64)>,
    ) {
        let data_points = points
            .into_iter()
            .map(|(attrs, v)| point(attrs, self.start, self.now, v))
            .collect();
        let sum = Sum {
            data_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        };
        self.metric(name, unit, description, Data::Sum(sum));
    }

    fn single_counter(&mut self, name: &str, unit: &str, description: &str, value: u64) {
        self.counter(name, unit, description, [(Vec::new(), value)]);
    }

    fn gauge(&mut self, name: &str, unit: &str, description: &str, value: Number) {
        let data_points = vec![NumberDataPoint {
            time_unix_nano: self.now,
            value: Some(value.into()),
            ..Default::default()
        }];
        self.metric(name, unit, description, Data::Gauge(Gauge { data_points }));
    }
}

impl From<Number> for number_data_point::Value {
    fn from(v: Number) -> Self {
        match v {
            // OTLP integers are signed; no real count comes near the limit.
            Number::Int(i) => Self::AsInt(i64::try_from(i).unwrap_or(i64::MAX)),
            Number::Float(d) => Self::AsDouble(d),
        }
    }
}

/// The snapshot as one OTLP metrics request: every metric of
/// [`METRICS`], counters as monotonic cumulative sums starting at the
/// agent's start, the rest as gauges.
pub fn metrics_request(
    s: &Snapshot,
    resource: Resource,
    now_unix_nano: u64,
) -> ExportMetricsServiceRequest {
    let mut b = Builder {
        start: s.start_unix_nano,
        now: now_unix_nano,
        metrics: Vec::new(),
    };
    for m in METRICS {
        match (m.values)(s) {
            Values::Count(n) => b.single_counter(m.otlp, m.unit, m.help, n),
            Values::PerLabel {
                attribute, counts, ..
            } => b.counter(
                m.otlp,
                m.unit,
                m.help,
                counts
                    .into_iter()
                    .map(|(value, n)| (vec![string(attribute, value)], n)),
            ),
            Values::Gauge(n) => b.gauge(m.otlp, m.unit, m.help, n),
            Values::Absent => {}
        }
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics: b.metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Sends `state`'s snapshot every `interval`, and once more when
/// `shutdown` turns true (or its sender goes away). A failed export is not
/// retried, the next one carries the same cumulative counts; it is counted
/// in [`State::metrics_export_failures`] and logged, at most every few
/// minutes while the failures go on. Each export is bounded by the
/// sender's metric export timeout (`OTEL_METRIC_EXPORT_TIMEOUT`).
pub async fn export_periodically(
    mut sender: Sender,
    state: Arc<State>,
    resource: Resource,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let timeout = sender.settings().metrics.timeout;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = FailureLog::default();
    loop {
        let last = tokio::select! {
            _ = ticks.tick() => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        let request = metrics_request(&state.snapshot(), resource.clone(), now_unix_nano());
        let outcome = match tokio::time::timeout(timeout, sender.send_metrics(&request)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("export did not finish within {timeout:?}")),
        };
        match outcome {
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

    use opentelemetry_proto::tonic::metrics::v1::metric::Data;

    use super::*;
    use crate::output::otlp::{Overrides, Protocol, Settings};

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
        let (start, now) = (s.start_unix_nano, s.start_unix_nano + 4_000);
        let req = metrics_request(&s, Resource::default(), now);
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
        assert_eq!(
            (mutex.start_time_unix_nano, mutex.time_unix_nano),
            (start, now)
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
        assert_eq!(used.data_points[0].time_unix_nano, now);
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
        let m = by_name(&metrics_request(&s, Resource::default(), now));
        assert!(matches!(m["spanlet.k8s.pods"].data, Some(Data::Gauge(_))));
    }

    #[test]
    fn the_agent_s_resource_is_spanlet_unless_named() {
        let mut settings = ResourceSettings {
            host_name: "node-1".into(),
            attributes: vec![("k8s.node.name".into(), "node-1".into())],
            ..Default::default()
        };
        let r = agent_resource(&settings);
        assert_eq!(
            attr(&r.attributes, "service.name").as_deref(),
            Some("spanlet")
        );
        assert_eq!(
            attr(&r.attributes, "service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(attr(&r.attributes, "host.name").as_deref(), Some("node-1"));
        assert_eq!(
            attr(&r.attributes, "k8s.node.name").as_deref(),
            Some("node-1")
        );
        settings.service_name = Some("node-agent".into());
        settings
            .attributes
            .push(("service.name".into(), "ignored".into()));
        let r = agent_resource(&settings);
        let names: Vec<_> = r
            .attributes
            .iter()
            .filter(|a| a.key == "service.name")
            .collect();
        assert_eq!(names.len(), 1);
        assert_eq!(
            attr(&r.attributes, "service.name").as_deref(),
            Some("node-agent")
        );
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
        let sender = Sender::new(settings).unwrap();
        let state = Arc::new(State::default());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(export_periodically(
            sender,
            state.clone(),
            Resource::default(),
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
