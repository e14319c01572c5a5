//! Every map of the programs, named by the shared constants in the ABI.
use super::task_storage::TaskStorage;
use agent_ebpf::{
    COUNTER_SLOTS, DEFAULT_RINGBUF_BYTES, FileKey, HeldKey, HeldLock, LockCall, LockContention,
    LockContentionKey, MAX_HELD, MAX_LOCK_CALLS, MAX_LOCK_CONTENTIONS, MAX_PIDS, MAX_SOCKETS,
    OPEN_WAIT_SLOTS, ObiCtxValue, PID_HINT_SLOTS, PidEntry, SockAddrs, SockWaiters, WaitState,
};
use aya_ebpf::{
    macros::{btf_map, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};

#[map(name = "SPANLET_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RINGBUF_BYTES, 0);

#[map(name = "SPANLET_PIDS")]
pub static PIDS: HashMap<u32, PidEntry> = HashMap::with_max_entries(MAX_PIDS, 0);

/// Per-thread wait state: the open wait of a blocked thread, if any.
#[btf_map(name = "SPANLET_WAIT_STATE")]
pub static WAIT_STATE: TaskStorage<WaitState> = TaskStorage::new();

#[map(name = "SPANLET_PID_HINTS")]
pub static PID_HINTS: Array<u64> = Array::with_max_entries(PID_HINT_SLOTS, 0);

/// tgid -> thread-context slot offset from `fsbase` (see the ABI).
#[map(name = "SPANLET_THREAD_CTX")]
pub static THREAD_CTX: HashMap<u32, i64> = HashMap::with_max_entries(MAX_PIDS, 0);

/// Executable file -> its thread-context slot offset (see the ABI).
#[map(name = "SPANLET_THREAD_CTX_BY_FILE")]
pub static THREAD_CTX_BY_FILE: HashMap<FileKey, i64> = HashMap::with_max_entries(MAX_PIDS, 0);

/// OBI's pinned trace-context map, or an empty stand-in (see the ABI).
#[map(name = "SPANLET_OBI_CTX")]
pub static OBI_CTX: HashMap<u64, ObiCtxValue> = HashMap::with_max_entries(1, 0);

#[map(name = "SPANLET_THREAD_CTX_ANY")]
pub static THREAD_CTX_ANY: Array<u32> = Array::with_max_entries(1, 0);

#[map(name = "SPANLET_OPEN_WAITS")]
pub static OPEN_WAITS: Array<u32> = Array::with_max_entries(OPEN_WAIT_SLOTS, 0);

#[map(name = "SPANLET_IN_HRTIMER")]
pub static IN_HRTIMER: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "SPANLET_COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map(name = "SPANLET_LOCK_CALLS")]
pub static LOCK_CALLS: HashMap<u32, LockCall> = HashMap::with_max_entries(MAX_LOCK_CALLS, 0);

#[map(name = "SPANLET_HELD")]
pub static HELD: HashMap<HeldKey, HeldLock> = HashMap::with_max_entries(MAX_HELD, 0);

#[map(name = "SPANLET_SOCK_WAITERS")]
pub static SOCK_WAITERS: LruHashMap<u64, SockWaiters> =
    LruHashMap::with_max_entries(MAX_SOCKETS, 0);

#[map(name = "SPANLET_SOCK_ADDRS")]
pub static SOCK_ADDRS: LruHashMap<u64, SockAddrs> = LruHashMap::with_max_entries(MAX_SOCKETS, 0);

#[map(name = "SPANLET_LOCK_CONTENTION")]
pub static LOCK_CONTENTION: HashMap<LockContentionKey, LockContention> =
    HashMap::with_max_entries(MAX_LOCK_CONTENTIONS, 0);

/// Submit flags for an event: wake the reader only when enough is pending.
#[inline(always)]
pub fn submit_flags() -> u64 {
    const BPF_RB_AVAIL_DATA: u64 = 0;
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= u64::from(super::config::get().ringbuf_wakeup_bytes) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}
