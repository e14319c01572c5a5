//! Workload: threads that publish their OpenTelemetry span context through
//! OTEP 4947 thread context, written by Datadog's `libdd-otel-thread-ctx`
//! (an independent writer: spanlet's reader is checked against it).
//!
//! A "holder" thread, working inside trace B, locks one `std::sync::Mutex`
//! per waiter and keeps them all for `HOLD_MS`. Waiter i, inside trace A_i,
//! blocks on mutex i meanwhile; the last waiter publishes no context at all.
//! The holder then unlocks them one after the other, so each waiter is woken
//! by the holder, as it releases the lock, while still inside trace B.
//!
//! Usage: `rust_thread_ctx [WAITERS [HOLD_MS [--obi]]]` (defaults 3 and
//! 300; `--obi`: see `main`).
//!
//! Prints one JSON line of ground truth to stdout at the end.

use std::fmt::Write as _;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use libdd_otel_thread_ctx::linux::OwnedThreadContext;

/// W3C "sampled".
const SAMPLED: u8 = 1;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    u32::try_from(unsafe { libc::gettid() }).expect("tids are positive")
}

/// A span context: trace id and span id.
#[derive(Clone, Copy)]
struct Ctx {
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

impl Ctx {
    /// Distinct, recognisable ids: every byte of the trace id names the
    /// trace, the span id differs from it.
    fn new(trace: u8, span: u8) -> Self {
        let mut trace_id = [trace; 16];
        trace_id[0] = 0x5a;
        let mut span_id = [span; 8];
        span_id[0] = 0x5b;
        Self { trace_id, span_id }
    }

    fn attach(self) {
        let ctx = OwnedThreadContext::new(self.trace_id, self.span_id, SAMPLED, self.span_id, &[]);
        drop(ctx.attach());
    }

    fn json(ctx: Option<Self>) -> String {
        match ctx {
            Some(c) => format!(
                r#""trace_id":"{}","span_id":"{}""#,
                hex(&c.trace_id),
                hex(&c.span_id)
            ),
            None => r#""trace_id":null,"span_id":null"#.to_owned(),
        }
    }
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .map_or(default, |a| a.parse().expect("numeric argument"))
}

fn main() {
    let waiters = usize::try_from(arg(1, 3)).expect("a small number");
    let hold = Duration::from_millis(arg(2, 300));
    // --obi: publish no thread context; print the threads' ids and wait for
    // a line on stdin first, so a test can put their contexts into an
    // OBI-style map before any of them waits.
    let obi = std::env::args().nth(3).as_deref() == Some("--obi");
    let locks: Arc<Vec<Mutex<()>>> = Arc::new((0..=waiters).map(|_| Mutex::new(())).collect());
    // Every thread reports its id, then waits for the start; the waiters
    // wait again until the holder holds every lock.
    let parties = waiters + 3;
    let (start, held) = (
        Arc::new(Barrier::new(parties)),
        Arc::new(Barrier::new(parties)),
    );
    let (tids_tx, tids_rx) = std::sync::mpsc::channel::<(Option<usize>, u32)>();
    let trace_b = Ctx::new(0xbb, 0xb1);

    let holder = {
        let (locks, start, held, tids) =
            (locks.clone(), start.clone(), held.clone(), tids_tx.clone());
        thread::Builder::new()
            .name("holder".into())
            .spawn(move || {
                tids.send((None, gettid())).unwrap();
                start.wait();
                if !obi {
                    trace_b.attach();
                }
                let guards: Vec<_> = locks.iter().map(|m| m.lock().unwrap()).collect();
                held.wait();
                thread::sleep(hold);
                // Each unlock wakes that mutex's waiter, from inside trace B.
                drop(guards);
                drop(OwnedThreadContext::detach());
            })
            .unwrap()
    };
    let handles: Vec<_> = (0..=waiters)
        .map(|i| {
            let (locks, start, held, tids) =
                (locks.clone(), start.clone(), held.clone(), tids_tx.clone());
            // The last waiter works outside any trace.
            let ctx = (i < waiters && !obi).then(|| Ctx::new(0xa0 + i as u8, 0x10 + i as u8));
            thread::Builder::new()
                .name(format!("waiter-{i}"))
                .spawn(move || {
                    tids.send((Some(i), gettid())).unwrap();
                    start.wait();
                    if let Some(c) = ctx {
                        c.attach();
                    }
                    held.wait();
                    drop(locks[i].lock().unwrap());
                    if ctx.is_some() {
                        drop(OwnedThreadContext::detach());
                    }
                    format!(r#"{{"tid":{},{}}}"#, gettid(), Ctx::json(ctx))
                })
                .unwrap()
        })
        .collect();
    drop(tids_tx);
    let mut holder_tid = 0;
    let mut waiter_tids = vec![0; waiters + 1];
    // Each thread sends once, and keeps its sender until it ends.
    for (who, tid) in tids_rx.iter().take(waiters + 2) {
        match who {
            None => holder_tid = tid,
            Some(i) => waiter_tids[i] = tid,
        }
    }
    if obi {
        println!(
            r#"{{"pid":{},"holder":{holder_tid},"waiters":{waiter_tids:?}}}"#,
            std::process::id()
        );
        let mut go = String::new();
        std::io::stdin()
            .read_line(&mut go)
            .expect("a line on stdin");
    }
    start.wait();
    held.wait();
    let waiter_lines: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    holder.join().unwrap();
    let holder_ctx = (!obi).then_some(trace_b);
    println!(
        r#"{{"workload":"rust_thread_ctx","pid":{},"hold_ms":{},"holder":{{"tid":{},{}}},"waiters":[{}]}}"#,
        std::process::id(),
        hold.as_millis(),
        holder_tid,
        Ctx::json(holder_ctx),
        waiter_lines.join(",")
    );
}
