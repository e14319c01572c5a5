//! The kernel side of the agent: loading and attaching the eBPF programs,
//! the kernel's BTF offsets, capabilities, reading and decoding the event
//! ring, task storage, the clock, and finding where programs keep their
//! trace context.
pub mod btf;
pub mod caps;
pub mod clock;
pub mod ctx_slots;
pub mod decode;
pub mod ebpf_object;
pub mod features;
pub mod kernel_config;
pub mod kernel_log;
pub mod loader;
pub mod probes;
pub mod ring_fill;
pub mod ring_reader;
pub mod task_storage;
pub mod thread_ctx;
