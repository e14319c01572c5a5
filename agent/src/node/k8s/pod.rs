//! Pod metadata, and the few fields of the API's JSON it is made from.
//!
//! Only the needed fields are declared: serde skips the rest without
//! building anything, so a pod with a large spec costs little to read.
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, de};

use crate::{host::cgroup_ids::normalize_pod_uid, output::otlp::resource::PodNames};

/// What the agent knows of a pod on its node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMeta {
    /// `metadata.uid`, with dashes, lowercase.
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// `spec.nodeName`.
    pub node_name: String,
    pub labels: BTreeMap<String, String>,
    /// Containers that have been started (init, regular and ephemeral), as
    /// the pod's status reports them.
    pub containers: Vec<ContainerMeta>,
    /// For a static pod's mirror: the uid kubelet uses in the pod's cgroup
    /// path (its `kubernetes.io/config.mirror` hash), which differs from
    /// `uid`.
    pub mirror_uid: Option<String>,
}

/// A started container of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    pub name: String,
    /// The bare hex id, as in cgroup paths (no `containerd://` prefix).
    pub id: String,
}

impl PodMeta {
    /// The names the OTLP resource of a process in this pod carries, with
    /// the container's if known.
    pub fn names(&self, container: Option<&str>) -> PodNames {
        PodNames {
            name: self.name.clone(),
            uid: self.uid.clone(),
            namespace: self.namespace.clone(),
            container: container.map(str::to_owned),
        }
    }

    /// The name of the container with this (bare, lowercase) id.
    pub fn container_name(&self, id: &str) -> Option<&str> {
        self.containers
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.as_str())
    }
}

/// `containerd://<id>`, `cri-o://<id>`, `docker://<id>` → `<id>`.
pub(crate) fn bare_container_id(id: &str) -> Option<String> {
    let id = id.rsplit_once("://").map_or(id, |(_, id)| id).trim();
    (!id.is_empty()).then(|| id.to_ascii_lowercase())
}

/// A `PodList` as LIST answers it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PodList {
    pub metadata: ListMeta,
    pub items: Vec<ApiObject>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ListMeta {
    pub resource_version: String,
}

/// One line of a watch stream.
#[derive(Debug, Deserialize)]
pub(crate) struct WatchEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub object: ApiObject,
}

/// A pod, or the `Status` that an ERROR event or a failed request carries:
/// one struct for both so that a watch line is parsed in a single pass.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ApiObject {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
    /// A pod's status is an object; a `Status`'s is a string ("Failure").
    #[serde(deserialize_with = "pod_status_or_other")]
    pub status: PodStatus,
    // The fields of a `Status`.
    pub code: u16,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ObjectMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: Annotations,
}

/// The one annotation needed; the others (a `last-applied-configuration`
/// can be large) are skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Annotations {
    #[serde(rename = "kubernetes.io/config.mirror")]
    pub config_mirror: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct PodSpec {
    pub node_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct PodStatus {
    pub init_container_statuses: Vec<ContainerStatus>,
    pub container_statuses: Vec<ContainerStatus>,
    pub ephemeral_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ContainerStatus {
    pub name: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
}

impl ApiObject {
    /// The pod's metadata; None if it has no uid (not a pod).
    pub fn into_pod_meta(self) -> Option<PodMeta> {
        let uid = self.metadata.uid.trim().to_ascii_lowercase();
        if uid.is_empty() {
            return None;
        }
        let status = self.status;
        let containers = status
            .init_container_statuses
            .into_iter()
            .chain(status.container_statuses)
            .chain(status.ephemeral_container_statuses)
            .filter_map(|c| {
                Some(ContainerMeta {
                    id: bare_container_id(&c.container_id)?,
                    name: c.name,
                })
            })
            .collect();
        Some(PodMeta {
            uid,
            name: self.metadata.name,
            namespace: self.metadata.namespace,
            node_name: self.spec.node_name,
            labels: self.metadata.labels,
            containers,
            mirror_uid: self
                .metadata
                .annotations
                .config_mirror
                .as_deref()
                .and_then(normalize_pod_uid),
        })
    }
}

/// A pod's status object, or the default for anything else (a `Status`'s
/// string), read in one pass without buffering.
fn pod_status_or_other<'de, D: Deserializer<'de>>(d: D) -> Result<PodStatus, D::Error> {
    struct Visitor;
    impl<'de> de::Visitor<'de> for Visitor {
        type Value = PodStatus;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a pod status object or a string")
        }

        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<PodStatus, A::Error> {
            PodStatus::deserialize(de::value::MapAccessDeserializer::new(map))
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<PodStatus, E> {
            Ok(PodStatus::default())
        }

        fn visit_unit<E: de::Error>(self) -> Result<PodStatus, E> {
            Ok(PodStatus::default())
        }
    }
    d.deserialize_any(Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4a9c0d2b1e8f7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b";

    #[test]
    fn container_id_prefixes_are_stripped() {
        for (given, want) in [
            (format!("containerd://{ID}"), Some(ID)),
            (format!("cri-o://{ID}"), Some(ID)),
            (format!("docker://{ID}"), Some(ID)),
            (ID.to_owned(), Some(ID)),
            (
                format!("containerd://{}", ID.to_ascii_uppercase()),
                Some(ID),
            ),
            ("".to_owned(), None),
            ("containerd://".to_owned(), None),
        ] {
            assert_eq!(bare_container_id(&given).as_deref(), want, "{given}");
        }
    }

    #[test]
    fn pod_fields_from_api_json() {
        let json = format!(
            r#"{{
              "kind": "Pod", "apiVersion": "v1",
              "metadata": {{
                "name": "web-7d4b9c6f5-x2x9q", "namespace": "shop",
                "uid": "1A2B3C4D-5e6f-7a8b-9c0d-112233445566",
                "resourceVersion": "4242",
                "labels": {{"app": "web", "pod-template-hash": "7d4b9c6f5"}},
                "annotations": {{"kubectl.kubernetes.io/last-applied-configuration": "{{\"big\": true}}"}},
                "ownerReferences": [{{"kind": "ReplicaSet", "name": "web-7d4b9c6f5"}}]
              }},
              "spec": {{
                "nodeName": "node-1",
                "containers": [{{"name": "web", "image": "nginx", "env": [{{"name": "A", "value": "1"}}]}}],
                "volumes": [{{"name": "v", "emptyDir": {{}}}}]
              }},
              "status": {{
                "phase": "Running",
                "conditions": [{{"type": "Ready", "status": "True"}}],
                "initContainerStatuses": [{{"name": "init", "containerID": "containerd://{init}", "state": {{"terminated": {{"exitCode": 0}}}}}}],
                "containerStatuses": [
                  {{"name": "web", "containerID": "containerd://{ID}", "ready": true, "restartCount": 0}},
                  {{"name": "sidecar", "state": {{"waiting": {{"reason": "ContainerCreating"}}}}}}
                ],
                "ephemeralContainerStatuses": [{{"name": "debugger", "containerID": "containerd://{eph}"}}]
              }}
            }}"#,
            init = "1".repeat(64),
            eph = "2".repeat(64),
        );
        let object: ApiObject = serde_json::from_str(&json).unwrap();
        assert_eq!(object.metadata.resource_version, "4242");
        let pod = object.into_pod_meta().unwrap();
        assert_eq!(pod.uid, "1a2b3c4d-5e6f-7a8b-9c0d-112233445566");
        assert_eq!(pod.name, "web-7d4b9c6f5-x2x9q");
        assert_eq!(pod.namespace, "shop");
        assert_eq!(pod.node_name, "node-1");
        assert_eq!(pod.labels["app"], "web");
        assert_eq!(pod.mirror_uid, None);
        let containers: Vec<(&str, &str)> = pod
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.id.as_str()))
            .collect();
        let (init, eph) = ("1".repeat(64), "2".repeat(64));
        assert_eq!(
            containers,
            [
                ("init", init.as_str()),
                ("web", ID),
                ("debugger", eph.as_str())
            ]
        );
        assert_eq!(pod.container_name(ID), Some("web"));
        assert_eq!(
            pod.names(Some("web")).attributes(),
            [
                ("k8s.pod.name", "web-7d4b9c6f5-x2x9q".to_owned()),
                (
                    "k8s.pod.uid",
                    "1a2b3c4d-5e6f-7a8b-9c0d-112233445566".to_owned()
                ),
                ("k8s.namespace.name", "shop".to_owned()),
                ("k8s.container.name", "web".to_owned()),
            ]
        );
    }

    #[test]
    fn mirror_pods_keep_their_config_hash() {
        let json = r#"{"metadata": {"uid": "0f0e0d0c-0b0a-0908-0706-050403020100", "name": "etcd-node-1",
            "namespace": "kube-system",
            "annotations": {"kubernetes.io/config.mirror": "5E6F7A8B9C0D1A2B3C4D112233445566"}}}"#;
        let pod = serde_json::from_str::<ApiObject>(json)
            .unwrap()
            .into_pod_meta()
            .unwrap();
        assert_eq!(
            pod.mirror_uid.as_deref(),
            Some("5e6f7a8b9c0d1a2b3c4d112233445566")
        );
    }

    #[test]
    fn watch_events_of_each_kind() {
        let added: WatchEvent = serde_json::from_str(
            r#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"uid":"u","resourceVersion":"7"},"status":{"phase":"Pending"}}}"#,
        )
        .unwrap();
        assert_eq!(added.kind, "ADDED");
        assert_eq!(added.object.metadata.resource_version, "7");

        let bookmark: WatchEvent = serde_json::from_str(
            r#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12345","annotations":{"k8s.io/initial-events-end":"true"}},"spec":{"containers":null},"status":{}}}"#,
        )
        .unwrap();
        assert_eq!(bookmark.object.metadata.resource_version, "12345");
        assert!(bookmark.object.into_pod_meta().is_none());

        let error: WatchEvent = serde_json::from_str(
            r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (2)","reason":"Expired","code":410}}"#,
        )
        .unwrap();
        assert_eq!(error.kind, "ERROR");
        assert_eq!(error.object.code, 410);
        assert_eq!(error.object.reason, "Expired");
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        for line in [
            "",
            "{",
            "[]",
            r#"{"object":{}}"#,
            r#"{"type":"ADDED","object":{"metadata":{"labels":{"a":1}}}}"#,
            r#"{"type":"ADDED","object":{"status":{"containerStatuses":"x"}}}"#,
        ] {
            assert!(serde_json::from_str::<WatchEvent>(line).is_err(), "{line}");
        }
    }

    #[test]
    fn null_status_reads_as_empty() {
        let event: WatchEvent = serde_json::from_str(
            r#"{"type":"ADDED","object":{"metadata":{"uid":"u"},"status":null}}"#,
        )
        .unwrap();
        assert!(event.object.into_pod_meta().unwrap().containers.is_empty());
    }
}
