//! Property tests of the capture format: any records written read back
//! equal, and no damage makes a reader panic or yield a record that was
//! not written.

use proptest::prelude::*;

use super::testutil::{sample_end, sample_meta};
use super::*;
use crate::model::{
    CaptureStats, ProcessInfo, SocketInfo, SpanContext, Spanlet, SpanletKind, ThreadInfo,
    WaitOutcome,
};

/// Thread names as the codec stores them: at most 64 bytes.
fn name() -> impl Strategy<Value = String> {
    "\\PC{0,15}"
}

fn context() -> impl Strategy<Value = Option<SpanContext>> {
    proptest::option::of(
        (any::<[u8; 16]>(), any::<[u8; 8]>())
            .prop_map(|(trace_id, span_id)| SpanContext { trace_id, span_id }),
    )
}

fn socket() -> impl Strategy<Value = Option<SocketInfo>> {
    proptest::option::of(
        (any::<[u16; 5]>(), any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(n, local, peer)| {
            SocketInfo {
                family: n[0],
                sock_type: n[1],
                protocol: n[2],
                local_port: n[3],
                peer_port: n[4],
                local_addr: local,
                peer_addr: peer,
            }
        }),
    )
}

fn spanlet() -> impl Strategy<Value = Spanlet> {
    let ids = (
        proptest::sample::select(SpanletKind::ALL.to_vec()),
        0u8..=4,
        any::<u32>(),
        any::<u32>(),
        name(),
        any::<[u64; 3]>(),
        any::<Option<u64>>(),
        any::<[Option<u32>; 3]>(),
        proptest::option::of(name()),
        any::<[u32; 4]>(),
    );
    let extra = (context(), context(), context(), socket());
    (ids, extra).prop_map(
        |(
            (
                kind,
                outcome,
                pid,
                tid,
                comm,
                [addr, start, wait],
                woken,
                [holder, wpid, wtid],
                wcomm,
                raw,
            ),
            (context, holder_context, waker_context, socket),
        )| Spanlet {
            kind,
            outcome: WaitOutcome::from_code(outcome).unwrap_or(WaitOutcome::Unknown),
            pid,
            tid,
            comm: comm.into(),
            addr,
            start_unix_nano: start,
            wait_ns: wait,
            woken_after_ns: woken,
            holder_tid: holder,
            waker_pid: wpid,
            waker_tid: wtid,
            waker_comm: wcomm.map(Into::into),
            syscall: raw[0],
            op: raw[1],
            arg: raw[2],
            flags: raw[3],
            context,
            holder_context,
            waker_context,
            socket,
        },
    )
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        1 => (any::<u32>(), name(), proptest::collection::vec(".{0,20}", 0..4)).prop_map(
            |(pid, comm, cmdline)| Record::Process(ProcessInfo {
                pid,
                comm,
                cmdline,
                ..ProcessInfo::default()
            })
        ),
        1 => (any::<u32>(), any::<u32>(), name(), any::<Option<u32>>()).prop_map(
            |(pid, tid, name, ns_tid)| Record::Thread(ThreadInfo {
                pid,
                tid,
                name,
                ns_tid
            })
        ),
        4 => spanlet().prop_map(Record::Spanlet),
        1 => any::<[u64; 3]>().prop_map(|[spanlets, waits_seen, below]| Record::Stats(CaptureStats {
            spanlets,
            waits_seen,
            below_min_wait: below,
            ..CaptureStats::default()
        })),
    ]
}

/// Writes `records` (and an end record) through the real writer.
fn write(records: &[Record]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.spanlet");
    let mut w = CaptureWriter::create(&path, &sample_meta()).expect("create");
    for r in records {
        match r {
            Record::Process(p) => w.write_process(p),
            Record::Thread(t) => w.write_thread(t),
            Record::Spanlet(s) => w.write_spanlet(s),
            Record::Stats(s) => w.write_stats(s),
            Record::End(_) => Ok(()),
        }
        .expect("write");
    }
    w.finish(&sample_end()).expect("finish");
    std::fs::read(&path).expect("read back")
}

/// Reads records until the end, an error, or `limit` records.
fn read_records(bytes: &[u8], limit: usize) -> Vec<Record> {
    let Ok(mut reader) = CaptureReader::from_reader(bytes, "p") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Ok(Some(r)) = reader.next_record() {
        out.push(r);
        if out.len() > limit {
            break;
        }
    }
    out
}

/// One kind of damage at a place given as a fraction of the file.
#[derive(Clone, Debug)]
enum Damage {
    FlipBit(f64, u8),
    Overwrite(f64, Vec<u8>),
    Delete(f64, usize),
    Insert(f64, Vec<u8>),
    Truncate(f64),
}

fn damage() -> impl Strategy<Value = Damage> {
    let at = 0.0..1.0f64;
    prop_oneof![
        (at.clone(), 0u8..8).prop_map(|(a, b)| Damage::FlipBit(a, b)),
        (at.clone(), proptest::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(a, v)| Damage::Overwrite(a, v)),
        (at.clone(), 1usize..200).prop_map(|(a, n)| Damage::Delete(a, n)),
        (at.clone(), proptest::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(a, v)| Damage::Insert(a, v)),
        at.prop_map(Damage::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    let at = |f: f64| ((bytes.len() as f64 * f) as usize).min(bytes.len().saturating_sub(1));
    match d {
        Damage::FlipBit(f, bit) => {
            let i = at(*f);
            if let Some(b) = bytes.get_mut(i) {
                *b ^= 1 << bit;
            }
        }
        Damage::Overwrite(f, v) => {
            let i = at(*f);
            for (b, new) in bytes.iter_mut().skip(i).zip(v) {
                *b = *new;
            }
        }
        Damage::Delete(f, n) => {
            let i = at(*f);
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        Damage::Insert(f, v) => {
            let i = at(*f);
            bytes.splice(i..i, v.iter().copied());
        }
        Damage::Truncate(f) => bytes.truncate(at(*f)),
    }
}

/// Whether `part` appears in `whole` in order (not necessarily adjacent).
fn is_subsequence(part: &[Record], whole: &[Record]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.any(|w| w == p))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn records_read_back_equal(records in proptest::collection::vec(record(), 0..40)) {
        let bytes = write(&records);
        let c = Capture::from_reader(&bytes[..], "p").expect("open");
        prop_assert!(!c.truncated);
        prop_assert_eq!(c.integrity.damaged_stretches, 0);
        let mut expected = records.clone();
        expected.push(Record::End(sample_end()));
        let got = read_records(&bytes, usize::MAX);
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn damage_never_panics_nor_invents_records(
        records in proptest::collection::vec(record(), 1..30),
        damages in proptest::collection::vec(damage(), 1..4),
    ) {
        let mut written = records.clone();
        written.push(Record::End(sample_end()));
        let mut bytes = write(&records);
        for d in &damages {
            apply(&mut bytes, d);
        }
        let got = read_records(&bytes, written.len());
        prop_assert!(got.len() <= written.len(), "{} records from {}", got.len(), written.len());
        prop_assert!(is_subsequence(&got, &written), "a record read was never written");
        // The whole-capture path must not panic either.
        let _ = Capture::from_reader(&bytes[..], "p");
    }
}
