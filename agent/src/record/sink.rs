//! Where enriched spanlets go: the capture file and the live exporter.
use std::collections::{BTreeMap, HashSet};

use super::QUEUE_EVENTS;
use crate::{
    capture::{CaptureError, CaptureWriter},
    host::procfs,
    kernel::decode::RawEvent,
    model::{CaptureStats, ThreadInfo},
    output::otlp::live::{Item, LiveExporter},
    record::enrich::{Enricher, Procfs},
};

/// Writes spanlets and the processes and threads they name to the capture
/// and to the live exporter (either or both).
pub(super) struct Sink {
    pub(super) writer: Option<CaptureWriter>,
    pub(super) exporter: Option<LiveExporter>,
    pub(super) enricher: Enricher<Procfs>,
    pub(super) processes: HashSet<u32>,
    pub(super) stats: CaptureStats,
    /// Spanlets recorded, by kind (for the node agent's metrics).
    pub(super) by_kind: BTreeMap<&'static str, u64>,
    /// Exits the exporter has not been told of yet (its queue was full).
    pub(super) unsent_forgets: Vec<(u32, Option<u32>)>,
    pub(super) min_wait_ns: u64,
}

impl Sink {
    /// Makes the next spanlet of `pid` write its process record again.
    pub(super) fn forget_process(&mut self, pid: u32) {
        self.processes.remove(&pid);
    }

    pub(super) fn add_process(&mut self, pid: u32) -> Result<(), CaptureError> {
        if !self.processes.insert(pid) {
            return Ok(());
        }
        if let Some(info) = procfs::process_info(pid) {
            if let Some(w) = &mut self.writer {
                w.write_process(&info)?;
            }
            if let Some(e) = &self.exporter {
                e.offer(Item::Process(info));
            }
        }
        for thread in procfs::threads(pid) {
            self.enricher.know(&thread);
            self.write_thread(thread)?;
        }
        Ok(())
    }

    pub(super) fn write_thread(&mut self, thread: ThreadInfo) -> Result<(), CaptureError> {
        if let Some(w) = &mut self.writer {
            w.write_thread(&thread)?;
        }
        if let Some(e) = &self.exporter {
            e.offer(Item::Thread(thread));
        }
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

    pub(super) fn handle(&mut self, event: &RawEvent) -> Result<(), CaptureError> {
        let Some(spanlet) = self.enricher.enrich(event) else {
            return Ok(());
        };
        self.add_process(spanlet.pid)?;
        *self.by_kind.entry(spanlet.kind.as_str()).or_default() += 1;
        for thread in self.enricher.take_new_threads() {
            self.write_thread(thread)?;
        }
        if let Some(w) = &mut self.writer {
            w.write_spanlet(&spanlet)?;
        }
        if let Some(e) = &self.exporter {
            e.offer(Item::Spanlet(Box::new(spanlet)));
        }
        self.stats.spanlets += 1;
        Ok(())
    }

    /// Forgets threads and processes that exited, here and in the
    /// exporter, so a node agent's tables hold the living only. One that
    /// shows up again (a reused id) is simply written again. Forgets the
    /// exporter's full queue refused are offered again next time.
    pub(super) fn prune_exited(&mut self, gone_threads: Vec<(u32, u32)>) {
        let exited: Vec<u32> = self
            .processes
            .iter()
            .copied()
            .filter(|&pid| !procfs::is_running(pid))
            .collect();
        for &pid in &exited {
            self.processes.remove(&pid);
        }
        let Some(e) = &self.exporter else {
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
            // Bounded too: past the cap, the exporter keeps a few stale names.
            if !e.offer(Item::Forget { pid, tid }) && self.unsent_forgets.len() < QUEUE_EVENTS {
                self.unsent_forgets.push((pid, tid));
            }
        }
    }
}
