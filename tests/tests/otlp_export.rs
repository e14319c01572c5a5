//! `spanlet replay` to a real, independent collector (rotel), over gRPC and
//! over HTTP/protobuf: what the collector received must show each waiter's
//! wait as a `spanlet.wait` event in the waiter's own trace, and as a
//! `lock wait` span in that trace, child of the waiter's span, linked to the
//! holder's span in another trace. A dead collector is a clear error.
//!
//! Needs root and eBPF for the recording (see the harness), and rotel
//! (`cargo xtask setup` installs it).

use std::ffi::OsStr;

use spanlet_tests::{
    CtxTruth, assert_success, collector::Received, collector::Rotel, collector::TlsFront,
    kernel_test_lock, record_command, record_ctx_workload, spanlet,
};

/// What a collector must have received for the thread-context workload.
fn check(got: &Received, truth: &CtxTruth, how: &str) {
    let (b_trace, b_span) = (
        truth.holder.trace_id.as_deref().unwrap(),
        truth.holder.span_id.as_deref().unwrap(),
    );
    assert!(
        got.resources.iter().any(
            |r| r.get("process.pid") == Some(&format!("Int({})", truth.pid))
                && r.get("service.name")
                    .is_some_and(|s| s.contains("rust_thread_ctx"))
        ),
        "{how}: no resource for the traced process: {:?}",
        got.resources
    );
    for waiter in &truth.waiters {
        let events: Vec<_> = got
            .logs
            .iter()
            .filter(|l| {
                l.name == "spanlet.wait"
                    && l.int("thread.id") == Some(i64::from(waiter.tid))
                    && l.int("spanlet.wait.duration_ns").unwrap_or(0) > 100_000_000
            })
            .collect();
        let [event] = events.as_slice() else {
            panic!(
                "{how}: expected one long spanlet.wait event of thread {}: {got:#?}",
                waiter.tid
            );
        };
        assert_eq!(
            event.int("spanlet.holder.tid"),
            Some(i64::from(truth.holder.tid)),
            "{how}: {event:?}"
        );
        assert_eq!(
            event.str("spanlet.holder.trace_id"),
            Some(b_trace),
            "{how}: {event:?}"
        );
        assert_eq!(
            event.str("spanlet.holder.span_id"),
            Some(b_span),
            "{how}: {event:?}"
        );
        let spans: Vec<_> = got
            .spans
            .iter()
            .filter(|s| s.int("thread.id") == Some(i64::from(waiter.tid)))
            .collect();
        match (&waiter.trace_id, &waiter.span_id) {
            (Some(a_trace), Some(a_span)) => {
                assert_eq!(
                    (&event.trace_id, &event.span_id),
                    (a_trace, a_span),
                    "{how}: {event:?}"
                );
                // The waiter may also wait briefly under its context (a
                // spanlet of its own, rightly exported); the long wait is
                // the one on the holder's lock, as for the events above.
                let long: Vec<_> = spans
                    .iter()
                    .filter(|s| s.int("spanlet.wait.duration_ns").unwrap_or(0) > 100_000_000)
                    .collect();
                let [span] = long.as_slice() else {
                    panic!(
                        "{how}: expected one long span for thread {}: {:#?}",
                        waiter.tid, got.spans
                    );
                };
                assert_eq!(span.name, "lock wait", "{how}");
                assert_eq!(&span.trace_id, a_trace, "{how}: the waiter's trace");
                assert_eq!(&span.parent_id, a_span, "{how}: child of the waiter's span");
                assert!(
                    !span.span_id.is_empty() && span.span_id != *a_span,
                    "{how}: {span:?}"
                );
                assert_eq!(
                    span.links,
                    vec![(b_trace.to_owned(), b_span.to_owned())],
                    "{how}: linked to the holder's span"
                );
            }
            _ => {
                assert!(
                    event.trace_id.is_empty() && event.span_id.is_empty(),
                    "{how}: a waiter without context has empty ids: {event:?}"
                );
                assert!(
                    spans.is_empty(),
                    "{how}: no span without a parent: {spans:?}"
                );
            }
        }
    }
}

fn replay(capture: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut full = vec![OsStr::new("replay"), capture.as_os_str()];
    full.extend(args.iter().map(OsStr::new));
    spanlet(full, None)
}

#[test]
fn replay_reaches_a_real_collector_over_grpc_and_http() {
    let _serial = kernel_test_lock();
    let Some((rec, truth)) = record_ctx_workload(env!("CARGO_BIN_EXE_rust_thread_ctx"), &[]) else {
        return;
    };
    let (waits, with_ctx) = (rec.export().len(), truth.waiters_with_ctx());

    for (protocol, extra) in [("grpc", None), ("http/protobuf", Some("gzip"))] {
        let Some(rotel) = Rotel::start() else { return };
        let url = match protocol {
            "grpc" => rotel.grpc_url(),
            _ => rotel.http_url(),
        };
        let mut args = vec!["--otlp-protocol", protocol, "--otlp-endpoint", &url];
        if let Some(c) = extra {
            args.extend(["--otlp-compression", c]);
        }
        let out = replay(&rec.capture, &args);
        assert_success(&format!("spanlet replay over {protocol}"), &out);
        let got = rotel.received(waits, with_ctx);
        check(&got, &truth, protocol);
    }
}

#[test]
fn replay_to_a_dead_collector_fails_clearly() {
    let Some(mut rotel) = Rotel::start() else {
        return;
    };
    let url = rotel.grpc_url();
    rotel.stop();
    // A tiny capture is enough: any spanlet must be delivered or reported.
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(
        &["--min-wait", "1ms"],
        env!("CARGO_BIN_EXE_rust_thread_ctx"),
        &["1", "50"],
    ) else {
        return;
    };
    let out = replay(
        &rec.capture,
        &[
            "--otlp-protocol",
            "grpc",
            "--otlp-endpoint",
            &url,
            "--otlp-timeout",
            "1s",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "replay to a dead collector succeeded: {stderr}"
    );
    assert!(
        stderr.contains("cannot reach the OTLP collector") && stderr.contains(&url),
        "the error names the collector: {stderr}"
    );
    assert!(
        stderr.contains("0 of"),
        "and says nothing was delivered: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn record_exports_live_while_it_records() {
    let Some(rotel) = Rotel::start() else { return };
    let url = rotel.grpc_url();
    let _serial = kernel_test_lock();
    let live = ["--otlp", "--otlp-protocol", "grpc", "--otlp-endpoint", &url];
    let Some((rec, truth)) = record_ctx_workload(env!("CARGO_BIN_EXE_rust_thread_ctx"), &live)
    else {
        return;
    };
    let (recorded, with_ctx) = (rec.export().len(), truth.waiters_with_ctx());
    check(&rotel.received(recorded, with_ctx), &truth, "record --otlp");
    assert!(
        rec.stderr
            .contains(&format!("OTLP: {recorded} spanlets exported, 0 dropped")),
        "every recorded spanlet exported: {}",
        rec.stderr
    );
}

#[test]
fn replay_over_tls_trusts_the_given_ca_and_presents_a_client_certificate() {
    let _serial = kernel_test_lock();
    let Some((rec, truth)) = record_ctx_workload(env!("CARGO_BIN_EXE_rust_thread_ctx"), &[]) else {
        return;
    };
    let (waits, with_ctx) = (rec.export().len(), truth.waiters_with_ctx());
    for protocol in ["grpc", "http/protobuf"] {
        let Some(rotel) = Rotel::start() else { return };
        let target = match protocol {
            "grpc" => rotel.grpc_port,
            _ => rotel.http_port,
        };
        let tls = TlsFront::start(target, true);
        let url = tls.url();
        let (ca, cert, key) = (
            tls.ca.to_str().unwrap(),
            tls.client_cert.to_str().unwrap(),
            tls.client_key.to_str().unwrap(),
        );
        let base = [
            "--otlp-protocol",
            protocol,
            "--otlp-endpoint",
            &url,
            "--otlp-timeout",
            "2s",
        ];

        // Without the CA, the server is not trusted: a clear failure.
        let out = replay(&rec.capture, &base);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{protocol}: an untrusted server was accepted"
        );
        assert!(
            stderr.to_lowercase().contains("certificate"),
            "{protocol}: the error says why: {stderr}"
        );
        // With the CA but no client certificate, the server refuses.
        let mut with_ca = base.to_vec();
        with_ca.extend(["--otlp-certificate", ca]);
        let out = replay(&rec.capture, &with_ca);
        assert!(
            !out.status.success(),
            "{protocol}: mutual TLS was not enforced"
        );

        let mut full = with_ca.clone();
        full.extend(["--otlp-client-certificate", cert, "--otlp-client-key", key]);
        let out = replay(&rec.capture, &full);
        assert_success(&format!("spanlet replay over TLS ({protocol})"), &out);
        check(&rotel.received(waits, with_ctx), &truth, protocol);
    }
}
