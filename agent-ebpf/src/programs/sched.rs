//! Scheduler hook points: the only programs on the hot path of every
//! context switch, so each returns as early as it can.
use agent_ebpf::{EventHeader, EventKind, FileKey, ProcessExecEvent};
use aya_ebpf::{
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use super::{
    config, filter, futex,
    maps::{EVENTS, THREAD_CTX, THREAD_CTX_BY_FILE},
    rare::{counted, debug},
    regs,
};

/// tp_btf/sched_switch(bool preempt, struct task_struct *prev,
/// struct task_struct *next, unsigned int prev_state): runs on the CPU
/// switching, with `prev` still current. A futex wait sleeps in
/// TASK_INTERRUPTIBLE and is not a preemption; other sleeps inside a futex
/// call (page faults, stops, a dying task's last switch) are not waits.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> u32 {
    try_sched_switch(&ctx);
    0
}

#[inline(always)]
fn try_sched_switch(ctx: &BtfTracePointContext) {
    let preempt: u64 = ctx.arg(0);
    let prev: *mut core::ffi::c_void = ctx.arg(1);
    let next: *mut core::ffi::c_void = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    let mut clock = futex::Now::UNREAD;
    if preempt & 0xff == 0 && prev_state as u32 & agent_ebpf::kernel::TASK_INTERRUPTIBLE != 0 {
        futex::on_block(prev, &mut clock);
    }
    futex::on_run(next, &mut clock);
}

/// tp_btf/sched_waking(struct task_struct *p): runs in the waker's context
/// (the futex_wake caller, a signal sender, or a timer interrupt).
#[btf_tracepoint(function = "sched_waking")]
pub fn sched_waking(ctx: BtfTracePointContext) -> u32 {
    let task: *mut core::ffi::c_void = ctx.arg(0);
    futex::on_waking(task);
    0
}

/// tp_btf/sched_process_fork(struct task_struct *parent, struct task_struct
/// *child): a traced process's new processes are traced too, when asked,
/// and (also with `trace_all`) inherit its thread-context slot.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> u32 {
    try_sched_process_fork(&ctx);
    0
}

#[inline(always)]
fn try_sched_process_fork(ctx: &BtfTracePointContext) {
    let cfg = config::get();
    let parent: *const u8 = ctx.arg(0);
    let child: *const u8 = ctx.arg(1);
    let parent_tgid = regs::trusted_task_tgid(parent);
    let (child_tid, child_tgid) = (
        regs::trusted_task_tid(child),
        regs::trusted_task_tgid(child),
    );
    // A new thread shares its parent's tgid and is already covered.
    if child_tid != child_tgid {
        return;
    }
    // With `trace_all` every child is traced without joining the set.
    if cfg.trace_all == 0 {
        if cfg.follow_forks == 0 || !filter::followed(parent_tgid) {
            return;
        }
        if !filter::add_forked(child_tgid) {
            counted!(
                agent_ebpf::Counter::PidsFull,
                "PID set full: a forked process not followed ({} so far on CPU {})"
            );
            return;
        }
    }
    // Same program until it calls exec, so the same thread-context slot.
    // SAFETY: a pointer into a map value, valid for this program run.
    if let Some(tp_offset) = THREAD_CTX.get_ptr(parent_tgid).map(|v| unsafe { *v }) {
        let _ = THREAD_CTX.insert(child_tgid, tp_offset, 0);
    }
}

/// tp_btf/sched_process_exec(struct task_struct *p, pid_t old_pid, struct
/// linux_binprm *bprm): a traced process now runs another program. Its old
/// thread-context slot means nothing any more. If the agent already knows
/// the new program's slot (it looked at the file, e.g. the command it is
/// launching), the process gets it here, before its first instruction;
/// either way user space is told, to look at programs it does not know.
/// With `report_all_execs`, untraced processes' execs are reported too, for
/// the agent to match against its selection (exec is rare: a few per
/// second on a busy node).
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> u32 {
    try_sched_process_exec(&ctx);
    0
}

/// The identity of the file being executed: `bprm->file->f_inode`'s inode
/// number and its superblock's device (probe reads: exec is rare).
#[inline(always)]
fn exec_file(bprm: u64) -> Option<FileKey> {
    let cfg = config::get();
    let file = regs::read_kernel_u64(bprm + u64::from(cfg.binprm_file_off)).filter(|&p| p != 0)?;
    let inode = regs::read_kernel_u64(file + u64::from(cfg.file_inode_off)).filter(|&p| p != 0)?;
    let ino = regs::read_kernel_u64(inode + u64::from(cfg.inode_ino_off))?;
    let sb = regs::read_kernel_u64(inode + u64::from(cfg.inode_sb_off)).filter(|&p| p != 0)?;
    let dev = regs::read_kernel_u32(sb + u64::from(cfg.sb_dev_off))?;
    Some(FileKey { ino, dev, _pad: 0 })
}

#[inline(always)]
fn try_sched_process_exec(ctx: &BtfTracePointContext) {
    let task: *const u8 = ctx.arg(0);
    let tgid = regs::trusted_task_tgid(task);
    if filter::traced(tgid) {
        let _ = THREAD_CTX.remove(tgid);
        let bprm: *const u8 = ctx.arg(2);
        match exec_file(bprm as u64) {
            Some(key) => {
                // SAFETY: a pointer into a map value, valid for this program run.
                if let Some(tp_offset) = THREAD_CTX_BY_FILE.get_ptr(key).map(|v| unsafe { *v }) {
                    let _ = THREAD_CTX.insert(tgid, tp_offset, 0);
                }
            }
            // An unexpected state: the offsets read from BTF led nowhere.
            // The new program's thread-context slot cannot be looked up.
            None => debug!("exec of traced process {}: its file is unreadable", tgid),
        }
    } else if config::get().report_all_execs == 0 {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<ProcessExecEvent>(0) else {
        counted!(
            agent_ebpf::Counter::RingbufFull,
            "event ring full: an event lost ({} so far on CPU {})"
        );
        return;
    };
    entry.write(ProcessExecEvent {
        header: EventHeader {
            kind: EventKind::ProcessExec as u32,
            // SAFETY: plain helper calls.
            cpu: unsafe { bpf_get_smp_processor_id() },
            ts_ns: unsafe { bpf_ktime_get_ns() },
            pid: tgid,
            tid: regs::trusted_task_tid(task),
        },
        start_boottime_ns: regs::trusted_task_start_boottime(task),
    });
    // Rare and wanted promptly: wake the reader now.
    entry.submit(0);
}

/// tp_btf/sched_process_exit(struct task_struct *p, ...): in do_exit, after
/// `signal->live` was decremented. The exiting thread's open wait (it was
/// killed out of it) is dropped, and a finished process leaves the PID set,
/// so the bounded maps do not fill with the dead.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> u32 {
    let task: *mut core::ffi::c_void = ctx.arg(0);
    futex::on_exit(task);
    let _ = super::maps::LOCK_CALLS.remove(regs::trusted_task_tid(task.cast()));
    let tgid = regs::trusted_task_tgid(task.cast());
    if regs::task_group_dead(task as u64) {
        // Whatever the hint says (see `filter::remove`): one lookup per
        // process exit, not per thread or switch.
        filter::remove(tgid);
        // Whether or not the process was in the set (with `trace_all` it
        // is not): a later process reusing the tgid must not inherit it.
        let _ = THREAD_CTX.remove(tgid);
    }
    0
}
