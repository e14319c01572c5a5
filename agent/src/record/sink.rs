//! Where the recording goes: the capture file and the live consumer
//! (either or both), each told every process, thread and spanlet.
use std::collections::BTreeMap;

use super::{LiveConsumer, LiveItem};
use crate::{
    capture::{CaptureError, CaptureWriter},
    model::{CaptureEnd, CaptureStats, ProcessInfo, Spanlet, ThreadInfo},
};

/// Queue between the RingBuf drain and the capture writer, in events.
pub(super) const QUEUE_EVENTS: usize = 1 << 18;

pub(super) struct Sink {
    pub(super) writer: Option<CaptureWriter>,
    pub(super) live: Option<Box<dyn LiveConsumer>>,
    pub(super) stats: CaptureStats,
    /// Spanlets recorded, by kind (for the node agent's metrics).
    pub(super) by_kind: BTreeMap<&'static str, u64>,
    /// Exits the live consumer has not been told of yet (it was full).
    unsent_forgets: Vec<(u32, Option<u32>)>,
}

impl Sink {
    pub(super) fn new(writer: Option<CaptureWriter>, live: Option<Box<dyn LiveConsumer>>) -> Self {
        Self {
            writer,
            live,
            stats: CaptureStats::default(),
            by_kind: BTreeMap::new(),
            unsent_forgets: Vec::new(),
        }
    }

    pub(super) fn process(&mut self, info: ProcessInfo) -> Result<(), CaptureError> {
        if let Some(w) = &mut self.writer {
            w.write_process(&info)?;
        }
        if let Some(live) = &self.live {
            live.offer(LiveItem::Process(info));
        }
        Ok(())
    }

    pub(super) fn thread(&mut self, thread: ThreadInfo) -> Result<(), CaptureError> {
        if let Some(w) = &mut self.writer {
            w.write_thread(&thread)?;
        }
        if let Some(live) = &self.live {
            live.offer(LiveItem::Thread(thread));
        }
        Ok(())
    }

    pub(super) fn spanlet(&mut self, spanlet: Spanlet) -> Result<(), CaptureError> {
        *self.by_kind.entry(spanlet.kind.as_str()).or_default() += 1;
        if let Some(w) = &mut self.writer {
            w.write_spanlet(&spanlet)?;
        }
        if let Some(live) = &self.live {
            live.offer(LiveItem::Spanlet(Box::new(spanlet)));
        }
        self.stats.spanlets += 1;
        Ok(())
    }

    pub(super) fn write_stats(&mut self) -> Result<(), CaptureError> {
        match &mut self.writer {
            Some(w) => {
                w.write_stats(&self.stats)?;
                w.flush()
            }
            None => Ok(()),
        }
    }

    /// The last figures and the end record.
    pub(super) fn finish_capture(&mut self, end: &CaptureEnd) -> Result<(), CaptureError> {
        if let Some(mut w) = self.writer.take() {
            w.write_stats(&self.stats)?;
            w.finish(end)?;
        }
        Ok(())
    }

    /// Tells the live consumer of exited processes and threads. Forgets it
    /// refused are offered again next time.
    pub(super) fn forget_exited(&mut self, exited: &[u32], gone_threads: Vec<(u32, u32)>) {
        let Some(live) = &self.live else {
            return;
        };
        let new = gone_threads
            .into_iter()
            .filter(|(pid, _)| !exited.contains(pid))
            .map(|(pid, tid)| (pid, Some(tid)))
            .chain(exited.iter().map(|&pid| (pid, None)));
        let pending: Vec<(u32, Option<u32>)> = std::mem::take(&mut self.unsent_forgets)
            .into_iter()
            .chain(new)
            .collect();
        for (pid, tid) in pending {
            // Bounded too: past the cap, the consumer keeps a few stale names.
            if !live.offer(LiveItem::Forget { pid, tid })
                && self.unsent_forgets.len() < QUEUE_EVENTS
            {
                self.unsent_forgets.push((pid, tid));
            }
        }
    }
}
