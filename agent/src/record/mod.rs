//! `spanlet record`: trace processes (given by PID, or launched) until a
//! duration ends, Ctrl-C, or they exit, writing spanlets to a capture file
//! and handing them to a live consumer.
//!
//! [`Recorder::new`] checks what can be checked before anything starts;
//! [`Recorder::run`] loads the programs (`start.rs`), runs the event loop
//! (`event_loop.rs`) and stops (`stop.rs`). What the layers above add comes
//! in through [`RecordHooks`], [`Progress`] and [`LiveConsumer`].

pub mod enrich;
mod event_loop;
mod hooks;
mod launch;
mod live;
mod options;
mod recorder;
mod recording;
mod seen;
mod sink;
mod start;
mod stop;

pub use hooks::{ExecSeen, LoopFigures, NoHooks, Progress, RecordHooks};
pub use live::{LiveConsumer, LiveItem, LiveSummary};
pub use options::{RecordError, RecordOptions, RecordSummary};
pub use recorder::Recorder;
