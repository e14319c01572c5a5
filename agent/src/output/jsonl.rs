//! JSON Lines export: one object per spanlet, for jq, notebooks, or loading
//! into other tracing tools.

use std::io::{self, BufWriter, Write};

use serde::Serialize;

use crate::{
    capture::Capture,
    model::{Spanlet, socket_op},
};

/// One exported line. Ids are lowercase hex, as W3C trace context writes them,
/// and the address is hex because that is how it appears in debuggers.
#[derive(Serialize)]
struct Line<'a> {
    kind: &'static str,
    pid: u32,
    tid: u32,
    comm: &'a str,
    addr: String,
    start_unix_nano: u64,
    wait_ns: u64,
    holder_tid: Option<u32>,
    waker_tid: Option<u32>,
    trace_id: Option<String>,
    span_id: Option<String>,
    holder_trace_id: Option<String>,
    holder_span_id: Option<String>,
    waker_trace_id: Option<String>,
    waker_span_id: Option<String>,
    outcome: &'static str,
    woken_after_ns: Option<u64>,
    waker_pid: Option<u32>,
    waker_comm: Option<&'a str>,
    syscall: u32,
    /// The raw `op`/`arg` pair of every kind, under the names the format
    /// has always had (see `Spanlet::op`).
    futex_op: u32,
    futex_val: u32,
    flags: u32,
    /// For socket waits: what it was doing, transport and addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    socket: Option<SocketLine>,
}

#[derive(Serialize)]
struct SocketLine {
    op: &'static str,
    transport: String,
    local_address: Option<String>,
    local_port: Option<u16>,
    peer_address: Option<String>,
    peer_port: Option<u16>,
}

impl<'a> Line<'a> {
    fn new(s: &'a Spanlet) -> Self {
        Self {
            kind: s.kind.as_str(),
            pid: s.pid,
            tid: s.tid,
            comm: &s.comm,
            addr: format!("{:#x}", s.addr),
            start_unix_nano: s.start_unix_nano,
            wait_ns: s.wait_ns,
            holder_tid: s.holder_tid,
            waker_tid: s.waker_tid,
            trace_id: s.context.map(|c| hex(&c.trace_id)),
            span_id: s.context.map(|c| hex(&c.span_id)),
            holder_trace_id: s.holder_context.map(|c| hex(&c.trace_id)),
            holder_span_id: s.holder_context.map(|c| hex(&c.span_id)),
            waker_trace_id: s.waker_context.map(|c| hex(&c.trace_id)),
            waker_span_id: s.waker_context.map(|c| hex(&c.span_id)),
            outcome: s.outcome.as_str(),
            woken_after_ns: s.woken_after_ns,
            waker_pid: s.waker_pid,
            waker_comm: s.waker_comm.as_deref(),
            syscall: s.syscall,
            futex_op: s.op,
            futex_val: s.arg,
            flags: s.flags,
            socket: s.socket.map(|k| {
                let (local, peer) = (k.local(), k.peer());
                SocketLine {
                    op: socket_op(s.syscall, s.flags),
                    transport: k.transport(),
                    local_address: local.map(|a| a.ip().to_string()),
                    local_port: local.map(|a| a.port()),
                    peer_address: peer.map(|a| a.ip().to_string()),
                    peer_port: peer.map(|a| a.port()),
                }
            }),
        }
    }
}

/// Writes every spanlet of `capture` as one JSON object per line and returns
/// the number of lines. Output is buffered here, so `out` may be unbuffered.
pub fn write_jsonl(capture: &Capture, out: &mut impl Write) -> io::Result<u64> {
    let mut out = JsonlWriter::new(out);
    for s in &capture.spanlets {
        out.write(s)?;
    }
    out.finish()
}

/// Writes spanlets one at a time as JSON Lines, so an export streams a
/// capture of any size in bounded memory.
pub struct JsonlWriter<W: Write> {
    out: BufWriter<W>,
    lines: u64,
}

impl<W: Write> JsonlWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out: BufWriter::new(out),
            lines: 0,
        }
    }

    pub fn write(&mut self, spanlet: &Spanlet) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &Line::new(spanlet))?;
        self.out.write_all(b"\n")?;
        self.lines += 1;
        Ok(())
    }

    /// Flushes and returns the number of lines written.
    pub fn finish(mut self) -> io::Result<u64> {
        self.out.flush()?;
        Ok(self.lines)
    }
}

/// Lowercase hex of an id (trace or span).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testutil::{full_spanlet, minimal_spanlet, sample_meta};
    use serde_json::{Value, json};

    fn export(spanlets: Vec<Spanlet>) -> Vec<Value> {
        let mut c = Capture::new(sample_meta());
        c.spanlets = spanlets;
        let mut out = Vec::new();
        let n = write_jsonl(&c, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.is_empty() || text.ends_with('\n'));
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len() as u64, n);
        lines
    }

    #[test]
    fn exports_every_field() {
        let lines = export(vec![full_spanlet(), minimal_spanlet()]);
        let full = &lines[0];
        assert_eq!(full["kind"], "mutex_wait");
        assert_eq!(full["pid"], 100);
        assert_eq!(full["tid"], u32::MAX);
        assert_eq!(full["comm"], "worker-é\"\n");
        assert_eq!(full["addr"], "0x7fffdeadbeef0010");
        assert_eq!(full["start_unix_nano"], u64::MAX);
        assert_eq!(full["wait_ns"], 1_234_567);
        assert_eq!(full["holder_tid"], 101);
        assert_eq!(full["waker_tid"], 102);
        assert_eq!(full["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(full["span_id"], "00f067aa0ba902b7");
        assert_eq!(full["holder_trace_id"], "01".repeat(16));
        assert_eq!(full["holder_span_id"], "02".repeat(8));
        assert_eq!(full["outcome"], "woken");
        assert_eq!(full["woken_after_ns"], 1_000_000);
        assert_eq!(full["waker_pid"], 100);
        assert_eq!(full["waker_comm"], "waker");
        assert_eq!(full["syscall"], 202);
        assert_eq!(full["futex_op"], 0x80);
        assert_eq!(full["futex_val"], 2);
        assert_eq!(full["flags"], u32::MAX);

        let mut socket = full_spanlet();
        socket.kind = crate::model::SpanletKind::SocketWait;
        socket.syscall = agent_ebpf::syscalls_x86_64::ACCEPT4;
        socket.flags = agent_ebpf::wait_flags::SOCKET;
        socket.socket = Some(crate::model::SocketInfo {
            family: 10,
            sock_type: 1,
            protocol: 6,
            local_port: 443,
            peer_port: 0,
            local_addr: [0; 16],
            peer_addr: [0; 16],
        });
        let line = &export(vec![socket])[0];
        assert_eq!(
            line["socket"],
            json!({"op": "accept", "transport": "tcp", "local_address": "::",
                   "local_port": 443, "peer_address": null, "peer_port": null})
        );

        assert_eq!(
            lines[1],
            json!({
                "kind": "futex_wait", "pid": 0, "tid": 0, "comm": "", "addr": "0x0",
                "start_unix_nano": 0, "wait_ns": 0, "holder_tid": null, "waker_tid": null,
                "trace_id": null, "span_id": null, "holder_trace_id": null,
                "holder_span_id": null, "waker_trace_id": null, "waker_span_id": null,
                "outcome": "unknown", "woken_after_ns": null,
                "waker_pid": null, "waker_comm": null, "syscall": 0, "futex_op": 0,
                "futex_val": 0, "flags": 0
            })
        );
    }

    #[test]
    fn empty_capture_writes_nothing() {
        assert!(export(Vec::new()).is_empty());
    }
}
