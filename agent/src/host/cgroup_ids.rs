//! Container ids and pod uids from cgroup paths, as /proc/PID/cgroup shows
//! them: that is all that ties a host process to a pod.
//!
//! The runtimes name cgroups differently (systemd or cgroupfs driver,
//! containerd, CRI-O, Docker, Podman), so the parsing looks for the shape of
//! the ids rather than for each runtime's prefix.

/// Length of a container id in hex (a SHA-256), as every OCI runtime uses.
const CONTAINER_ID_LEN: usize = 64;

/// The container a cgroup path belongs to: the last 64-hex-digit token in
/// it, lowercased. Accepts a bare path (`/kubepods/…`), a path relative to a
/// cgroup namespace (`/../../kubepods/…`) or a whole /proc/PID/cgroup line
/// (`0::/kubepods/…`). None for paths outside any container.
pub fn container_id_from_cgroup(path: &str) -> Option<String> {
    path.split('/')
        .rev()
        // The conmon monitor of CRI-O and Podman sits in a scope named after
        // the container, but runs outside it: tracing it as the container
        // would attribute the monitor's waits to the workload.
        .filter(|segment| !segment.contains("-conmon-"))
        .find_map(|segment| {
            segment
                .split(|c: char| !c.is_ascii_alphanumeric())
                .rev()
                .find(|token| token.len() == CONTAINER_ID_LEN && is_hex(token))
        })
        .map(str::to_ascii_lowercase)
}

/// The pod a cgroup path belongs to, from its `pod<uid>` segment: the uid
/// with dashes (the systemd driver writes them as underscores), lowercased.
/// Static pods' cgroups carry the 32-hex config hash instead of a uuid; it is
/// returned as it is (their mirror pod's `kubernetes.io/config.mirror`
/// annotation holds the same hash). None outside any pod.
pub fn pod_uid_from_cgroup(path: &str) -> Option<String> {
    path.split('/').rev().find_map(|segment| {
        let segment = segment.strip_suffix(".slice").unwrap_or(segment);
        // The last "pod": systemd nests the parent names, as in
        // `kubepods-burstable-pod<uid>`, and "kubepods" itself contains one.
        let at = segment.rfind("pod")?;
        normalize_pod_uid(&segment[at + 3..])
    })
}

/// A pod uid as the cache keys it: dashes, lowercase; None if `uid` is
/// neither a uuid (with dashes or underscores) nor a static pod's 32-hex
/// config hash.
pub(crate) fn normalize_pod_uid(uid: &str) -> Option<String> {
    let uid = uid.replace('_', "-").to_ascii_lowercase();
    let is_uuid = {
        let groups: Vec<&str> = uid.split('-').collect();
        groups.len() == 5
            && groups
                .iter()
                .zip([8, 4, 4, 4, 12])
                .all(|(g, len)| g.len() == len && is_hex(g))
    };
    let is_config_hash = uid.len() == 32 && is_hex(&uid);
    (is_uuid || is_config_hash).then_some(uid)
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4a9c0d2b1e8f7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b";
    const UID: &str = "1a2b3c4d-5e6f-7a8b-9c0d-112233445566";
    const UID_: &str = "1a2b3c4d_5e6f_7a8b_9c0d_112233445566";

    #[test]
    fn container_ids_from_runtime_paths() {
        let paths = [
            // containerd, systemd driver (kubeadm, EKS, GKE on cgroup v2).
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
            ),
            format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
            ),
            // Guaranteed QoS: no QoS slice.
            format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
            // cgroupfs driver (k3s, minikube).
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}/{ID}"),
            // kind: kubelet's cgroups nested in the node container's.
            format!(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
            ),
            // CRI-O.
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"
            ),
            // Docker, systemd and cgroupfs drivers; a cgroup v1 line.
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            format!("12:memory:/docker/{ID}"),
            // Podman: a sub-cgroup for the payload under the scope.
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            // Seen from inside a cgroup namespace.
            format!("/../../kubepods/besteffort/pod{UID}/{ID}"),
            format!("/../../../kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
            // A sub-cgroup the workload made.
            format!("/kubepods/pod{UID}/{ID}/worker"),
            // Upper case hex (not written by runtimes, but harmless).
            format!("/docker/{}", ID.to_ascii_uppercase()),
        ];
        for path in &paths {
            assert_eq!(
                container_id_from_cgroup(path).as_deref(),
                Some(ID),
                "{path}"
            );
        }
    }

    #[test]
    fn nested_containers_give_the_innermost() {
        let outer = "a".repeat(64);
        let path = format!("/docker/{outer}/kubepods/pod{UID}/{ID}");
        assert_eq!(container_id_from_cgroup(&path).as_deref(), Some(ID));
    }

    #[test]
    fn paths_outside_containers_give_none() {
        for path in [
            "/",
            "",
            "0::/",
            "/init.scope",
            "/user.slice/user-0.slice/session-1.scope",
            "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-1234.scope",
            "/system.slice/containerd.service",
            "/system.slice/kubelet.service",
            "/kubepods.slice/kubepods-burstable.slice",
            // The pod's own cgroup (the pause process is in a child).
            "/kubepods/burstable/pod1a2b3c4d-5e6f-7a8b-9c0d-112233445566",
            // 63 and 65 hex digits: not an id.
            "/docker/3f4a9c0d2b1e8f7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3",
            "/docker/3f4a9c0d2b1e8f7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3bc",
            // 64 characters, not all hex.
            "/docker/zf4a9c0d2b1e8f7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b",
        ] {
            assert_eq!(container_id_from_cgroup(path), None, "{path}");
        }
    }

    #[test]
    fn conmon_is_not_its_container() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope"
        );
        assert_eq!(container_id_from_cgroup(&path), None);
        assert_eq!(pod_uid_from_cgroup(&path).as_deref(), Some(UID));
    }

    #[test]
    fn pod_uids_from_paths() {
        let paths = [
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
            ),
            format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
            ),
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}"),
            format!("/../../kubepods/besteffort/pod{UID}/{ID}"),
            format!("/kubepods/besteffort/pod{}/{ID}", UID.to_ascii_uppercase()),
            format!(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
            ),
        ];
        for path in &paths {
            assert_eq!(pod_uid_from_cgroup(path).as_deref(), Some(UID), "{path}");
        }
    }

    #[test]
    fn static_pods_give_their_config_hash() {
        let hash = "5e6f7a8b9c0d1a2b3c4d112233445566";
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{hash}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(pod_uid_from_cgroup(&path).as_deref(), Some(hash));
        let path = format!("/kubepods/burstable/pod{hash}/{ID}");
        assert_eq!(pod_uid_from_cgroup(&path).as_deref(), Some(hash));
    }

    #[test]
    fn paths_outside_pods_give_no_uid() {
        for path in [
            "/",
            "/init.scope",
            "/user.slice/user-0.slice/session-1.scope",
            "/kubepods.slice",
            "/kubepods.slice/kubepods-burstable.slice",
            "/kubepods/burstable",
            "/kubepods/podnotauid",
            &format!("/system.slice/docker-{ID}.scope"),
            &format!("/machine.slice/libpod-{ID}.scope/container"),
            "/kubepods/pod1a2b3c4d-5e6f-7a8b-9c0d-11223344556",
        ] {
            assert_eq!(pod_uid_from_cgroup(path), None, "{path}");
        }
    }

    #[test]
    fn uid_normalization() {
        assert_eq!(normalize_pod_uid(UID_).as_deref(), Some(UID));
        assert_eq!(
            normalize_pod_uid(&UID.to_ascii_uppercase()).as_deref(),
            Some(UID)
        );
        assert_eq!(normalize_pod_uid("1a2b3c4d-5e6f-7a8b-9c0d"), None);
        assert_eq!(normalize_pod_uid(""), None);
    }
}
