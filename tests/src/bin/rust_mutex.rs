//! Workload: contention on one Rust `std::sync::Mutex`.
//!
//! Same shape as `workloads/c_mutex.c`: a "holder" thread takes the measured
//! mutex, announces the round through an atomic counter, sleeps `hold_ms`
//! with the mutex held, unlocks and sleeps 20 ms; three "waiter-N" threads
//! lock and unlock the measured mutex once per round, right after the holder
//! took it. The waiters poll the counter with `thread::sleep` so that the
//! measured mutex is the only futex with long waits.
//!
//! Usage: `rust_mutex [ROUNDS [HOLD_MS]]` (defaults 10 and 30).
//!
//! Prints one JSON line of ground truth to stdout at the end. On Linux std's
//! mutex is a bare futex word (0 unlocked, 1 locked, 2 contended) with no
//! owner field, but `Mutex<T>` is `repr(Rust)`, so where the word sits inside
//! it is up to the compiler. Today it is first: `Mutex<T: ?Sized> { inner:
//! sys::Mutex { futex: AtomicU32 }, poison: Flag, data: UnsafeCell<T> }`
//! keeps the possibly-unsized `data` last, and gdb's `ptype/o` of
//! `Mutex<u64>` with Rust 1.95 shows inner at 0, poison at 4, data at 8.
//! Rather than rely on that, the workload finds the word the kernel is
//! actually asked to wait on (see [`futex_offset`]) and prints it as `addr`,
//! next to `mutex_addr` (the `&Mutex` address) and the offset.

use std::fs;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAITERS: usize = 3;
const GAP_MS: u64 = 20;
/// Before the first round: threads are named, and spanlet, if it attaches a
/// little after the process starts, does not miss round 1.
const WARMUP_MS: u64 = 100;

/// The measured lock. The `u64` payload is what a real program would
/// protect; it also makes the layout question real, since a `u64` field could
/// be placed before the futex word.
static MEASURED: Mutex<u64> = Mutex::new(0);
/// Lock acquisitions by the waiters (the payload holds the decoy TID).
static ACQUISITIONS: AtomicU64 = AtomicU64::new(0);
/// Round whose hold has started.
static ROUND: AtomicU32 = AtomicU32::new(0);
/// Threads that have started (names and tids set).
static READY: AtomicU32 = AtomicU32::new(0);

fn tid() -> u32 {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).expect("gettid returns a positive tid")
}

fn now_unix_ns() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since.as_nanos()).expect("time fits u64")
}

/// Offset of the futex word inside a `Mutex<u64>`, as the kernel sees it.
///
/// A probe `Mutex<u64>` (same type, so same layout as [`MEASURED`]) is held
/// by this thread while a helper thread blocks on it; the first argument of
/// the helper's `futex` syscall, read from `/proc/self/task/TID/syscall`, is
/// the futex word. Uses a separate mutex so that the probe's wait does not
/// show up on the measured address. `None` if /proc does not tell.
fn futex_offset() -> Option<usize> {
    let probe: Mutex<u64> = Mutex::new(0);
    let base = &probe as *const Mutex<u64> as usize;
    let size = std::mem::size_of::<Mutex<u64>>();
    let helper_tid = AtomicU32::new(0);

    let guard = probe.lock().expect("probe mutex not poisoned");
    let futex_addr = thread::scope(|s| {
        s.spawn(|| {
            helper_tid.store(tid(), Ordering::Release);
            drop(probe.lock().expect("probe mutex not poisoned"));
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut found = None;
        while found.is_none() && Instant::now() < deadline {
            let t = helper_tid.load(Ordering::Acquire);
            if t != 0 {
                found = blocked_futex_addr(t);
            }
            thread::sleep(Duration::from_millis(1));
        }
        // Releasing before the scope ends lets the helper finish.
        drop(guard);
        found
    })?;
    let offset = futex_addr.checked_sub(base)?;
    assert!(
        offset + 4 <= size,
        "futex word {futex_addr:#x} is not inside the probe mutex at {base:#x} (size {size})"
    );
    Some(offset)
}

/// The futex address thread `tid` is blocked on, if it is in `futex()`.
fn blocked_futex_addr(tid: u32) -> Option<usize> {
    // "NR arg1 arg2 ..." while in a syscall, in hex after the number.
    let text = fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    let mut fields = text.split_whitespace();
    let nr: libc::c_long = fields.next()?.parse().ok()?;
    if nr != libc::SYS_futex {
        return None;
    }
    let arg1 = fields.next()?.strip_prefix("0x")?;
    usize::from_str_radix(arg1, 16).ok()
}

fn arg(args: &[String], i: usize, default: u64) -> u64 {
    match args.get(i) {
        None => default,
        Some(s) => match s.parse() {
            Ok(v) if v > 0 => v,
            _ => {
                eprintln!("usage: rust_mutex [ROUNDS [HOLD_MS]]");
                std::process::exit(2);
            }
        },
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = u32::try_from(arg(&args, 1, 10)).expect("ROUNDS fits u32");
    let hold_ms = arg(&args, 2, 30);

    let mutex_addr = &MEASURED as *const Mutex<u64> as usize;
    let (offset, verified) = match futex_offset() {
        Some(off) => (off, true),
        None => {
            // /proc/TID/syscall unavailable: fall back to std's current
            // layout, where the futex word comes first.
            eprintln!("rust_mutex: could not locate the futex word; assuming offset 0");
            (0, false)
        }
    };

    // The payload sits where a glibc mutex keeps its owner (+8). Making it
    // the TID of a live thread that never takes the lock (main) checks that
    // spanlet does not read it as an owner.
    let decoy = u64::from(tid());
    *MEASURED.lock().expect("not poisoned") = decoy;

    let holder = thread::Builder::new()
        .name("holder".into())
        .spawn(move || {
            let me = tid();
            READY.fetch_add(1, Ordering::AcqRel);
            while READY.load(Ordering::Acquire) < (WAITERS + 1) as u32 {
                thread::sleep(Duration::from_millis(1));
            }
            thread::sleep(Duration::from_millis(WARMUP_MS));
            let mut windows = Vec::with_capacity(rounds as usize);
            for r in 1..=rounds {
                let guard = MEASURED.lock().expect("not poisoned");
                let locked = now_unix_ns();
                ROUND.store(r, Ordering::Release);
                thread::sleep(Duration::from_millis(hold_ms));
                windows.push([locked, now_unix_ns()]);
                drop(guard);
                thread::sleep(Duration::from_millis(GAP_MS));
            }
            (me, windows)
        })
        .expect("spawn holder");

    let waiters: Vec<_> = (0..WAITERS)
        .map(|i| {
            thread::Builder::new()
                .name(format!("waiter-{i}"))
                .spawn(move || {
                    let me = tid();
                    READY.fetch_add(1, Ordering::AcqRel);
                    for r in 1..=rounds {
                        // 200 us polls: cheap, and short next to the hold.
                        while ROUND.load(Ordering::Acquire) < r {
                            thread::sleep(Duration::from_micros(200));
                        }
                        let guard = MEASURED.lock().expect("not poisoned");
                        ACQUISITIONS.fetch_add(1, Ordering::Relaxed);
                        assert_eq!(*guard, decoy, "the payload stays the decoy TID");
                        drop(guard);
                    }
                    me
                })
                .expect("spawn waiter")
        })
        .collect();

    let (holder_tid, windows) = holder.join().expect("holder thread");
    let waiter_tids: Vec<u32> = waiters
        .into_iter()
        .map(|h| h.join().expect("waiter thread"))
        .collect();
    let acquisitions = ACQUISITIONS.load(Ordering::Relaxed);

    let truth = serde_json::json!({
        "workload": "rust_mutex",
        "pid": std::process::id(),
        "main_tid": tid(),
        "addr": format!("{:#x}", mutex_addr + offset),
        "mutex_addr": format!("{mutex_addr:#x}"),
        "futex_offset": offset,
        "futex_offset_verified": verified,
        "holder_tid": holder_tid,
        "waiter_tids": waiter_tids,
        "hold_ms": hold_ms,
        "gap_ms": GAP_MS,
        "rounds": rounds,
        "acquisitions": acquisitions,
        "round_windows_unix_nano": windows,
    });
    // Flush explicitly so that a failed write fails the workload rather than
    // being lost at exit.
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{truth}").expect("write stdout");
    out.flush().expect("flush stdout");
}
