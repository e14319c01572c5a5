//! The state of a recording under way. Its steps are in `start.rs`,
//! `event_loop.rs` and `stop.rs`, which is why its fields are open to the
//! folder.
use std::{sync::Arc, time::Instant};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::{
    hooks::{Progress, RecordHooks},
    launch::Launched,
    options::RecordOptions,
    seen::Seen,
    sink::Sink,
};
use crate::kernel::{
    decode::RawEvent, loader::Tracer, ring_fill::RingFill, ring_reader::ReaderCounters,
};

/// A recording under way: the loaded programs, what reads their events,
/// and where the spanlets go.
pub(super) struct Recording {
    pub(super) opts: RecordOptions,
    pub(super) hooks: Box<dyn RecordHooks>,
    pub(super) progress: Box<dyn Progress>,
    pub(super) tracer: Tracer,
    pub(super) launched: Option<Launched>,
    pub(super) seen: Seen,
    pub(super) sink: Sink,
    pub(super) min_wait_ns: u64,
    pub(super) ring_fill: Option<RingFill>,
    pub(super) events: mpsc::Receiver<RawEvent>,
    pub(super) stop_reader: watch::Sender<bool>,
    pub(super) reader: JoinHandle<std::io::Result<()>>,
    pub(super) reader_counters: Arc<ReaderCounters>,
    pub(super) started: Instant,
    pub(super) last_stats: Instant,
    /// The `--pid` processes still running.
    pub(super) alive: Vec<u32>,
}
