//! The one list of the agent's metrics: each with its Prometheus and OTLP
//! names, unit, help text and how to read it from a [`Snapshot`]. Both
//! exporters walk it, so a figure added here shows up in both.
use std::collections::BTreeMap;

use super::Snapshot;

/// A gauge's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Int(u64),
    Float(f64),
}

/// What one metric shows in a snapshot; the variant decides its type.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// A counter with one unlabelled value.
    Count(u64),
    /// A counter with one value per label value.
    PerLabel {
        /// The Prometheus label name.
        label: &'static str,
        /// The OTLP attribute key.
        attribute: &'static str,
        counts: BTreeMap<&'static str, u64>,
    },
    /// A gauge: a value at the moment of the snapshot.
    Gauge(Number),
    /// Not shown at all (rather than a misleading zero).
    Absent,
}

/// One metric of the agent.
pub struct Metric {
    /// Prometheus name (counters end in `_total`).
    pub prometheus: &'static str,
    /// OTLP name.
    pub otlp: &'static str,
    /// UCUM unit for OTLP.
    pub unit: &'static str,
    pub help: &'static str,
    pub values: fn(&Snapshot) -> Values,
}

/// Every metric, in the order they are shown. Prometheus adds
/// `spanlet_build_info` and `spanlet_start_time_seconds`, which OTLP
/// carries in the resource and in each point's start time.
pub const METRICS: &[Metric] = &[
    Metric {
        prometheus: "spanlet_spanlets_total",
        otlp: "spanlet.spanlets",
        unit: "{spanlet}",
        help: "Spanlets recorded, by kind.",
        values: |s| Values::PerLabel {
            label: "kind",
            attribute: "spanlet.kind",
            counts: s.spanlets_per_kind(),
        },
    },
    Metric {
        prometheus: "spanlet_waits_seen_total",
        otlp: "spanlet.waits.seen",
        unit: "{wait}",
        help: "Blocking waits seen in traced processes, before --min-wait.",
        values: |s| Values::Count(s.waits_seen),
    },
    Metric {
        prometheus: "spanlet_waits_below_min_wait_total",
        otlp: "spanlet.waits.below_min_wait",
        unit: "{wait}",
        help: "Waits left out for being shorter than --min-wait (on purpose, not lost).",
        values: |s| Values::Count(s.below_min_wait),
    },
    Metric {
        prometheus: "spanlet_waits_thread_exited_total",
        otlp: "spanlet.waits.thread_exited",
        unit: "{wait}",
        help: "Waits still open when their thread exited: nothing to record, counted so the figures add up.",
        values: |s| Values::Count(s.exited_in_wait),
    },
    Metric {
        prometheus: "spanlet_waits_ended_at_wake_total",
        otlp: "spanlet.waits.ended_at_wake",
        unit: "{wait}",
        help: "Waits recorded as ending at their wake-up, their thread's switch-in not seen (already counted as spanlets).",
        values: |s| Values::Count(s.waits_ended_at_wake),
    },
    Metric {
        prometheus: "spanlet_dropped_total",
        otlp: "spanlet.dropped",
        unit: "{spanlet}",
        help: "Spanlets lost, by cause.",
        values: |s| Values::PerLabel {
            label: "cause",
            attribute: "spanlet.drop.cause",
            counts: s.drops_per_cause(),
        },
    },
    Metric {
        prometheus: "spanlet_exported_spanlets_total",
        otlp: "spanlet.exported",
        unit: "{spanlet}",
        help: "Spanlets delivered to the OTLP collector.",
        values: |s| Values::Count(s.exported),
    },
    Metric {
        prometheus: "spanlet_export_errors_total",
        otlp: "spanlet.export.errors",
        unit: "{batch}",
        help: "OTLP batches of spanlets that failed after their retries.",
        values: |s| Values::Count(s.export_failed_batches),
    },
    Metric {
        prometheus: "spanlet_metrics_export_errors_total",
        otlp: "spanlet.metrics.export.errors",
        unit: "{export}",
        help: "OTLP exports of these metrics that failed.",
        values: |s| Values::Count(s.metrics_export_failures),
    },
    Metric {
        prometheus: "spanlet_ringbuf_size_bytes",
        otlp: "spanlet.ringbuf.size",
        unit: "By",
        help: "Size of the kernel-to-user ring buffer.",
        values: |s| Values::Gauge(Number::Int(s.ringbuf_size_bytes)),
    },
    Metric {
        prometheus: "spanlet_ringbuf_used_bytes",
        otlp: "spanlet.ringbuf.used",
        unit: "By",
        help: "Bytes in the ring buffer not yet read.",
        values: |s| Values::Gauge(Number::Int(s.ringbuf_used_bytes)),
    },
    Metric {
        prometheus: "spanlet_ringbuf_fill_ratio",
        otlp: "spanlet.ringbuf.fill_ratio",
        unit: "1",
        help: "How full the ring buffer is, 0 to 1.",
        values: |s| Values::Gauge(Number::Float(s.ringbuf_fill_ratio())),
    },
    Metric {
        prometheus: "spanlet_traced_processes",
        otlp: "spanlet.traced_processes",
        unit: "{process}",
        help: "Processes being traced.",
        values: |s| Values::Gauge(Number::Int(s.traced_processes)),
    },
    Metric {
        prometheus: "spanlet_probe_attach_failures_total",
        otlp: "spanlet.probe.attach_failures",
        unit: "{probe}",
        help: "Probes that could not be attached.",
        values: |s| Values::Count(s.probe_attach_failures),
    },
    Metric {
        prometheus: "spanlet_selection_reloads_total",
        otlp: "spanlet.selection.reloads",
        unit: "{reload}",
        help: "Times the set of traced processes was chosen again.",
        values: |s| Values::Count(s.selection_reloads),
    },
    Metric {
        prometheus: "spanlet_selection_reload_errors_total",
        otlp: "spanlet.selection.reload_errors",
        unit: "{reload}",
        help: "Reloads refused; the selection in force stayed.",
        values: |s| Values::Count(s.selection_reload_errors),
    },
    Metric {
        prometheus: "spanlet_k8s_pods",
        otlp: "spanlet.k8s.pods",
        unit: "{pod}",
        help: "Pods known on this node.",
        // Outside a cluster there is no pod count, rather than a false 0.
        values: |s| match s.k8s_pods {
            Some(pods) => Values::Gauge(Number::Int(pods)),
            None => Values::Absent,
        },
    },
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_and_follow_each_convention() {
        let mut seen = HashSet::new();
        let s = Snapshot::default();
        for m in METRICS {
            assert!(seen.insert(m.prometheus), "{}", m.prometheus);
            assert!(seen.insert(m.otlp), "{}", m.otlp);
            assert!(m.otlp.starts_with("spanlet."), "{}", m.otlp);
            let counter = matches!((m.values)(&s), Values::Count(_) | Values::PerLabel { .. });
            assert_eq!(
                m.prometheus.ends_with("_total"),
                counter,
                "{}: counters and only counters end in _total",
                m.prometheus
            );
            assert!(!m.unit.is_empty() && !m.help.is_empty(), "{}", m.otlp);
        }
    }
}
