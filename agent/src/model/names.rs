//! The one table of process and thread names: what the enricher has
//! written to the capture, what the live OTLP exporter may still send, and
//! what a capture read back knows.

use std::collections::BTreeMap;

use super::{ProcessInfo, ThreadInfo};

/// Processes by PID and thread names by (pid, tid). Ordered, so that all
/// threads of a process can be dropped with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    processes: BTreeMap<u32, ProcessInfo>,
    threads: BTreeMap<(u32, u32), ThreadName>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ThreadName {
    name: String,
    ns_tid: Option<u32>,
}

impl Names {
    /// Adds a process, or replaces what was known of its PID.
    pub fn insert_process(&mut self, process: ProcessInfo) {
        self.processes.insert(process.pid, process);
    }

    /// Adds a thread, or replaces its name and namespace tid.
    pub fn insert_thread(&mut self, thread: ThreadInfo) {
        let ThreadInfo {
            pid,
            tid,
            name,
            ns_tid,
        } = thread;
        self.threads.insert((pid, tid), ThreadName { name, ns_tid });
    }

    pub fn process(&self, pid: u32) -> Option<&ProcessInfo> {
        self.processes.get(&pid)
    }

    pub fn process_mut(&mut self, pid: u32) -> Option<&mut ProcessInfo> {
        self.processes.get_mut(&pid)
    }

    /// The process's name (`comm`).
    pub fn process_comm(&self, pid: u32) -> Option<&str> {
        self.process(pid).map(|p| p.comm.as_str())
    }

    pub fn has_thread(&self, pid: u32, tid: u32) -> bool {
        self.threads.contains_key(&(pid, tid))
    }

    pub fn thread_name(&self, pid: u32, tid: u32) -> Option<&str> {
        self.threads.get(&(pid, tid)).map(|t| t.name.as_str())
    }

    /// A thread's id in its process's PID namespace, when that is nested.
    pub fn ns_tid(&self, pid: u32, tid: u32) -> Option<u32> {
        self.threads.get(&(pid, tid)).and_then(|t| t.ns_tid)
    }

    /// Every (pid, tid) named.
    pub fn threads(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.threads.keys().copied()
    }

    pub fn remove_thread(&mut self, pid: u32, tid: u32) {
        self.threads.remove(&(pid, tid));
    }

    /// Forgets a process and every thread of it.
    pub fn remove_process(&mut self, pid: u32) {
        self.processes.remove(&pid);
        let tids: Vec<(u32, u32)> = self
            .threads
            .range((pid, 0)..=(pid, u32::MAX))
            .map(|(&k, _)| k)
            .collect();
        for key in tids {
            self.threads.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(pid: u32, tid: u32, name: &str, ns_tid: Option<u32>) -> ThreadInfo {
        ThreadInfo {
            pid,
            tid,
            name: name.into(),
            ns_tid,
        }
    }

    #[test]
    fn a_process_goes_with_its_threads_only() {
        let mut n = Names::default();
        n.insert_process(ProcessInfo {
            pid: 7,
            comm: "app".into(),
            ..ProcessInfo::default()
        });
        n.insert_thread(thread(7, 8, "worker", Some(2)));
        n.insert_thread(thread(70, 8, "other", None));
        assert_eq!(n.process_comm(7), Some("app"));
        assert_eq!(
            (n.thread_name(7, 8), n.ns_tid(7, 8)),
            (Some("worker"), Some(2))
        );
        n.insert_thread(thread(7, 8, "renamed", None));
        assert_eq!(
            (n.thread_name(7, 8), n.ns_tid(7, 8)),
            (Some("renamed"), None)
        );
        n.remove_process(7);
        assert!(n.process(7).is_none() && !n.has_thread(7, 8));
        assert_eq!(n.threads().collect::<Vec<_>>(), [(70, 8)]);
    }
}
