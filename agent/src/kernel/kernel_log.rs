//! The programs' own diagnostics: aya-log records, written only on rare
//! paths (a full map or ring, a state that should not happen; see
//! agent-ebpf's `rare`), forwarded to `tracing` under
//! [`agent_ebpf::LOG_TARGET`] through the `log` bridge (`logging`).
//!
//! Off unless `RUST_LOG` enables that target: the level is written into the
//! programs before they load, so with it off the kernel never writes a
//! record (the verifier drops the branch) and no task reads any.
use std::panic::AssertUnwindSafe;

use aya::{Ebpf, EbpfLoader};
use aya_log::EbpfLogger;
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::watch,
};

/// aya-log's ring (128 KiB as built): one page when nothing will use it.
const LOG_RING: &str = "AYA_LOGS";

/// The most verbose level `tracing` would print for the programs' target,
/// as aya-log's level global: 0 for none.
pub fn level() -> u8 {
    use tracing::{Level, enabled};
    let level = if enabled!(target: agent_ebpf::LOG_TARGET, Level::TRACE) {
        aya_log::Level::Trace
    } else if enabled!(target: agent_ebpf::LOG_TARGET, Level::DEBUG) {
        aya_log::Level::Debug
    } else if enabled!(target: agent_ebpf::LOG_TARGET, Level::INFO) {
        aya_log::Level::Info
    } else if enabled!(target: agent_ebpf::LOG_TARGET, Level::WARN) {
        aya_log::Level::Warn
    } else if enabled!(target: agent_ebpf::LOG_TARGET, Level::ERROR) {
        aya_log::Level::Error
    } else {
        return 0;
    };
    level.into()
}

/// Writes `level` into the programs before load; with nothing to log, the
/// log ring shrinks to a page.
pub fn configure<'a>(loader: &mut EbpfLoader<'a>, level: &'a u8) {
    loader.override_global(aya_log::LEVEL, level, true);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if u8::from(aya_log::Level::Debug) > *level
        && let Ok(page) = u32::try_from(page)
        && page.is_power_of_two()
    {
        loader.map_max_entries(LOG_RING, page);
    }
}

/// Forwards the programs' records while it lives; dropped, it forwards
/// what is left and stops.
pub struct KernelLog {
    _stop: watch::Sender<()>,
}

/// Starts forwarding the loaded programs' records, if the programs log at
/// `level` (the programs only log at debug).
pub fn start(ebpf: &mut Ebpf, level: u8) -> Option<KernelLog> {
    if u8::from(aya_log::Level::Debug) > level {
        return None;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no async runtime here; the kernel's diagnostics are not read");
        return None;
    };
    let logger = match EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(err) => {
            tracing::warn!(%err, "cannot read the kernel's diagnostics");
            return None;
        }
    };
    let (stop, stopped) = watch::channel(());
    runtime.spawn(forward(logger, stopped));
    Some(KernelLog { _stop: stop })
}

type Logger = EbpfLogger<&'static dyn log::Log>;

/// One task: readable, forward everything, clear ready; once more at the end.
async fn forward(logger: Logger, mut stopped: watch::Receiver<()>) {
    // SAFETY: the logger owns its ring's map fd and keeps it open,
    // unchanged, until it is dropped, which happens only with the AsyncFd.
    let mut fd = match unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(err) => {
            tracing::warn!(%err, "cannot poll the kernel's log ring");
            return;
        }
    };
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let Ok(mut guard) = guard else { return };
                let forwarded = flush(guard.get_inner_mut());
                guard.clear_ready();
                if !forwarded {
                    return;
                }
            }
            _ = stopped.changed() => {
                flush(fd.get_mut());
                return;
            }
        }
    }
}

/// aya-log unwraps the decoding of each record, so a malformed one panics:
/// caught here, it ends the kernel's diagnostics, never the agent.
fn flush(logger: &mut Logger) -> bool {
    if std::panic::catch_unwind(AssertUnwindSafe(|| logger.flush())).is_ok() {
        return true;
    }
    tracing::warn!("malformed kernel log record; no more kernel diagnostics this run");
    false
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::{EnvFilter, fmt};

    fn level_under(filter: &str) -> u8 {
        let subscriber = fmt()
            .with_env_filter(EnvFilter::new(filter))
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, super::level)
    }

    #[test]
    fn the_programs_log_only_when_the_filter_asks() {
        let debug = u8::from(aya_log::Level::Debug);
        assert_eq!(level_under("warn"), u8::from(aya_log::Level::Warn));
        assert_eq!(level_under("off"), 0);
        assert_eq!(level_under("spanlet=info"), u8::from(aya_log::Level::Info));
        assert_eq!(level_under("warn,spanlet::ebpf=debug"), debug);
        assert_eq!(level_under("debug"), debug);
        // Another target's level says nothing about this one.
        assert_eq!(level_under("spanlet::kernel=trace"), 0);
        assert_eq!(level_under("trace"), u8::from(aya_log::Level::Trace));
    }
}
