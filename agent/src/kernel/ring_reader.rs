//! The one task that drains the RingBuf: readable -> drain all -> clear
//! ready, decode, push into a bounded queue. A full queue is counted, never
//! waited on: the kernel must not be held up by a slow writer.
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};

use crate::kernel::decode::{RawEvent, decode};

/// Counters of the drain stage.
#[derive(Debug, Default)]
pub struct ReaderCounters {
    pub queue_full: AtomicU64,
    pub malformed: AtomicU64,
}

fn drain_ready(
    ring: &mut RingBuf<MapData>,
    tx: &mpsc::Sender<RawEvent>,
    counters: &ReaderCounters,
) {
    while let Some(item) = ring.next() {
        match decode(&item) {
            Ok(event) => {
                if tx.try_send(event).is_err() {
                    counters.queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(err) => {
                tracing::debug!(%err, "malformed event");
                counters.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// How often the ring is drained without a wake-up: the programs wake the
/// reader only when [`agent_ebpf::RINGBUF_WAKEUP_BYTES`] are pending.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Drains until `stop` turns true, then once more, and drops `tx` so the
/// consumer sees the end.
pub async fn run(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<RawEvent>,
    mut stop: watch::Receiver<bool>,
    counters: Arc<ReaderCounters>,
) -> std::io::Result<()> {
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
    // until it is dropped, which happens only after the AsyncFd is.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                drain_ready(guard.get_inner_mut(), &tx, &counters);
                guard.clear_ready();
            }
            _ = tick.tick() => drain_ready(fd.get_mut(), &tx, &counters),
            _ = stop.wait_for(|s| *s) => {
                drain_ready(fd.get_mut(), &tx, &counters);
                return Ok(());
            }
        }
    }
}
