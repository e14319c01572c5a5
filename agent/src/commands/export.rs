use std::{
    io::{Read, Write},
    process::ExitCode,
};

use anyhow::Context as _;
use spanlet::{
    capture::{CaptureReader, PrivateFile, Record},
    cli::{ExportArgs, ExportFormat},
    output::jsonl::JsonlWriter,
};

/// Streams the capture record by record, so a capture of any size exports
/// in bounded memory. A file output appears only when the export is
/// complete, and never writes through a link planted at its path.
pub fn run(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let ExportFormat::Jsonl = args.format;
    let mut reader = CaptureReader::open(&args.file)?;
    let written = match &args.output {
        Some(path) => {
            let what = || format!("writing {}", path.display());
            let file = PrivateFile::create(path).with_context(what)?;
            let n = export(&mut reader, file.file(), what)?;
            file.persist().with_context(what)?;
            n
        }
        None => export(&mut reader, std::io::stdout().lock(), || {
            "writing to standard output".to_owned()
        })?,
    };
    super::damage::warn_of_damage(&args.file, &reader);
    tracing::debug!(written, "exported");
    Ok(ExitCode::SUCCESS)
}

fn export<R: Read>(
    reader: &mut CaptureReader<R>,
    out: impl Write,
    what: impl Fn() -> String,
) -> anyhow::Result<u64> {
    let mut out = JsonlWriter::new(out);
    while let Some(record) = reader.next_record()? {
        if let Record::Spanlet(s) = record {
            out.write(&s).with_context(&what)?;
        }
    }
    out.finish().with_context(what)
}
