//! The user-space figure: `cargo bench -p agent --bench decode` (written by
//! the agent's authors) leaves `<target>/criterion-summary/decode.json` with
//! `spanlets_per_sec`; no file means "not measured", not a failure.

use std::{fs, process::Stdio};

use super::summary::Decode;
use crate::util::{cargo, display, target_dir};

pub fn run() -> Decode {
    let path = target_dir().join("criterion-summary").join("decode.json");
    // A stale summary must not pass for this run's.
    let _ = fs::remove_file(&path);
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "agent", "--bench", "decode"])
        // Keep stdout for the results table.
        .stdout(Stdio::from(std::io::stderr()));
    let shown = display(&cmd);
    eprintln!("$ {shown}");
    match cmd.status() {
        Err(err) => return Decode::NotMeasured(format!("could not start `{shown}`: {err}")),
        Ok(status) if !status.success() => {
            return Decode::NotMeasured(format!("`{shown}` failed ({status})"));
        }
        Ok(_) => {}
    }
    from_summary(fs::read_to_string(&path).ok().as_deref())
}

/// The bench's summary file, if it wrote one.
fn from_summary(text: Option<&str>) -> Decode {
    let Some(text) = text else {
        return Decode::NotMeasured(
            "the decode bench wrote no criterion-summary/decode.json".into(),
        );
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v["spanlets_per_sec"].as_f64().is_some() => Decode::Measured(v),
        Ok(_) => Decode::NotMeasured("decode.json has no spanlets_per_sec".into()),
        Err(err) => Decode::NotMeasured(format!("decode.json is not JSON: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_file() {
        let d = from_summary(Some(r#"{"spanlets":1000000,"spanlets_per_sec":2500000.0}"#));
        assert_eq!(d.spanlets_per_sec(), Some(2.5e6));
        assert!(matches!(from_summary(None), Decode::NotMeasured(_)));
        assert!(matches!(from_summary(Some("{}")), Decode::NotMeasured(_)));
        assert!(matches!(from_summary(Some("nope")), Decode::NotMeasured(_)));
    }
}
