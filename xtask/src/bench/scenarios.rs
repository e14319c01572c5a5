//! What `cargo xtask bench` measures: the scenarios, the three ways each is
//! run, and the command line of each workload.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A scenario (or one of the two extra measurements, `agent` and `decode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// FUTEX_WAKE on a word nobody waits on: pure per-call cost.
    Wake,
    /// Two threads handing a token through one futex: per blocking pair.
    Pingpong,
    /// Two threads bouncing a byte over loopback TCP: blocking socket waits.
    Tcppingpong,
    /// Our futex-heavy program: 4 threads, one mutex, short critical sections.
    Shortcs,
    /// Python threading.Lock taken by 4 threads.
    Pylock,
    /// A mostly idle service: a request per millisecond to a parked pool.
    Idle,
    /// `sysbench mutex`, 4 threads on one mutex.
    SysbenchMutex,
    /// `sysbench threads`, 4 threads.
    SysbenchThreads,
    /// 4 threads mapping and unmapping memory: contention on a kernel lock
    /// (mmap_lock), not on any futex.
    Mmaplock,
    /// The FUTEX_WAKE loop as a process outside the PID set.
    Outside,
    /// spanlet's own CPU, peak RSS and capture size under a high spanlet rate.
    Agent,
    /// `cargo bench -p agent --bench decode`: user-space decode + report.
    Decode,
}

/// The scenarios run three ways and compared.
pub const COMPARED: [Scenario; 10] = [
    Scenario::Wake,
    Scenario::Pingpong,
    Scenario::Tcppingpong,
    Scenario::Shortcs,
    Scenario::Pylock,
    Scenario::Idle,
    Scenario::SysbenchMutex,
    Scenario::SysbenchThreads,
    Scenario::Mmaplock,
    Scenario::Outside,
];

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Wake => "wake",
            Self::Pingpong => "pingpong",
            Self::Tcppingpong => "tcppingpong",
            Self::Shortcs => "shortcs",
            Self::Pylock => "pylock",
            Self::Idle => "idle",
            Self::SysbenchMutex => "sysbench-mutex",
            Self::SysbenchThreads => "sysbench-threads",
            Self::Mmaplock => "mmaplock",
            Self::Outside => "outside",
            Self::Agent => "agent",
            Self::Decode => "decode",
        }
    }

    pub fn is_compared(self) -> bool {
        COMPARED.contains(&self)
    }

    /// What one op is, for the tables.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Wake => "FUTEX_WAKE calls/s",
            Self::Outside => "FUTEX_WAKE calls/s, untraced process",
            Self::Pingpong | Self::Tcppingpong | Self::Agent => "round trips/s",
            Self::Shortcs => "mutex acquisitions/s",
            Self::Pylock => "Lock acquisitions/s",
            Self::Idle => "requests/s (fixed rate)",
            Self::SysbenchMutex => "mutex locks/s",
            Self::SysbenchThreads => "events/s",
            Self::Mmaplock => "map/unmap cycles/s",
            Self::Decode => "spanlets/s",
        }
    }

    /// Heavily contended: throughput can rise when futex calls get slower.
    pub fn contended(self) -> bool {
        matches!(self, Self::SysbenchMutex | Self::Shortcs | Self::Pylock)
    }

    /// Whether the tracers trace a different, idle process (not the workload).
    pub fn outside(self) -> bool {
        self == Self::Outside
    }
}

/// How a scenario runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// (a) no tracing.
    Untraced,
    /// (b) `spanlet record` with its defaults.
    Spanlet,
    /// (c) `futex_waits.bt` under bpftrace.
    Bpftrace,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Untraced, Mode::Spanlet, Mode::Bpftrace];

    pub fn name(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::Spanlet => "spanlet",
            Self::Bpftrace => "bpftrace",
        }
    }

    /// The `k`-th of the six orders of the three modes. Taking them in turn
    /// puts each mode first, and after each other mode, equally often (a
    /// mode run right after bpftrace exits can start on a busier machine).
    pub fn order(k: usize) -> [Mode; 3] {
        use Mode::{Bpftrace as B, Spanlet as S, Untraced as U};
        const ORDERS: [[Mode; 3]; 6] = [
            [U, S, B],
            [S, B, U],
            [B, U, S],
            [U, B, S],
            [B, S, U],
            [S, U, B],
        ];
        ORDERS[k % ORDERS.len()]
    }
}

/// How a workload reports its figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Output {
    /// `{"bench_start":…}` and `{"bench":…}` lines (bench.h, pylock.py).
    Json,
    /// sysbench's report; ops = events × `ops_per_event`.
    Sysbench { ops_per_event: f64 },
}

/// One workload invocation.
#[derive(Clone, Debug)]
pub struct Workload {
    pub argv: Vec<String>,
    pub output: Output,
}

/// Where the workloads' programs are.
#[derive(Clone, Debug)]
pub struct Programs {
    /// Compiled C workloads (`<target>/xtask/bench`).
    pub bin_dir: PathBuf,
    /// The Python interpreter itself (not a pyenv shim), and pylock.py.
    pub python: PathBuf,
    pub pylock: PathBuf,
    pub sysbench: PathBuf,
}

/// Per-thread mutex locks sysbench mutex does per second of `--seconds` (it
/// runs a fixed amount of work: 4 threads did about 2M locks/s in all on
/// the 2-core VM this was written on).
const SYSBENCH_MUTEX_LOCKS_PER_SEC: f64 = 500_000.0;
const THREADS: u32 = 4;

/// The command line of `scenario`'s workload for a timed phase of `seconds`
/// after `warmup` seconds.
pub fn workload(scenario: Scenario, p: &Programs, seconds: f64, warmup: f64) -> Workload {
    let c = |name: &str, extra: &[&str]| {
        let mut argv = vec![
            path(&p.bin_dir.join(name)),
            seconds.to_string(),
            warmup.to_string(),
        ];
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        Workload {
            argv,
            output: Output::Json,
        }
    };
    let threads = THREADS.to_string();
    match scenario {
        Scenario::Wake | Scenario::Outside => c("wake", &[]),
        Scenario::Pingpong | Scenario::Agent => c("pingpong", &[]),
        Scenario::Tcppingpong => c("tcppingpong", &[]),
        Scenario::Shortcs => c("shortcs", &[&threads]),
        Scenario::Mmaplock => c("mmaplock", &[&threads]),
        Scenario::Idle => c("idle", &["1000"]),
        Scenario::Pylock => Workload {
            argv: vec![
                path(&p.python),
                path(&p.pylock),
                seconds.to_string(),
                warmup.to_string(),
                threads,
            ],
            output: Output::Json,
        },
        Scenario::SysbenchMutex => {
            let locks = (seconds * SYSBENCH_MUTEX_LOCKS_PER_SEC)
                .round()
                .max(10_000.0);
            Workload {
                argv: vec![
                    path(&p.sysbench),
                    "mutex".into(),
                    format!("--threads={THREADS}"),
                    "--mutex-num=1".into(),
                    "--mutex-loops=1000".into(),
                    format!("--mutex-locks={locks}"),
                    "run".into(),
                ],
                // One event per thread, each `locks` lock/unlock pairs.
                output: Output::Sysbench {
                    ops_per_event: locks,
                },
            }
        }
        Scenario::SysbenchThreads => Workload {
            argv: vec![
                path(&p.sysbench),
                "threads".into(),
                format!("--threads={THREADS}"),
                // sysbench takes whole seconds.
                format!("--time={}", seconds.round().max(1.0)),
                "run".into(),
            ],
            output: Output::Sysbench { ops_per_event: 1.0 },
        },
        // Not a workload: `cargo bench`.
        Scenario::Decode => Workload {
            argv: Vec::new(),
            output: Output::Json,
        },
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_balanced() {
        let orders: Vec<[Mode; 3]> = (0..6).map(Mode::order).collect();
        for (i, a) in orders.iter().enumerate() {
            assert!(orders[i + 1..].iter().all(|b| b != a), "{a:?} twice");
        }
        for m in Mode::ALL {
            assert_eq!(orders.iter().filter(|o| o[0] == m).count(), 2);
            for n in Mode::ALL.into_iter().filter(|&n| n != m) {
                let follows = orders
                    .iter()
                    .filter(|o| o.windows(2).any(|w| w == [n, m]))
                    .count();
                assert_eq!(follows, 2, "{m:?} after {n:?}");
            }
        }
        assert_eq!(Mode::order(7), Mode::order(1));
    }

    #[test]
    fn sysbench_mutex_counts_locks() {
        let p = Programs {
            bin_dir: "/b".into(),
            python: "/py".into(),
            pylock: "/pylock.py".into(),
            sysbench: "/usr/bin/sysbench".into(),
        };
        let w = workload(Scenario::SysbenchMutex, &p, 2.0, 0.5);
        assert!(w.argv.contains(&"--mutex-locks=1000000".to_owned()));
        assert_eq!(
            w.output,
            Output::Sysbench {
                ops_per_event: 1_000_000.0
            }
        );
        let w = workload(Scenario::Wake, &p, 0.3, 0.1);
        assert_eq!(w.argv, ["/b/wake", "0.3", "0.1"]);
    }
}
