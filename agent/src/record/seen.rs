//! Enrichment with memory: events become spanlets, and the processes and
//! threads a spanlet names are handed on once, before it.
use std::collections::HashSet;

use agent_ebpf::WaitState;

use super::sink::Sink;
use crate::{
    capture::CaptureError,
    host::procfs,
    kernel::clock::EpochClock,
    kernel::decode::RawEvent,
    model::Spanlet,
    record::enrich::{Enricher, Procfs},
};

pub(super) struct Seen {
    enricher: Enricher<Procfs>,
    /// Processes whose records were handed on.
    processes: HashSet<u32>,
}

impl Seen {
    pub(super) fn new(clock: EpochClock) -> Self {
        Self {
            enricher: Enricher::new(clock, Procfs),
            processes: HashSet::new(),
        }
    }

    /// Makes the next spanlet of `pid` hand its process record on again.
    pub(super) fn forget_process(&mut self, pid: u32) {
        self.processes.remove(&pid);
    }

    /// Hands on the records of a process and its threads, once.
    pub(super) fn add_process(&mut self, pid: u32, sink: &mut Sink) -> Result<(), CaptureError> {
        if !self.processes.insert(pid) {
            return Ok(());
        }
        if let Some(info) = procfs::process_info(pid) {
            sink.process(info)?;
        }
        for thread in procfs::threads(pid) {
            self.enricher.know(&thread);
            sink.thread(thread)?;
        }
        Ok(())
    }

    /// The spanlet of an event, if it is one, after what it names.
    pub(super) fn event(&mut self, event: &RawEvent, sink: &mut Sink) -> Result<(), CaptureError> {
        match self.enricher.enrich(event) {
            Some(spanlet) => self.spanlet(spanlet, sink),
            None => Ok(()),
        }
    }

    /// A wait of thread `tid` still open at `now_ns`, as in progress.
    pub(super) fn open_wait(
        &mut self,
        tid: u32,
        wait: &WaitState,
        now_ns: u64,
        sink: &mut Sink,
    ) -> Result<(), CaptureError> {
        let spanlet = self.enricher.open_wait(tid, wait, now_ns);
        self.spanlet(spanlet, sink)
    }

    fn spanlet(&mut self, spanlet: Spanlet, sink: &mut Sink) -> Result<(), CaptureError> {
        self.add_process(spanlet.pid, sink)?;
        for thread in self.enricher.take_new_threads() {
            sink.thread(thread)?;
        }
        sink.spanlet(spanlet)
    }

    /// Forgets threads that exited; returns them.
    pub(super) fn prune_threads(&mut self) -> Vec<(u32, u32)> {
        self.enricher.prune()
    }

    /// Forgets processes that exited (one that shows up again, a reused
    /// id, is simply handed on again); returns them.
    pub(super) fn prune_processes(&mut self) -> Vec<u32> {
        let exited: Vec<u32> = self
            .processes
            .iter()
            .copied()
            .filter(|&pid| !procfs::is_running(pid))
            .collect();
        for pid in &exited {
            self.processes.remove(pid);
        }
        exited
    }

    /// The threads of the processes seen, alive now.
    pub(super) fn threads(&self) -> Vec<u32> {
        self.processes
            .iter()
            .flat_map(|&pid| procfs::threads(pid))
            .map(|t| t.tid)
            .collect()
    }
}
