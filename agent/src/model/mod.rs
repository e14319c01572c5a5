//! The user-space model: what a spanlet is, and what a run knows about
//! itself (its metadata, processes, threads and counters). Everything above
//! (capture, analysis, output) reads these types; nothing here reads the
//! kernel or the host.
mod names;
mod run;
mod spanlet;

pub use names::Names;
pub use run::{CaptureEnd, CaptureMeta, CaptureStats, KernelCounters, ProcessInfo, ThreadInfo};
pub use spanlet::{
    SocketInfo, SpanContext, Spanlet, SpanletKind, WaitOutcome, kernel_lock_type, socket_op,
};
