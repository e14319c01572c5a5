//! `spanlet run`: live OTLP export that outlives its collector. The
//! collector is down when the agent starts, comes up, is killed, and comes
//! back. The agent must keep tracing throughout, deliver to each collector
//! instance while it is up, and account for every spanlet: exported or
//! counted as dropped, never silently lost.
//!
//! Needs root and eBPF, and rotel (`cargo xtask setup` installs it).

use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use spanlet_tests::{
    Background, Reaped, collector::Received, collector::Rotel, kernel_ready, kernel_test_lock,
    spanlet_bin,
};

/// The number after `label` in `text`, e.g. "OTLP: 12 spanlets exported".
fn number_before(text: &str, label: &str) -> Option<u64> {
    let at = text.find(label)?;
    text[..at].split_whitespace().last()?.parse().ok()
}

#[test]
fn run_survives_a_collector_that_is_down_killed_and_restarted() {
    let _serial = kernel_test_lock();
    if !kernel_ready() {
        return;
    }
    let (grpc, http) = Rotel::free_ports();
    // About 8 s of rounds, each giving the waiters a wait of tens of ms.
    let workload = Background::start(env!("CARGO_BIN_EXE_rust_mutex"), &["160", "30"]);
    let mut agent = Reaped(
        Command::new(spanlet_bin())
            .args([
                "run",
                "--pid",
                &workload.pid().to_string(),
                "--min-wait",
                "1ms",
                "--metrics-address",
                "off",
            ])
            .args(["--otlp-protocol", "grpc", "--otlp-timeout", "1s"])
            .arg("--otlp-endpoint")
            .arg(format!("http://127.0.0.1:{grpc}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spanlet run starts"),
    );

    sleep(Duration::from_millis(1500));
    let Some(mut first) = Rotel::start_on(grpc, http) else {
        return;
    };
    let from_first = first.received(1, 0).logs.len();
    sleep(Duration::from_millis(1500));
    first.stop();
    let from_first = Received::parse(&first.output()).logs.len().max(from_first);
    sleep(Duration::from_millis(1500));
    let second = Rotel::start_on(grpc, http).expect("rotel was there a moment ago");

    let (status, stderr) = agent.exit_within(
        Duration::from_secs(60),
        "spanlet run did not end with its process",
    );
    assert!(status.success(), "spanlet run failed ({status}):\n{stderr}");
    assert!(
        stderr.contains("all traced processes exited"),
        "it ran until its process ended:\n{stderr}"
    );
    let from_second = second.received(1, 0).logs.len();

    let spanlets = number_before(&stderr, "spanlets in").expect("summary line");
    let exported = number_before(&stderr, "spanlets exported,").expect("OTLP line");
    let dropped = number_before(&stderr, "dropped (").expect("OTLP drops");
    assert!(
        spanlets > 20,
        "the workload made contention throughout:\n{stderr}"
    );
    assert!(
        dropped > 0,
        "the down time cost spanlets, counted:\n{stderr}"
    );
    assert!(exported > 0, "{stderr}");
    assert_eq!(
        exported + dropped,
        spanlets,
        "every spanlet is exported or counted as dropped:\n{stderr}"
    );
    assert!(
        from_first > 0 && from_second > 0,
        "both collector instances received spanlets ({from_first}, {from_second})"
    );
    assert!(
        from_first + from_second >= usize::try_from(exported).unwrap(),
        "what spanlet counts as exported reached a collector ({from_first} + {from_second} < {exported})"
    );
    drop(workload);
}
