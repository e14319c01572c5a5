//! `spanlet run`'s settings: flags and `SPANLET_*` variables, over an
//! optional TOML file (`--config`), over defaults. Target selections from
//! the flags and the file add up; the file's part is re-read on SIGHUP.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Args;
use serde::de::{Deserialize, Deserializer, Visitor};

use crate::{
    kernel::features::Features,
    node::selection::SelectionSpec,
    node::units::{parse_duration, parse_size},
};

pub const DEFAULT_METRICS_ADDRESS: &str = "0.0.0.0:9464";
const DEFAULT_MIN_WAIT: Duration = Duration::from_micros(10);
const DEFAULT_RINGBUF: u32 = 8 << 20;

/// `spanlet run`'s flags beside the selection and the OTLP ones. Those the
/// file may set too have no clap default: unset, the file's value applies.
#[derive(Debug, Args)]
pub struct RunFlags {
    /// This node's Kubernetes name (from the downward API), which scopes
    /// the pods the agent watches and becomes k8s.node.name.
    #[arg(long, value_name = "NAME", env = "SPANLET_NODE_NAME")]
    pub node_name: Option<String>,
    /// Where to serve /healthz, /readyz and Prometheus /metrics; "off" to
    /// serve nothing [default: 0.0.0.0:9464].
    #[arg(long, value_name = "ADDR:PORT", env = "SPANLET_METRICS_ADDRESS")]
    pub metrics_address: Option<String>,
    /// A TOML file with the same settings (flags and environment win; the
    /// target selections of both add up). SIGHUP re-reads its selection.
    #[arg(long, value_name = "FILE", env = "SPANLET_CONFIG")]
    pub config: Option<PathBuf>,
    /// Stop after this long; default: until SIGINT/SIGTERM (or, with --pid
    /// alone, until those processes exit).
    #[arg(short, long, value_parser = parse_duration, env = "SPANLET_DURATION")]
    pub duration: Option<Duration>,
    /// Waits shorter than this are not exported (counted only) [default: 10us].
    #[arg(long, value_parser = parse_duration, env = "SPANLET_MIN_WAIT")]
    pub min_wait: Option<Duration>,
    /// Also trace processes that traced processes fork (always on with
    /// selectors other than --pid).
    #[arg(long, env = "SPANLET_FOLLOW_FORKS")]
    pub follow_forks: bool,
    /// Also record waits for contended kernel locks (mutexes, rwsems such
    /// as mmap_lock, spinlocks) from the lock:contention_begin/end
    /// tracepoints, as kernel_lock_wait spanlets (off by default).
    #[arg(long, env = "SPANLET_KERNEL_LOCKS")]
    pub kernel_locks: bool,
    /// Size of the kernel event ring (power of two, e.g. 8MiB) [default: 8MiB].
    #[arg(long, value_parser = parse_size, env = "SPANLET_RINGBUF_SIZE")]
    pub ringbuf_size: Option<u32>,
    /// OpenTelemetry eBPF Instrumentation's pinned trace-context map, read
    /// (when it is there) for threads without OTEP 4947 thread context.
    #[arg(long, value_name = "PATH", default_value = crate::kernel::features::OBI_CTX_MAP, env = "SPANLET_OBI_CTX_MAP")]
    pub obi_ctx_map: PathBuf,
}

/// The config file. Keys are the long flag names with `_` for `-`: the
/// selection's and these.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// The selection's keys, taken out of the same table by [`Self::parse`].
    #[serde(skip)]
    pub selection: SelectionSpec,
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
        let message = |e: toml::de::Error| e.message().to_owned();
        let table: toml::Table = toml::from_str(text).map_err(message)?;
        // serde's `flatten` cannot deny unknown keys and still list the
        // known ones, so the table is split here, key by key in toml's own
        // (sorted) order, each checked by the struct that has it: the first
        // mistake is reported as one struct with all the keys would.
        let selection_keys = field_names::<SelectionSpec>();
        let own_keys = field_names::<Self>();
        let (mut selection, mut own) = (toml::Table::new(), toml::Table::new());
        for (key, value) in table {
            let one = toml::Table::from_iter([(key.clone(), value.clone())]);
            if selection_keys.contains(&key.as_str()) {
                SelectionSpec::deserialize(one).map_err(message)?;
                selection.insert(key, value);
            } else if own_keys.contains(&key.as_str()) {
                Self::deserialize(one).map_err(message)?;
                own.insert(key, value);
            } else {
                return Err(unknown_key(&key, &[selection_keys, own_keys].concat()));
            }
        }
        let mut config = Self::deserialize(own).map_err(message)?;
        config.selection = SelectionSpec::deserialize(selection).map_err(message)?;
        // Checked now, not when first used.
        if let Some(d) = &config.min_wait {
            parse_duration(d).map_err(|e| format!("min_wait: {e}"))?;
        }
        if let Some(s) = &config.ringbuf_size {
            parse_size(s).map_err(|e| format!("ringbuf_size: {e}"))?;
        }
        Ok(config)
    }
}

/// An unknown key, worded as serde words it for a struct.
fn unknown_key(key: &str, known: &[&str]) -> String {
    let known: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    format!(
        "unknown field `{key}`, expected one of {}",
        known.join(", ")
    )
}

/// The keys a derived `Deserialize` struct takes (serde's list of its
/// fields), noted by a deserializer that only asks for them.
fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Names<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Names<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom(
                "only the field names were asked for",
            ))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Names(&mut fields));
    fields
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
    pub duration: Option<Duration>,
    /// What the programs record; the node agent adds how it selects (see
    /// `Node::adjust`).
    pub features: Features,
}

impl RunSettings {
    pub fn new(selection: &SelectionSpec, flags: &RunFlags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let metrics_address = flags
            .metrics_address
            .clone()
            .or(file.metrics_address.clone())
            .unwrap_or_else(|| DEFAULT_METRICS_ADDRESS.to_owned());
        Ok(Self {
            flag_selection: selection.clone(),
            file_selection: file.selection.clone(),
            config_file: flags.config.clone(),
            node_name: flags
                .node_name
                .clone()
                .or(file.node_name.clone())
                .filter(|n| !n.is_empty()),
            metrics_address: (metrics_address != "off").then_some(metrics_address),
            duration: flags.duration,
            features: Features {
                // Checked by FileConfig::parse.
                min_wait: flags
                    .min_wait
                    .or_else(|| {
                        file.min_wait
                            .as_deref()
                            .and_then(|d| parse_duration(d).ok())
                    })
                    .unwrap_or(DEFAULT_MIN_WAIT),
                mutex_uprobes: false,
                kernel_locks: flags.kernel_locks || file.kernel_locks,
                follow_forks: flags.follow_forks || file.follow_forks,
                ringbuf_bytes: flags
                    .ringbuf_size
                    .or_else(|| {
                        file.ringbuf_size
                            .as_deref()
                            .and_then(|s| parse_size(s).ok())
                    })
                    .unwrap_or(DEFAULT_RINGBUF),
                obi_ctx_map: Some(flags.obi_ctx_map.clone()),
                trace_all: false,
                report_all_execs: false,
            },
        })
    }

    /// The whole selection now.
    pub fn selection(&self) -> SelectionSpec {
        self.flag_selection.union(&self.file_selection)
    }

    /// The selection with the file read again (SIGHUP).
    pub fn reload_selection(&self) -> Result<SelectionSpec, ConfigError> {
        let file = match &self.config_file {
            Some(path) => FileConfig::load(path)?.selection,
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
        assert_eq!(c.selection.cgroups, ["/sys/fs/cgroup/unified/app"]);
        assert_eq!(c.selection.k8s_pod_labels, ["app=shop"]);
        assert!(!c.selection.all);
    }

    #[test]
    fn names_what_is_wrong_in_a_config_file() {
        let unknown = FileConfig::parse("cgroup = [\"/x\"]").unwrap_err();
        assert!(unknown.contains("unknown field `cgroup`"), "{unknown}");
        let bad = FileConfig::parse("min_wait = \"10\"").unwrap_err();
        assert!(bad.contains("min_wait"), "{bad}");
        assert!(FileConfig::parse("all = 3").is_err());
    }

    /// The selection's keys and the agent's are one table: an unknown key
    /// lists them all, and of two mistakes the first in key order is named,
    /// as when the file was one struct.
    #[test]
    fn a_config_file_is_one_table() {
        let c = FileConfig::parse("pids = [7]\nnode_name = \"n1\"\nkernel_locks = true").unwrap();
        assert_eq!(c.selection.pids, [7]);
        assert_eq!(c.node_name.as_deref(), Some("n1"));
        assert!(c.kernel_locks);
        assert_eq!(
            FileConfig::parse("zeta = 1\ncgroup = 2").unwrap_err(),
            "unknown field `cgroup`, expected one of `all`, `pids`, `cgroups`, `container_ids`, \
             `k8s_namespaces`, `k8s_pod_labels`, `node_name`, `metrics_address`, `min_wait`, \
             `follow_forks`, `kernel_locks`, `ringbuf_size`"
        );
        assert_eq!(
            FileConfig::parse("pids = [\"x\"]\nnode_name = 5").unwrap_err(),
            "invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            FileConfig::parse("bogus = 1\nall = 3").unwrap_err(),
            "invalid type: integer `3`, expected a boolean"
        );
    }
}
