//! Every map of the programs, named by the shared constants in the ABI.
use agent_ebpf::{
    COUNTER_SLOTS, DEFAULT_RINGBUF_BYTES, HeldKey, HeldLock, LockCall, MAX_HELD, MAX_LOCK_CALLS,
    MAX_PIDS, MAX_WAITS, PidEntry, WaitState,
};
use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};

#[map(name = "SPANLET_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RINGBUF_BYTES, 0);

#[map(name = "SPANLET_PIDS")]
pub static PIDS: HashMap<u32, PidEntry> = HashMap::with_max_entries(MAX_PIDS, 0);

#[map(name = "SPANLET_WAITS")]
pub static WAITS: HashMap<u32, WaitState> = HashMap::with_max_entries(MAX_WAITS, 0);

#[map(name = "SPANLET_COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map(name = "SPANLET_LOCK_CALLS")]
pub static LOCK_CALLS: HashMap<u32, LockCall> = HashMap::with_max_entries(MAX_LOCK_CALLS, 0);

#[map(name = "SPANLET_HELD")]
pub static HELD: HashMap<HeldKey, HeldLock> = HashMap::with_max_entries(MAX_HELD, 0);
