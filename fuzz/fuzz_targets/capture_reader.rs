//! Any bytes as a capture file: reading every record, then the report a
//! user would get from it (text and JSON), must end in data or an error,
//! never a panic, an abort or an allocation sized by a corrupt length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanlet::{
    capture::{Capture, CaptureReader},
    output::report::{build_report, render_json, render_text},
};

fuzz_target!(|data: &[u8]| {
    if let Ok(reader) = CaptureReader::from_reader(data, "fuzz.spanlet") {
        for record in reader {
            if record.is_err() {
                break;
            }
        }
    }
    if let Ok(capture) = Capture::from_reader(data, "fuzz.spanlet") {
        let report = build_report(&capture, 10);
        let _ = render_text(&report);
        let _ = render_json(&report);
    }
});
