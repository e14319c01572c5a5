//! `cargo xtask validate-deploy`: checks deploy/ without a cluster.
//!
//! The plain manifest and the Helm chart's rendering are validated against
//! the Kubernetes API schemas (kubernetes-validate, strict: unknown fields
//! are errors), the chart must render the manifest's objects with its
//! default values, and versions must follow the workspace's.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::{
    setup::{helm_bin, kubernetes_validate_venv},
    util::{run, stdout_of, workspace_root},
};

/// The Kubernetes API version the objects are validated against. The
/// manifests need at least 1.30 (the container's appArmorProfile field).
const KUBERNETES_VERSION: &str = "1.33.0";
/// The workspace's version (xtask shares it): the image tag, the version
/// labels and the chart's appVersion must all be this.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Release name and namespace the chart is rendered with: those of the plain
/// manifest.
const RELEASE: &str = "spanlet";
/// Labels only Helm adds, left out when comparing with the plain manifest.
const HELM_ONLY_LABELS: &[&str] = &["helm.sh/chart", "app.kubernetes.io/managed-by"];

pub fn task() -> Result<()> {
    let deploy = workspace_root().join("deploy");
    containerfile(&deploy.join("Containerfile"))?;

    let manifest_path = deploy.join("kubernetes/spanlet.yaml");
    validate(&manifest_path)?;
    let manifest = yaml_documents(&manifest_path)?;
    manifest_versions(&manifest)?;
    eprintln!("ok: deploy/kubernetes/spanlet.yaml");

    let chart = deploy.join("helm/spanlet");
    chart_metadata(&chart)?;
    run(Command::new(helm_bin())
        .args(["lint", "--strict"])
        .arg(&chart))
    .context("`helm lint` found problems in deploy/helm/spanlet")?;
    let rendered = render(&chart, None)?;
    validate(rendered.path())?;
    let objects = yaml_documents(rendered.path())?;
    same_objects(&manifest, &objects)?;
    eprintln!(
        "ok: deploy/helm/spanlet renders the manifest's objects (all but its Namespace) \
         with default values"
    );
    network_policy(&chart)
}

/// The optional NetworkPolicy (off by default, so not in the manifest),
/// rendered with a peer allowed to scrape and validated like the rest.
fn network_policy(chart: &Path) -> Result<()> {
    let values = tempfile::Builder::new()
        .prefix("spanlet-values-")
        .suffix(".yaml")
        .tempfile()?;
    fs::write(
        values.path(),
        "networkPolicy:\n  enabled: true\n  metricsFrom:\n    - namespaceSelector:\n        \
         matchLabels:\n          kubernetes.io/metadata.name: monitoring\n",
    )?;
    let rendered = render(chart, Some(values.path()))?;
    validate(rendered.path())?;
    let objects = yaml_documents(rendered.path())?;
    let policy = objects
        .iter()
        .find(|o| o["kind"] == "NetworkPolicy")
        .context("networkPolicy.enabled=true renders no NetworkPolicy")?;
    let port = &policy["spec"]["ingress"][0]["ports"][0]["port"];
    ensure!(
        *port == 9464,
        "the NetworkPolicy does not open the metrics port 9464: {policy}"
    );
    eprintln!("ok: deploy/helm/spanlet with networkPolicy.enabled renders a valid NetworkPolicy");
    Ok(())
}

/// The image definition `cargo xtask image` builds.
fn containerfile(path: &Path) -> Result<()> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let has = |wanted: &str| text.lines().any(|l| l.trim() == wanted);
    ensure!(
        has("FROM scratch"),
        "{} is not FROM scratch",
        path.display()
    );
    ensure!(
        has(r#"ENTRYPOINT ["/spanlet", "run"]"#),
        "{}'s ENTRYPOINT is not [\"/spanlet\", \"run\"], which the DaemonSet's args follow",
        path.display()
    );
    eprintln!("ok: deploy/Containerfile");
    Ok(())
}

/// Every object in `path` against the API schemas of [`KUBERNETES_VERSION`].
fn validate(path: &Path) -> Result<()> {
    run(
        Command::new(kubernetes_validate_venv().join("bin/kubernetes-validate"))
            .args([
                "--strict",
                "--quiet",
                "--kubernetes-version",
                KUBERNETES_VERSION,
            ])
            .arg(path),
    )
    .with_context(|| {
        format!(
            "{} does not validate against Kubernetes {KUBERNETES_VERSION}",
            path.display()
        )
    })
}

/// The chart as `helm install spanlet deploy/helm/spanlet -n spanlet
/// [--values VALUES]` would apply it, in a temporary file.
fn render(chart: &Path, values: Option<&Path>) -> Result<tempfile::NamedTempFile> {
    let mut helm = Command::new(helm_bin());
    helm.args(["template", RELEASE]).arg(chart).args([
        "--namespace",
        RELEASE,
        "--kube-version",
        KUBERNETES_VERSION,
    ]);
    if let Some(values) = values {
        helm.arg("--values").arg(values);
    }
    let yaml = stdout_of(&mut helm).context("`helm template` failed on deploy/helm/spanlet")?;
    let file = tempfile::Builder::new()
        .prefix("spanlet-chart-")
        .suffix(".yaml")
        .tempfile()?;
    fs::write(file.path(), yaml)?;
    Ok(file)
}

/// Chart.yaml and values.yaml parse, and the chart ships the workspace's
/// version by default.
fn chart_metadata(chart: &Path) -> Result<()> {
    let meta = single_document(&chart.join("Chart.yaml"))?;
    ensure!(
        meta["apiVersion"] == "v2",
        "Chart.yaml: apiVersion is {}, not v2",
        meta["apiVersion"]
    );
    ensure!(
        meta["name"] == "spanlet",
        "Chart.yaml: name is {}",
        meta["name"]
    );
    ensure!(
        meta["appVersion"].as_str() == Some(VERSION),
        "Chart.yaml: appVersion is {}, the workspace's version is {VERSION}",
        meta["appVersion"]
    );
    let values = single_document(&chart.join("values.yaml"))?;
    ensure!(values.is_object(), "values.yaml is not a mapping: {values}");
    eprintln!("ok: deploy/helm/spanlet/Chart.yaml and values.yaml (appVersion {VERSION})");
    Ok(())
}

/// The image tag and the version labels follow the workspace's version.
fn manifest_versions(objects: &[Value]) -> Result<()> {
    let mut images = 0;
    for object in objects {
        let name = object_key(object);
        for labels in [
            &object["metadata"]["labels"],
            &object["spec"]["template"]["metadata"]["labels"],
        ] {
            let version = &labels["app.kubernetes.io/version"];
            ensure!(
                version.is_null() || version.as_str() == Some(VERSION),
                "{name}: label app.kubernetes.io/version is {version}, the workspace's \
                 version is {VERSION}"
            );
        }
        let containers = object["spec"]["template"]["spec"]["containers"].as_array();
        for container in containers.into_iter().flatten() {
            let image = container["image"].as_str().unwrap_or_default();
            ensure!(
                image.ends_with(&format!(":{VERSION}")),
                "{name}: image {image:?} is not tagged with the workspace's version {VERSION}"
            );
            images += 1;
        }
    }
    ensure!(images > 0, "the manifest runs no container");
    Ok(())
}

/// The chart's objects are the manifest's but its Namespace, once the labels
/// only Helm adds are left out.
fn same_objects(manifest: &[Value], chart: &[Value]) -> Result<()> {
    let keyed = |objects: &[Value]| -> BTreeMap<String, Value> {
        objects
            .iter()
            .filter(|o| o["kind"] != "Namespace")
            .map(|o| (object_key(o), without_helm_labels(o.clone())))
            .collect()
    };
    let (manifest, chart) = (keyed(manifest), keyed(chart));
    let mut problems = Vec::new();
    let keys: BTreeSet<&String> = manifest.keys().chain(chart.keys()).collect();
    for key in keys {
        match (manifest.get(key), chart.get(key)) {
            (Some(a), Some(b)) => differences(key, a, b, &mut problems),
            (Some(_), None) => problems.push(format!("{key}: not rendered by the chart")),
            (None, Some(_)) => problems.push(format!("{key}: not in the manifest")),
            (None, None) => unreachable!("the key comes from one of the maps"),
        }
    }
    if !problems.is_empty() {
        bail!(
            "the chart with default values and deploy/kubernetes/spanlet.yaml differ:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}

fn object_key(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or("?");
    let name = object["metadata"]["name"].as_str().unwrap_or("?");
    format!("{kind}/{name}")
}

fn without_helm_labels(mut object: Value) -> Value {
    for pointer in ["/metadata/labels", "/spec/template/metadata/labels"] {
        if let Some(Value::Object(labels)) = object.pointer_mut(pointer) {
            for label in HELM_ONLY_LABELS {
                labels.remove(*label);
            }
        }
    }
    object
}

/// Where two values differ, as `path: manifest …, chart …` lines.
fn differences(path: &str, manifest: &Value, chart: &Value, out: &mut Vec<String>) {
    match (manifest, chart) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let here = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => differences(&here, x, y, out),
                    (Some(x), None) => out.push(format!("{here}: only in the manifest ({x})")),
                    (None, Some(y)) => out.push(format!("{here}: only in the chart ({y})")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if manifest == chart => {}
        _ => out.push(format!("{path}: manifest {manifest}, chart {chart}")),
    }
}

/// The YAML documents of `path` (empty ones left out), read by the PyYAML
/// of kubernetes-validate's venv and handed over as JSON.
fn yaml_documents(path: &Path) -> Result<Vec<Value>> {
    const TO_JSON: &str = "import json, sys, yaml\n\
        with open(sys.argv[1]) as f:\n    \
            docs = [d for d in yaml.safe_load_all(f) if d is not None]\n\
        json.dump(docs, sys.stdout)\n";
    let python: PathBuf = kubernetes_validate_venv().join("bin/python");
    let json = stdout_of(Command::new(python).args(["-c", TO_JSON]).arg(path))
        .with_context(|| format!("{} is not valid YAML", path.display()))?;
    serde_json::from_str(&json).with_context(|| format!("reading {} as JSON", path.display()))
}

fn single_document(path: &Path) -> Result<Value> {
    let mut docs = yaml_documents(path)?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        n => bail!("{} holds {n} YAML documents, not one", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn differences_name_the_paths() {
        let manifest = json!({"spec": {"args": ["--all"], "port": 9464, "a": 1}});
        let chart = json!({"spec": {"args": ["--pid"], "port": 9464, "b": 2}});
        let mut out = Vec::new();
        differences("DaemonSet/x", &manifest, &chart, &mut out);
        assert_eq!(
            out,
            [
                "DaemonSet/x.spec.a: only in the manifest (1)",
                r#"DaemonSet/x.spec.args[0]: manifest "--all", chart "--pid""#,
                "DaemonSet/x.spec.b: only in the chart (2)",
            ]
        );
    }

    #[test]
    fn helm_labels_and_the_namespace_are_not_compared() {
        let manifest = [
            json!({"kind": "Namespace", "metadata": {"name": "spanlet"}}),
            json!({"kind": "ServiceAccount", "metadata": {"name": "spanlet",
                "labels": {"app.kubernetes.io/name": "spanlet"}}}),
        ];
        let chart = [
            json!({"kind": "ServiceAccount", "metadata": {"name": "spanlet",
            "labels": {"app.kubernetes.io/name": "spanlet", "helm.sh/chart": "spanlet-0.1.0",
                "app.kubernetes.io/managed-by": "Helm"}}}),
        ];
        same_objects(&manifest, &chart).unwrap();
        let err = same_objects(&manifest, &[]).unwrap_err().to_string();
        assert!(err.contains("ServiceAccount/spanlet: not rendered by the chart"));
    }
}
