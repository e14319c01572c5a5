//! One module per subsystem; `sched` holds the entry points that the
//! scheduler tracepoints call, `futex` the wait logic they drive.
mod config;
mod counters;
mod filter;
mod futex;
mod kernel_lock;
mod maps;
mod mutex_uprobe;
mod open_waits;
mod regs;
mod sched;
mod socket;
mod task_storage;
mod thread_ctx;
mod timer;
