//! Plain-text rendering of a report, for terminals.

use std::{
    fmt::Write,
    time::{Duration, UNIX_EPOCH},
};

use super::{Report, ResourceReport, StatsReport, ThreadStat};
use crate::output::term_escape::{Escaped, escape};

/// Renders `report` as text, one block per resource. Every string that
/// came from a traced process or the capture file is escaped
/// ([`crate::output::term_escape`]): a report is read on a terminal.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    header(&mut out, report);
    out.push('\n');
    if report.resources.is_empty() {
        out.push_str("No waits recorded.\n");
    }
    for (i, r) in report.resources.iter().enumerate() {
        resource(&mut out, i + 1, r);
    }
    if report.total_resources > report.resources.len() as u64 {
        let _ = writeln!(
            out,
            "({} of {} resources shown)",
            report.resources.len(),
            report.total_resources
        );
    }
    out
}

// Writing to a String cannot fail, hence the ignored fmt::Results below.

fn header(out: &mut String, r: &Report) {
    let m = &r.meta;
    let _ = writeln!(
        out,
        "host {}, kernel {}, spanlet {}",
        Escaped(&m.hostname),
        Escaped(&m.kernel_release),
        Escaped(&m.agent_version)
    );
    let started =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(m.start_unix_nano));
    let duration = r.duration_ns.map_or("unknown".into(), format_duration_ns);
    let ended = match &r.end {
        Some(reason) => format!("ended: {}", Escaped(reason)),
        None => "did not end cleanly".into(),
    };
    let _ = writeln!(out, "started {started}, duration {duration}, {ended}");
    if let Some(command) = &m.command {
        let _ = writeln!(out, "command: {}", shell_words(command));
    }
    if !m.pids.is_empty() {
        let pids: Vec<String> = m.pids.iter().map(u32::to_string).collect();
        let _ = writeln!(out, "pids: {}", pids.join(", "));
    }
    let _ = writeln!(
        out,
        "spanlets: {} on {} resources, min wait {}",
        r.total_spanlets,
        r.total_resources,
        format_duration_ns(m.min_wait_ns)
    );
    drops(out, r.stats.as_ref());
    for warning in &r.warnings {
        let _ = writeln!(out, "WARNING: {warning}");
    }
}

/// Always printed, since statistics from a lossy capture undercount.
fn drops(out: &mut String, stats: Option<&StatsReport>) {
    let Some(s) = stats else {
        out.push_str("drops: unknown (no stats record in the capture)\n");
        return;
    };
    let c = &s.counters;
    let _ = writeln!(out, "drops: {}", s.dropped);
    if s.dropped > 0 {
        let parts: Vec<String> = [
            ("ring buffer full", c.dropped_ringbuf_full),
            ("wait map full", c.dropped_waits_map_full),
            ("hold map full", c.dropped_held_map_full),
            ("kernel lock map full", c.dropped_kernel_locks_map_full),
            ("user queue full", c.dropped_user_queue_full),
            ("malformed", c.malformed_events),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what} {n}"))
        .collect();
        let _ = writeln!(
            out,
            "WARNING: {} events were lost ({}); waits below are undercounted",
            s.dropped,
            parts.join(", ")
        );
    }
    if c.dropped_pids_map_full > 0 {
        let _ = writeln!(
            out,
            "WARNING: {} forked processes were not traced (PID map full)",
            c.dropped_pids_map_full
        );
    }
}

fn resource(out: &mut String, rank: usize, r: &ResourceReport) {
    let what = match (r.kernel_lock, &r.socket) {
        (Some(lock), _) => format!("{} ({lock}) key {:#x}", r.kind, r.addr),
        (None, Some(socket)) => format!("{} ({}) inode {}", r.kind, Escaped(socket), r.addr),
        (None, None) => format!("{} {:#x}", r.kind, r.addr),
    };
    let _ = writeln!(
        out,
        "#{rank} {what} in pid {} ({})",
        r.pid,
        Escaped(&r.process)
    );
    if r.waits > 0 {
        let _ = writeln!(
            out,
            "    waits {}  total {}  max {}  p50 {}  p99 {}",
            r.waits,
            format_duration_ns(r.total_wait_ns),
            format_duration_ns(r.max_wait_ns),
            format_duration_ns(r.p50_wait_ns),
            format_duration_ns(r.p99_wait_ns)
        );
        let o = &r.outcomes;
        let _ = writeln!(
            out,
            "    outcomes: woken {}, timed out {}, interrupted {}, unknown {}",
            o.woken, o.timed_out, o.interrupted, o.unknown
        );
        if o.in_progress > 0 {
            let _ = writeln!(
                out,
                "    still blocked when tracing stopped: {}",
                o.in_progress
            );
        }
    }
    if let Some(h) = &r.holds {
        let _ = writeln!(
            out,
            "    holds {}  total {}  max {}",
            h.count,
            format_duration_ns(h.total_ns),
            format_duration_ns(h.max_ns)
        );
    }
    threads(out, "holders", &r.holders);
    threads(out, "wakers", &r.wakers);
    threads(out, "waiters", &r.waiters);
    out.push('\n');
}

fn threads(out: &mut String, label: &str, list: &[ThreadStat]) {
    if list.is_empty() {
        return;
    }
    let items: Vec<String> = list
        .iter()
        .map(|t| {
            format!(
                "{} ({}) x{} ({})",
                t.tid,
                Escaped(&t.name),
                t.waits,
                format_duration_ns(t.wait_ns)
            )
        })
        .collect();
    let _ = writeln!(out, "    {label}: {}", items.join(", "));
}

/// A command line as a shell would accept it back, for copy and paste
/// (a word with control characters shows them escaped, not as they were).
fn shell_words(words: &[String]) -> String {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| {
            let w = escape(w);
            let plain = !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                w.into_owned()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect();
    quoted.join(" ")
}

/// A duration in the largest unit that keeps it at least 1, with three
/// significant digits at most: `850ns`, `1.23ms`, `2.1s`.
pub fn format_duration_ns(ns: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    let mut idx = UNITS
        .iter()
        .position(|&(scale, _)| ns >= scale)
        .unwrap_or(0);
    loop {
        let Some(&(scale, unit)) = UNITS.get(idx) else {
            return format!("{ns}ns");
        };
        let digits = three_significant(ns as f64 / scale as f64);
        // 999.96us rounds to "1000"; say 1ms instead.
        if digits == "1000" && idx > 0 {
            idx -= 1;
            continue;
        }
        return format!("{digits}{unit}");
    }
}

fn three_significant(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Capture, testutil::*};
    use crate::model::{CaptureStats, Spanlet, SpanletKind};
    use crate::output::report::build_report;

    #[test]
    fn durations() {
        let cases = [
            (0, "0ns"),
            (999, "999ns"),
            (1_000, "1us"),
            (850_000, "850us"),
            (999_960, "1ms"),
            (1_234_567, "1.23ms"),
            (12_345_678, "12.3ms"),
            (2_100_000_000, "2.1s"),
            (3_600_000_000_000, "3600s"),
            (u64::MAX, "18446744074s"),
        ];
        for (ns, text) in cases {
            assert_eq!(format_duration_ns(ns), text, "{ns}");
        }
    }

    #[test]
    fn shell_quoting() {
        let words = ["./app", "--name=a b", "it's", ""].map(String::from);
        assert_eq!(shell_words(&words), r"./app '--name=a b' 'it'\''s' ''");
    }

    fn sample_capture() -> Capture {
        let mut c = Capture::new(sample_meta());
        c.names.insert_process(sample_process());
        c.names.insert_thread(sample_thread(101, "holder"));
        c.spanlets = vec![full_spanlet(), minimal_spanlet()];
        c.end = Some(sample_end());
        c
    }

    #[test]
    fn text_shows_header_and_resources() {
        let mut c = sample_capture();
        c.stats = Some(CaptureStats::default());
        let text = render_text(&build_report(&c, 10));
        assert!(text.contains("host testhost, kernel 6.8.0-test"), "{text}");
        assert!(
            text.contains("duration 2.1s, ended: duration elapsed"),
            "{text}"
        );
        assert!(text.contains("command: ./app --flag"), "{text}");
        assert!(text.contains("drops: 0\n"), "{text}");
        assert!(!text.contains("WARNING"), "{text}");
        assert!(
            text.contains("#1 mutex_wait 0x7fffdeadbeef0010 in pid 100 (app)"),
            "{text}"
        );
        assert!(text.contains("waits 1  total 1.23ms"), "{text}");
        assert!(text.contains("holders: 101 (holder) x1 (1.23ms)"), "{text}");
        assert!(text.contains("wakers: 102 (waker) x1 (1.23ms)"), "{text}");
    }

    #[test]
    fn text_escapes_what_traced_processes_named() {
        let mut c = sample_capture();
        let hostile = "\x1b]0;PWN\x07\x1b[2J";
        c.names.insert_thread(sample_thread(101, hostile));
        if let Some(p) = c.names.process_mut(100) {
            p.comm = "a\u{9b}31mb".into();
        }
        c.meta.command = Some(vec!["./app".into(), "x\ny".into()]);
        c.meta.hostname = "h\x1b[1m".into();
        let text = render_text(&build_report(&c, 10));
        assert!(
            !text.chars().any(|ch| ch.is_control() && ch != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains(r"holders: 101 (\x1b]0;PWN\x07\x1b[2J) x1"),
            "{text}"
        );
        assert!(text.contains(r"in pid 100 (a\u{9b}31mb)"), "{text}");
        assert!(text.contains(r"command: ./app 'x\ny'"), "{text}");
        assert!(text.contains(r"host h\x1b[1m,"), "{text}");
    }

    #[test]
    fn text_warns_about_drops_and_truncation() {
        let mut c = sample_capture();
        c.stats = Some(CaptureStats {
            dropped_ringbuf_full: 5,
            dropped_pids_map_full: 1,
            ..CaptureStats::default()
        });
        c.truncated = true;
        c.damaged_tail_bytes = 17;
        let text = render_text(&build_report(&c, 10));
        assert!(text.contains("drops: 5\n"), "{text}");
        assert!(text.contains("WARNING: 5 events were lost (ring buffer full 5)"));
        assert!(
            text.contains("1 forked processes were not traced"),
            "{text}"
        );
        assert!(text.contains("17 damaged bytes"), "{text}");

        c.stats = None;
        let text = render_text(&build_report(&c, 10));
        assert!(text.contains("drops: unknown"), "{text}");
    }

    #[test]
    fn text_of_empty_and_truncated_lists() {
        let c = Capture::new(sample_meta());
        let text = render_text(&build_report(&c, 10));
        assert!(text.contains("No waits recorded."), "{text}");
        assert!(
            text.contains("duration unknown, did not end cleanly"),
            "{text}"
        );

        let mut c = sample_capture();
        c.spanlets.push(Spanlet {
            kind: SpanletKind::MutexHold,
            addr: 0x99,
            wait_ns: 5,
            ..minimal_spanlet()
        });
        let text = render_text(&build_report(&c, 1));
        assert!(text.contains("(1 of 3 resources shown)"), "{text}");
    }
}
