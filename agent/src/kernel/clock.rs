//! The programs stamp events with CLOCK_MONOTONIC (bpf_ktime_get_ns); the
//! capture uses Unix epoch nanoseconds. The offset is taken once, at start.

/// Adds the offset between the monotonic and the real-time clock.
#[derive(Clone, Copy, Debug)]
pub struct EpochClock {
    offset_ns: i128,
}

fn now(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl EpochClock {
    /// Samples both clocks; the closest of a few real-time/monotonic/real-time
    /// triples bounds the error by the gap between its two real-time reads.
    pub fn calibrate() -> Self {
        let mut best = (i128::MAX, 0i128);
        for _ in 0..8 {
            let r1 = now(libc::CLOCK_REALTIME);
            let m = now(libc::CLOCK_MONOTONIC);
            let r2 = now(libc::CLOCK_REALTIME);
            let gap = r2 - r1;
            if gap < best.0 {
                best = (gap, (r1 + r2) / 2 - m);
            }
        }
        Self { offset_ns: best.1 }
    }

    /// Converts a `bpf_ktime_get_ns()` value to Unix epoch nanoseconds.
    pub fn to_unix_nanos(&self, monotonic_ns: u64) -> u64 {
        u64::try_from(i128::from(monotonic_ns) + self.offset_ns).unwrap_or(0)
    }

    /// The current time, Unix epoch nanoseconds.
    pub fn unix_now() -> u64 {
        u64::try_from(now(libc::CLOCK_REALTIME)).unwrap_or(0)
    }

    /// The current CLOCK_MONOTONIC time, as the kernel programs see it.
    pub fn monotonic_now() -> u64 {
        u64::try_from(now(libc::CLOCK_MONOTONIC)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_now_to_now() {
        let clock = EpochClock::calibrate();
        let unix = clock.to_unix_nanos(EpochClock::monotonic_now());
        let diff = unix.abs_diff(EpochClock::unix_now());
        assert!(diff < 5_000_000, "monotonic->unix off by {diff} ns");
    }
}
