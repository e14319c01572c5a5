//! One module per subsystem; `sched` holds the entry points that the
//! scheduler tracepoints call, `futex` the wait logic they drive.
//!
//! A program's name is its function's: each is one of
//! `agent_ebpf::programs`, which user space attaches by (the attribute
//! macros take no name, so a test of the agent checks the built object).
mod config;
mod counters;
mod filter;
mod futex;
mod kernel_lock;
mod maps;
mod mutex_uprobe;
mod open_waits;
mod rare;
mod regs;
mod sched;
mod socket;
mod task_storage;
mod thread_ctx;
mod timer;
