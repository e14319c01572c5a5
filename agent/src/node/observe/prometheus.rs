//! A [`Snapshot`] in the Prometheus text exposition format, version 0.0.4.
use std::fmt::{Display, Write as _};

use super::{
    Snapshot,
    table::{METRICS, Number, Values},
};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy)]
enum Type {
    Counter,
    Gauge,
}

/// Text being built, one metric family at a time.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: Type, help: &str) {
        let kind = match kind {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: Type, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// The snapshot as Prometheus text: every metric of [`METRICS`], then the
/// build and start time.
pub fn render(s: &Snapshot) -> String {
    use Type::{Counter, Gauge};
    let mut t = Text(String::with_capacity(4096));
    for m in METRICS {
        match (m.values)(s) {
            Values::Count(n) => t.single(m.prometheus, Counter, m.help, n),
            Values::PerLabel { label, counts, .. } => {
                t.family(m.prometheus, Counter, m.help);
                for (value, n) in counts {
                    t.sample(m.prometheus, &[(label, value)], n);
                }
            }
            Values::Gauge(Number::Int(n)) => t.single(m.prometheus, Gauge, m.help, n),
            Values::Gauge(Number::Float(v)) => t.single(m.prometheus, Gauge, m.help, Float(v)),
            Values::Absent => {}
        }
    }
    t.family(
        "spanlet_build_info",
        Gauge,
        "The running spanlet's version; always 1.",
    );
    t.sample(
        "spanlet_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    t.single(
        "spanlet_start_time_seconds",
        Gauge,
        "When the agent started, in seconds since the Unix epoch.",
        Float(s.start_unix_nano as f64 / 1e9),
    );
    t.0
}

/// A float as the format spells it (`+Inf`, `-Inf`, `NaN`).
struct Float(f64);

impl Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

/// HELP text: backslash and line feed are escaped.
fn escape_help(s: &str) -> String {
    s.replace('\\', r"\\").replace('\n', r"\n")
}

/// Label values: backslash, double quote and line feed are escaped.
fn escape_label(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
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

    #[test]
    fn floats_use_the_format_s_spellings() {
        assert_eq!(Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Float(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Float(0.5).to_string(), "0.5");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }
}
