//! The open connections of the agent's HTTP server, capped: when a new one
//! arrives and the table is full, the one that has gone longest without
//! sending or receiving a byte is closed for it. Connections are accepted
//! as fast as they come, so a crowd of idle or slow clients cannot keep a
//! kubelet probe waiting in the listen backlog: the probe is the newest,
//! busiest connection, and the idle ones go first.
use std::{
    collections::BTreeMap,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    task::AbortHandle,
};

/// When a connection last moved a byte, in milliseconds since the table's
/// start; shared between the table and the connection's stream.
#[derive(Debug)]
pub struct Activity {
    last_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn last_ms(&self) -> u64 {
        self.last_ms.load(Ordering::Relaxed)
    }
}

/// A TCP stream that records its last read or write progress.
pub struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The open connections, by a number given at accept.
pub struct Table {
    max: usize,
    next: u64,
    epoch: Instant,
    open: BTreeMap<u64, (Arc<Activity>, AbortHandle)>,
}

impl Table {
    /// A table of at most `max` connections (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            next: 0,
            epoch: Instant::now(),
            open: BTreeMap::new(),
        }
    }

    /// Makes room for one more connection: closes the least recently
    /// active ones (the oldest first among equals) while the table is
    /// full. Returns how many were closed.
    pub fn make_room(&mut self) -> usize {
        let mut shed = 0;
        while self.open.len() >= self.max {
            let Some(id) = self
                .open
                .iter()
                .min_by_key(|(id, (activity, _))| (activity.last_ms(), **id))
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some((_, abort)) = self.open.remove(&id) {
                abort.abort();
                shed += 1;
            }
        }
        shed
    }

    /// Wraps an accepted stream: its number (for [`Table::insert`] and
    /// [`Table::remove`]) and the stream that records its activity.
    pub fn track(&mut self, stream: TcpStream) -> (u64, Tracked, Arc<Activity>) {
        let id = self.next;
        self.next += 1;
        let activity = Arc::new(Activity {
            last_ms: AtomicU64::new(0),
            epoch: self.epoch,
        });
        // Accepting counts as activity: a new connection is not idle yet.
        activity.touch();
        let tracked = Tracked {
            stream,
            activity: activity.clone(),
        };
        (id, tracked, activity)
    }

    /// Records connection `id`, served by the task `abort` stops.
    pub fn insert(&mut self, id: u64, activity: Arc<Activity>, abort: AbortHandle) {
        self.open.insert(id, (activity, abort));
    }

    /// Connection `id` has ended.
    pub fn remove(&mut self, id: u64) {
        self.open.remove(&id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair: the server's side tracked in `table`, served by a
    /// task that reads until it is stopped.
    async fn open(table: &mut Table, listener: &TcpListener) -> (u64, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (id, mut tracked, activity) = table.track(server);
        let task = tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let mut buf = [0u8; 64];
            while tracked.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        table.insert(id, activity, task.abort_handle());
        (id, client)
    }

    #[tokio::test]
    async fn the_least_recently_active_connection_is_closed_for_a_new_one() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut table = Table::new(3);
        let (_, mut first) = open(&mut table, &listener).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (_, mut second) = open(&mut table, &listener).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (_, _third) = open(&mut table, &listener).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The oldest speaks: the second is now the longest idle.
        first.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(table.make_room(), 1);
        assert_eq!(table.len(), 2);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), second.read(&mut buf))
            .await
            .expect("the shed connection is closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // Room already: nothing else goes.
        assert_eq!(table.make_room(), 0);
    }
}
