//! Reading a task's saved user registers and fields of its task_struct at
//! offsets taken from the running kernel's BTF.
use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_user, bpf_task_pt_regs};

use super::config;

/// Syscall number and the six argument registers of a task in a syscall.
pub struct Syscall {
    /// `orig_ax`: the syscall number, or -1 outside a syscall.
    pub nr: u64,
    pub args: [u64; 6],
}

/// Reads the user registers saved on entry to the kernel. Only called with
/// a trusted task pointer (a tp_btf argument or the current task).
#[inline(always)]
pub fn syscall_of(task: *mut core::ffi::c_void) -> Option<Syscall> {
    let cfg = config::get();
    // SAFETY: bpf_task_pt_regs returns the BTF-typed pt_regs at the top of
    // the task's kernel stack.
    let regs = unsafe { bpf_task_pt_regs(task.cast()) } as *const u8;
    if regs.is_null() {
        return None;
    }
    // Direct loads: the offsets come from frozen `.rodata`, so the verifier
    // checks each against pt_regs in the kernel's BTF and makes it a
    // fault-tolerant load; no helper call per register.
    // SAFETY: see above; every offset is a pt_regs member of this kernel.
    let load = |off: u32| unsafe { core::ptr::read_volatile(regs.add(off as usize).cast::<u64>()) };
    // A 32-bit (ia32) task passes syscall arguments in other registers.
    if load(cfg.regs_cs_off) != agent_ebpf::kernel::USER_CS {
        return None;
    }
    Some(Syscall {
        nr: load(cfg.regs_orig_ax_off),
        args: [
            load(cfg.regs_arg_off[0]),
            load(cfg.regs_arg_off[1]),
            load(cfg.regs_arg_off[2]),
            load(cfg.regs_arg_off[3]),
            load(cfg.regs_arg_off[4]),
            load(cfg.regs_arg_off[5]),
        ],
    })
}

/// A value of kernel memory at any address (a probe read: a bad address
/// reads as None).
#[inline(always)]
pub fn read_kernel<T>(addr: u64) -> Option<T> {
    // SAFETY: probe reads tolerate any address.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

#[inline(always)]
pub fn read_kernel_u64(addr: u64) -> Option<u64> {
    read_kernel(addr)
}

#[inline(always)]
pub fn read_kernel_u32(addr: u64) -> Option<u32> {
    read_kernel(addr)
}

/// Reads a value of the current task's user memory without faulting pages in.
#[inline(always)]
pub fn read_user<T>(addr: u64) -> Option<T> {
    // SAFETY: probe reads tolerate any address.
    unsafe { bpf_probe_read_user(addr as *const T) }.ok()
}

/// A `u32` member of a trusted task pointer (a tp_btf argument or the
/// current task) by a direct load: the offset comes from frozen `.rodata`,
/// so the verifier checks it against the kernel's BTF and turns it into a
/// fault-tolerant load, cheaper than a probe-read helper call on the paths
/// every context switch takes.
#[inline(always)]
fn trusted_task_u32(task: *const u8, off: u32) -> u32 {
    // SAFETY: `task` is a BTF-typed task_struct pointer and `off` the offset
    // of one of its u32 members in this kernel's BTF; the verifier enforces
    // both.
    unsafe { core::ptr::read_volatile(task.add(off as usize).cast::<u32>()) }
}

/// A member of a BTF-typed kernel pointer (a trusted task, or a pointer
/// loaded from one this way), by a direct load: the verifier types the
/// result from the kernel's BTF, so pointers can be followed further
/// without a probe-read helper call per step. A null or bad pointer reads
/// as zero.
#[inline(always)]
pub fn btf_member<T>(base: *const u8, off: u32) -> T {
    // SAFETY: `base` is a BTF-typed kernel pointer and `off` the offset of
    // a member of type T in this kernel's BTF; the verifier checks both and
    // makes the load fault-tolerant.
    unsafe { core::ptr::read_volatile(base.add(off as usize).cast::<T>()) }
}

/// A `u64` member of a trusted task pointer, as [`trusted_task_u32`].
#[inline(always)]
fn trusted_task_u64(task: *const u8, off: u32) -> u64 {
    // SAFETY: as for `trusted_task_u32`, for a u64 member.
    unsafe { core::ptr::read_volatile(task.add(off as usize).cast::<u64>()) }
}

/// `task->thread.fsbase`: the thread pointer of a trusted task's user
/// space, where its TLS is.
#[inline(always)]
pub fn trusted_task_fsbase(task: *const u8) -> u64 {
    trusted_task_u64(task, config::get().task_fsbase_off)
}

/// `task->start_boottime` of a trusted task pointer: when its process
/// started (a thread that execs takes its leader's).
#[inline(always)]
pub fn trusted_task_start_boottime(task: *const u8) -> u64 {
    trusted_task_u64(task, config::get().task_start_boottime_off)
}

/// `task->pid` (the thread id) of a trusted task pointer.
#[inline(always)]
pub fn trusted_task_tid(task: *const u8) -> u32 {
    trusted_task_u32(task, config::get().task_pid_off)
}

/// `task->tgid` (the process id) of a trusted task pointer.
#[inline(always)]
pub fn trusted_task_tgid(task: *const u8) -> u32 {
    trusted_task_u32(task, config::get().task_tgid_off)
}

/// `task->comm` of a trusted task pointer, by two direct loads rather than
/// a `bpf_get_current_comm` call (which also only reads the current task).
#[inline(always)]
pub fn trusted_task_comm(task: *const u8) -> [u8; 16] {
    let off = config::get().task_comm_off as usize;
    // SAFETY: as for `trusted_task_u32`: `comm` is a `char[16]` member of
    // task_struct in this kernel's BTF, read in two in-bounds halves.
    let half = |at: usize| unsafe { core::ptr::read_volatile(task.add(off + at).cast::<u64>()) };
    let (lo, hi) = (half(0).to_ne_bytes(), half(8).to_ne_bytes());
    let mut comm = [0; 16];
    comm[..8].copy_from_slice(&lo);
    comm[8..].copy_from_slice(&hi);
    comm
}

/// Whether a trusted task is exiting (PF_EXITING).
#[inline(always)]
pub fn trusted_task_exiting(task: *const u8) -> bool {
    trusted_task_u32(task, config::get().task_flags_off) & agent_ebpf::kernel::PF_EXITING != 0
}

/// Whether the task's whole thread group has exited (`signal->live` is 0).
#[inline(always)]
pub fn task_group_dead(task: u64) -> bool {
    let cfg = config::get();
    read_kernel_u64(task + cfg.task_signal_off as u64)
        .filter(|&signal| signal != 0)
        .and_then(|signal| read_kernel_u32(signal + cfg.signal_live_off as u64))
        == Some(0)
}

/// Whether an unblocked signal is pending for the task, as
/// `signal_pending()` decides it: signal_wake_up() queues the signal before
/// it wakes the task, so a wake-up that finds one is the signal's. (x86_64
/// has one-word sigsets.)
#[inline(always)]
pub fn task_signal_pending(task: u64) -> bool {
    let cfg = config::get();
    let own = read_kernel_u64(task + cfg.task_pending_off as u64).unwrap_or(0);
    let blocked = read_kernel_u64(task + cfg.task_blocked_off as u64).unwrap_or(0);
    let shared = read_kernel_u64(task + cfg.task_signal_off as u64)
        .filter(|&signal| signal != 0)
        .and_then(|signal| read_kernel_u64(signal + cfg.signal_shared_pending_off as u64))
        .unwrap_or(0);
    (own | shared) & !blocked != 0
}
