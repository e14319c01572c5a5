//! `spanlet run`'s settings: flags and `SPANLET_*` variables, over an
//! optional TOML file (`--config`), over defaults. Target selections from
//! the flags and the file add up; the file's part is re-read on SIGHUP.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{cli::RunArgs, node::targets::SelectionSpec};

pub const DEFAULT_METRICS_ADDRESS: &str = "0.0.0.0:9464";
const DEFAULT_MIN_WAIT: Duration = Duration::from_micros(10);
const DEFAULT_RINGBUF: u32 = 8 << 20;

/// The config file. Keys are the long flag names with `_` for `-`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub all: bool,
    pub pids: Vec<u32>,
    pub cgroups: Vec<String>,
    pub container_ids: Vec<String>,
    pub k8s_namespaces: Vec<String>,
    pub k8s_pod_labels: Vec<String>,
    pub node_name: Option<String>,
    pub metrics_address: Option<String>,
    pub min_wait: Option<String>,
    pub follow_forks: bool,
    pub kernel_locks: bool,
    pub ringbuf_size: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// The file's text, checked; the error says what is wrong where.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        // Checked now, not when first used.
        if let Some(d) = &config.min_wait {
            crate::cli::parse_duration(d).map_err(|e| format!("min_wait: {e}"))?;
        }
        if let Some(s) = &config.ringbuf_size {
            crate::cli::parse_size(s).map_err(|e| format!("ringbuf_size: {e}"))?;
        }
        Ok(config)
    }

    pub fn selection(&self) -> SelectionSpec {
        SelectionSpec {
            all: self.all,
            pids: self.pids.clone(),
            cgroups: self.cgroups.clone(),
            container_ids: self.container_ids.clone(),
            k8s_namespaces: self.k8s_namespaces.clone(),
            k8s_pod_labels: self.k8s_pod_labels.clone(),
        }
    }
}

/// Everything `spanlet run` runs with, merged.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// From the flags and environment only (the part a reload keeps).
    pub flag_selection: SelectionSpec,
    /// From the file, if any.
    pub file_selection: SelectionSpec,
    pub config_file: Option<PathBuf>,
    pub node_name: Option<String>,
    /// `None`: serve nothing.
    pub metrics_address: Option<String>,
    pub min_wait: Duration,
    pub follow_forks: bool,
    pub kernel_locks: bool,
    pub ringbuf_bytes: u32,
    pub duration: Option<Duration>,
    pub obi_ctx_map: PathBuf,
}

impl RunSettings {
    pub fn new(args: &RunArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let metrics_address = args
            .metrics_address
            .clone()
            .or(file.metrics_address.clone())
            .unwrap_or_else(|| DEFAULT_METRICS_ADDRESS.to_owned());
        Ok(Self {
            flag_selection: SelectionSpec {
                all: args.all,
                pids: args.pids.clone(),
                cgroups: args.cgroups.clone(),
                container_ids: args.container_ids.clone(),
                k8s_namespaces: args.k8s_namespaces.clone(),
                k8s_pod_labels: args.k8s_pod_labels.clone(),
            },
            file_selection: file.selection(),
            config_file: args.config.clone(),
            node_name: args
                .node_name
                .clone()
                .or(file.node_name.clone())
                .filter(|n| !n.is_empty()),
            metrics_address: (metrics_address != "off").then_some(metrics_address),
            // Checked by FileConfig::parse.
            min_wait: args
                .min_wait
                .or_else(|| {
                    file.min_wait
                        .as_deref()
                        .and_then(|d| crate::cli::parse_duration(d).ok())
                })
                .unwrap_or(DEFAULT_MIN_WAIT),
            follow_forks: args.follow_forks || file.follow_forks,
            kernel_locks: args.kernel_locks || file.kernel_locks,
            ringbuf_bytes: args
                .ringbuf_size
                .or_else(|| {
                    file.ringbuf_size
                        .as_deref()
                        .and_then(|s| crate::cli::parse_size(s).ok())
                })
                .unwrap_or(DEFAULT_RINGBUF),
            duration: args.duration,
            obi_ctx_map: args.obi_ctx_map.clone(),
        })
    }

    /// The whole selection now.
    pub fn selection(&self) -> SelectionSpec {
        self.flag_selection.union(&self.file_selection)
    }

    /// The selection with the file read again (SIGHUP).
    pub fn reload_selection(&self) -> Result<SelectionSpec, ConfigError> {
        let file = match &self.config_file {
            Some(path) => FileConfig::load(path)?.selection(),
            None => SelectionSpec::default(),
        };
        Ok(self.flag_selection.union(&file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_config_file() {
        let c = FileConfig::parse(
            r#"
            cgroups = ["/sys/fs/cgroup/unified/app"]
            k8s_pod_labels = ["app=shop"]
            min_wait = "50us"
            metrics_address = "127.0.0.1:9999"
            "#,
        )
        .unwrap();
        assert_eq!(c.cgroups, ["/sys/fs/cgroup/unified/app"]);
        assert_eq!(c.selection().k8s_pod_labels, ["app=shop"]);
        assert!(!c.all);
    }

    #[test]
    fn names_what_is_wrong_in_a_config_file() {
        let unknown = FileConfig::parse("cgroup = [\"/x\"]").unwrap_err();
        assert!(unknown.contains("unknown field `cgroup`"), "{unknown}");
        let bad = FileConfig::parse("min_wait = \"10\"").unwrap_err();
        assert!(bad.contains("min_wait"), "{bad}");
        assert!(FileConfig::parse("all = 3").is_err());
    }
}
