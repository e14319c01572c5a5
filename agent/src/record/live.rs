//! What a recording feeds a live consumer (the node agent's OTLP export):
//! the spanlets as they come, and the processes and threads they name.
//! The consumer is built above this layer and handed in.
use std::{future::Future, pin::Pin, time::Duration};

use crate::model::{ProcessInfo, Spanlet, ThreadInfo};

/// One item for a live consumer, in the order the recording produced them.
#[derive(Debug)]
pub enum LiveItem {
    Process(ProcessInfo),
    Thread(ThreadInfo),
    Spanlet(Box<Spanlet>),
    /// The process (`tid` None) or thread exited: its names go once what
    /// is queued before this is sent (a node agent sees processes and
    /// threads come and go for months).
    Forget {
        pid: u32,
        tid: Option<u32>,
    },
}

/// A consumer of the recording as it happens. It must never make the
/// recording wait: what does not fit is refused (and counted by it).
pub trait LiveConsumer {
    /// Takes an item; false when it did not fit.
    fn offer(&self, item: LiveItem) -> bool;
    /// Its figures so far (nothing is unsent at exit yet, and its last
    /// error is told only at the end).
    fn figures(&self) -> LiveSummary;
    /// Delivers what it holds within `deadline`; what is left then is
    /// counted as dropped at exit.
    fn finish(self: Box<Self>, deadline: Duration) -> Pin<Box<dyn Future<Output = LiveSummary>>>;
}

/// What a live consumer delivered and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveSummary {
    pub exported: u64,
    pub dropped_queue_full: u64,
    pub dropped_send_failed: u64,
    /// Still queued when the flush deadline at exit passed.
    pub dropped_at_exit: u64,
    pub failed_batches: u64,
    pub last_error: Option<String>,
}

impl LiveSummary {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_send_failed + self.dropped_at_exit
    }
}
