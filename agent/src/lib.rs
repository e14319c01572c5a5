//! spanlet: an eBPF resource-contention tracer.
//!
//! The binary (`src/main.rs`) parses the command line and calls into the
//! modules here; integration tests use the same library. Data flows one
//! way, and no module imports one above it:
//! `kernel` → `record` → `model`/`capture` → `analysis`/`symbols` →
//! `output`, with `node` (the node agent) on top; `host` holds facts about
//! the machine that any layer may read.

pub mod analysis;
pub mod capture;
pub mod cli;
pub mod error_text;
pub mod host;
pub mod kernel;
pub mod logging;
pub mod model;
pub mod node;
pub mod output;
pub mod record;
pub mod symbols;
