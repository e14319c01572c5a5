//! `tracing` to stderr, filtered by RUST_LOG (default: warnings); aya's `log`
//! records are bridged once. `SPANLET_LOG_FORMAT=json` writes one JSON
//! object per line, for a node's log collector.
pub fn init() {
    let _ = tracing_log::LogTracer::init();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("SPANLET_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
