//! Self-observability of the node agent (`spanlet run` as a DaemonSet):
//! liveness and readiness for Kubernetes, its own figures for Prometheus,
//! and the same figures as OTLP metrics.
//!
//! The agent's loop fills a [`Snapshot`] and calls [`State::publish`],
//! [`State::beat`] and [`State::set_ready`]; [`serve`] and
//! [`export_periodically`] read from the same [`State`].
pub mod connections;
pub mod otlp;
pub mod prometheus;
pub mod server;
pub mod snapshot;
pub mod table;

pub use otlp::{AgentMetrics, MetricsExport, agent_resource, export_periodically};
pub use server::{State, serve};
pub use snapshot::{DROP_CAUSES, Snapshot};
