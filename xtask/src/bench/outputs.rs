//! Where the results go: raw JSON always, BENCHMARKS.md for a full run of
//! everything (or where --markdown says).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use super::{report, results::Results};
use crate::util::workspace_root;

pub struct Destinations {
    /// Directory for the raw JSON.
    pub results_dir: PathBuf,
    /// The JSON's file name: `bench-<date>.json`, or `smoke.json` (each
    /// smoke pass replaces the last one's).
    pub smoke: bool,
    pub markdown: Option<PathBuf>,
}

/// Writes the raw JSON and the Markdown report;
/// returns the JSON's path.
pub fn write(results: &Results, to: &Destinations, work_dir: &Path) -> Result<PathBuf> {
    let dir = &to.results_dir;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = if to.smoke {
        "smoke.json".to_owned()
    } else {
        format!("bench-{}.json", results.machine.date.replace(':', ""))
    };
    let json_path = dir.join(name);
    let text = serde_json::to_string_pretty(results).context("serializing the results")?;
    fs::write(&json_path, text + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!("bench: raw results in {}", json_path.display());

    if let Some(md_path) = &to.markdown {
        let md_dir = md_path.parent().unwrap_or(Path::new("."));
        let md_dir = fs::canonicalize(md_dir).unwrap_or_else(|_| md_dir.to_path_buf());
        let root = workspace_root();
        let paths = report::Paths {
            workspace: &root.to_string_lossy(),
            work_dir: &work_dir.to_string_lossy(),
            raw_json: &relative(&json_path, &md_dir),
        };
        fs::write(md_path, report::markdown(results, &paths))
            .with_context(|| format!("writing {}", md_path.display()))?;
        eprintln!("bench: wrote {}", md_path.display());
    }
    Ok(json_path)
}

/// `path` relative to `base` when inside it; else absolute.
fn relative(path: &Path, base: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    path.strip_prefix(base)
        .unwrap_or(&path)
        .to_string_lossy()
        .into_owned()
}
