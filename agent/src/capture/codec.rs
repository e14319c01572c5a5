//! Hand-written binary encoding of a spanlet record.
//!
//! Spanlets are the bulk of a capture, so they avoid JSON: encoding appends to
//! a reused buffer without allocating, and the layout is fixed per
//! [`FORMAT_VERSION`](super::FORMAT_VERSION) so that other tools can read it
//! from the field list stored in the metadata.

use compact_str::CompactString;

use crate::model::{SocketInfo, SpanContext, Spanlet, SpanletKind, WaitOutcome};

/// Longest string stored for `comm` / `waker_comm`; longer ones are cut on a
/// character boundary. Kernel thread names are at most 15 bytes anyway.
pub(crate) const MAX_STR_LEN: usize = 64;

/// Fields of a version 2 spanlet record, in order, as `(name, type)`;
/// version 1 records end before `waker_context`.
///
/// Types: `u8`, `u16`, `u32`, `u64` little-endian; `str8` a `u8` byte length
/// then that many UTF-8 bytes (at most 64); `opt_T` a `u8` presence flag (0
/// or 1) followed by a `T` only when the flag is 1; `span_context` a 16-byte
/// trace id then an 8-byte span id; `socket` the `u16`s family, type,
/// protocol, local port and peer port, then the 16-byte local and peer
/// addresses (network order, IPv4 in the first 4 bytes). `kind` and
/// `outcome` use the codes of `SpanletKind::code` and `WaitOutcome::code`.
const FIELDS: [(&str, &str); 21] = [
    ("kind", "u8"),
    ("outcome", "u8"),
    ("pid", "u32"),
    ("tid", "u32"),
    ("comm", "str8"),
    ("addr", "u64"),
    ("start_unix_nano", "u64"),
    ("wait_ns", "u64"),
    ("woken_after_ns", "opt_u64"),
    ("holder_tid", "opt_u32"),
    ("waker_pid", "opt_u32"),
    ("waker_tid", "opt_u32"),
    ("waker_comm", "opt_str8"),
    ("syscall", "u32"),
    // `Spanlet::op` and `Spanlet::arg`, under their names of format version 1.
    ("futex_op", "u32"),
    ("futex_val", "u32"),
    ("flags", "u32"),
    ("context", "opt_span_context"),
    ("holder_context", "opt_span_context"),
    ("waker_context", "opt_span_context"),
    ("socket", "opt_socket"),
];

/// The spanlet record layout as `name:type` strings, for
/// `CaptureMeta::spanlet_fields`, so the file describes its own binary part.
pub fn spanlet_field_names() -> Vec<String> {
    FIELDS
        .iter()
        .map(|(name, ty)| format!("{name}:{ty}"))
        .collect()
}

/// Why a spanlet payload could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("record ends inside field `{0}`")]
    Short(&'static str),
    #[error("invalid value {value} for field `{field}`")]
    InvalidValue { field: &'static str, value: u8 },
    #[error("field `{field}` is {len} bytes, more than {MAX_STR_LEN}")]
    StringTooLong { field: &'static str, len: usize },
    #[error("field `{0}` is not valid UTF-8")]
    InvalidUtf8(&'static str),
    #[error("{0} unexpected bytes after the last field")]
    TrailingBytes(usize),
    #[error("no spanlet encoding for format version {0}")]
    UnsupportedVersion(u32),
}

/// Appends the version 2 encoding of `spanlet` to `out`.
pub(crate) fn encode_spanlet(spanlet: &Spanlet, out: &mut Vec<u8>) {
    out.push(spanlet.kind.code());
    out.push(spanlet.outcome.code());
    put_u32(out, spanlet.pid);
    put_u32(out, spanlet.tid);
    put_str(out, &spanlet.comm);
    put_u64(out, spanlet.addr);
    put_u64(out, spanlet.start_unix_nano);
    put_u64(out, spanlet.wait_ns);
    put_opt(out, spanlet.woken_after_ns, put_u64);
    put_opt(out, spanlet.holder_tid, put_u32);
    put_opt(out, spanlet.waker_pid, put_u32);
    put_opt(out, spanlet.waker_tid, put_u32);
    put_opt(out, spanlet.waker_comm.as_deref(), put_str);
    put_u32(out, spanlet.syscall);
    put_u32(out, spanlet.op);
    put_u32(out, spanlet.arg);
    put_u32(out, spanlet.flags);
    put_opt(out, spanlet.context.as_ref(), put_context);
    put_opt(out, spanlet.holder_context.as_ref(), put_context);
    put_opt(out, spanlet.waker_context.as_ref(), put_context);
    put_opt(out, spanlet.socket.as_ref(), put_socket);
}

/// Decodes a spanlet payload written with format `version`. The payload must be
/// consumed exactly: extra bytes mean a writer and reader disagree on layout.
///
/// Inlined into the reader, so the spanlet is built where it is stored rather
/// than copied there through the `Result` and `Record` wrappers.
#[inline]
pub(crate) fn decode_spanlet(version: u32, payload: &[u8]) -> Result<Spanlet, DecodeError> {
    if !(1..=2).contains(&version) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let mut d = Decoder { rest: payload };
    let kind_code = d.u8("kind")?;
    let kind = SpanletKind::from_code(kind_code).ok_or(DecodeError::InvalidValue {
        field: "kind",
        value: kind_code,
    })?;
    let outcome_code = d.u8("outcome")?;
    let outcome = WaitOutcome::from_code(outcome_code).ok_or(DecodeError::InvalidValue {
        field: "outcome",
        value: outcome_code,
    })?;
    let spanlet = Spanlet {
        kind,
        outcome,
        pid: d.u32("pid")?,
        tid: d.u32("tid")?,
        comm: d.string("comm")?,
        addr: d.u64("addr")?,
        start_unix_nano: d.u64("start_unix_nano")?,
        wait_ns: d.u64("wait_ns")?,
        woken_after_ns: d.opt("woken_after_ns", Decoder::u64)?,
        holder_tid: d.opt("holder_tid", Decoder::u32)?,
        waker_pid: d.opt("waker_pid", Decoder::u32)?,
        waker_tid: d.opt("waker_tid", Decoder::u32)?,
        waker_comm: d.opt("waker_comm", Decoder::string)?,
        syscall: d.u32("syscall")?,
        op: d.u32("futex_op")?,
        arg: d.u32("futex_val")?,
        flags: d.u32("flags")?,
        context: d.opt("context", Decoder::context)?,
        holder_context: d.opt("holder_context", Decoder::context)?,
        waker_context: if version >= 2 {
            d.opt("waker_context", Decoder::context)?
        } else {
            None
        },
        socket: if version >= 2 {
            d.opt("socket", Decoder::socket)?
        } else {
            None
        },
    };
    if !d.rest.is_empty() {
        return Err(DecodeError::TrailingBytes(d.rest.len()));
    }
    Ok(spanlet)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = truncate_str(s, MAX_STR_LEN);
    // `truncate_str` bounds the length by MAX_STR_LEN, which fits in a u8.
    out.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(s.as_bytes());
}

fn put_socket(out: &mut Vec<u8>, s: &SocketInfo) {
    for v in [s.family, s.sock_type, s.protocol, s.local_port, s.peer_port] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&s.local_addr);
    out.extend_from_slice(&s.peer_addr);
}

fn put_context(out: &mut Vec<u8>, c: &SpanContext) {
    out.extend_from_slice(&c.trace_id);
    out.extend_from_slice(&c.span_id);
}

fn put_opt<T>(out: &mut Vec<u8>, v: Option<T>, put: fn(&mut Vec<u8>, T)) {
    match v {
        Some(v) => {
            out.push(1);
            put(out, v);
        }
        None => out.push(0),
    }
}

/// Longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate_str(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Reads fields from a payload without ever indexing past its end.
struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    #[inline]
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let (head, tail) = self
            .rest
            .split_at_checked(n)
            .ok_or(DecodeError::Short(field))?;
        self.rest = tail;
        Ok(head)
    }

    #[inline]
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        <[u8; N]>::try_from(self.take(N, field)?).map_err(|_| DecodeError::Short(field))
    }

    #[inline]
    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }

    #[inline]
    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    #[inline]
    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    #[inline]
    fn string(&mut self, field: &'static str) -> Result<CompactString, DecodeError> {
        let len = usize::from(self.u8(field)?);
        if len > MAX_STR_LEN {
            return Err(DecodeError::StringTooLong { field, len });
        }
        let bytes = self.take(len, field)?;
        CompactString::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8(field))
    }

    #[inline]
    fn context(&mut self, field: &'static str) -> Result<SpanContext, DecodeError> {
        Ok(SpanContext {
            trace_id: self.array(field)?,
            span_id: self.array(field)?,
        })
    }

    fn socket(&mut self, field: &'static str) -> Result<SocketInfo, DecodeError> {
        let mut u16s = [0u16; 5];
        for v in &mut u16s {
            *v = u16::from_le_bytes(self.array(field)?);
        }
        let [family, sock_type, protocol, local_port, peer_port] = u16s;
        Ok(SocketInfo {
            family,
            sock_type,
            protocol,
            local_port,
            peer_port,
            local_addr: self.array(field)?,
            peer_addr: self.array(field)?,
        })
    }

    /// Generic over `get` (rather than taking a `fn` pointer) so that each
    /// use inlines to a flag test and a read.
    #[inline]
    fn opt<T>(
        &mut self,
        field: &'static str,
        get: impl FnOnce(&mut Self, &'static str) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => get(self, field).map(Some),
            value => Err(DecodeError::InvalidValue { field, value }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::sample_spanlets::{full_spanlet, minimal_spanlet};

    fn round_trip(s: &Spanlet) -> Spanlet {
        let mut buf = Vec::new();
        encode_spanlet(s, &mut buf);
        decode_spanlet(super::super::FORMAT_VERSION, &buf).expect("decodes")
    }

    #[test]
    fn round_trips_all_fields() {
        for s in [full_spanlet(), minimal_spanlet()] {
            assert_eq!(round_trip(&s), s);
        }
    }

    #[test]
    fn round_trips_every_kind_outcome_and_option_combination() {
        let base = full_spanlet();
        for kind in SpanletKind::ALL {
            for code in 0..=3 {
                let outcome = WaitOutcome::from_code(code).expect("known code");
                for mask in 0u32..(1 << 7) {
                    let bit = |n: u32| mask & (1 << n) != 0;
                    let s = Spanlet {
                        kind,
                        outcome,
                        woken_after_ns: bit(0).then_some(u64::MAX),
                        holder_tid: bit(1).then_some(0),
                        waker_pid: bit(2).then_some(u32::MAX),
                        waker_tid: bit(3).then_some(7),
                        waker_comm: bit(4).then(CompactString::default),
                        context: bit(5).then(SpanContext::default),
                        holder_context: bit(6).then_some(SpanContext {
                            trace_id: [0xff; 16],
                            span_id: [0xee; 8],
                        }),
                        ..base.clone()
                    };
                    assert_eq!(round_trip(&s), s);
                }
            }
        }
    }

    #[test]
    fn long_strings_are_cut_on_a_char_boundary() {
        let mut s = minimal_spanlet();
        s.comm = "é".repeat(40).into(); // 80 bytes
        s.waker_comm = Some("x".repeat(200).into());
        let back = round_trip(&s);
        assert_eq!(back.comm, "é".repeat(32));
        assert_eq!(back.waker_comm.as_deref(), Some("x".repeat(64).as_str()));
    }

    #[test]
    fn field_names_match_the_layout() {
        let names = spanlet_field_names();
        assert_eq!(names.len(), FIELDS.len());
        assert_eq!(names.first().map(String::as_str), Some("kind:u8"));
        assert_eq!(names.last().map(String::as_str), Some("socket:opt_socket"));
    }

    #[test]
    fn version_1_records_have_no_socket() {
        let mut v1 = Vec::new();
        encode_spanlet(&full_spanlet(), &mut v1);
        // Version 2 appended the waker's context and the socket (each a
        // presence flag, then the value).
        assert_eq!(v1.pop(), Some(0), "full_spanlet has no socket");
        assert_eq!(v1.pop(), Some(0), "full_spanlet has no waker context");
        let back = decode_spanlet(1, &v1).expect("a version 1 record decodes");
        assert_eq!(back, full_spanlet());
        assert!(decode_spanlet(2, &v1).is_err());
    }

    #[test]
    fn sockets_round_trip() {
        let mut s = full_spanlet();
        s.kind = SpanletKind::SocketWait;
        s.socket = Some(SocketInfo {
            family: 2,
            sock_type: 1,
            protocol: 6,
            local_port: 8080,
            peer_port: 43210,
            local_addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            peer_addr: [127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        });
        assert_eq!(round_trip(&s), s);
    }

    #[test]
    fn rejects_every_truncation_and_trailing_bytes() {
        let mut buf = Vec::new();
        encode_spanlet(&full_spanlet(), &mut buf);
        for cut in 0..buf.len() {
            let err = decode_spanlet(
                super::super::FORMAT_VERSION,
                buf.get(..cut).expect("in range"),
            );
            assert!(
                matches!(err, Err(DecodeError::Short(_))),
                "cut {cut}: {err:?}"
            );
        }
        buf.push(0);
        assert_eq!(
            decode_spanlet(super::super::FORMAT_VERSION, &buf),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn rejects_bad_codes_flags_and_versions() {
        let mut buf = Vec::new();
        encode_spanlet(&minimal_spanlet(), &mut buf);
        let mut bad_kind = buf.clone();
        bad_kind[0] = 9;
        assert!(matches!(
            decode_spanlet(super::super::FORMAT_VERSION, &bad_kind),
            Err(DecodeError::InvalidValue { field: "kind", .. })
        ));
        let mut bad_outcome = buf.clone();
        bad_outcome[1] = 5;
        assert!(matches!(
            decode_spanlet(super::super::FORMAT_VERSION, &bad_outcome),
            Err(DecodeError::InvalidValue {
                field: "outcome",
                ..
            })
        ));
        // Presence flag of woken_after_ns follows kind, outcome, pid, tid and
        // the comm string.
        let flag_at = 2 + 4 + 4 + 1 + minimal_spanlet().comm.len() + 8 * 3;
        let mut bad_flag = buf.clone();
        bad_flag[flag_at] = 2;
        assert!(matches!(
            decode_spanlet(super::super::FORMAT_VERSION, &bad_flag),
            Err(DecodeError::InvalidValue {
                field: "woken_after_ns",
                value: 2
            })
        ));
        assert_eq!(
            decode_spanlet(3, &buf),
            Err(DecodeError::UnsupportedVersion(3))
        );
    }

    #[test]
    fn rejects_overlong_and_non_utf8_strings() {
        let mut buf = vec![1, 0];
        buf.extend_from_slice(&[0; 8]);
        let mut long = buf.clone();
        long.push(65);
        long.extend_from_slice(&[b'a'; 65]);
        assert!(matches!(
            decode_spanlet(super::super::FORMAT_VERSION, &long),
            Err(DecodeError::StringTooLong {
                field: "comm",
                len: 65
            })
        ));
        buf.extend_from_slice(&[2, 0xff, 0xfe]);
        assert_eq!(
            decode_spanlet(super::super::FORMAT_VERSION, &buf),
            Err(DecodeError::InvalidUtf8("comm"))
        );
    }
}
