//! The command line. Doc comments here are the `--help` text.
use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::node::{
    config::RunFlags,
    selection::SelectionSpec,
    units::{parse_duration, parse_size},
};

/// spanlet: who waited on which lock, for how long, and who held it.
///
/// Traces blocking futex waits (pthread and Rust mutexes, condition
/// variables, semaphores) with eBPF, records them as spanlets to a capture
/// file, and reports the most contended resources with their holders.
#[derive(Debug, Parser)]
#[command(name = "spanlet", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace processes and write their spanlets to a capture file.
    ///
    /// Either attach to running processes (--pid, repeatable) or launch a
    /// command after `--` and trace it and the processes it forks, until the
    /// duration ends, Ctrl-C, or the traced processes exit.
    Record(RecordArgs),
    /// Run as a node agent: trace the selected processes (and new ones that
    /// match), export their spanlets live over OTLP, and serve health and
    /// metrics, until SIGINT/SIGTERM. SIGHUP reloads the selection from
    /// --config. The standard OTEL_* variables apply.
    Run(Box<RunArgs>),
    /// Summarise a capture: the most contended resources, their holders,
    /// wakers and waiters.
    Report(ReportArgs),
    /// Export a capture's spanlets (one JSON object per line).
    Export(ExportArgs),
    /// Send a capture's spanlets to an OpenTelemetry collector over OTLP:
    /// one log event per spanlet, and a span linked to the holder's span for
    /// each wait that happened inside a span. The standard
    /// OTEL_EXPORTER_OTLP_* variables apply; the flags below override them.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Trace this process (all its threads); repeat or comma-separate.
    #[arg(
        short,
        long = "pid",
        value_name = "PID",
        env = "SPANLET_PIDS",
        value_delimiter = ','
    )]
    pub pids: Vec<u32>,
    /// Stop after this long (e.g. 10s, 2m); default: until Ctrl-C or exit.
    #[arg(short, long, value_parser = parse_duration, env = "SPANLET_DURATION")]
    pub duration: Option<Duration>,
    /// Waits shorter than this are not recorded (counted only).
    #[arg(long, default_value = "10us", value_parser = parse_duration, env = "SPANLET_MIN_WAIT")]
    pub min_wait: Duration,
    /// Capture file to write.
    #[arg(short, long, default_value = "spanlet.data", env = "SPANLET_OUTPUT")]
    pub output: PathBuf,
    /// Also record pthread mutex hold times with uprobes on libc
    /// pthread_mutex_lock/unlock (adds a cost to every lock call of the
    /// traced processes; off by default).
    #[arg(long, env = "SPANLET_MUTEX_UPROBES")]
    pub mutex_uprobes: bool,
    /// Also record waits for contended kernel locks (mutexes, rwsems such
    /// as mmap_lock, spinlocks) from the lock:contention_begin/end
    /// tracepoints, as kernel_lock_wait spanlets (off by default).
    #[arg(long, env = "SPANLET_KERNEL_LOCKS")]
    pub kernel_locks: bool,
    /// Also trace processes that traced processes fork (always on for a
    /// launched command).
    #[arg(long)]
    pub follow_forks: bool,
    /// Size of the kernel event ring (power of two, e.g. 8MiB).
    #[arg(long, default_value = "8MiB", value_parser = parse_size, env = "SPANLET_RINGBUF_SIZE")]
    pub ringbuf_size: u32,
    /// OpenTelemetry eBPF Instrumentation's pinned trace-context map, read
    /// (when it is there) for threads without OTEP 4947 thread context.
    #[arg(long, value_name = "PATH", default_value = crate::kernel::features::OBI_CTX_MAP, env = "SPANLET_OBI_CTX_MAP")]
    pub obi_ctx_map: PathBuf,
    /// Also export the spanlets live over OTLP (see the --otlp-* flags and
    /// the OTEL_EXPORTER_OTLP_* variables).
    #[arg(long, env = "SPANLET_OTLP")]
    pub otlp: bool,
    #[command(flatten)]
    pub otlp_args: OtlpArgs,
    /// The command to launch and trace.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `spanlet run`'s flags: the selection and the agent's settings are
/// declared by `node`, which reads the same keys from the config file.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub selection: SelectionSpec,
    #[command(flatten)]
    pub flags: RunFlags,
    #[command(flatten)]
    pub otlp: OtlpArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Capture file written by `spanlet record`.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// How many resources to show.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per spanlet per line.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Capture file written by `spanlet record`.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: ExportFormat,
    /// Write here instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Where and how to send OTLP (each flag overrides its OTEL_* variable).
#[derive(Debug, Args)]
pub struct OtlpArgs {
    /// Collector URL, e.g. http://localhost:4317 for gRPC; for
    /// http/protobuf, /v1/logs and /v1/traces are appended
    /// [OTEL_EXPORTER_OTLP_ENDPOINT; default per protocol, on localhost].
    #[arg(long = "otlp-endpoint", value_name = "URL")]
    pub endpoint: Option<String>,
    /// grpc or http/protobuf [OTEL_EXPORTER_OTLP_PROTOCOL; default
    /// http/protobuf].
    #[arg(long = "otlp-protocol", value_enum, value_name = "PROTOCOL")]
    pub protocol: Option<crate::output::otlp::Protocol>,
    /// Extra header (repeatable), e.g. api-key=SECRET
    /// [OTEL_EXPORTER_OTLP_HEADERS]. Checked with the other OTLP settings,
    /// so that no error message repeats the value.
    #[arg(long = "otlp-header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// Per-request timeout [OTEL_EXPORTER_OTLP_TIMEOUT; default 10s].
    #[arg(long = "otlp-timeout", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// gzip or none [OTEL_EXPORTER_OTLP_COMPRESSION; default none].
    #[arg(long = "otlp-compression", value_name = "COMPRESSION")]
    pub compression: Option<String>,
    /// PEM file of CA certificate(s) to trust for an https:// endpoint, in
    /// addition to the built-in Mozilla roots [OTEL_EXPORTER_OTLP_CERTIFICATE].
    #[arg(long = "otlp-certificate", value_name = "PEM")]
    pub certificate: Option<String>,
    /// PEM client certificate for mutual TLS
    /// [OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE].
    #[arg(long = "otlp-client-certificate", value_name = "PEM")]
    pub client_certificate: Option<String>,
    /// PEM private key of the client certificate
    /// [OTEL_EXPORTER_OTLP_CLIENT_KEY].
    #[arg(long = "otlp-client-key", value_name = "PEM")]
    pub client_key: Option<String>,
}

impl OtlpArgs {
    pub fn overrides(&self) -> crate::output::otlp::Overrides {
        crate::output::otlp::Overrides {
            endpoint: self.endpoint.clone(),
            protocol: self.protocol,
            headers: self.headers.clone(),
            timeout: self.timeout,
            compression: self.compression.clone(),
            certificate: self.certificate.clone(),
            client_certificate: self.client_certificate.clone(),
            client_key: self.client_key.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Capture file written by `spanlet record`.
    pub file: PathBuf,
    #[command(flatten)]
    pub otlp: OtlpArgs,
    /// Spanlets per OTLP request.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_takes_a_command_after_dashes() {
        let cli =
            Cli::try_parse_from(["spanlet", "record", "-o", "x", "--", "sleep", "1"]).unwrap();
        let Command::Record(args) = cli.command else {
            panic!("not record")
        };
        assert_eq!(args.command, ["sleep", "1"]);
        assert_eq!(args.min_wait, Duration::from_micros(10));
    }
}
