//! Writer and reader together: round trips, crash damage, bad files.

use std::path::Path;

use super::format::{RECORD_HEADER_LEN, record_type};
use super::testutil::*;
use super::*;
use crate::model::{CaptureStats, ProcessInfo};

/// Writes a capture with one record of every type and returns its bytes.
fn write_sample(dir: &Path, end: bool) -> Vec<u8> {
    let path = dir.join("c.spanlet");
    let mut w = CaptureWriter::create(&path, &sample_meta()).expect("create");
    w.write_process(&sample_process()).expect("process");
    w.write_thread(&sample_thread(101, "holder"))
        .expect("thread");
    w.write_thread(&sample_thread(101, "renamed"))
        .expect("thread");
    w.write_spanlet(&full_spanlet()).expect("spanlet");
    w.write_spanlet(&minimal_spanlet()).expect("spanlet");
    w.write_stats(&CaptureStats::default()).expect("stats");
    w.write_stats(&sample_stats()).expect("stats");
    if end {
        w.finish(&sample_end()).expect("finish");
    } else {
        w.flush().expect("flush");
    }
    std::fs::read(&path).expect("read back")
}

fn read(bytes: &[u8]) -> Result<Capture, CaptureError> {
    Capture::from_reader(bytes, "mem.spanlet")
}

/// Length of the header plus metadata record at the start of `bytes`.
fn prologue_len(bytes: &[u8]) -> usize {
    let meta_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    12 + RECORD_HEADER_LEN + meta_len
}

#[test]
fn round_trips_every_record_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path(), true);
    let c = Capture::open(&dir.path().join("c.spanlet")).expect("open");
    assert_eq!(c.meta, sample_meta());
    assert_eq!(c.names.process(100), Some(&sample_process()));
    assert_eq!(c.thread_name(100, 101), Some("renamed"));
    assert_eq!(c.spanlets, vec![full_spanlet(), minimal_spanlet()]);
    assert_eq!(c.stats, Some(sample_stats()), "the last stats record wins");
    assert_eq!(c.end, Some(sample_end()));
    assert!(!c.truncated);
    assert_eq!(c.damaged_tail_bytes, 0);
    assert_eq!(
        c.integrity,
        Integrity {
            spanlets_read: 2,
            stats_spanlets: Some(2),
            spanlets_read_before_stats: 2,
            ..Integrity::default()
        }
    );
}

#[test]
fn streams_records_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path(), true);
    let reader = CaptureReader::open(&dir.path().join("c.spanlet")).expect("open");
    assert_eq!(reader.meta(), &sample_meta());
    let records: Vec<Record> = reader.collect::<Result<_, _>>().expect("records");
    assert_eq!(records.len(), 8);
    assert_eq!(records.first(), Some(&Record::Process(sample_process())));
    assert_eq!(records.get(3), Some(&Record::Spanlet(full_spanlet())));
    assert_eq!(records.last(), Some(&Record::End(sample_end())));
}

#[test]
fn writer_stamps_version_and_field_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.spanlet");
    let mut meta = sample_meta();
    meta.format_version = 0;
    meta.spanlet_fields.clear();
    CaptureWriter::create(&path, &meta).expect("create");
    let c = Capture::open(&path).expect("open");
    assert_eq!(c.meta, sample_meta());
    assert!(c.spanlets.is_empty() && c.end.is_none() && !c.truncated);
}

#[test]
fn reads_everything_before_a_cut_inside_the_last_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = write_sample(dir.path(), false);
    let extra = {
        let mut bytes = Vec::new();
        super::codec::encode_spanlet(&full_spanlet(), &mut bytes);
        raw_record(record_type::SPANLET, &bytes)
    };
    let mut bytes = full.clone();
    bytes.extend_from_slice(&extra);
    let whole = read(&bytes).expect("whole");
    assert_eq!(whole.spanlets.len(), 3);
    for cut in full.len()..bytes.len() {
        let c = read(&bytes[..cut]).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(c.spanlets.len(), 2, "cut at {cut}");
        assert_eq!(c.stats, Some(sample_stats()));
        assert_eq!(c.truncated, cut != full.len(), "cut at {cut}");
        assert_eq!(c.damaged_tail_bytes, (cut - full.len()) as u64);
    }
}

#[test]
fn every_cut_of_a_whole_file_opens_or_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = write_sample(dir.path(), true);
    let prologue = prologue_len(&bytes);
    for cut in 0..bytes.len() {
        match read(&bytes[..cut]) {
            Ok(_) => assert!(cut >= prologue, "cut {cut} opened"),
            Err(CaptureError::Empty { .. }) => assert_eq!(cut, 0),
            Err(CaptureError::InvalidMeta { .. }) => assert!(cut < prologue),
            Err(e) => panic!("cut at {cut}: {e}"),
        }
    }
}

#[test]
fn crc_mismatch_stops_reading_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = write_sample(dir.path(), true);
    let len = bytes.len();
    // Flip a byte in the payload of the end record (the last one).
    bytes[len - 2] ^= 0x40;
    let c = read(&bytes).expect("open");
    assert!(c.truncated);
    assert!(c.end.is_none());
    assert_eq!(c.stats, Some(sample_stats()));
    let mut reader = CaptureReader::from_reader(&bytes[..], "mem").expect("open");
    while reader.next_record().expect("record").is_some() {}
    let tail = reader.damaged_tail().expect("damaged");
    assert_eq!(tail.damage, TailDamage::CrcMismatch);
    assert_eq!(tail.offset + tail.bytes, len as u64);
}

#[test]
fn corrupt_meta_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = write_sample(dir.path(), true);
    bytes[30] ^= 1;
    assert!(matches!(
        read(&bytes),
        Err(CaptureError::InvalidMeta { .. })
    ));
}

#[test]
fn impossible_length_is_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = write_sample(dir.path(), false);
    let good = bytes.len();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0; 20]);
    let mut reader = CaptureReader::from_reader(&bytes[..], "mem").expect("open");
    while reader.next_record().expect("record").is_some() {}
    let tail = reader.damaged_tail().expect("damaged");
    assert_eq!(tail.damage, TailDamage::BadLength);
    assert_eq!(tail.offset, good as u64);
    assert_eq!(tail.bytes, 24);
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty");
    std::fs::write(&path, b"").expect("write");
    let err = Capture::open(&path).expect_err("empty");
    assert!(matches!(err, CaptureError::Empty { .. }));
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = Capture::open(Path::new("/nonexistent/x.spanlet")).expect_err("missing");
    assert!(matches!(err, CaptureError::Io { .. }));
    assert_eq!(err.to_string(), "/nonexistent/x.spanlet");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause.as_deref().is_some_and(|c| c.contains("No such file")),
        "the I/O cause should be the source: {cause:?}"
    );
}

#[test]
fn bad_magic() {
    for bytes in [
        &b"PK\x03\x04 not a capture"[..],
        b"X",
        b"SPANLEX\0\x01\0\0\0",
    ] {
        let err = read(bytes).expect_err("bad magic");
        assert!(matches!(err, CaptureError::NotACapture { .. }), "{err}");
        assert!(err.to_string().contains("not a spanlet capture"));
    }
}

#[test]
fn wrong_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = write_sample(dir.path(), true);
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    let err = read(&bytes).expect_err("version");
    assert!(matches!(
        err,
        CaptureError::UnsupportedVersion {
            found: 7,
            supported: 2,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("version 7") && msg.contains("versions 1 to 2"),
        "{msg}"
    );
}

#[test]
fn meta_must_come_first() {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let process = serde_json::to_vec(&sample_process()).expect("json");
    bytes.extend_from_slice(&raw_record(record_type::PROCESS, &process));
    assert!(matches!(
        read(&bytes),
        Err(CaptureError::InvalidMeta { .. })
    ));
    let mut no_meta = MAGIC.to_vec();
    no_meta.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    assert!(matches!(
        read(&no_meta),
        Err(CaptureError::InvalidMeta { .. })
    ));
}

#[test]
fn unknown_record_types_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = write_sample(dir.path(), false);
    let mut bytes = full[..prologue_len(&full)].to_vec();
    bytes.extend_from_slice(&raw_record(200, b"from the future"));
    bytes.extend_from_slice(&full[prologue_len(&full)..]);
    let c = read(&bytes).expect("open");
    assert_eq!(c.integrity.unknown_records, 1);
    assert_eq!(c.spanlets.len(), 2);
    assert!(!c.truncated);
}

#[test]
fn malformed_record_with_valid_crc_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = write_sample(dir.path(), false);
    for (ty, payload) in [
        (record_type::SPANLET, &b"\x01"[..]),
        (record_type::PROCESS, b"{}"),
        (record_type::META, b"{}"),
    ] {
        let mut bytes = full.clone();
        let offset = bytes.len() as u64;
        bytes.extend_from_slice(&raw_record(ty, payload));
        bytes.extend_from_slice(&raw_record(record_type::END, b"{}"));
        let err = read(&bytes).expect_err("malformed");
        match err {
            CaptureError::Malformed {
                offset: at,
                record_type,
                ..
            } => {
                assert_eq!((at, record_type), (offset, ty));
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn process_records_replace_by_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.spanlet");
    let mut w = CaptureWriter::create(&path, &sample_meta()).expect("create");
    w.write_process(&sample_process()).expect("process");
    let exec = ProcessInfo {
        comm: "after-exec".into(),
        ..sample_process()
    };
    w.write_process(&exec).expect("process");
    w.finish(&sample_end()).expect("finish");
    let c = Capture::open(&path).expect("open");
    assert_eq!(c.process_comm(100), Some("after-exec"));
}

/// Small deterministic PRNG; the crate has no `rand`.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn never_panics_on_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let valid = write_sample(dir.path(), true);
    let prologue = prologue_len(&valid);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut spanlet_payload = Vec::new();
    super::codec::encode_spanlet(&full_spanlet(), &mut spanlet_payload);

    for round in 0..3000 {
        let bytes = match round % 3 {
            // Random bytes, sometimes behind a valid header.
            0 => {
                let mut b = if rng.below(2) == 0 {
                    valid[..prologue].to_vec()
                } else {
                    Vec::new()
                };
                let n = rng.below(200);
                b.extend((0..n).map(|_| rng.next() as u8));
                b
            }
            // A valid file with a few bytes flipped, then cut somewhere.
            1 => {
                let mut b = valid.clone();
                for _ in 0..=rng.below(4) {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
                b.truncate(rng.below(b.len() + 1));
                b
            }
            // Records with valid CRCs and damaged payloads, to exercise the
            // decoders rather than the checksum.
            _ => {
                let mut b = valid[..prologue].to_vec();
                for _ in 0..rng.below(5) {
                    let mut payload = spanlet_payload.clone();
                    for _ in 0..=rng.below(3) {
                        let i = rng.below(payload.len());
                        payload[i] = rng.next() as u8;
                    }
                    payload.truncate(rng.below(payload.len() + 2));
                    let ty = 1 + rng.below(7) as u8;
                    b.extend_from_slice(&raw_record(ty, &payload));
                }
                b
            }
        };
        let _ = read(&bytes);
    }
}

/// Throughput check, run by hand: `cargo test --release -- --ignored throughput`.
#[test]
#[ignore]
fn throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.spanlet");
    let mut w = CaptureWriter::create(&path, &sample_meta()).expect("create");
    let s = full_spanlet();
    let n = 2_000_000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        w.write_spanlet(&s).expect("write");
    }
    let write = t.elapsed();
    w.finish(&sample_end()).expect("finish");
    let t = std::time::Instant::now();
    let mut reader = CaptureReader::open(&path).expect("open");
    let mut count = 0;
    while reader.next_record().expect("record").is_some() {
        count += 1;
    }
    let read = t.elapsed();
    assert_eq!(count, n + 1);
    eprintln!(
        "write {:.2} M/s, read {:.2} M/s",
        n as f64 / write.as_secs_f64() / 1e6,
        n as f64 / read.as_secs_f64() / 1e6
    );
}

/// A capture of `n` spanlets and a final stats record counting them.
fn many_spanlets(dir: &Path, n: u64) -> Vec<u8> {
    let path = dir.join("many.spanlet");
    let w = CaptureWriter::create(&path, &sample_meta()).expect("create");
    finish_with_spanlets(w, &path, n)
}

#[test]
fn damage_in_the_middle_skips_only_the_damaged_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = many_spanlets(dir.path(), 100);
    let offsets = record_offsets(&bytes);
    // offsets[0] is the metadata; spanlet i is at offsets[i + 1].
    for (what, damage) in [
        (
            "payload bit",
            &(|b: &mut Vec<u8>, at: usize| b[at + 30] ^= 4) as &dyn Fn(&mut Vec<u8>, usize),
        ),
        ("length bit", &|b: &mut Vec<u8>, at: usize| b[at + 2] ^= 1),
        ("crc byte", &|b: &mut Vec<u8>, at: usize| b[at + 5] ^= 0xff),
        ("type byte", &|b: &mut Vec<u8>, at: usize| b[at + 8] = 200),
        ("zeroed header", &|b: &mut Vec<u8>, at: usize| {
            b[at..at + 9].fill(0)
        }),
    ] {
        let mut damaged = bytes.clone();
        let at = offsets[50];
        damage(&mut damaged, at);
        let c = read(&damaged).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(c.spanlets.len(), 99, "{what}");
        assert!(c.spanlets.iter().all(|s| s.wait_ns != 49), "{what}");
        assert_eq!(c.end, Some(sample_end()), "{what}");
        assert!(!c.truncated, "{what}");
        let i = &c.integrity;
        assert_eq!(
            (
                i.damaged_stretches,
                i.damaged_bytes,
                i.damaged_offsets.as_slice()
            ),
            (1, (offsets[51] - at) as u64, &[at as u64][..]),
            "{what}"
        );
        assert_eq!(
            (i.stats_spanlets, i.spanlets_read_before_stats),
            (Some(100), 99)
        );
        let warnings = c.warnings().join("\n");
        assert!(
            warnings.contains("1 spanlets are missing"),
            "{what}: {warnings}"
        );
        assert!(!warnings.contains("truncated"), "{what}: {warnings}");
    }
}

#[test]
fn a_damaged_stretch_over_several_records_is_one_stretch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = many_spanlets(dir.path(), 100);
    let offsets = record_offsets(&bytes);
    let (from, to) = (offsets[11], offsets[21]);
    let mut rng = XorShift(7);
    for b in &mut bytes[from + 3..to - 3] {
        *b = rng.next() as u8;
    }
    let c = read(&bytes).expect("open");
    assert_eq!(c.spanlets.len(), 90);
    assert_eq!(c.integrity.damaged_stretches, 1);
    assert_eq!(c.integrity.damaged_bytes, (to - from) as u64);
    assert_eq!(c.integrity.stats_spanlets, Some(100));
}

#[test]
fn a_long_run_of_zeros_is_a_damaged_tail_read_in_small_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = many_spanlets(dir.path(), 10);
    let zeros = 256 << 20;
    use std::io::Read as _;
    let input = (&bytes[..]).chain(std::io::repeat(0).take(zeros));
    let mut reader = CaptureReader::from_reader(input, "sparse").expect("open");
    let mut n = 0;
    while reader.next_record().expect("record").is_some() {
        n += 1;
    }
    assert_eq!(n, 12, "10 spanlets, stats and end");
    let tail = reader.damaged_tail().expect("a damaged tail");
    assert_eq!((tail.offset, tail.bytes), (bytes.len() as u64, zeros));
}

#[test]
fn a_link_at_the_output_path_is_refused_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("target");
    std::fs::write(&target, "keep me").expect("write target");
    let link = dir.path().join("c.spanlet");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let Err(err) = CaptureWriter::create(&link, &sample_meta()) else {
        panic!("a link at the output path was accepted");
    };
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause
            .as_deref()
            .is_some_and(|c| c.contains("symbolic link")),
        "{cause:?}"
    );
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep me");
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 2);
}

#[test]
fn a_file_at_the_output_path_is_replaced_by_a_private_one() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.spanlet");
    std::fs::write(&path, "someone else's").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    // Another name for the same file: it must keep its content.
    let other = dir.path().join("hard-link");
    std::fs::hard_link(&path, &other).expect("hard link");
    let w = CaptureWriter::create(&path, &sample_meta()).expect("create");
    w.finish(&sample_end()).expect("finish");
    assert_eq!(
        std::fs::read_to_string(&other).expect("read"),
        "someone else's"
    );
    let meta = std::fs::metadata(&path).expect("stat");
    assert_eq!(meta.permissions().mode() & 0o777, PRIVATE_MODE);
    assert_eq!(Capture::open(&path).expect("open").end, Some(sample_end()));
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 2);
}

#[test]
fn dev_null_is_written_in_place() {
    let file = PrivateFile::create(Path::new("/dev/null")).expect("/dev/null");
    std::io::Write::write_all(&mut file.file(), b"nothing").expect("write");
    file.persist().expect("persist");
    let meta = std::fs::symlink_metadata("/dev/null").expect("stat");
    use std::os::unix::fs::FileTypeExt as _;
    assert!(meta.file_type().is_char_device());
}

#[test]
fn a_private_file_dropped_unpersisted_leaves_the_path_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.spanlet");
    std::fs::write(&path, "old capture").expect("write");
    let file = PrivateFile::create(&path).expect("create");
    std::io::Write::write_all(&mut file.file(), b"new").expect("write");
    drop(file);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "old capture");
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
}

#[test]
fn a_directory_at_the_output_path_is_refused_up_front() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = PrivateFile::create(dir.path()).expect_err("a directory");
    assert_eq!(err.raw_os_error(), Some(libc::EISDIR));
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
}
