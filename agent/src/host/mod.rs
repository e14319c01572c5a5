//! Facts about the machine the agent runs on, read from /proc: processes,
//! threads, their cgroups, the kernel's release. No policy here, and no
//! Kubernetes: the node agent decides what these facts mean.
pub mod cgroup_ids;
pub mod procfs;
