//! The agent's HTTP endpoints for Kubernetes and Prometheus: `/healthz`
//! (liveness: the main loop is still turning), `/readyz` (readiness: probes
//! attached, pod cache synced) and `/metrics`.
//!
//! A small HTTP/1.1 server that never blocks the agent: the loop only
//! publishes into [`State`]; requests read from it.
use std::{
    convert::Infallible,
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, task::JoinSet};

use super::{Snapshot, connections::Table, prometheus};

/// How long the main loop may go without a beat before `/healthz` fails.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(10);
/// Connections open at once; a new one beyond closes the longest idle.
pub const MAX_CONNECTIONS: usize = 64;
/// A client must send a request's headers within this, counted from the
/// connection's start or its previous response; it also closes idle
/// kept-alive connections. A probe or a scraper sends its request at once.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// No connection lives longer, whatever the client does: a probe or a
/// scrape takes milliseconds, and clients reconnect.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// How often at most a failing accept, or shedding, is logged.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// What the endpoints show, shared between the agent's loop (which writes)
/// and the server (which reads).
#[derive(Debug)]
pub struct State {
    snapshot: Mutex<Snapshot>,
    ready: AtomicBool,
    not_ready_reason: Mutex<String>,
    /// Milliseconds since `born` at the loop's last beat.
    heartbeat_ms: AtomicU64,
    born: Instant,
    stale_after: Duration,
    metrics_export_failures: AtomicU64,
}

impl Default for State {
    fn default() -> Self {
        Self::new(DEFAULT_STALE_AFTER)
    }
}

impl State {
    /// Not ready ("starting"), alive until the loop misses beats for
    /// `stale_after`.
    pub fn new(stale_after: Duration) -> Self {
        Self {
            snapshot: Mutex::new(Snapshot::default()),
            ready: AtomicBool::new(false),
            not_ready_reason: Mutex::new("starting".to_owned()),
            heartbeat_ms: AtomicU64::new(0),
            born: Instant::now(),
            stale_after,
            metrics_export_failures: AtomicU64::new(0),
        }
    }

    /// The loop's latest figures.
    pub fn publish(&self, snapshot: Snapshot) {
        *lock(&self.snapshot) = snapshot;
    }

    /// Readiness, with why not (shown by `/readyz`) when not ready.
    pub fn set_ready(&self, ready: bool, reason: impl Into<String>) {
        // The reason first, so a reader that sees "not ready" sees why.
        *lock(&self.not_ready_reason) = if ready { String::new() } else { reason.into() };
        self.ready.store(ready, Ordering::Release);
    }

    /// The main loop is alive.
    pub fn beat(&self) {
        self.heartbeat_ms
            .store(millis(self.born.elapsed()), Ordering::Relaxed);
    }

    /// The latest figures, with the metrics exporter's own counter.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = lock(&self.snapshot).clone();
        s.metrics_export_failures = self.metrics_export_failures();
        s
    }

    /// `Err(why)` while not ready.
    pub fn readiness(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(lock(&self.not_ready_reason).clone())
        }
    }

    /// `Err(silence)`: the loop has not beaten for longer than allowed.
    pub fn liveness(&self) -> Result<(), Duration> {
        let last = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        let silence = self.born.elapsed().saturating_sub(last);
        if silence > self.stale_after {
            Err(silence)
        } else {
            Ok(())
        }
    }

    /// OTLP metric exports that failed so far.
    pub fn metrics_export_failures(&self) -> u64 {
        self.metrics_export_failures.load(Ordering::Relaxed)
    }

    pub(super) fn count_metrics_export_failure(&self) {
        self.metrics_export_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// A poisoned lock still holds a whole value here (plain assignments and
/// clones), so it is used rather than turned into a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Serves the endpoints on `listener` until `shutdown` completes; then
/// stops accepting and closes open connections.
///
/// Every connection is accepted at once; when [`MAX_CONNECTIONS`] are open,
/// the one idle longest is closed for the new one (see
/// [`connections`](super::connections)), so idle or slow clients cannot
/// starve the kubelet's probes.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024);
    let mut table = Table::new(MAX_CONNECTIONS);
    let mut connections: JoinSet<u64> = JoinSet::new();
    let mut last_accept_error: Option<Instant> = None;
    let mut last_shed_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: wait a little
                // rather than spin, and do not flood the log.
                if last_accept_error.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    tracing::warn!(%err, "metrics endpoint: cannot accept a connection");
                    last_accept_error = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Connections that ended leave the table before it sheds any.
        while let Some(done) = connections.try_join_next() {
            if let Ok(id) = done {
                table.remove(id);
            }
        }
        if table.make_room() > 0 && last_shed_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                "metrics endpoint: {MAX_CONNECTIONS} connections open; closing the longest idle for each new one"
            );
            last_shed_log = Some(Instant::now());
        }
        let (id, stream, activity) = table.track(stream);
        let state = state.clone();
        let conn = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| {
                let response = respond(&state, &req);
                async move { Ok::<_, Infallible>(response) }
            }),
        );
        let abort = connections.spawn(async move {
            // Past its lifetime a connection is just dropped.
            if let Ok(Err(err)) = tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                tracing::debug!(%err, "metrics endpoint: connection error");
            }
            id
        });
        table.insert(id, activity, abort);
    }
    connections.shutdown().await;
}

fn respond(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return text(StatusCode::NOT_FOUND, "not found\n".to_owned());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned());
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/healthz" => match state.liveness() {
            Ok(()) => text(StatusCode::OK, "ok\n".to_owned()),
            Err(silence) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("main loop silent for {}s\n", silence.as_secs()),
            ),
        },
        "/readyz" => match state.readiness() {
            Ok(()) => text(StatusCode::OK, "ok\n".to_owned()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => {
            let mut r = text(StatusCode::OK, prometheus::render(&state.snapshot()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(prometheus::CONTENT_TYPE),
            );
            r
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpStream,
        sync::oneshot,
    };

    use super::*;

    /// A server on a free local port; dropping the sender stops it.
    async fn start(state: Arc<State>) -> (std::net::SocketAddr, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Sends `request` as is and reads the answer until the server closes.
    async fn raw(addr: std::net::SocketAddr, request: &str) -> (u16, String, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
            .await
            .expect("the server answers and closes")
            .unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, head.to_owned(), body.to_owned())
    }

    async fn get(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        raw(
            addr,
            &format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await
    }

    #[tokio::test]
    async fn each_path_answers_with_its_status() {
        let state = Arc::new(State::default());
        let (addr, _stop) = start(state.clone()).await;

        let (status, _, body) = get(addr, "GET", "/readyz").await;
        assert_eq!((status, body.as_str()), (503, "not ready: starting\n"));
        state.set_ready(false, "pod cache not synced");
        let (status, _, body) = get(addr, "GET", "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "not ready: pod cache not synced\n")
        );
        state.set_ready(true, "");
        assert_eq!(get(addr, "GET", "/readyz").await.0, 200);

        state.beat();
        let (status, _, body) = get(addr, "GET", "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));

        let mut s = Snapshot::starting_at(1);
        s.waits_seen = 42;
        state.publish(s);
        let (status, head, body) = get(addr, "GET", "/metrics?x=1").await;
        assert_eq!(status, 200);
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(body.contains("\nspanlet_waits_seen_total 42\n"), "{body}");

        let (status, head, body) = get(addr, "HEAD", "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.is_empty(), "HEAD has no body: {body}");
        assert!(
            head.to_ascii_lowercase().contains("content-length:"),
            "{head}"
        );

        assert_eq!(get(addr, "GET", "/").await.0, 404);
        assert_eq!(get(addr, "GET", "/metricsx").await.0, 404);
        let (status, head, _) = get(addr, "POST", "/metrics").await;
        assert_eq!(status, 405);
        assert!(
            head.to_ascii_lowercase().contains("allow: get, head"),
            "{head}"
        );
        assert_eq!(get(addr, "DELETE", "/healthz").await.0, 405);
    }

    /// Opens connections to `addr` that send nothing, until `idle` holds
    /// `n` that the server has not closed.
    async fn keep_idle(addr: std::net::SocketAddr, idle: &mut Vec<TcpStream>, n: usize) {
        idle.retain(|s| {
            let mut buf = [0u8; 1];
            // Ok(0): closed by the server; WouldBlock: still open.
            matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
        while idle.len() < n {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
    }

    /// 150 connections held open without a request (reopened as the
    /// server closes them) must not keep a liveness probe waiting: the
    /// kubelet gives it 2 s.
    #[tokio::test]
    async fn idle_connections_do_not_starve_the_probes() {
        let state = Arc::new(State::default());
        state.beat();
        let (addr, _stop) = start(state).await;
        let mut idle = Vec::new();
        for probe in 0..20 {
            keep_idle(addr, &mut idle, 150).await;
            let answer =
                tokio::time::timeout(Duration::from_secs(2), get(addr, "GET", "/healthz")).await;
            assert!(
                matches!(answer, Ok((200, _, _))),
                "probe {probe} of 20 with 150 idle connections open: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn a_silent_loop_fails_the_liveness_probe() {
        let state = Arc::new(State::new(Duration::from_millis(50)));
        let (addr, _stop) = start(state.clone()).await;
        state.beat();
        assert_eq!(get(addr, "GET", "/healthz").await.0, 200);
        tokio::time::sleep(Duration::from_millis(120)).await;
        let (status, _, body) = get(addr, "GET", "/healthz").await;
        assert_eq!(status, 503);
        assert!(body.starts_with("main loop silent for"), "{body}");
        state.beat();
        assert_eq!(get(addr, "GET", "/healthz").await.0, 200);
    }

    #[tokio::test]
    async fn garbage_and_kept_alive_requests_do_not_break_it() {
        let state = Arc::new(State::default());
        let (addr, stop) = start(state.clone()).await;
        let (status, _, _) = raw(addr, "NOT HTTP AT ALL\r\n\r\n").await;
        assert!(status == 400 || status == 0, "{status}");
        // Two requests on one connection, the second closing it.
        let (_, _, body) = raw(
            addr,
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(body.starts_with("ok\n"), "{body}");
        assert!(body.contains("spanlet_build_info"), "{body}");
        // Still serving, then stops when told.
        assert_eq!(get(addr, "GET", "/healthz").await.0, 200);
        drop(stop);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = TcpStream::connect(addr).await;
        assert!(refused.is_err(), "the listener is closed after shutdown");
    }
}
