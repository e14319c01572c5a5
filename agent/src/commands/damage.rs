//! What the commands that read a capture say about its damage.

/// Tells on stderr what a streaming read found wrong with a capture.
pub(super) fn warn_of_damage<R: std::io::Read>(
    file: &std::path::Path,
    reader: &spanlet::capture::CaptureReader<R>,
) {
    let tail = reader.damaged_tail().map(|t| t.bytes);
    for warning in reader.integrity().warnings(tail) {
        eprintln!(
            "spanlet: warning: {}: {warning}",
            spanlet::output::term_escape::Escaped(&file.display().to_string())
        );
    }
}
