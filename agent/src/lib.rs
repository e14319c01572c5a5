//! spanlet: an eBPF resource-contention tracer.
//!
//! The binary (`src/main.rs`) parses the command line and calls into the
//! modules here; integration tests use the same library.

pub mod btf;
pub mod caps;
pub mod capture;
pub mod cgroup;
pub mod cli;
pub mod clock;
pub mod decode;
pub mod ebpf_object;
pub mod enrich;
pub mod error_text;
pub mod export;
pub mod k8s;
pub mod kernel_config;
pub mod loader;
pub mod logging;
pub mod node;
pub mod observe;
pub mod otlp;
pub mod probes;
pub mod procfs;
pub mod record;
pub mod report;
pub mod ring_fill;
pub mod ring_reader;
pub mod run_config;
pub mod spanlet;
pub mod targets;
pub mod task_storage;
pub mod term_escape;
pub mod thread_ctx;
