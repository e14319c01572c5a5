//! A [`Snapshot`] in the Prometheus text exposition format, version 0.0.4,
//! written by the Prometheus project's own client library
//! (`prometheus-client`): [`METRICS`] is walked as one collector.
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, prometheus_text},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::{
    Snapshot,
    table::{METRICS, Number, Values},
};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// One snapshot, as a collector the registry asks for its metrics.
#[derive(Debug)]
struct Metrics(Snapshot);

/// The family name the library takes: it adds a counter's `_total` itself.
fn family_name(name: &str, kind: MetricType) -> &str {
    match kind {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    }
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for m in METRICS {
            let values = (m.values)(&self.0);
            let kind = match values {
                Values::Count(_) | Values::PerLabel { .. } => MetricType::Counter,
                Values::Gauge(_) => MetricType::Gauge,
                Values::Absent => continue,
            };
            let mut family =
                enc.encode_descriptor(family_name(m.prometheus, kind), m.help, None, kind)?;
            match values {
                Values::Count(n) => ConstCounter::new(n).encode(family)?,
                Values::PerLabel { label, counts, .. } => {
                    for (value, n) in counts {
                        ConstCounter::new(n).encode(family.encode_family(&[(label, value)])?)?;
                    }
                }
                Values::Gauge(Number::Int(n)) => ConstGauge::new(n).encode(family)?,
                Values::Gauge(Number::Float(v)) => ConstGauge::new(v).encode(family)?,
                Values::Absent => {}
            }
        }
        let mut build = enc.encode_descriptor(
            "spanlet_build_info",
            "The running spanlet's version; always 1.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64)
            .encode(build.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        let start = enc.encode_descriptor(
            "spanlet_start_time_seconds",
            "When the agent started, in seconds since the Unix epoch.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.0.start_unix_nano as f64 / 1e9).encode(start)
    }
}

/// The snapshot as Prometheus text: every metric of [`METRICS`], then the
/// build and start time.
pub fn render(s: &Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Metrics(s.clone())));
    let mut text = String::with_capacity(4096);
    // Writing to a String cannot fail, and the collector writes only that.
    let _ = prometheus_text::encode(&mut text, &registry);
    text
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prometheus_parse::{Scrape, Value};

    use super::*;

    fn parse(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the text parses")
    }

    /// (name, sorted labels) → value.
    type Samples = HashMap<(String, Vec<(String, String)>), f64>;

    /// Every sample of a scrape.
    fn values(scrape: &Scrape) -> Samples {
        scrape
            .samples
            .iter()
            .map(|s| {
                let mut labels: Vec<_> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.sort();
                let v = match s.value {
                    Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                    Value::Histogram(_) | Value::Summary(_) => f64::NAN,
                };
                ((s.metric.clone(), labels), v)
            })
            .collect()
    }

    fn get(v: &Samples, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        let labels = label
            .map(|(k, v)| vec![(k.to_owned(), v.to_owned())])
            .unwrap_or_default();
        v.get(&(name.to_owned(), labels)).copied()
    }

    #[test]
    fn every_metric_parses_with_its_type_and_value() {
        let text = render(&Snapshot::busy());
        let scrape = parse(&text);
        let v = values(&scrape);
        let counter = |name: &str, label, want: f64| {
            assert_eq!(get(&v, name, label), Some(want), "{name} {label:?}\n{text}");
            assert!(
                text.contains(&format!("# TYPE {name} counter\n")),
                "{name}\n{text}"
            );
        };
        counter("spanlet_spanlets_total", Some(("kind", "mutex_wait")), 12.0);
        counter("spanlet_spanlets_total", Some(("kind", "futex_wait")), 0.0);
        counter("spanlet_waits_seen_total", None, 100.0);
        counter("spanlet_waits_below_min_wait_total", None, 85.0);
        counter("spanlet_waits_thread_exited_total", None, 2.0);
        counter("spanlet_waits_ended_at_wake_total", None, 1.0);
        counter(
            "spanlet_dropped_total",
            Some(("cause", "ringbuf_full")),
            7.0,
        );
        counter("spanlet_exported_spanlets_total", None, 10.0);
        counter("spanlet_export_errors_total", None, 1.0);
        counter("spanlet_probe_attach_failures_total", None, 2.0);
        counter("spanlet_selection_reloads_total", None, 5.0);
        let gauge = |name: &str, label, want: f64| {
            assert_eq!(get(&v, name, label), Some(want), "{name}\n{text}");
            assert!(
                text.contains(&format!("# TYPE {name} gauge\n")),
                "{name}\n{text}"
            );
        };
        gauge("spanlet_ringbuf_size_bytes", None, 1_048_576.0);
        gauge("spanlet_ringbuf_used_bytes", None, 262_144.0);
        gauge("spanlet_ringbuf_fill_ratio", None, 0.25);
        gauge("spanlet_traced_processes", None, 4.0);
        gauge("spanlet_k8s_pods", None, 9.0);
        gauge(
            "spanlet_build_info",
            Some(("version", env!("CARGO_PKG_VERSION"))),
            1.0,
        );
        gauge("spanlet_start_time_seconds", None, 1_700_000_000.5);
        // Every family has its HELP, and TYPE names only known types.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap_or_default();
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(line.ends_with(" counter") || line.ends_with(" gauge"));
            assert!(name.starts_with("spanlet_"), "{name}");
        }
    }

    #[test]
    fn every_drop_cause_is_there_before_the_first_drop() {
        let text = render(&Snapshot::default());
        let v = values(&parse(&text));
        for cause in super::super::snapshot::DROP_CAUSES {
            assert_eq!(
                get(&v, "spanlet_dropped_total", Some(("cause", cause))),
                Some(0.0),
                "{cause}\n{text}"
            );
        }
        // Outside a cluster there is no pod count, rather than a false 0.
        assert!(!text.contains("spanlet_k8s_pods"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = Snapshot::default();
        s.drops_by_cause.insert("a\"b\\c\nd", 1);
        let text = render(&s);
        assert!(
            text.contains("spanlet_dropped_total{cause=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
        // Still one line per sample: the line feed did not end the line.
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.starts_with("spanlet_"))
        );
    }
}
