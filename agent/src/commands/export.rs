use std::{
    fs::File,
    io::{BufWriter, Write as _},
    process::ExitCode,
};

use anyhow::Context as _;
use spanlet::{
    capture::Capture,
    cli::{ExportArgs, ExportFormat},
    export::write_jsonl,
};

pub fn run(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let capture = Capture::open(&args.file)?;
    if capture.truncated {
        eprintln!(
            "spanlet: warning: {} ends in {} damaged bytes (an interrupted recording?); exporting what precedes them",
            args.file.display(),
            capture.damaged_tail_bytes
        );
    }
    let ExportFormat::Jsonl = args.format;
    let written = match &args.output {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let mut out = BufWriter::new(file);
            let n = write_jsonl(&capture, &mut out)?;
            out.flush()?;
            n
        }
        None => {
            let mut out = BufWriter::new(std::io::stdout().lock());
            let n = write_jsonl(&capture, &mut out)?;
            out.flush()?;
            n
        }
    };
    tracing::debug!(written, "exported");
    Ok(ExitCode::SUCCESS)
}
