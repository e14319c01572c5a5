//! Which processes `spanlet run` traces, and keeping the kernel's PID set in
//! step with that as processes start and exit, pods come and go, and the
//! selection is reloaded.
//!
//! Kinds of selector add up: a process is traced if its PID is given, or
//! it is in a given cgroup (or below), or in a given container, or in a pod
//! on this node that the Kubernetes selectors match (namespace and labels
//! must then all match). `--all` traces every process but the agent.
use std::collections::HashMap;

use agent_ebpf::PID_REASON_USER;

use crate::{
    host::procfs,
    kernel::loader::Tracer,
    node::cgroup::{CgroupError, CgroupSel},
    node::k8s::{PodCache, PodMeta},
    node::selection::SelectionSpec,
};

#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error(
        "nothing to trace: give --all, --pid, --cgroup, --container-id, --k8s-namespace or --k8s-pod-label (or the same in the config file)"
    )]
    Empty,
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("container id {0:?}: give at least 4 hex digits of it (e.g. the 12 docker ps shows)")]
    ContainerId(String),
    #[error("pod label {0:?} is not key=value")]
    Label(String),
    #[error(
        "--k8s-namespace and --k8s-pod-label need the Kubernetes API: run in a cluster (in-cluster service account) with --node-name or SPANLET_NODE_NAME set"
    )]
    NoCluster,
}

/// A checked selection.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub all: bool,
    pub pids: Vec<u32>,
    pub cgroups: Vec<CgroupSel>,
    /// Lower-case hex prefixes.
    pub container_ids: Vec<String>,
    pub k8s_namespaces: Vec<String>,
    pub k8s_pod_labels: Vec<(String, String)>,
}

impl Selection {
    /// Checks a spec: cgroups exist, ids and labels are well formed, and
    /// Kubernetes selectors have a cluster to ask (`in_cluster`).
    pub fn resolve(spec: &SelectionSpec, in_cluster: bool) -> Result<Self, SelectionError> {
        if spec.is_empty() {
            return Err(SelectionError::Empty);
        }
        let cgroups = spec
            .cgroups
            .iter()
            .map(|c| CgroupSel::resolve(c))
            .collect::<Result<_, _>>()?;
        let container_ids = spec
            .container_ids
            .iter()
            .map(|id| {
                let id = id.trim();
                // `docker inspect` and crictl print ids with a runtime prefix.
                let id = id.rsplit_once("://").map_or(id, |(_, bare)| bare);
                if id.len() >= 4 && id.chars().all(|c| c.is_ascii_hexdigit()) {
                    Ok(id.to_ascii_lowercase())
                } else {
                    Err(SelectionError::ContainerId(id.to_owned()))
                }
            })
            .collect::<Result<_, _>>()?;
        let k8s_pod_labels = spec
            .k8s_pod_labels
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
                _ => Err(SelectionError::Label(l.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let selection = Self {
            all: spec.all,
            pids: spec.pids.clone(),
            cgroups,
            container_ids,
            k8s_namespaces: spec.k8s_namespaces.clone(),
            k8s_pod_labels,
        };
        if selection.uses_k8s() && !in_cluster {
            return Err(SelectionError::NoCluster);
        }
        Ok(selection)
    }

    fn uses_k8s(&self) -> bool {
        !self.k8s_namespaces.is_empty() || !self.k8s_pod_labels.is_empty()
    }

    /// Whether processes are taken as they start (anything but `--pid`
    /// alone): the kernel then reports every exec.
    pub fn is_dynamic(&self) -> bool {
        !self.cgroups.is_empty() || !self.container_ids.is_empty() || self.uses_k8s()
    }

    fn pod_matches(&self, pod: &PodMeta) -> bool {
        (self.k8s_namespaces.is_empty() || self.k8s_namespaces.contains(&pod.namespace))
            && self
                .k8s_pod_labels
                .iter()
                .all(|(k, v)| pod.labels.get(k) == Some(v))
    }

    /// Whether the process is selected by cgroup, container or pod (not
    /// counting `all` and `--pid`, see [`Targets::wants`]).
    fn matches(&self, pid: u32, pods: Option<&PodCache>) -> bool {
        if !self.is_dynamic() {
            return false;
        }
        let lines = procfs::cgroups(pid);
        if self.cgroups.iter().any(|c| c.contains(&lines)) {
            return true;
        }
        let (container, pod_uid) = procfs::container_and_pod(&lines);
        if let Some(id) = &container
            && self
                .container_ids
                .iter()
                .any(|p| id.starts_with(p.as_str()))
        {
            return true;
        }
        let Some(pods) = pods.filter(|_| self.uses_k8s()) else {
            return false;
        };
        pods.lookup(container.as_deref(), pod_uid.as_deref())
            .is_some_and(|(pod, _)| self.pod_matches(&pod))
    }
}

/// The selection at work: which processes the agent put in the kernel's
/// PID set.
///
/// Membership is exact: a process is added only while it is alive and is
/// the process that was selected (its start time still matches), and
/// leaves when it exits. The kernel's exit hook removes it; one that
/// exited before it was inserted (the hook found nothing to remove) is
/// taken out again at once, as `PF_EXITING` is set before that hook runs;
/// the periodic rescan sweeps out whatever else is dead, reused or no
/// longer selected.
pub struct Targets {
    selection: Selection,
    pods: Option<PodCache>,
    /// The processes `--pid` named, by their start times when the selection
    /// was applied: a later process on the same PID is not the one given.
    given: HashMap<u32, u64>,
    /// Processes this put in the set, with their start times (clock
    /// ticks): a PID names a process only as long as it lives.
    added: HashMap<u32, u64>,
    /// Selected processes that could not join the set (it was full).
    failed_adds: u64,
    own_pid: u32,
}

impl Targets {
    pub fn new(selection: Selection, pods: Option<PodCache>) -> Self {
        Self {
            given: given_processes(&selection.pids),
            selection,
            pods,
            added: HashMap::new(),
            failed_adds: 0,
            own_pid: std::process::id(),
        }
    }

    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Whether the process `pid` that started at `start` (clock ticks)
    /// should be traced (never the agent itself).
    pub fn wants(&self, pid: u32, start: u64) -> bool {
        pid != self.own_pid
            && (self.given.get(&pid) == Some(&start)
                || self.selection.matches(pid, self.pods.as_ref()))
    }

    /// The selected processes alive now, with their start times, for the
    /// initial PID set. A zombie is not alive: its exit was already seen.
    pub fn scan(&self) -> Vec<(u32, u64)> {
        procfs::all_pids()
            .into_iter()
            .filter_map(|pid| {
                let start = procfs::live_start(pid)?;
                self.wants(pid, start).then_some((pid, start))
            })
            .collect()
    }

    /// Puts the process that started at `start` in the set, if it is still
    /// that process and alive once inserted. A full set (more selected
    /// processes than it holds) is counted and logged, not fatal: the agent
    /// traces what fits and keeps running.
    fn add(&mut self, pid: u32, start: u64, tracer: &mut Tracer) -> bool {
        if let Err(err) = tracer.join_pid(pid) {
            self.failed_adds += 1;
            if self.failed_adds.is_power_of_two() {
                tracing::warn!(pid, %err, failed = self.failed_adds, "a selected process is not traced");
            }
            return false;
        }
        // Checked after the insertion: a process alive now (not even
        // exiting) has yet to pass the kernel's exit hook, which will
        // remove it; one that is gone, or exiting, or whose PID now names
        // another process, may have passed it already.
        if procfs::live_start(pid) != Some(start) {
            tracing::debug!(pid, "exited before it joined the PID set");
            tracer.remove_pid(pid);
            return false;
        }
        self.added.insert(pid, start);
        tracer.track_thread_ctx(pid);
        true
    }

    /// Adds a process the kernel saw exec, if it is still that process
    /// (`start_boottime_ns` from the kernel), alive, selected, and not
    /// traced yet; true when added.
    pub fn on_exec(&mut self, pid: u32, start_boottime_ns: u64, tracer: &mut Tracer) -> bool {
        if tracer.has_pid(pid) {
            return false;
        }
        let Some(start) = procfs::live_start(pid) else {
            return false;
        };
        if start != procfs::boottime_ns_to_ticks(start_boottime_ns) {
            tracing::debug!(
                pid,
                "the PID names another process than the one that exec'd"
            );
            return false;
        }
        self.wants(pid, start) && self.add(pid, start, tracer)
    }

    /// Notes processes put in the set at load (from [`Self::scan`]).
    pub fn note_added(&mut self, pids: &[(u32, u64)]) {
        self.added.extend(pids.iter().copied());
    }

    /// Brings the PID set in line with the selection: removes every member
    /// that is dead, whose PID names another process than the one added,
    /// or that is no longer selected (the kernel's followed forks
    /// included), then adds selected processes not traced yet (returned).
    pub fn rescan(&mut self, tracer: &mut Tracer) -> Vec<u32> {
        let members = tracer.members();
        // A PID the kernel no longer holds as added here (it exited, or was
        // reused by a followed fork) is no longer ours to compare.
        self.added
            .retain(|pid, _| members.contains(&(*pid, PID_REASON_USER)));
        for (pid, _) in members {
            let start = procfs::live_start(pid);
            let keep = match (start, self.added.get(&pid)) {
                (None, _) => false,
                (Some(now), Some(&then)) => now == then && self.wants(pid, now),
                (Some(now), None) => self.wants(pid, now),
            };
            if !keep {
                tracing::debug!(pid, alive = start.is_some(), "leaves the PID set");
                tracer.remove_pid(pid);
                self.added.remove(&pid);
            }
        }
        let mut new = Vec::new();
        for (pid, start) in self.scan() {
            if !tracer.has_pid(pid) && self.add(pid, start, tracer) {
                new.push(pid);
            }
        }
        new
    }

    /// A new selection (a reload): applied at once by [`Self::rescan`].
    pub fn replace(&mut self, selection: Selection, tracer: &mut Tracer) -> Vec<u32> {
        self.given = given_processes(&selection.pids);
        self.selection = selection;
        self.rescan(tracer)
    }

    /// Selected processes that could not join the PID set.
    pub fn failed_adds(&self) -> u64 {
        self.failed_adds
    }
}

/// The processes `--pid` names now (a thread's id names its process), by
/// their start times; ones not running are left out.
fn given_processes(pids: &[u32]) -> HashMap<u32, u64> {
    pids.iter()
        .filter_map(|&pid| {
            let tgid = procfs::tgid_of(pid).unwrap_or(pid);
            Some((tgid, procfs::live_start(tgid)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_pid_names_the_process_running_when_the_selection_was_applied() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = procfs::live_start(pid).expect("the child is alive");
        let selection = Selection {
            pids: vec![pid],
            ..Selection::default()
        };
        let targets = Targets::new(selection, None);
        assert!(targets.wants(pid, start));
        // Another process on the same PID later (a later start time).
        assert!(!targets.wants(pid, start + 1));
        assert!(!targets.wants(pid + 1, start));
        assert!(!targets.wants(std::process::id(), start));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
