//! Raw RingBuf records to typed events: length checked first, unaligned
//! reads (RingBuf records are only 8-byte aligned by convention).
use agent_ebpf::{
    EventHeader, EventKind, FutexWaitEvent, KernelLockWaitEvent, MutexHoldEvent, ProcessExecEvent,
};
use compact_str::CompactString;

/// An event as the kernel sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawEvent {
    FutexWait(FutexWaitEvent),
    MutexHold(MutexHoldEvent),
    /// Not a spanlet: a traced process ran a new program.
    ProcessExec(ProcessExecEvent),
    KernelLockWait(KernelLockWaitEvent),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("{kind:?} event of {len} bytes, expected {expected}")]
    BadLength {
        kind: EventKind,
        len: usize,
        expected: usize,
    },
}

fn read<T: Copy>(bytes: &[u8], kind: EventKind) -> Result<T, DecodeError> {
    let expected = size_of::<T>();
    if bytes.len() < expected {
        return Err(DecodeError::BadLength {
            kind,
            len: bytes.len(),
            expected,
        });
    }
    // SAFETY: the length is checked above, T is a plain-old-data ABI type
    // (any bit pattern is valid) and the read tolerates any alignment.
    Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

pub fn decode(bytes: &[u8]) -> Result<RawEvent, DecodeError> {
    if bytes.len() < size_of::<EventHeader>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    let kind = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    match EventKind::from_u32(kind) {
        Some(k @ EventKind::FutexWait) => read(bytes, k).map(RawEvent::FutexWait),
        Some(k @ EventKind::MutexHold) => read(bytes, k).map(RawEvent::MutexHold),
        Some(k @ EventKind::ProcessExec) => read(bytes, k).map(RawEvent::ProcessExec),
        Some(k @ EventKind::KernelLockWait) => read(bytes, k).map(RawEvent::KernelLockWait),
        None => Err(DecodeError::UnknownKind(kind)),
    }
}

/// A kernel `comm` (NUL-padded) as a string.
pub fn comm_str(comm: &[u8; 16]) -> CompactString {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    CompactString::from_utf8_lossy(&comm[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-old-data value.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn round_trips_a_wait_at_any_alignment() {
        let mut ev = FutexWaitEvent::default();
        ev.header.kind = EventKind::FutexWait as u32;
        ev.header.tid = 42;
        ev.wait.resource = 0xdead_beef;
        let raw = bytes_of(&ev);
        let mut shifted = vec![0u8; 1];
        shifted.extend_from_slice(&raw);
        assert_eq!(decode(&shifted[1..]), Ok(RawEvent::FutexWait(ev)));
    }

    #[test]
    fn rejects_short_and_unknown() {
        assert_eq!(decode(&[1, 0, 0]), Err(DecodeError::Short(3)));
        let mut ev = FutexWaitEvent::default();
        ev.header.kind = 99;
        assert_eq!(decode(&bytes_of(&ev)), Err(DecodeError::UnknownKind(99)));
        ev.header.kind = EventKind::FutexWait as u32;
        assert!(matches!(
            decode(&bytes_of(&ev)[..40]),
            Err(DecodeError::BadLength { .. })
        ));
    }

    #[test]
    fn comm_stops_at_nul() {
        let mut c = [0u8; 16];
        c[..6].copy_from_slice(b"holder");
        assert_eq!(comm_str(&c), "holder");
        assert_eq!(comm_str(&[b'x'; 16]), "x".repeat(16));
    }
}
