//! The pods of this node, shared between the watcher that fills it and the
//! agent that looks processes up in it.
use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use tokio::sync::watch;

use super::pod::PodMeta;
use crate::{
    host::cgroup_ids::{container_id_from_cgroup, normalize_pod_uid, pod_uid_from_cgroup},
    output::otlp::resource::{PodLookup, PodNames},
};

/// This node's pods, indexed by uid and container id. Cheap to clone: the
/// clones share one cache.
#[derive(Clone, Debug)]
pub struct PodCache {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    // A plain lock: lookups are short and never held across an await.
    state: RwLock<State>,
    // Bumped on every change, so the agent can re-evaluate its selection
    // when pods come and go, by polling or by awaiting a receiver.
    generation: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// By `metadata.uid`.
    pods: HashMap<String, Arc<PodMeta>>,
    /// Container id → (pod uid, container name).
    containers: HashMap<String, (String, String)>,
    /// A static pod's config hash (its uid in cgroup paths) → its mirror
    /// pod's uid.
    mirrors: HashMap<String, String>,
    synced: bool,
}

impl Default for PodCache {
    fn default() -> Self {
        Self::new()
    }
}

impl PodCache {
    /// An empty cache, not yet synced.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                state: RwLock::default(),
                generation: watch::Sender::new(0),
            }),
        }
    }

    /// The pod running the container with this id (bare hex, as in cgroup
    /// paths), and the container's name.
    pub fn by_container_id(&self, id: &str) -> Option<(Arc<PodMeta>, String)> {
        let state = self.read();
        let (uid, name) = state.containers.get(&id.to_ascii_lowercase())?;
        Some((state.pods.get(uid)?.clone(), name.clone()))
    }

    /// The pod with this uid, written with dashes or with the underscores of
    /// systemd cgroup names; a static pod's config hash finds its mirror.
    pub fn by_pod_uid(&self, uid: &str) -> Option<Arc<PodMeta>> {
        let uid = normalize_pod_uid(uid).unwrap_or_else(|| uid.to_ascii_lowercase());
        let state = self.read();
        let uid = state.mirrors.get(&uid).unwrap_or(&uid);
        state.pods.get(uid).cloned()
    }

    /// The pod of a process whose cgroup paths name this container and pod
    /// (either may be missing), with the container's name when known.
    pub fn lookup(
        &self,
        container_id: Option<&str>,
        pod_uid: Option<&str>,
    ) -> Option<(Arc<PodMeta>, Option<String>)> {
        if let Some((pod, name)) = container_id.and_then(|id| self.by_container_id(id)) {
            return Some((pod, Some(name)));
        }
        Some((self.by_pod_uid(pod_uid?)?, None))
    }

    /// The pod a cgroup path belongs to, by container id first, then by pod
    /// uid (a container whose id the API has not reported yet, or the pod's
    /// own cgroup); with the container's name when known.
    pub fn by_cgroup(&self, path: &str) -> Option<(Arc<PodMeta>, Option<String>)> {
        if let Some((pod, name)) = container_id_from_cgroup(path)
            .as_deref()
            .and_then(|id| self.by_container_id(id))
        {
            return Some((pod, Some(name)));
        }
        Some((self.by_pod_uid(&pod_uid_from_cgroup(path)?)?, None))
    }

    /// The pods in any of `namespaces` that carry every one of `labels`,
    /// sorted by namespace and name. An empty list does not constrain.
    pub fn select(&self, namespaces: &[String], labels: &[(String, String)]) -> Vec<Arc<PodMeta>> {
        let mut pods: Vec<Arc<PodMeta>> = self
            .read()
            .pods
            .values()
            .filter(|pod| namespaces.is_empty() || namespaces.contains(&pod.namespace))
            .filter(|pod| labels.iter().all(|(k, v)| pod.labels.get(k) == Some(v)))
            .cloned()
            .collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        pods
    }

    /// Whether the first LIST has filled the cache: until then, a missing
    /// pod may just not be known yet.
    pub fn synced(&self) -> bool {
        self.read().synced
    }

    pub fn len(&self) -> usize {
        self.read().pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A counter that changes whenever the pods (or `synced`) change.
    pub fn generation(&self) -> u64 {
        *self.shared.generation.borrow()
    }

    /// A receiver that wakes on every change of [`Self::generation`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// Replaces every pod at once (after a LIST) and marks the cache synced:
    /// readers never see a half-filled cache.
    pub fn replace(&self, pods: impl IntoIterator<Item = PodMeta>) {
        let mut fresh = State {
            synced: true,
            ..State::default()
        };
        for pod in pods {
            fresh.insert(Arc::new(pod));
        }
        let changed = {
            let mut state = self.write();
            let changed = !state.synced || !same_pods(&state.pods, &fresh.pods);
            *state = fresh;
            changed
        };
        if changed {
            self.bump();
        }
    }

    /// Adds or updates a pod (ADDED, MODIFIED).
    pub fn upsert(&self, pod: PodMeta) {
        let changed = {
            let mut state = self.write();
            if state.pods.get(&pod.uid).is_some_and(|old| **old == pod) {
                // Most MODIFIED events change fields not kept here.
                false
            } else {
                state.remove(&pod.uid);
                state.insert(Arc::new(pod));
                true
            }
        };
        if changed {
            self.bump();
        }
    }

    /// Forgets a pod (DELETED).
    pub fn remove(&self, uid: &str) {
        let uid = uid.to_ascii_lowercase();
        if self.write().remove(&uid) {
            self.bump();
        }
    }

    fn bump(&self) {
        self.shared
            .generation
            .send_modify(|g| *g = g.wrapping_add(1));
    }

    // A panic elsewhere while holding the lock leaves whole maps behind
    // (every update is a few inserts), so the data stays usable.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The OTLP mapping names the pods of traced processes through this.
impl PodLookup for PodCache {
    fn pod_names(&self, container_id: Option<&str>, pod_uid: Option<&str>) -> Option<PodNames> {
        let (pod, container) = self.lookup(container_id, pod_uid)?;
        Some(pod.names(container.as_deref()))
    }
}

impl State {
    fn insert(&mut self, pod: Arc<PodMeta>) {
        for c in &pod.containers {
            self.containers
                .insert(c.id.clone(), (pod.uid.clone(), c.name.clone()));
        }
        if let Some(hash) = &pod.mirror_uid {
            self.mirrors.insert(hash.clone(), pod.uid.clone());
        }
        self.pods.insert(pod.uid.clone(), pod);
    }

    /// Whether there was such a pod.
    fn remove(&mut self, uid: &str) -> bool {
        let Some(pod) = self.pods.remove(uid) else {
            return false;
        };
        for c in &pod.containers {
            // Only if still this pod's: ids are unique, but be safe against
            // an out-of-order update having moved it.
            if self.containers.get(&c.id).is_some_and(|(u, _)| u == uid) {
                self.containers.remove(&c.id);
            }
        }
        if let Some(hash) = &pod.mirror_uid
            && self.mirrors.get(hash).is_some_and(|u| u == uid)
        {
            self.mirrors.remove(hash);
        }
        true
    }
}

fn same_pods(a: &HashMap<String, Arc<PodMeta>>, b: &HashMap<String, Arc<PodMeta>>) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(uid, pod)| b.get(uid).is_some_and(|p| p == pod))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::node::k8s::ContainerMeta;

    fn pod(
        uid: &str,
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        ids: &[(&str, &str)],
    ) -> PodMeta {
        PodMeta {
            uid: uid.to_owned(),
            name: name.to_owned(),
            namespace: ns.to_owned(),
            node_name: "node-1".to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            containers: ids
                .iter()
                .map(|(name, id)| ContainerMeta {
                    name: (*name).to_owned(),
                    id: (*id).to_owned(),
                })
                .collect(),
            mirror_uid: None,
        }
    }

    const UID_A: &str = "1a2b3c4d-5e6f-7a8b-9c0d-112233445566";
    const UID_B: &str = "00000000-0000-0000-0000-00000000000b";

    #[test]
    fn lookups() {
        let cache = PodCache::new();
        assert!(!cache.synced());
        assert!(cache.is_empty());
        let id = "a".repeat(64);
        cache.replace([pod(
            UID_A,
            "shop",
            "web",
            &[("app", "web")],
            &[("nginx", &id)],
        )]);
        assert!(cache.synced());
        assert_eq!(cache.len(), 1);

        let (found, name) = cache.by_container_id(&id).unwrap();
        assert_eq!((found.name.as_str(), name.as_str()), ("web", "nginx"));
        assert!(cache.by_container_id(&id.to_ascii_uppercase()).is_some());
        assert!(cache.by_container_id(&"b".repeat(64)).is_none());

        assert_eq!(cache.by_pod_uid(UID_A).unwrap().name, "web");
        assert_eq!(
            cache.by_pod_uid(&UID_A.replace('-', "_")).unwrap().name,
            "web"
        );
        assert_eq!(
            cache.by_pod_uid(&UID_A.to_ascii_uppercase()).unwrap().name,
            "web"
        );
        assert!(cache.by_pod_uid(UID_B).is_none());

        let path = format!(
            "/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{id}.scope",
            UID_A.replace('-', "_")
        );
        let (found, name) = cache.by_cgroup(&path).unwrap();
        assert_eq!(
            (found.name.as_str(), name.as_deref()),
            ("web", Some("nginx"))
        );
        // A container the API has not reported yet: the pod, no name.
        let path = format!("/kubepods/pod{UID_A}/{}", "c".repeat(64));
        let (found, name) = cache.by_cgroup(&path).unwrap();
        assert_eq!((found.name.as_str(), name), ("web", None));
        assert!(cache.by_cgroup("/init.scope").is_none());
    }

    #[test]
    fn static_pods_by_config_hash() {
        let cache = PodCache::new();
        let mut etcd = pod(UID_A, "kube-system", "etcd-node-1", &[], &[]);
        let hash = "5e6f7a8b9c0d1a2b3c4d112233445566";
        etcd.mirror_uid = Some(hash.to_owned());
        cache.upsert(etcd);
        assert_eq!(cache.by_pod_uid(hash).unwrap().name, "etcd-node-1");
        cache.remove(UID_A);
        assert!(cache.by_pod_uid(hash).is_none());
    }

    #[test]
    fn selection() {
        let cache = PodCache::new();
        cache.replace([
            pod(
                UID_A,
                "shop",
                "web",
                &[("app", "web"), ("tier", "front")],
                &[],
            ),
            pod(UID_B, "shop", "db", &[("app", "db"), ("tier", "back")], &[]),
            pod(
                "00000000-0000-0000-0000-00000000000c",
                "ops",
                "agent",
                &[("app", "web")],
                &[],
            ),
        ]);
        let names = |pods: Vec<Arc<PodMeta>>| -> Vec<String> {
            pods.iter()
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect()
        };
        let s = |v: &str| v.to_owned();
        let kv = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            names(cache.select(&[], &[])),
            ["ops/agent", "shop/db", "shop/web"]
        );
        assert_eq!(
            names(cache.select(&[s("shop")], &[])),
            ["shop/db", "shop/web"]
        );
        assert_eq!(
            names(cache.select(&[s("shop"), s("ops")], &[])),
            ["ops/agent", "shop/db", "shop/web"]
        );
        assert_eq!(
            names(cache.select(&[], &[kv("app", "web")])),
            ["ops/agent", "shop/web"]
        );
        assert_eq!(
            names(cache.select(&[s("shop")], &[kv("app", "web")])),
            ["shop/web"]
        );
        assert_eq!(
            names(cache.select(&[], &[kv("app", "web"), kv("tier", "back")])),
            Vec::<String>::new()
        );
        assert_eq!(names(cache.select(&[s("none")], &[])), Vec::<String>::new());
    }

    #[test]
    fn generation_changes_only_with_the_pods() {
        let cache = PodCache::new();
        let mut rx = cache.subscribe();
        let g0 = cache.generation();
        let id = "a".repeat(64);
        let web = pod(UID_A, "shop", "web", &[], &[("nginx", &id)]);

        // The first LIST marks the cache synced even if it is empty.
        cache.replace([]);
        let g1 = cache.generation();
        assert_ne!(g0, g1);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();

        cache.upsert(web.clone());
        let g2 = cache.generation();
        assert_ne!(g1, g2);
        cache.upsert(web.clone());
        assert_eq!(cache.generation(), g2, "an unchanged pod is no change");
        cache.replace([web.clone()]);
        assert_eq!(cache.generation(), g2, "an identical relist is no change");

        // A restarted container: a new id replaces the old one.
        let new_id = "b".repeat(64);
        cache.upsert(pod(UID_A, "shop", "web", &[], &[("nginx", &new_id)]));
        assert_ne!(cache.generation(), g2);
        assert!(cache.by_container_id(&id).is_none());
        assert!(cache.by_container_id(&new_id).is_some());

        let g3 = cache.generation();
        cache.remove(UID_B);
        assert_eq!(
            cache.generation(),
            g3,
            "removing an unknown pod is no change"
        );
        cache.remove(UID_A);
        assert_ne!(cache.generation(), g3);
        assert!(cache.by_container_id(&new_id).is_none());
        assert!(cache.is_empty());
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn clones_share_the_cache() {
        let cache = PodCache::new();
        let other = cache.clone();
        other.upsert(pod(UID_A, "shop", "web", &[], &[]));
        assert_eq!(cache.len(), 1);
    }
}
