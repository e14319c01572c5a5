//! The agent's own figures at one moment: what the health, Prometheus and
//! OTLP metrics endpoints all show, so they never disagree.
use std::collections::BTreeMap;

use crate::model::SpanletKind;

/// Why spanlets were lost, as the `cause` label / `spanlet.drop.cause`
/// attribute. Every one is exported, zero or not, so that alerts can be
/// written before the first drop.
pub const DROP_CAUSES: [&str; 10] = [
    "ringbuf_full",
    "wait_map_full",
    "hold_map_full",
    "kernel_lock_map_full",
    "pid_map_full",
    "user_queue_full",
    "export_queue_full",
    "export_failed",
    "export_unsent_at_exit",
    "malformed",
];

/// Figures the agent's main loop fills in (every second or so) and
/// publishes. Counters are cumulative since `start_unix_nano`; the fields
/// marked as gauges are values at the moment of the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Spanlets recorded, by kind ([`SpanletKind::as_str`]).
    pub spanlets_by_kind: BTreeMap<&'static str, u64>,
    /// Blocking waits seen in traced processes, before `--min-wait`.
    pub waits_seen: u64,
    /// Waits left out for being shorter than `--min-wait`.
    pub below_min_wait: u64,
    /// Waits still open when their thread exited (it never ran again):
    /// nothing to record, counted so that the figures add up.
    pub exited_in_wait: u64,
    /// Waits recorded as ending at their wake-up because their thread's
    /// switch-in was not seen (already in `spanlets_by_kind`).
    pub waits_ended_at_wake: u64,
    /// Spanlets lost, by cause (see [`DROP_CAUSES`]).
    pub drops_by_cause: BTreeMap<&'static str, u64>,
    /// Spanlets delivered to the OTLP collector.
    pub exported: u64,
    /// OTLP batches that failed after their retries.
    pub export_failed_batches: u64,
    /// For logs, not a metric.
    pub last_export_error: Option<String>,
    /// Gauge: the kernel-to-user ring buffer's size.
    pub ringbuf_size_bytes: u64,
    /// Gauge: how much of it is waiting to be read.
    pub ringbuf_used_bytes: u64,
    /// Gauge: processes being traced.
    pub traced_processes: u64,
    pub probe_attach_failures: u64,
    /// Times the set of traced processes was chosen again.
    pub selection_reloads: u64,
    /// Reloads refused (a config file that does not parse or names what
    /// is not there); the selection in force stayed.
    pub selection_reload_errors: u64,
    /// Gauge: pods known on this node; `None` outside a cluster, where the
    /// metric is left out rather than shown as zero.
    pub k8s_pods: Option<u64>,
    /// OTLP metric exports that failed. Filled by [`super::State`] from the
    /// metrics exporter; the main loop leaves it alone.
    pub metrics_export_failures: u64,
    /// When the agent started (the start of every counter).
    pub start_unix_nano: u64,
}

impl Snapshot {
    /// A snapshot of an agent that started at `start_unix_nano`, with every
    /// kind and cause at zero.
    pub fn starting_at(start_unix_nano: u64) -> Self {
        Self {
            start_unix_nano,
            ..Self::default()
        }
    }

    /// Spanlets by kind: every known kind (zero if absent), and any other
    /// the loop reported.
    pub fn spanlets_per_kind(&self) -> BTreeMap<&'static str, u64> {
        with_zeros(
            SpanletKind::ALL.iter().map(|k| k.as_str()),
            &self.spanlets_by_kind,
        )
    }

    /// Drops by cause: every cause in [`DROP_CAUSES`] (zero if absent), and
    /// any other the loop reported.
    pub fn drops_per_cause(&self) -> BTreeMap<&'static str, u64> {
        with_zeros(DROP_CAUSES, &self.drops_by_cause)
    }

    /// How full the ring buffer is, 0 to 1 (0 while its size is unknown).
    pub fn ringbuf_fill_ratio(&self) -> f64 {
        if self.ringbuf_size_bytes == 0 {
            return 0.0;
        }
        // Precision lost above 2^53 bytes does not matter for a ratio.
        self.ringbuf_used_bytes as f64 / self.ringbuf_size_bytes as f64
    }
}

#[cfg(test)]
impl Snapshot {
    /// A snapshot with a figure in every metric, for the renderers' tests.
    pub(crate) fn busy() -> Self {
        let mut s = Self::starting_at(1_700_000_000_500_000_000);
        s.spanlets_by_kind.insert("mutex_wait", 12);
        s.spanlets_by_kind.insert("socket_wait", 3);
        s.waits_seen = 100;
        s.below_min_wait = 85;
        s.exited_in_wait = 2;
        s.waits_ended_at_wake = 1;
        s.drops_by_cause.insert("ringbuf_full", 7);
        s.exported = 10;
        s.export_failed_batches = 1;
        s.ringbuf_size_bytes = 1 << 20;
        s.ringbuf_used_bytes = 1 << 18;
        s.traced_processes = 4;
        s.probe_attach_failures = 2;
        s.selection_reloads = 5;
        s.k8s_pods = Some(9);
        s
    }
}

fn with_zeros(
    known: impl IntoIterator<Item = &'static str>,
    counts: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    let mut all: BTreeMap<_, _> = known.into_iter().map(|k| (k, 0)).collect();
    all.extend(counts.iter().map(|(k, v)| (*k, *v)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_cause_is_listed_even_at_zero() {
        let mut s = Snapshot::starting_at(5);
        s.spanlets_by_kind.insert("mutex_wait", 3);
        s.drops_by_cause.insert("ringbuf_full", 2);
        s.drops_by_cause.insert("something_new", 1);
        let kinds = s.spanlets_per_kind();
        assert_eq!(kinds.len(), SpanletKind::ALL.len());
        assert_eq!(kinds["mutex_wait"], 3);
        assert_eq!(kinds["futex_wait"], 0);
        let causes = s.drops_per_cause();
        assert_eq!(causes.len(), DROP_CAUSES.len() + 1);
        assert_eq!(causes["ringbuf_full"], 2);
        assert_eq!(causes["malformed"], 0);
        assert_eq!(causes["something_new"], 1);
    }

    #[test]
    fn fill_ratio_is_safe_before_the_size_is_known() {
        let mut s = Snapshot::default();
        assert_eq!(s.ringbuf_fill_ratio(), 0.0);
        s.ringbuf_size_bytes = 4096;
        s.ringbuf_used_bytes = 1024;
        assert_eq!(s.ringbuf_fill_ratio(), 0.25);
    }
}
