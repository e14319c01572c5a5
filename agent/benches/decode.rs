//! User-space decode + report throughput, in spanlets per second per core.
//!
//! `cargo bench -p agent --bench decode` writes a synthetic capture of
//! 1,000,000 spanlets with the real `CaptureWriter` (a few processes, a few
//! dozen threads, a few hundred resources with skewed popularity, mixed kinds
//! and outcomes, holders, wakers, some span contexts), then measures:
//!
//! - `decode/open`: `Capture::open`, every record read, checked and decoded;
//! - `decode/report`: `build_report(&capture, 10)` on the decoded capture;
//! - `decode/open_and_report`: both, which is what `spanlet report` costs and
//!   the figure the target (2M spanlets/s per core) applies to.
//!
//! After criterion, a plain median-of-5 timing of the same three steps goes to
//! `<target dir>/criterion-summary/decode.json` for `cargo xtask bench`.
//!
//! Without `--bench` (e.g. `cargo test --benches`) criterion runs each
//! benchmark once; the capture is then small and no summary is written. Nor
//! is one with `--profile-time` (e.g. under `perf record`) or `--list`.

use std::{
    hint::black_box,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use criterion::{Criterion, SamplingMode, Throughput};
use spanlet::{
    capture::{Capture, CaptureWriter},
    model::{
        CaptureEnd, CaptureMeta, CaptureStats, ProcessInfo, SpanContext, Spanlet, SpanletKind,
        ThreadInfo, WaitOutcome,
    },
    output::report::build_report,
};

/// Spanlets in the benchmark capture.
const SPANLETS: u64 = 1_000_000;
/// Spanlets when criterion only checks that the benchmarks run.
const TEST_MODE_SPANLETS: u64 = 10_000;
/// Resources kept by the report, as `spanlet report`'s default.
const TOP: usize = 10;
/// Iterations of the summary's own timing loop (the median is kept).
const SUMMARY_ITERATIONS: usize = 5;

/// Small deterministic PRNG (SplitMix64), so every run measures the same file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `0.0..1.0`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// `0..n`, low indices much more likely (a few hot resources, a long tail).
    fn skewed(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((u * u * u * n as f64) as usize).min(n - 1)
    }

    fn context(&mut self) -> SpanContext {
        let mut c = SpanContext::default();
        for chunk in c.trace_id.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        c.span_id = self.next().to_le_bytes();
        c
    }
}

struct Process {
    pid: u32,
    comm: &'static str,
    /// Share of the spanlets that come from this process.
    weight: f64,
    threads: Vec<(u32, String)>,
    /// (address, is a lock) per resource, hottest first.
    resources: Vec<(u64, bool)>,
}

/// How to make one process: pid, name, share of the spanlets, thread name
/// stems, thread count, resource count.
struct ProcessSpec(
    u32,
    &'static str,
    f64,
    &'static [&'static str],
    usize,
    usize,
);

/// A few processes like a real capture might hold: 48 threads, 320 resources.
fn processes(rng: &mut Rng) -> Vec<Process> {
    let specs = [
        ProcessSpec(
            4100,
            "api-server",
            0.45,
            &["tokio-runtime-w", "worker", "accept", "metrics"],
            16,
            120,
        ),
        ProcessSpec(
            4210,
            "postgres",
            0.25,
            &["postgres", "bgwriter", "walwriter"],
            12,
            90,
        ),
        ProcessSpec(
            4377,
            "python3",
            0.2,
            &["python3", "ThreadPoolExec", "asyncio_0"],
            10,
            70,
        ),
        ProcessSpec(4502, "batch", 0.1, &["batch", "rayon-w"], 10, 40),
    ];
    specs
        .iter()
        .map(
            |&ProcessSpec(pid, comm, weight, names, threads, resources)| {
                let threads = (0..threads)
                    .map(|i| {
                        let tid = pid + 1 + i as u32 * 3;
                        let base = names[i % names.len()];
                        // Kernel thread names are at most 15 bytes.
                        let mut name = format!("{base}-{i}");
                        name.truncate(15);
                        (tid, name)
                    })
                    .collect();
                let heap = 0x5600_0000_0000 + u64::from(pid) * 0x1_0000_0000;
                let resources = (0..resources)
                    .map(|i| {
                        (
                            heap + 0x40 * i as u64 + rng.next() % 8 * 0x1000,
                            rng.chance(0.6),
                        )
                    })
                    .collect();
                Process {
                    pid,
                    comm,
                    weight,
                    threads,
                    resources,
                }
            },
        )
        .collect()
}

fn meta(start_unix_nano: u64, pids: Vec<u32>) -> CaptureMeta {
    CaptureMeta {
        format_version: spanlet::capture::FORMAT_VERSION,
        agent_version: "bench".into(),
        kernel_release: "6.1.0-bench".into(),
        hostname: "benchhost".into(),
        start_unix_nano,
        command: None,
        pids,
        min_wait_ns: 10_000,
        spanlet_fields: spanlet::capture::spanlet_field_names(),
    }
}

/// One spanlet of `p` started at `start`.
fn spanlet(rng: &mut Rng, p: &Process, start: u64) -> Spanlet {
    let (addr, is_lock) = p.resources[rng.skewed(p.resources.len())];
    let (tid, comm) = &p.threads[rng.below(p.threads.len())];
    // Log-uniform from 10us to ~100ms.
    let wait_ns = (10_000.0 * 10f64.powf(rng.unit() * 4.0)) as u64;
    let other = |rng: &mut Rng| loop {
        let t = &p.threads[rng.below(p.threads.len())];
        if t.0 != *tid {
            break t;
        }
    };
    let kind = if !is_lock {
        SpanletKind::FutexWait
    } else if rng.chance(0.08) {
        SpanletKind::MutexHold
    } else {
        SpanletKind::MutexWait
    };
    let mut s = Spanlet {
        comm: comm.as_str().into(),
        addr,
        start_unix_nano: start,
        wait_ns,
        syscall: 202,
        ..Spanlet::new(kind, p.pid, *tid)
    };
    if kind == SpanletKind::MutexHold {
        s.syscall = 0;
        return s;
    }
    s.outcome = match rng.below(100) {
        0..85 => WaitOutcome::Woken,
        85..92 => WaitOutcome::TimedOut,
        92..94 => WaitOutcome::Interrupted,
        94..99 => WaitOutcome::Unknown,
        _ => WaitOutcome::InProgress,
    };
    if kind == SpanletKind::MutexWait {
        // FUTEX_WAIT_PRIVATE or FUTEX_LOCK_PI_PRIVATE, lock-shaped, some PI.
        let pi = rng.chance(0.1);
        s.op = if pi { 0x86 } else { 0x80 };
        s.arg = 2;
        s.flags = if pi { 0b110 } else { 0b010 };
        if rng.chance(0.85) {
            s.holder_tid = Some(other(rng).0);
        }
    } else {
        // FUTEX_WAIT_BITSET_PRIVATE, often with a timeout.
        s.op = 0x89;
        s.arg = rng.below(4) as u32;
        if rng.chance(0.4) {
            s.flags = 0b001;
        }
    }
    if s.outcome == WaitOutcome::Woken {
        s.woken_after_ns = Some(wait_ns - wait_ns / 16);
        if rng.chance(0.9) {
            let (waker_tid, waker_comm) = other(rng);
            s.waker_pid = Some(p.pid);
            s.waker_tid = Some(*waker_tid);
            s.waker_comm = Some(waker_comm.as_str().into());
        }
    }
    if rng.chance(0.15) {
        s.context = Some(rng.context());
        if s.holder_tid.is_some() && rng.chance(0.5) {
            s.holder_context = Some(rng.context());
        }
    }
    s
}

/// Writes a capture of `n` spanlets to `path` the way `spanlet record` does:
/// processes first, threads when first seen, stats now and then, an end record.
fn write_capture(path: &Path, n: u64) {
    let mut rng = Rng(0x5eed_5eed);
    let procs = processes(&mut rng);
    let start = 1_760_000_000_000_000_000;
    let meta = meta(start, procs.iter().map(|p| p.pid).collect());
    let mut w = CaptureWriter::create(path, &meta).expect("create capture");
    for p in &procs {
        w.write_process(&ProcessInfo {
            pid: p.pid,
            comm: p.comm.into(),
            cmdline: vec![format!("/usr/bin/{}", p.comm), "--bench".into()],
            ..ProcessInfo::default()
        })
        .expect("process record");
    }
    let mut seen = std::collections::HashSet::new();
    let mut stats = CaptureStats::default();
    let mut now = start;
    for i in 0..n {
        let mut pick = rng.unit();
        let p = procs
            .iter()
            .find(|p| {
                pick -= p.weight;
                pick < 0.0
            })
            .unwrap_or(&procs[0]);
        now += 500 + rng.next() % 2_000;
        let s = spanlet(&mut rng, p, now);
        if seen.insert((s.pid, s.tid)) {
            w.write_thread(&ThreadInfo {
                pid: s.pid,
                tid: s.tid,
                name: s.comm.to_string(),
                ns_tid: None,
            })
            .expect("thread record");
        }
        w.write_spanlet(&s).expect("spanlet record");
        stats.spanlets += 1;
        stats.waits_seen += 3;
        stats.below_min_wait += 2;
        if i % 100_000 == 99_999 {
            w.write_stats(&stats).expect("stats record");
        }
    }
    w.write_stats(&stats).expect("stats record");
    w.finish(&CaptureEnd {
        end_unix_nano: now + 200_000_000,
        reason: "duration elapsed".into(),
    })
    .expect("finish capture");
}

fn open(path: &Path) -> Capture {
    Capture::open(path).expect("open capture")
}

/// Each iteration includes dropping what it built, as a `spanlet report` run
/// pays for it too.
fn benches(c: &mut Criterion, path: &Path, n: u64) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(n));
    // Iterations take ~0.1-1 s: flat sampling keeps the run near the target time.
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("open", |b| b.iter(|| open(black_box(path))));
    {
        // Only alive for its own benchmark: a second capture in memory would
        // change how the allocator behaves for the others.
        let capture = open(path);
        assert_eq!(capture.spanlets.len() as u64, n);
        g.bench_function("report", |b| {
            b.iter(|| build_report(black_box(&capture), TOP))
        });
    }
    g.bench_function("open_and_report", |b| {
        b.iter(|| build_report(&open(black_box(path)), TOP))
    });
    g.finish();
}

/// Median seconds of `SUMMARY_ITERATIONS` runs of `f`.
fn median_secs(mut f: impl FnMut()) -> f64 {
    let mut secs: Vec<f64> = (0..SUMMARY_ITERATIONS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    secs.sort_by(f64::total_cmp);
    secs[secs.len() / 2]
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when absolute (a relative one
/// is relative to where cargo ran, not to this process), else the ancestor of
/// this executable (`<target>/[<triple>/]release/deps/decode-…`) holding
/// cargo's `CACHEDIR.TAG`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && dir.is_absolute()
    {
        return dir;
    }
    let exe = std::env::current_exe().expect("bench executable path");
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .or_else(|| exe.ancestors().nth(3))
        .expect("target directory above the bench executable")
        .to_owned()
}

fn write_summary(path: &Path, n: u64) {
    let capture_bytes = std::fs::metadata(path).expect("capture size").len();
    let n_f = n as f64;
    let decode = median_secs(|| drop(black_box(open(path))));
    let capture = open(path);
    let report = median_secs(|| drop(black_box(build_report(&capture, TOP))));
    drop(capture);
    let both = median_secs(|| drop(black_box(build_report(&open(path), TOP))));
    let summary = serde_json::json!({
        "spanlets": n,
        "spanlets_per_sec": (n_f / both).round(),
        "decode_per_sec": (n_f / decode).round(),
        "report_per_sec": (n_f / report).round(),
        "capture_bytes": capture_bytes,
        "bytes_per_spanlet": (capture_bytes as f64 / n_f * 10.0).round() / 10.0,
        "iterations": SUMMARY_ITERATIONS,
    });
    let dir = target_dir().join("criterion-summary");
    std::fs::create_dir_all(&dir).expect("create summary directory");
    let out = dir.join("decode.json");
    let text = serde_json::to_string_pretty(&summary).expect("summary JSON");
    std::fs::write(&out, format!("{text}\n")).expect("write summary");
    println!("summary ({}): {text}", out.display());
}

fn main() {
    // Cargo passes `--bench` to benchmarks run by `cargo bench`; without it
    // criterion only runs each benchmark once as a test.
    let args: Vec<String> = std::env::args().collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    // Profiling (`--profile-time`) or listing runs want no extra timing.
    let summary = bench_mode
        && !args
            .iter()
            .any(|a| a.starts_with("--profile-time") || a == "--list");
    let n = if bench_mode {
        SPANLETS
    } else {
        TEST_MODE_SPANLETS
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.spanlet");
    let t = Instant::now();
    write_capture(&path, n);
    println!(
        "synthetic capture: {n} spanlets, {} bytes, written in {:.1?}",
        std::fs::metadata(&path).expect("capture size").len(),
        t.elapsed()
    );

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    benches(&mut c, &path, n);
    c.final_summary();

    if summary {
        write_summary(&path, n);
    }
}
