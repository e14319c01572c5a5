//! Contention report: which resources made threads wait, for how long, and
//! which threads were holding or releasing them.

mod build;
mod json;
mod percentile;
mod text;
mod types;

pub use build::build_report;
pub use json::render_json;
pub use percentile::percentile;
pub use text::{format_duration_ns, render_text};
pub use types::{
    HoldStats, Outcomes, Report, ResourceReport, StatsReport, TOP_THREADS, ThreadStat,
};
