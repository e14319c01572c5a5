//! The resource of a traced process: who it is (`process.*`,
//! `container.id`, `k8s.*`), where it ran (`host.name`) and the service
//! the `OTEL_*` variables name.
use std::{fmt::Debug, sync::Arc};

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

use super::{error::SettingsError, kv_list};
use crate::model::ProcessInfo;

/// What the resource of a traced process is built from.
#[derive(Clone, Debug, Default)]
pub struct ResourceSettings {
    /// `OTEL_SERVICE_NAME` (wins over `service.name` in the attributes).
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, parsed.
    pub attributes: Vec<(String, String)>,
    pub host_name: String,
    /// In a Kubernetes cluster: this node's name and its pods, for the
    /// `k8s.*` attributes of the processes in them.
    pub k8s: Option<K8sResource>,
}

/// Where a node agent finds the Kubernetes names of a process.
#[derive(Clone, Debug)]
pub struct K8sResource {
    pub node_name: String,
    pub pods: Arc<dyn PodLookup>,
}

/// The pods of this node, as the mapping needs them. A trait because the
/// pod cache belongs to the node agent, a layer above this one, which
/// implements it.
pub trait PodLookup: Debug + Send + Sync {
    /// The pod of a process whose cgroup paths name this container and pod
    /// (either may be missing), with the container's name when known.
    fn pod_names(&self, container_id: Option<&str>, pod_uid: Option<&str>) -> Option<PodNames>;
}

/// The Kubernetes names of the pod (and container) a process runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodNames {
    pub name: String,
    /// With dashes, lowercase.
    pub uid: String,
    pub namespace: String,
    pub container: Option<String>,
}

impl PodNames {
    /// The OpenTelemetry resource attributes of the pod, and of the
    /// container if known.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut attributes = vec![
            ("k8s.pod.name", self.name.clone()),
            ("k8s.pod.uid", self.uid.clone()),
            ("k8s.namespace.name", self.namespace.clone()),
        ];
        if let Some(container) = &self.container {
            attributes.push(("k8s.container.name", container.clone()));
        }
        attributes
    }
}

impl ResourceSettings {
    /// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; `host_name` is
    /// the machine the spanlets were recorded on.
    pub fn from_env(host_name: &str) -> Result<Self, SettingsError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Ok(Self {
            service_name: var("OTEL_SERVICE_NAME").map(|v| v.trim().to_owned()),
            attributes: match var("OTEL_RESOURCE_ATTRIBUTES") {
                Some(list) => kv_list::parse_list("OTEL_RESOURCE_ATTRIBUTES", &list)?,
                None => Vec::new(),
            },
            host_name: host_name.to_owned(),
            k8s: None,
        })
    }
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue::new(key.to_owned(), value.into())
}

fn int(key: &str, value: impl Into<i64>) -> KeyValue {
    KeyValue::new(key.to_owned(), value.into())
}

/// The resource of the traced process `pid`.
pub fn resource(pid: u32, settings: &ResourceSettings, process: Option<&ProcessInfo>) -> Resource {
    let mut attrs: Vec<KeyValue> = settings
        .attributes
        .iter()
        .filter(|(k, _)| k != "service.name" || settings.service_name.is_none())
        .map(|(k, v)| string(k, v.clone()))
        .collect();
    let has = |attrs: &[KeyValue], key: &str| attrs.iter().any(|a| a.key.as_str() == key);
    let comm = process.map_or("", |p| p.comm.as_str());
    if let Some(name) = &settings.service_name {
        attrs.push(string("service.name", name.clone()));
    } else if !has(&attrs, "service.name") {
        // The SDK specification's default, naming the traced program.
        attrs.push(string("service.name", format!("unknown_service:{comm}")));
    }
    if !has(&attrs, "host.name") && !settings.host_name.is_empty() {
        attrs.push(string("host.name", settings.host_name.clone()));
    }
    attrs.push(int("process.pid", pid));
    if let Some(ns_pid) = process.and_then(|p| p.ns_pid) {
        attrs.push(int("process.vpid", ns_pid));
    }
    if let Some(id) = process.and_then(|p| p.container_id.as_deref()) {
        attrs.push(string("container.id", id));
    }
    if let Some(k8s) = &settings.k8s {
        attrs.push(string("k8s.node.name", k8s.node_name.clone()));
        let pod = process.and_then(|p| {
            k8s.pods
                .pod_names(p.container_id.as_deref(), p.pod_uid.as_deref())
        });
        for (key, value) in pod.iter().flat_map(PodNames::attributes) {
            attrs.push(string(key, value));
        }
    }
    if !comm.is_empty() {
        attrs.push(string("process.executable.name", comm));
    }
    if let Some(p) = process.filter(|p| !p.cmdline.is_empty()) {
        attrs.push(string("process.command_line", p.cmdline.join(" ")));
    }
    Resource::builder_empty().with_attributes(attrs).build()
}
