//! Aggregates a capture's spanlets per resource.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

use super::{
    HoldStats, Outcomes, Report, ResourceReport, StatsReport, TOP_THREADS, ThreadStat, percentile,
};
use crate::{
    capture::Capture,
    model::{SocketInfo, Spanlet, SpanletKind, WaitOutcome, kernel_lock_type},
};

/// Name shown for a thread or process the capture has no name for.
const UNKNOWN_NAME: &str = "?";

/// A map keyed by small integers (PIDs, TIDs, addresses), with [`IntHasher`].
type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// A fast hasher for the integer keys of the report's maps, which are looked
/// up for every spanlet: SipHash's resistance to chosen keys buys nothing on a
/// local capture, and replacing it halved `build_report`'s time on the
/// 1M-spanlet decode bench (`agent/benches/decode.rs`). Each word is
/// folded in with a full 64x64->128 multiply, whose two halves together
/// depend on every input bit, so aligned addresses (low bits all zero) still
/// spread over the table.
#[derive(Default, Clone, Copy)]
struct IntHasher(u64);

impl IntHasher {
    /// An odd constant with well-mixed bits (from the golden ratio).
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    #[inline]
    fn add(&mut self, word: u64) {
        let product = u128::from(self.0 ^ word) * u128::from(Self::K);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for IntHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    /// Not used by the integer keys here; correct for any key all the same.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word.iter_mut().zip(chunk).for_each(|(w, b)| *w = *b);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
}

/// Builds the report of `capture`, keeping the `top` resources with the most
/// total wait time.
pub fn build_report(capture: &Capture, top: usize) -> Report {
    let mut resources: IntMap<(u32, u64), Acc> = IntMap::default();
    for s in &capture.spanlets {
        resources.entry((s.pid, s.addr)).or_default().add(s);
    }
    let total_resources = resources.len() as u64;
    let mut resources: Vec<ResourceReport> = resources
        .into_iter()
        .map(|((pid, addr), acc)| acc.finish(capture, pid, addr))
        .collect();
    resources.sort_by(|a, b| {
        b.total_wait_ns
            .cmp(&a.total_wait_ns)
            .then_with(|| hold_ns(b).cmp(&hold_ns(a)))
            .then_with(|| (a.pid, a.addr).cmp(&(b.pid, b.addr)))
    });
    resources.truncate(top);

    Report {
        meta: capture.meta.clone(),
        stats: capture.stats.as_ref().map(|s| StatsReport {
            counters: s.clone(),
            dropped: s.dropped(),
        }),
        end: capture.end.as_ref().map(|e| e.reason.clone()),
        duration_ns: duration_ns(capture),
        truncated: capture.truncated,
        damaged_tail_bytes: capture.damaged_tail_bytes,
        integrity: capture.integrity.clone(),
        warnings: capture.warnings(),
        total_spanlets: capture.spanlets.len() as u64,
        total_resources,
        resources,
    }
}

fn hold_ns(r: &ResourceReport) -> u64 {
    r.holds.map_or(0, |h| h.total_ns)
}

fn duration_ns(capture: &Capture) -> Option<u64> {
    let start = capture.meta.start_unix_nano;
    let end = match &capture.end {
        Some(end) => end.end_unix_nano,
        None => capture
            .spanlets
            .iter()
            .map(|s| s.start_unix_nano.saturating_add(s.wait_ns))
            .max()?,
    };
    Some(end.saturating_sub(start))
}

/// Running totals of one resource.
#[derive(Default)]
struct Acc {
    has_mutex_wait: bool,
    has_futex_wait: bool,
    has_kernel_lock_wait: bool,
    has_socket_wait: bool,
    /// The socket of its socket waits, as the first one saw it.
    socket: Option<SocketInfo>,
    /// `LCB_F_*` flags of its kernel lock waits, for the lock's type.
    kernel_lock_flags: u32,
    waits: Vec<u64>,
    total_wait_ns: u64,
    outcomes: Outcomes,
    /// Keyed by the (pid, tid) used to look the name up.
    holders: IntMap<(u32, u32), ThreadAcc>,
    wakers: IntMap<(u32, u32), ThreadAcc>,
    waiters: IntMap<(u32, u32), ThreadAcc>,
    holds: Option<HoldStats>,
}

#[derive(Default)]
struct ThreadAcc {
    waits: u64,
    wait_ns: u64,
    /// The name recorded in a spanlet, used when the thread table has none.
    recorded_name: Option<String>,
}

impl ThreadAcc {
    fn add(&mut self, wait_ns: u64, recorded_name: Option<&str>) {
        self.waits += 1;
        self.wait_ns = self.wait_ns.saturating_add(wait_ns);
        if self.recorded_name.is_none() {
            self.recorded_name = recorded_name.filter(|n| !n.is_empty()).map(str::to_owned);
        }
    }
}

impl Acc {
    fn add(&mut self, s: &Spanlet) {
        match s.kind {
            SpanletKind::MutexHold => {
                let h = self.holds.get_or_insert_default();
                h.count += 1;
                h.total_ns = h.total_ns.saturating_add(s.wait_ns);
                h.max_ns = h.max_ns.max(s.wait_ns);
                return;
            }
            SpanletKind::MutexWait => self.has_mutex_wait = true,
            SpanletKind::FutexWait => self.has_futex_wait = true,
            SpanletKind::KernelLockWait => {
                self.has_kernel_lock_wait = true;
                self.kernel_lock_flags |= s.kernel_lock_flags().unwrap_or(0);
            }
            SpanletKind::SocketWait => {
                if self.socket.is_none() {
                    self.socket = s.socket;
                }
                self.has_socket_wait = true;
            }
        }
        self.waits.push(s.wait_ns);
        self.total_wait_ns = self.total_wait_ns.saturating_add(s.wait_ns);
        let o = &mut self.outcomes;
        match s.outcome {
            WaitOutcome::Woken => o.woken += 1,
            WaitOutcome::TimedOut => o.timed_out += 1,
            WaitOutcome::Interrupted => o.interrupted += 1,
            WaitOutcome::Unknown => o.unknown += 1,
            WaitOutcome::InProgress => o.in_progress += 1,
        }
        self.waiters
            .entry((s.pid, s.tid))
            .or_default()
            .add(s.wait_ns, Some(&s.comm));
        if let Some(tid) = s.holder_tid {
            self.holders
                .entry((s.pid, tid))
                .or_default()
                .add(s.wait_ns, None);
        }
        if let Some(tid) = s.waker_tid {
            let pid = s.waker_pid.unwrap_or(s.pid);
            self.wakers
                .entry((pid, tid))
                .or_default()
                .add(s.wait_ns, s.waker_comm.as_deref());
        }
    }

    fn finish(mut self, capture: &Capture, pid: u32, addr: u64) -> ResourceReport {
        self.waits.sort_unstable();
        let kind = if self.has_mutex_wait {
            SpanletKind::MutexWait
        } else if self.has_kernel_lock_wait {
            SpanletKind::KernelLockWait
        } else if self.has_socket_wait {
            SpanletKind::SocketWait
        } else if self.has_futex_wait {
            SpanletKind::FutexWait
        } else {
            SpanletKind::MutexHold
        };
        ResourceReport {
            pid,
            process: capture.process_comm(pid).unwrap_or(UNKNOWN_NAME).to_owned(),
            kind,
            addr,
            waits: self.waits.len() as u64,
            total_wait_ns: self.total_wait_ns,
            max_wait_ns: self.waits.last().copied().unwrap_or(0),
            p50_wait_ns: percentile(&self.waits, 0.50).unwrap_or(0),
            p99_wait_ns: percentile(&self.waits, 0.99).unwrap_or(0),
            outcomes: self.outcomes,
            holders: top_threads(capture, self.holders),
            wakers: top_threads(capture, self.wakers),
            waiters: top_threads(capture, self.waiters),
            holds: self.holds,
            kernel_lock: self
                .has_kernel_lock_wait
                .then(|| kernel_lock_type(self.kernel_lock_flags)),
            socket: self.socket.map(|k| k.describe()),
        }
    }
}

/// The threads with the most wait time, named from the capture's thread table,
/// else from the name recorded in the spanlets, else "?".
fn top_threads(capture: &Capture, threads: IntMap<(u32, u32), ThreadAcc>) -> Vec<ThreadStat> {
    let mut list: Vec<ThreadStat> = threads
        .into_iter()
        .map(|((pid, tid), acc)| ThreadStat {
            tid,
            name: capture
                .thread_name(pid, tid)
                .map(str::to_owned)
                .or(acc.recorded_name)
                .unwrap_or_else(|| UNKNOWN_NAME.to_owned()),
            waits: acc.waits,
            wait_ns: acc.wait_ns,
        })
        .collect();
    list.sort_by(|a, b| {
        b.wait_ns
            .cmp(&a.wait_ns)
            .then(b.waits.cmp(&a.waits))
            .then(a.tid.cmp(&b.tid))
    });
    list.truncate(TOP_THREADS);
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testutil::{
        minimal_spanlet, sample_end, sample_meta, sample_process, sample_thread,
    };
    use crate::model::CaptureStats;

    fn wait(kind: SpanletKind, tid: u32, addr: u64, wait_ns: u64) -> Spanlet {
        Spanlet {
            kind,
            pid: 100,
            tid,
            comm: compact_str::format_compact!("t{tid}"),
            addr,
            wait_ns,
            outcome: WaitOutcome::Woken,
            ..minimal_spanlet()
        }
    }

    fn capture(spanlets: Vec<Spanlet>) -> Capture {
        let mut c = Capture::new(sample_meta());
        c.names.insert_process(sample_process());
        c.spanlets = spanlets;
        c
    }

    #[test]
    fn statistics_of_one_resource() {
        let spanlets = (1..=100)
            .map(|ns| wait(SpanletKind::FutexWait, 7, 0x10, ns))
            .collect();
        let r = build_report(&capture(spanlets), 10);
        let res = &r.resources[0];
        assert_eq!(res.waits, 100);
        assert_eq!(res.total_wait_ns, 5050);
        assert_eq!(res.max_wait_ns, 100);
        assert_eq!(res.p50_wait_ns, 50);
        assert_eq!(res.p99_wait_ns, 99);
        assert_eq!(res.kind, SpanletKind::FutexWait);
        assert_eq!(res.process, "app");
        assert_eq!(res.outcomes.woken, 100);
        assert_eq!(res.holds, None);
        assert_eq!(r.total_spanlets, 100);
    }

    #[test]
    fn mutex_wait_wins_and_holds_are_separate() {
        let mut hold = wait(SpanletKind::MutexHold, 8, 0x10, 1_000);
        hold.outcome = WaitOutcome::Unknown;
        let spanlets = vec![
            wait(SpanletKind::FutexWait, 7, 0x10, 10),
            wait(SpanletKind::MutexWait, 7, 0x10, 30),
            hold.clone(),
            Spanlet {
                wait_ns: 3_000,
                ..hold
            },
        ];
        let r = build_report(&capture(spanlets), 10);
        let res = &r.resources[0];
        assert_eq!(res.kind, SpanletKind::MutexWait);
        assert_eq!((res.waits, res.total_wait_ns, res.max_wait_ns), (2, 40, 30));
        assert_eq!(res.outcomes.unknown, 0, "holds are not waits");
        assert_eq!(
            res.holds,
            Some(HoldStats {
                count: 2,
                total_ns: 4_000,
                max_ns: 3_000
            })
        );
    }

    #[test]
    fn outcomes_are_counted() {
        let mut spanlets = Vec::new();
        for (outcome, n) in [
            (WaitOutcome::Woken, 1),
            (WaitOutcome::TimedOut, 2),
            (WaitOutcome::Interrupted, 3),
            (WaitOutcome::Unknown, 4),
            (WaitOutcome::InProgress, 5),
        ] {
            for _ in 0..n {
                spanlets.push(Spanlet {
                    outcome,
                    ..wait(SpanletKind::FutexWait, 7, 0x10, 5)
                });
            }
        }
        let r = build_report(&capture(spanlets), 10);
        let o = r.resources[0].outcomes;
        assert_eq!(
            (
                o.woken,
                o.timed_out,
                o.interrupted,
                o.unknown,
                o.in_progress
            ),
            (1, 2, 3, 4, 5)
        );
    }

    #[test]
    fn resources_are_ordered_and_truncated() {
        let mut spanlets = vec![
            wait(SpanletKind::FutexWait, 1, 0xa, 5),
            wait(SpanletKind::FutexWait, 1, 0xb, 50),
            wait(SpanletKind::FutexWait, 1, 0xc, 20),
            wait(SpanletKind::FutexWait, 1, 0xc, 20),
        ];
        // Same address in another process is another resource.
        spanlets.push(Spanlet {
            pid: 200,
            ..wait(SpanletKind::FutexWait, 1, 0xa, 30)
        });
        let c = capture(spanlets);
        let r = build_report(&c, 10);
        let order: Vec<(u32, u64)> = r.resources.iter().map(|r| (r.pid, r.addr)).collect();
        assert_eq!(order, [(100, 0xb), (100, 0xc), (200, 0xa), (100, 0xa)]);
        assert_eq!(r.resources[2].process, "?");
        let r = build_report(&c, 2);
        assert_eq!(r.resources.len(), 2);
        assert_eq!(r.total_resources, 4);
        assert!(build_report(&c, 0).resources.is_empty());
    }

    #[test]
    fn holders_wakers_and_waiters_with_names() {
        let mut c = capture(Vec::new());
        c.names.insert_thread(sample_thread(50, "lock-owner"));
        c.names.insert_thread(sample_thread(7, "table-name"));
        let with = |tid, holder: Option<u32>, waker: Option<u32>, ns| Spanlet {
            holder_tid: holder,
            waker_pid: waker.map(|_| 100),
            waker_tid: waker,
            waker_comm: waker.map(|t| compact_str::format_compact!("w{t}")),
            ..wait(SpanletKind::MutexWait, tid, 0x10, ns)
        };
        c.spanlets = vec![
            with(7, Some(50), Some(50), 100),
            with(7, Some(50), Some(50), 100),
            with(8, Some(51), Some(51), 500),
            with(9, None, None, 1),
        ];
        let res = &build_report(&c, 10).resources[0];
        let summary = |list: &[ThreadStat]| {
            list.iter()
                .map(|t| (t.tid, t.name.clone(), t.waits, t.wait_ns))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            summary(&res.holders),
            [(51, "?".into(), 1, 500), (50, "lock-owner".into(), 2, 200)]
        );
        assert_eq!(
            summary(&res.wakers),
            [
                (51, "w51".into(), 1, 500),
                (50, "lock-owner".into(), 2, 200)
            ]
        );
        assert_eq!(
            summary(&res.waiters),
            [
                (8, "t8".into(), 1, 500),
                (7, "table-name".into(), 2, 200),
                (9, "t9".into(), 1, 1)
            ]
        );
    }

    #[test]
    fn thread_lists_keep_the_top_few() {
        let spanlets = (1..=20)
            .map(|tid| wait(SpanletKind::FutexWait, tid, 0x10, u64::from(tid)))
            .collect();
        let res = &build_report(&capture(spanlets), 10).resources[0];
        let tids: Vec<u32> = res.waiters.iter().map(|t| t.tid).collect();
        assert_eq!(tids, [20, 19, 18, 17, 16]);
    }

    #[test]
    fn header_fields() {
        let mut c = capture(vec![Spanlet {
            start_unix_nano: sample_meta().start_unix_nano + 500,
            ..wait(SpanletKind::FutexWait, 1, 0xa, 100)
        }]);
        let r = build_report(&c, 10);
        assert_eq!(r.duration_ns, Some(600));
        assert_eq!(r.end, None);
        assert_eq!(r.stats, None);
        c.end = Some(sample_end());
        c.stats = Some(CaptureStats {
            dropped_ringbuf_full: 3,
            malformed_events: 1,
            ..CaptureStats::default()
        });
        c.truncated = true;
        let r = build_report(&c, 10);
        assert_eq!(r.duration_ns, Some(2_100_000_000));
        assert_eq!(r.end.as_deref(), Some("duration elapsed"));
        assert_eq!(r.stats.map(|s| s.dropped), Some(4));
        assert!(r.truncated);
    }

    #[test]
    fn json_field_names() {
        let mut c = capture(vec![
            Spanlet {
                holder_tid: Some(3),
                ..wait(SpanletKind::MutexWait, 1, 0xDEAD_BEEF, 100)
            },
            wait(SpanletKind::MutexHold, 3, 0xDEAD_BEEF, 70),
        ]);
        c.stats = Some(CaptureStats {
            dropped_ringbuf_full: 2,
            ..CaptureStats::default()
        });
        let v = super::super::render_json(&build_report(&c, 10));
        let res = &v["resources"][0];
        assert_eq!(res["addr"], "0xdeadbeef");
        assert_eq!(res["kind"], "mutex_wait");
        assert_eq!(res["process"], "app");
        assert_eq!(res["pid"], 100);
        assert_eq!(res["p99_wait_ns"], 100);
        assert_eq!(res["outcomes"]["woken"], 1);
        assert_eq!(res["holders"][0]["tid"], 3);
        assert_eq!(res["holders"][0]["wait_ns"], 100);
        assert_eq!(res["holds"]["max_ns"], 70);
        assert_eq!(v["stats"]["dropped"], 2);
        assert_eq!(v["stats"]["dropped_ringbuf_full"], 2);
        assert_eq!(v["meta"]["hostname"], "testhost");
        assert_eq!(v["end"], serde_json::Value::Null);
        assert_eq!(v["truncated"], false);
        assert_eq!(v["total_spanlets"], 2);
        let fresh = super::super::render_json(&build_report(
            &capture(vec![wait(SpanletKind::FutexWait, 1, 1, 1)]),
            1,
        ));
        assert_eq!(fresh["resources"][0]["holds"], serde_json::Value::Null);
    }
}
