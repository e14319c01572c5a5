//! What a reader found wrong with a capture while reading on: damaged
//! stretches it skipped, records it did not know, and spanlets the stats
//! records count but the file no longer holds.

use serde::Serialize;

/// How many damaged stretches' offsets are kept, for pointing at them; the
/// count and bytes cover all of them.
pub const OFFSETS_KEPT: usize = 16;

/// Counts of everything a reader skipped or could not account for. All
/// zero (and `stats_spanlets` equal to `spanlets_read_before_stats`) for an
/// intact capture. A damaged tail (the file ends inside a record) is kept
/// apart, see `Capture::truncated`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Integrity {
    /// Stretches of bytes in the middle of the file that held no intact
    /// record (a failed checksum or an impossible length); reading went on
    /// at the next intact record after each. Each held at least one record.
    pub damaged_stretches: u64,
    /// Their bytes, in total.
    pub damaged_bytes: u64,
    /// Byte offsets where the first [`OFFSETS_KEPT`] of them start.
    pub damaged_offsets: Vec<u64>,
    /// Intact records of types this build does not know (from a newer
    /// spanlet), skipped.
    pub unknown_records: u64,
    /// Spanlet records read.
    pub spanlets_read: u64,
    /// Spanlets the last stats record read says were written before it;
    /// `None` without a stats record.
    pub stats_spanlets: Option<u64>,
    /// Spanlet records read before that stats record. Lower than
    /// `stats_spanlets` when records were lost.
    pub spanlets_read_before_stats: u64,
}

impl Integrity {
    pub(super) fn add_damaged_stretch(&mut self, offset: u64, bytes: u64) {
        self.damaged_stretches += 1;
        self.damaged_bytes += bytes;
        if self.damaged_offsets.len() < OFFSETS_KEPT {
            self.damaged_offsets.push(offset);
        }
    }

    /// One sentence per problem, for warnings on stderr and in reports;
    /// `tail_bytes` is the damaged tail's length, if the file has one.
    pub fn warnings(&self, tail_bytes: Option<u64>) -> Vec<String> {
        let mut out = Vec::new();
        if self.damaged_stretches > 0 {
            let first = self.damaged_offsets.first().copied().unwrap_or_default();
            out.push(format!(
                "the capture is damaged: {} damaged stretch(es) in the middle of the file \
                 ({} bytes, the first at byte offset {first}) were skipped, each holding at \
                 least one record; reading went on at the next intact record",
                self.damaged_stretches, self.damaged_bytes
            ));
        }
        if let Some(bytes) = tail_bytes {
            out.push(format!(
                "the capture is truncated: it ends in {bytes} damaged bytes (the recorder \
                 probably crashed, or is still writing); everything before them is read"
            ));
        }
        if let Some(counted) = self.stats_spanlets {
            let read = self.spanlets_read_before_stats;
            if counted > read {
                out.push(format!(
                    "{} spanlets are missing: the capture's stats record counts {counted} \
                     spanlets written before it, but only {read} were read",
                    counted - read
                ));
            } else if counted < read {
                out.push(format!(
                    "the capture's stats record counts {counted} spanlets written before it, \
                     but {read} were read"
                ));
            }
        }
        if self.unknown_records > 0 {
            out.push(format!(
                "{} records of unknown types (from a newer spanlet?) were skipped",
                self.unknown_records
            ));
        }
        out
    }
}
