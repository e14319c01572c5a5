//! The agent's own metrics, sent by its own OTLP client to a real,
//! independent collector (rotel) over gRPC and over HTTP/protobuf: the
//! collector must show every metric with its type, unit, attributes and
//! value, under the agent's resource; and the periodic exporter must send
//! what was published, and once more at shutdown.
//!
//! Needs no kernel support, only rotel (`cargo xtask setup` installs it;
//! without it the tests skip, except in CI where they fail).

use std::{
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use spanlet::{
    node::observe::{
        DROP_CAUSES, MetricsExport, Snapshot, State, export_periodically, otlp::now_unix_nano,
    },
    output::otlp::{Overrides, Protocol, ResourceSettings, Settings},
};
use spanlet_tests::collector::{Point, Received, Rotel};
use tokio::sync::watch;

/// A snapshot whose `waits_seen` tells one send from another.
fn snapshot(waits_seen: u64) -> Snapshot {
    let mut s = Snapshot::starting_at(now_unix_nano() - 60_000_000_000);
    s.spanlets_by_kind.insert("mutex_wait", 12);
    s.spanlets_by_kind.insert("socket_wait", 5);
    s.waits_seen = waits_seen;
    s.below_min_wait = 30;
    s.drops_by_cause.insert("ringbuf_full", 7);
    s.exported = 17;
    s.ringbuf_size_bytes = 4096;
    s.ringbuf_used_bytes = 1024;
    s.traced_processes = 4;
    s.k8s_pods = Some(3);
    s
}

/// The agent's metrics and their exporter, as `spanlet run` makes them.
fn sender(protocol: Protocol, url: String) -> MetricsExport {
    let overrides = Overrides {
        endpoint: Some(url),
        protocol: Some(protocol),
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let settings =
        Settings::resolve(&Default::default(), &overrides).expect("settings from flags alone");
    MetricsExport::new(&settings, &node()).expect("a metrics exporter")
}

/// What the agent's resource is built from, as a node agent would have it.
fn node() -> ResourceSettings {
    ResourceSettings {
        host_name: "node-7".into(),
        attributes: vec![("k8s.node.name".into(), "node-7".into())],
        ..Default::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The first point of `metric` whose `key` attribute is `value` (or the
/// first point, with no key).
fn point<'a>(got: &'a Received, metric: &str, key: Option<(&str, &str)>) -> &'a Point {
    let found: Vec<_> = got
        .points(metric)
        .into_iter()
        .filter(|p| key.is_none_or(|(k, v)| p.str(k) == Some(v)))
        .collect();
    found
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no {metric} {key:?} point in {:#?}", got.points))
}

/// Everything one snapshot must have become in the collector.
fn check(got: &Received, how: &str) {
    let spanlets = point(
        got,
        "spanlet.spanlets",
        Some(("spanlet.kind", "mutex_wait")),
    );
    assert_eq!(
        (
            spanlets.data_type.as_str(),
            spanlets.monotonic.as_str(),
            spanlets.unit.as_str()
        ),
        ("Sum", "true", "{spanlet}"),
        "{how}: {spanlets:?}"
    );
    assert_eq!(spanlets.value(), Some(12.0), "{how}");
    let futex = point(
        got,
        "spanlet.spanlets",
        Some(("spanlet.kind", "futex_wait")),
    );
    assert_eq!(futex.value(), Some(0.0), "{how}: zeros are sent too");
    let ring = point(
        got,
        "spanlet.dropped",
        Some(("spanlet.drop.cause", "ringbuf_full")),
    );
    assert_eq!(ring.value(), Some(7.0), "{how}");
    let causes = got
        .points("spanlet.dropped")
        .into_iter()
        .filter_map(|p| p.str("spanlet.drop.cause"))
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(causes.len(), DROP_CAUSES.len(), "{how}: {causes:?}");
    let used = point(got, "spanlet.ringbuf.used", None);
    assert_eq!(
        (used.data_type.as_str(), used.unit.as_str(), used.value()),
        ("Gauge", "By", Some(1024.0)),
        "{how}"
    );
    let ratio = point(got, "spanlet.ringbuf.fill_ratio", None);
    assert_eq!(ratio.value(), Some(0.25), "{how}: {ratio:?}");
    for (name, want) in [
        ("spanlet.waits.below_min_wait", 30.0),
        ("spanlet.exported", 17.0),
        ("spanlet.export.errors", 0.0),
        ("spanlet.traced_processes", 4.0),
        ("spanlet.k8s.pods", 3.0),
        ("spanlet.ringbuf.size", 4096.0),
        ("spanlet.probe.attach_failures", 0.0),
        ("spanlet.selection.reloads", 0.0),
    ] {
        assert_eq!(point(got, name, None).value(), Some(want), "{how}: {name}");
    }
    assert!(
        got.resources.iter().any(|r| {
            r.get("service.name").map(String::as_str) == Some("Str(spanlet)")
                && r.get("host.name").map(String::as_str) == Some("Str(node-7)")
                && r.get("k8s.node.name").map(String::as_str) == Some("Str(node-7)")
                && r.contains_key("service.version")
        }),
        "{how}: the agent's resource: {:?}",
        got.resources
    );
}

fn waits_seen(got: &Received) -> Vec<f64> {
    got.points("spanlet.waits.seen")
        .into_iter()
        .filter_map(Point::value)
        .collect()
}

#[test]
fn a_snapshot_reaches_the_collector_over_grpc_and_http() {
    let Some(rotel) = Rotel::start() else {
        return;
    };
    let rt = runtime();
    for (protocol, url, seen) in [
        (Protocol::Grpc, rotel.grpc_url(), 1111),
        (Protocol::HttpProtobuf, rotel.http_url(), 2222),
    ] {
        // Only what this protocol delivered is checked.
        let before = Received::parse(&rotel.output());
        // A gRPC sender starts its connection task on the runtime.
        rt.block_on(async { sender(protocol, url).export(snapshot(seen)).await })
            .unwrap_or_else(|e| panic!("{protocol:?}: {e}"));
        let mut got = rotel.received_until(&format!("the {protocol:?} request"), |g| {
            waits_seen(g).contains(&(seen as f64))
        });
        got.points.drain(..before.points.len());
        got.resources.drain(..before.resources.len());
        assert_eq!(waits_seen(&got), [seen as f64], "{protocol:?}");
        check(&got, &format!("{protocol:?}"));
    }
}

/// Runs the periodic exporter on its own thread, so the test can wait on
/// rotel with blocking calls meanwhile.
fn exporter(
    protocol: Protocol,
    url: String,
    state: Arc<State>,
    interval: Duration,
) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, stopped) = watch::channel(false);
    let task = std::thread::spawn(move || {
        runtime().block_on(async {
            let sender = sender(protocol, url);
            export_periodically(sender, state, interval, stopped).await;
        });
    });
    (stop, task)
}

fn join_within(task: JoinHandle<()>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !task.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the exporter did not stop within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    task.join().expect("the exporter did not panic");
}

#[test]
fn the_exporter_sends_what_is_published_and_once_more_at_shutdown() {
    let Some(rotel) = Rotel::start() else {
        return;
    };

    // Periodic, over HTTP: a newly published snapshot shows up by itself.
    let state = Arc::new(State::default());
    state.publish(snapshot(3333));
    let (stop, task) = exporter(
        Protocol::HttpProtobuf,
        rotel.http_url(),
        state.clone(),
        Duration::from_millis(200),
    );
    let got = rotel.received_until("a periodic export", |g| waits_seen(g).contains(&3333.0));
    check(&got, "periodic");
    state.publish(snapshot(4444));
    rotel.received_until("the next periodic export", |g| {
        waits_seen(g).contains(&4444.0)
    });
    stop.send_replace(true);
    join_within(task, Duration::from_secs(10));
    assert_eq!(state.metrics_export_failures(), 0);

    // At shutdown, over gRPC: an interval far away, so the only export is
    // the last one.
    let state = Arc::new(State::default());
    let (stop, task) = exporter(
        Protocol::Grpc,
        rotel.grpc_url(),
        state.clone(),
        Duration::from_secs(3600),
    );
    state.publish(snapshot(5555));
    stop.send_replace(true);
    join_within(task, Duration::from_secs(10));
    let got = rotel.received_until("the export at shutdown", |g| {
        waits_seen(g).contains(&5555.0)
    });
    let last = waits_seen(&got).iter().filter(|v| **v == 5555.0).count();
    assert_eq!(last, 1, "one export at shutdown, none before");
    assert_eq!(state.metrics_export_failures(), 0);
}
