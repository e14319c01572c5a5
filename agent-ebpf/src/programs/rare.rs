//! Diagnostics from the programs, through aya-log at debug level, only on
//! rare paths: a full map or ring, a state that should not happen. Off
//! unless `RUST_LOG` enables debug for [`agent_ebpf::LOG_TARGET`]: the
//! agent sets aya-log's level global before load, and with it off the
//! verifier, which sees the read-only global's value, drops the branch.

/// Counts `$counter` and, at debug level, says so for the 1st, 2nd, 4th, …
/// time on this CPU: a flood of drops stays a few lines. `$fmt` has two
/// `{}`: this CPU's count so far, and the CPU.
macro_rules! counted {
    ($counter:expr, $fmt:literal) => {{
        let slot = $crate::programs::counters::bump_slot($counter);
        // The level first (aya-log's own test, which its macros repeat):
        // with logging off, nothing but the count is left on the path.
        if aya_log_ebpf::macro_support::level_enabled(aya_log_ebpf::macro_support::Level::Debug)
            && let Some(slot) = slot
        {
            // SAFETY: a per-CPU array slot lives as long as the map. A plain
            // read after the add (the BPF target's fetching add needs a
            // newer instruction set): a count off by one under preemption
            // only shifts which line is logged.
            let n = unsafe { core::ptr::read_volatile(slot) };
            if n.is_power_of_two() {
                // SAFETY: a plain helper call.
                let cpu = unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() };
                $crate::programs::rare::debug!($fmt, n, cpu);
            }
        }
    }};
}

/// One debug line to the programs' target. aya-log takes a program context
/// but does not use it (none is at hand inside the shared wait logic).
macro_rules! debug {
    ($($arg:tt)+) => {
        aya_log_ebpf::debug!(&(), target: agent_ebpf::LOG_TARGET, $($arg)+)
    };
}

pub(super) use {counted, debug};
