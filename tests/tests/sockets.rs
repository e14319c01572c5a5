//! Socket waits: a loopback TCP server whose two threads share a listening
//! socket, and a client whose two threads share one connection. The
//! spanlets must show who waited on which socket (transport, ports), for
//! how long (the server's known reply delay), which thread was ahead on
//! the same socket (the holder) and which peer thread's send woke the
//! waiter; the report and the OTLP export (rotel) must show them.
//!
//! Workload: `workloads/c_socket_pair.c`. Needs root and eBPF (see the
//! harness for skip/fail rules).

use serde::Deserialize;
use spanlet_tests::{
    C_SOCKET_PAIR, Spanlet, collector::Rotel, describe, kernel_test_lock, record_command,
};

const MS: u64 = 1_000_000;
const ROUNDS: &str = "2";
const DELAY_MS: u64 = 100;

#[derive(Debug, Deserialize)]
struct Truth {
    port: u16,
    rounds: usize,
    server_pid: u32,
    /// S1 blocked in accept first, S2 behind it.
    server_tids: [u32; 2],
    client_pid: u32,
    client_tids: [u32; 2],
}

fn op(s: &Spanlet) -> &str {
    s.socket.as_ref().map_or("", |k| k.op.as_str())
}

#[test]
fn socket_waits_name_the_socket_the_thread_ahead_and_the_peer_that_woke_it() {
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(&["--min-wait", "1ms"], C_SOCKET_PAIR, &[ROUNDS, "100"]) else {
        return;
    };
    let truth: Truth = rec.truth();
    let [s1, s2] = truth.server_tids;
    let spanlets = rec.export_with_sockets();
    let sockets: Vec<&Spanlet> = spanlets
        .iter()
        .filter(|s| s.kind == "socket_wait")
        .collect();
    let ctx = describe(sockets.iter().copied(), 40);

    // Every socket wait is on the server's port: the listener, the accepted
    // connection (local port) or the client's end (peer port).
    for s in &sockets {
        let k = s.socket.as_ref().expect("a socket_wait has its socket");
        assert_eq!(k.transport, "tcp", "{}", s.brief());
        assert!(
            k.local_port == Some(truth.port) || k.peer_port == Some(truth.port),
            "not a socket of port {}: {k:?} {}",
            truth.port,
            s.brief()
        );
        assert_eq!(k.local_address.as_deref(), Some("127.0.0.1"), "{k:?}");
    }

    // The listener: S1 waited first; S2 waited behind S1 until the end.
    let accepts = |tid: u32| -> Vec<&Spanlet> {
        sockets
            .iter()
            .copied()
            .filter(|s| s.tid == tid && op(s) == "accept")
            .collect()
    };
    let (a1, a2) = (accepts(s1), accepts(s2));
    let ([first], [second]) = (a1.as_slice(), a2.as_slice()) else {
        panic!("want one accept wait per server thread:\n{ctx}");
    };
    assert_eq!(
        first.holder_tid,
        None,
        "S1 was first in line: {}",
        first.brief()
    );
    assert_eq!(
        second.holder_tid,
        Some(s1),
        "S2 queued behind S1 on the listening socket: {}",
        second.brief()
    );
    assert_eq!(first.addr, second.addr, "one listening socket (inode)");
    assert!(first.wait_ns >= 40 * MS, "{}", first.brief());
    assert!(
        second.wait_ns >= (truth.rounds as u64 * 2 * DELAY_MS) * MS,
        "S2 waited through every round: {}",
        second.brief()
    );

    // The client: recv waits on the shared connection, woken by S1's replies.
    let client_recv: Vec<&Spanlet> = sockets
        .iter()
        .copied()
        .filter(|s| s.pid == truth.client_pid && op(s) == "recv")
        .collect();
    assert!(
        client_recv
            .iter()
            .all(|s| truth.client_tids.contains(&s.tid)),
        "{ctx}"
    );
    let replies: Vec<&&Spanlet> = client_recv
        .iter()
        .filter(|s| s.waker_tid == Some(s1) && s.waker_pid == Some(truth.server_pid))
        .collect();
    assert!(
        replies.len() >= truth.rounds,
        "{} client waits woken by S1's replies in {} rounds:\n{ctx}",
        replies.len(),
        truth.rounds
    );
    // A reply comes DELAY_MS after the server read the request: C1 waits
    // about that, C2 (which sent 20 ms later) about 20 ms less, and a thread
    // woken by a reply the other one took waits once more, for the next.
    let shortest = (DELAY_MS - 20) * MS * 8 / 10;
    for s in &replies {
        assert!(
            s.wait_ns >= shortest && s.wait_ns <= 4 * DELAY_MS * MS,
            "a wait for a reply of {:.1} ms, with a {DELAY_MS} ms reply delay: {}",
            s.wait_ms(),
            s.brief()
        );
    }
    let [c1, c2] = truth.client_tids;
    assert!(
        client_recv
            .iter()
            .any(|s| (s.tid, s.holder_tid) == (c2, Some(c1))
                || (s.tid, s.holder_tid) == (c1, Some(c2))),
        "no client wait names the other client thread, ahead on the connection:\n{ctx}"
    );

    // The server: S1 waits for requests, woken by the client threads' sends.
    assert!(
        sockets.iter().any(|s| s.tid == s1
            && op(s) == "recv"
            && s.waker_pid == Some(truth.client_pid)
            && s.waker_tid.is_some_and(|t| truth.client_tids.contains(&t))),
        "no request wait of S1 woken by a client thread:\n{ctx}"
    );

    // The report names the sockets.
    let report = rec.report_text();
    let listener = format!("socket_wait (tcp 127.0.0.1:{})", truth.port);
    assert!(report.contains(&listener), "{listener:?} in:\n{report}");

    // The OTLP export carries the network attributes.
    let Some(rotel) = Rotel::start() else { return };
    let got = rotel.replay_grpc(&rec.capture, spanlets.len());
    let port = i64::from(truth.port);
    assert!(
        got.logs.iter().any(|l| {
            l.str("spanlet.kind") == Some("socket_wait")
                && l.str("spanlet.socket.op") == Some("recv")
                && l.str("network.transport") == Some("tcp")
                && l.str("network.peer.address") == Some("127.0.0.1")
                && l.int("network.peer.port") == Some(port)
        }),
        "no client recv event with the server as peer: {:#?}",
        got.logs
    );
}

/// S1 waits for each request in `how` (the workload's third argument);
/// its waits there, of op `op`, must be on its connection from the client
/// and woken by a client thread's send.
fn waits_before_reading(how: &str, op_name: &str) {
    let _serial = kernel_test_lock();
    let Some(rec) = record_command(&["--min-wait", "1ms"], C_SOCKET_PAIR, &[ROUNDS, "100", how])
    else {
        return;
    };
    let truth: Truth = rec.truth();
    let s1 = truth.server_tids[0];
    let spanlets = rec.export_with_sockets();
    let waits: Vec<&Spanlet> = spanlets
        .iter()
        .filter(|s| s.kind == "socket_wait" && s.tid == s1 && op(s) == op_name)
        .collect();
    let ctx = describe(spanlets.iter(), 40);
    assert!(
        !waits.is_empty(),
        "{how}: no {op_name} socket wait of S1:\n{ctx}"
    );
    for s in &waits {
        let k = s.socket.as_ref().expect("a socket_wait has its socket");
        assert_eq!(k.local_port, Some(truth.port), "{how}: {k:?}");
        assert_eq!(k.peer_address.as_deref(), Some("127.0.0.1"), "{how}: {k:?}");
        assert_ne!(k.peer_port, Some(truth.port), "{how}: {k:?}");
    }
    assert!(
        waits.iter().any(|s| s.waker_pid == Some(truth.client_pid)
            && s.waker_tid.is_some_and(|t| truth.client_tids.contains(&t))
            && s.wait_ns >= 30 * MS),
        "{how}: no wait of S1 woken by a client thread's request:\n{ctx}"
    );
}

/// epoll names no socket when the thread blocks: the one that ended the
/// wait is found on the epoll instance's ready list.
#[test]
fn an_epoll_wait_is_a_wait_on_the_socket_that_became_ready() {
    waits_before_reading("epoll", "epoll");
}

#[test]
fn poll_and_select_on_one_socket_are_waits_on_it() {
    waits_before_reading("poll", "poll");
    waits_before_reading("select", "poll");
}
