//! A run's metadata and counters: what a capture file starts with, the
//! processes and threads it saw, and how it ended.

/// Description of a capture, written first in every capture file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaptureMeta {
    pub format_version: u32,
    pub agent_version: String,
    pub kernel_release: String,
    pub hostname: String,
    pub start_unix_nano: u64,
    /// The command launched by `spanlet record -- CMD`, if any.
    pub command: Option<Vec<String>>,
    /// PIDs given with `--pid` (or the launched command's PID).
    pub pids: Vec<u32>,
    pub min_wait_ns: u64,
    /// Field names of a spanlet record, in order, for readers of the format.
    pub spanlet_fields: Vec<String>,
}

/// A traced process. `pid` is the host's (the agent runs in the initial
/// PID namespace, or with `hostPID` in Kubernetes).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub comm: String,
    pub cmdline: Vec<String>,
    /// Its PID in its own PID namespace, when that is not the agent's (a
    /// container's, or `unshare --pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
    /// Its cgroup v2 path (relative to the cgroup root the agent sees).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The container it runs in, from its cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Its Kubernetes pod's uid, from its cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

/// A thread seen during the capture (written when first seen or renamed).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThreadInfo {
    pub pid: u32,
    pub tid: u32,
    pub name: String,
    /// Its thread id in its process's PID namespace, when that is not the
    /// agent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_tid: Option<u32>,
}

/// Counters of a capture; written periodically and at the end. Later records
/// supersede earlier ones. Fields added later read as zero from older files.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CaptureStats {
    /// Spanlets written to the file.
    pub spanlets: u64,
    /// Blocking waits the kernel saw in traced processes, before `--min-wait`.
    pub waits_seen: u64,
    /// Waits shorter than `--min-wait` (filtered on purpose, not lost).
    pub below_min_wait: u64,
    /// Mutex holds shorter than `--min-wait` (`--mutex-uprobes`; filtered).
    pub holds_below_min_wait: u64,
    /// Kernel lock waits shorter than `--min-wait` (`--kernel-locks`; filtered).
    pub kernel_lock_waits_below_min_wait: u64,
    /// Waits whose thread exited without running again (killed while
    /// blocked): nothing to record, counted so the figures add up.
    pub exited_in_wait: u64,
    /// Waits recorded as ending at their wake-up because their thread's
    /// switch-in was not seen (flag `ENDED_AT_WAKE`; included in `spanlets`).
    pub waits_ended_at_wake: u64,
    /// Lost in the kernel: RingBuf full.
    pub dropped_ringbuf_full: u64,
    /// Lost in the kernel: wait-tracking map full.
    pub dropped_waits_map_full: u64,
    /// Forked processes not followed: PID map full.
    pub dropped_pids_map_full: u64,
    /// Mutex holds lost: uprobe maps full.
    pub dropped_held_map_full: u64,
    /// Kernel lock waits lost: their tracking map was full.
    pub dropped_kernel_locks_map_full: u64,
    /// epoll_wait sleeps that no socket ended (a timeout, an eventfd...):
    /// not socket waits, not recorded, not in `waits_seen`.
    pub epoll_sleeps_without_socket: u64,
    /// Socket waits recorded without their place in the socket's line (its
    /// map full, or more waiters than it keeps): no holder is named.
    pub socket_waits_untracked_line: u64,
    /// Lost in user space: a pipeline queue was full.
    pub dropped_user_queue_full: u64,
    /// Events that failed to decode (should be zero).
    pub malformed_events: u64,
}

/// The kernel's counters, summed over CPUs, as the loader reads them:
/// indexed by `agent_ebpf::Counter`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters(pub [u64; agent_ebpf::COUNTER_SLOTS as usize]);

impl KernelCounters {
    pub fn get(&self, counter: agent_ebpf::Counter) -> u64 {
        self.0[counter as usize]
    }
}

impl CaptureStats {
    /// Takes the figures the kernel counts; those user space counts stay.
    pub fn set_kernel(&mut self, kernel: &KernelCounters) {
        use agent_ebpf::Counter as C;
        let fields = [
            (&mut self.waits_seen, C::WaitsSeen),
            (&mut self.below_min_wait, C::BelowMinWait),
            (&mut self.holds_below_min_wait, C::HoldsBelowMin),
            (&mut self.exited_in_wait, C::ExitedInWait),
            (&mut self.waits_ended_at_wake, C::WaitClosedLate),
            (&mut self.dropped_ringbuf_full, C::RingbufFull),
            (&mut self.dropped_waits_map_full, C::WaitsFull),
            (&mut self.dropped_pids_map_full, C::PidsFull),
            (&mut self.dropped_held_map_full, C::HeldFull),
            (
                &mut self.kernel_lock_waits_below_min_wait,
                C::KernelLocksBelowMin,
            ),
            (&mut self.dropped_kernel_locks_map_full, C::KernelLocksFull),
            (&mut self.epoll_sleeps_without_socket, C::EpollNotSocket),
            (&mut self.socket_waits_untracked_line, C::SocketQueueFull),
        ];
        for (field, counter) in fields {
            *field = kernel.get(counter);
        }
    }

    /// Everything lost, in kernel and user space.
    pub fn dropped(&self) -> u64 {
        self.dropped_ringbuf_full
            + self.dropped_waits_map_full
            + self.dropped_held_map_full
            + self.dropped_kernel_locks_map_full
            + self.dropped_user_queue_full
            + self.malformed_events
    }
}

/// Why and when a capture ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaptureEnd {
    pub end_unix_nano: u64,
    /// e.g. "duration elapsed", "interrupted", "all traced processes exited".
    pub reason: String,
}
