//! What `spanlet run` is asked to trace: the one declaration of the
//! selection flags, their `SPANLET_*` variables and the config file's keys
//! (the same names with `_` for `-`). Checking it is `targets::Selection`'s
//! job.
use clap::Args;

/// What to trace, as given (flags, environment, config file).
#[derive(Args, Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectionSpec {
    /// Trace every process on the node (but spanlet itself).
    #[arg(long, env = "SPANLET_ALL")]
    pub all: bool,
    /// Trace this process (all its threads); repeat or comma-separate.
    #[arg(
        short,
        long = "pid",
        value_name = "PID",
        env = "SPANLET_PIDS",
        value_delimiter = ','
    )]
    pub pids: Vec<u32>,
    /// Trace the processes in this cgroup and below it, including ones that
    /// start later: a directory under a cgroup mount
    /// (/sys/fs/cgroup/system.slice/x.service) or a path as /proc/PID/cgroup
    /// shows it. Repeat or comma-separate.
    #[arg(
        long = "cgroup",
        value_name = "PATH",
        env = "SPANLET_CGROUPS",
        value_delimiter = ','
    )]
    pub cgroups: Vec<String>,
    /// Trace the processes of this container (its id or a prefix of it, as
    /// in the cgroup path; at least 4 hex digits). Repeat or comma-separate.
    #[arg(
        long = "container-id",
        value_name = "ID",
        env = "SPANLET_CONTAINER_IDS",
        value_delimiter = ','
    )]
    pub container_ids: Vec<String>,
    /// Trace the pods of this namespace on this node (needs the Kubernetes
    /// API). Repeat or comma-separate.
    #[arg(
        long = "k8s-namespace",
        value_name = "NS",
        env = "SPANLET_K8S_NAMESPACES",
        value_delimiter = ','
    )]
    pub k8s_namespaces: Vec<String>,
    /// Trace the pods on this node with this label; with several labels
    /// (and namespaces), a pod must match all labels and one namespace.
    #[arg(
        long = "k8s-pod-label",
        value_name = "KEY=VALUE",
        env = "SPANLET_K8S_POD_LABELS",
        value_delimiter = ','
    )]
    pub k8s_pod_labels: Vec<String>,
}

impl SelectionSpec {
    /// Both selections: selectors add up.
    pub fn union(&self, other: &Self) -> Self {
        let cat = |a: &[String], b: &[String]| -> Vec<String> {
            let mut v = a.to_vec();
            v.extend(b.iter().filter(|x| !a.contains(x)).cloned());
            v
        };
        let mut pids = self.pids.clone();
        pids.extend(other.pids.iter().filter(|p| !self.pids.contains(p)));
        Self {
            all: self.all || other.all,
            pids,
            cgroups: cat(&self.cgroups, &other.cgroups),
            container_ids: cat(&self.container_ids, &other.container_ids),
            k8s_namespaces: cat(&self.k8s_namespaces, &other.k8s_namespaces),
            k8s_pod_labels: cat(&self.k8s_pod_labels, &other.k8s_pod_labels),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
