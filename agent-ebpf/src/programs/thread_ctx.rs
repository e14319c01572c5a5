//! The OpenTelemetry span context of the current thread, read from its
//! OTEP 4947 thread-context record at the moment of a wait or a wake-up.
//! The OTEP requires readers to read a thread's record only while that
//! thread is stopped or interrupted: a sleeping waiter's own sched_switch
//! and a waker inside its futex syscall both are.
use agent_ebpf::{ThreadCtx, ThreadCtxRecordHead, ctx_source};

use super::{
    config,
    maps::{OBI_CTX, THREAD_CTX, THREAD_CTX_ANY},
    regs,
};

/// The context of `task`, which must be the current task (its user memory
/// is the one the probe reads see), in process `tgid`: its OTEP 4947 record
/// if it has a valid one, else its entry in OBI's map (when the agent found
/// OBI's), else zeros.
#[inline(always)]
pub fn of_current(task: *const u8, tgid: u32) -> ThreadCtx {
    let ctx = otep_4947(task, tgid);
    if ctx.source != ctx_source::NONE || config::get().obi_ctx == 0 {
        return ctx;
    }
    obi(task, tgid).unwrap_or(ctx)
}

/// OBI's entry for the thread, keyed by pid_tgid.
#[inline(always)]
fn obi(task: *const u8, tgid: u32) -> Option<ThreadCtx> {
    let key = (u64::from(tgid) << 32) | u64::from(regs::trusted_task_tid(task));
    // SAFETY: a pointer into a map value, valid for this program run.
    let value = unsafe { *OBI_CTX.get_ptr(key)? };
    (value.trace_id != [0; 16]).then_some(ThreadCtx {
        trace_id: value.trace_id,
        span_id: value.span_id,
        trace_flags: 0,
        source: ctx_source::OBI,
        _pad: [0; 6],
    })
}

/// The thread's OTEP 4947 record, if its process publishes one.
#[inline(always)]
fn otep_4947(task: *const u8, tgid: u32) -> ThreadCtx {
    let mut ctx = ThreadCtx::default();
    // Most traced programs publish no context: an inlined array load spares
    // them the hash lookup, twice per wait.
    if THREAD_CTX_ANY.get(0).is_none_or(|any| *any == 0) {
        return ctx;
    }
    // SAFETY: a pointer into a map value, valid for this program run.
    let Some(tp_offset) = THREAD_CTX.get_ptr(tgid).map(|v| unsafe { *v }) else {
        return ctx;
    };
    let fsbase = regs::trusted_task_fsbase(task);
    if fsbase == 0 {
        return ctx;
    }
    let Some(record) = regs::read_user::<u64>(fsbase.wrapping_add(tp_offset as u64)) else {
        return ctx;
    };
    if record == 0 {
        return ctx;
    }
    let Some(head) = regs::read_user::<ThreadCtxRecordHead>(record) else {
        return ctx;
    };
    if head.valid == 1 {
        ctx.trace_id = head.trace_id;
        ctx.span_id = head.span_id;
        ctx.trace_flags = head.trace_flags;
        ctx.source = ctx_source::OTEP_4947;
    }
    ctx
}
