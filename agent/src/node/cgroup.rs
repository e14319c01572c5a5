//! `--cgroup PATH`: which cgroup hierarchy and path a user's argument names,
//! and whether a process's /proc/PID/cgroup lines fall under it.
use std::{
    fs,
    path::{Path, PathBuf},
};

/// A cgroup to trace, with everything below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupSel {
    /// As given, for messages.
    pub given: String,
    /// Which line of /proc/PID/cgroup to compare: `None` for cgroup v2 (the
    /// `0::` line), else a v1 controller or `name=` of that hierarchy.
    pub controller: Option<String>,
    /// The path as /proc/PID/cgroup writes it, e.g. `/kubepods.slice/x`;
    /// with `ns_base`, relative to the cgroup v2 mount's root instead.
    pub path: String,
    /// When the agent runs in a cgroup namespace of its own (a pod's, on
    /// cgroup v2), /proc/PID/cgroup shows other processes' cgroups relative
    /// to the agent's (`/../../kubepods.slice/…`): this is the agent's own
    /// cgroup relative to the mount's root, against which they are resolved.
    pub ns_base: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no such cgroup: {0} (give a directory under a cgroup mount, e.g. /sys/fs/cgroup/system.slice/x.service, or a path as /proc/PID/cgroup shows it)"
    )]
    NotFound(String),
    #[error("cannot read /proc/self/mountinfo")]
    Mountinfo(#[source] std::io::Error),
}

/// A cgroup file system mount: where, which hierarchy, and which cgroup of
/// that hierarchy its root is (not `/` inside a cgroup namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    root: String,
    controller: Option<String>,
}

fn unescape(field: &str) -> String {
    // mountinfo writes space, tab, newline and backslash as octal escapes.
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let _source = right.next()?;
            let options = right.next().unwrap_or("");
            let (root, point) = (left.get(3)?, left.get(4)?);
            let controller = match fstype {
                "cgroup2" => None,
                "cgroup" => Some(
                    options
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains("xattr"))
                        .filter(|o| {
                            !matches!(*o, "noprefix" | "clone_children" | "cpuset_v2_mode")
                                && !o.starts_with("release_agent=")
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                _ => return None,
            };
            Some(Mount {
                point: PathBuf::from(unescape(point)),
                root: unescape(root),
                controller,
            })
        })
        .collect()
}

/// `root` + `rest`, as a cgroup path starting with `/`.
fn join(root: &str, rest: &Path) -> String {
    let mut path = root.trim_end_matches('/').to_owned();
    for part in rest.components() {
        if let std::path::Component::Normal(p) = part {
            path.push('/');
            path.push_str(&p.to_string_lossy());
        }
    }
    if path.is_empty() {
        "/".to_owned()
    } else {
        path
    }
}

impl CgroupSel {
    /// Resolves a `--cgroup` argument against this host's cgroup mounts.
    pub fn resolve(given: &str) -> Result<Self, CgroupError> {
        let mountinfo =
            fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::Mountinfo)?;
        Self::resolve_in(given, &parse_mounts(&mountinfo), |p| p.is_dir())
    }

    fn resolve_in(
        given: &str,
        mounts: &[Mount],
        is_dir: impl Fn(&Path) -> bool,
    ) -> Result<Self, CgroupError> {
        let not_found = || CgroupError::NotFound(given.to_owned());
        let path = Path::new(given);
        // A directory under a cgroup mount: the deepest mount containing it.
        let under_mount = mounts
            .iter()
            .filter_map(|m| Some((m, path.strip_prefix(&m.point).ok()?)))
            .max_by_key(|(m, _)| m.point.components().count());
        if let Some((mount, rest)) = under_mount {
            if !is_dir(path) {
                return Err(not_found());
            }
            // A mount whose root lies above the agent's cgroup namespace.
            let ns_base = match (&mount.controller, mount.root.starts_with("/..")) {
                (None, true) => Some(own_cgroup_under(&mount.point).ok_or_else(not_found)?),
                _ => None,
            };
            return Ok(Self {
                given: given.to_owned(),
                controller: mount.controller.clone(),
                path: match ns_base {
                    Some(_) => join("", rest),
                    None => join(&mount.root, rest),
                },
                ns_base,
            });
        }
        // Else a cgroup v2 path as /proc/PID/cgroup shows it.
        let v2 = mounts
            .iter()
            .find(|m| m.controller.is_none())
            .ok_or_else(not_found)?;
        if !given.starts_with('/') {
            return Err(not_found());
        }
        let rel = Path::new(given.trim_start_matches('/'));
        let root_rel = Path::new(v2.root.trim_start_matches('/'));
        let on_disk = match rel.strip_prefix(root_rel) {
            Ok(rest) => v2.point.join(rest),
            Err(_) => return Err(not_found()),
        };
        if !is_dir(&on_disk) {
            return Err(not_found());
        }
        Ok(Self {
            given: given.to_owned(),
            controller: None,
            path: join("", rel),
            ns_base: None,
        })
    }

    /// Whether a process with these /proc/PID/cgroup lines (hierarchy id,
    /// controllers, path) is in this cgroup or below it.
    pub fn contains(&self, lines: &[(String, String, String)]) -> bool {
        lines.iter().any(|(id, controllers, path)| {
            let same_hierarchy = match &self.controller {
                None => id == "0",
                Some(c) => controllers == c,
            };
            same_hierarchy
                && match &self.ns_base {
                    Some(base) => under(&resolve(base, path), &self.path),
                    None => under(path, &self.path),
                }
        })
    }
}

/// `path` (which may climb with `..`) taken from `base`, as a plain path.
fn resolve(base: &str, path: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The agent's own cgroup as a path below the mount at `point`: the
/// directory whose `cgroup.procs` lists the agent (a bounded walk, once
/// per `--cgroup` at start or reload).
fn own_cgroup_under(point: &Path) -> Option<String> {
    const MAX_DIRS: usize = 200_000;
    let own = std::process::id().to_string();
    let mut queue = std::collections::VecDeque::from([point.to_path_buf()]);
    let mut seen = 0;
    while let Some(dir) = queue.pop_front() {
        seen += 1;
        if seen > MAX_DIRS {
            return None;
        }
        if fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| p.lines().any(|l| l == own)) {
            let rest = dir.strip_prefix(point).ok()?;
            return Some(join("", rest));
        }
        if let Ok(entries) = fs::read_dir(&dir) {
            queue.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    None
}

/// Whether cgroup `path` is `dir` or below it.
fn under(path: &str, dir: &str) -> bool {
    if dir == "/" {
        return true;
    }
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
36 31 0:33 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const V2_IN_NS: &str = "\
30 22 0:26 /kubepods.slice/pod1 /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw,nsdelegate
";

    fn lines(v: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        v.iter()
            .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
            .collect()
    }

    #[test]
    fn resolves_mount_paths_on_a_hybrid_host() {
        let mounts = parse_mounts(HYBRID);
        assert_eq!(mounts.len(), 3, "{mounts:?}");
        let v2 = CgroupSel::resolve_in("/sys/fs/cgroup/unified/app/x", &mounts, |_| true).unwrap();
        assert_eq!(
            (v2.controller.as_deref(), v2.path.as_str()),
            (None, "/app/x")
        );
        let mem =
            CgroupSel::resolve_in("/sys/fs/cgroup/memory/kubepods/", &mounts, |_| true).unwrap();
        assert_eq!(mem.controller.as_deref(), Some("memory"));
        assert_eq!(mem.path, "/kubepods");
        let sd = CgroupSel::resolve_in("/sys/fs/cgroup/systemd", &mounts, |_| true).unwrap();
        assert_eq!(
            (sd.controller.as_deref(), sd.path.as_str()),
            (Some("name=systemd"), "/")
        );
        // A /proc-style path is taken as cgroup v2.
        let rel = CgroupSel::resolve_in("/app", &mounts, |p| {
            p == Path::new("/sys/fs/cgroup/unified/app")
        })
        .unwrap();
        assert_eq!((rel.controller, rel.path.as_str()), (None, "/app"));
        assert!(CgroupSel::resolve_in("/sys/fs/cgroup/unified/nope", &mounts, |_| false).is_err());
        assert!(CgroupSel::resolve_in("relative", &mounts, |_| true).is_err());
    }

    #[test]
    fn resolves_under_a_cgroup_namespace_root() {
        let mounts = parse_mounts(V2_IN_NS);
        let sel = CgroupSel::resolve_in("/sys/fs/cgroup/c1", &mounts, |_| true).unwrap();
        assert_eq!(sel.path, "/kubepods.slice/pod1/c1");
    }

    #[test]
    fn matches_the_cgroup_and_below_only() {
        let sel = CgroupSel {
            given: String::new(),
            controller: None,
            path: "/app".into(),
            ns_base: None,
        };
        assert!(sel.contains(&lines(&[("0", "", "/app")])));
        assert!(sel.contains(&lines(&[("0", "", "/app/worker")])));
        assert!(!sel.contains(&lines(&[("0", "", "/apple")])));
        assert!(!sel.contains(&lines(&[("4", "memory", "/app")])));
        let mem = CgroupSel {
            controller: Some("memory".into()),
            ..sel
        };
        assert!(mem.contains(&lines(&[("0", "", "/"), ("4", "memory", "/app/x")])));
    }

    #[test]
    fn resolves_paths_seen_from_inside_a_cgroup_namespace() {
        // The agent in /kubepods/pod1/agent, its namespace rooted there.
        let sel = CgroupSel {
            given: String::new(),
            controller: None,
            path: "/kubepods/pod2".into(),
            ns_base: Some("/kubepods/pod1/agent".into()),
        };
        assert!(sel.contains(&lines(&[("0", "", "/../../pod2/app")])));
        assert!(sel.contains(&lines(&[("0", "", "/../../pod2")])));
        assert!(!sel.contains(&lines(&[("0", "", "/../../pod3")])));
        assert!(!sel.contains(&lines(&[("0", "", "/")])));
        assert_eq!(resolve("/a/b", "/../../c/./d"), "/c/d");
        assert_eq!(resolve("/a", "/../.."), "/");
    }
}
