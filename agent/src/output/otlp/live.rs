//! Live export while tracing: spanlets go into a bounded queue that one
//! task drains in batches to the collector. The tracing side never waits on
//! the network: when the queue is full (a slow or dead collector) a spanlet
//! is dropped and counted; a batch that still fails after its retries is
//! dropped and counted too; and export resumes by itself when the collector
//! comes back. Shutdown flushes what is queued, within a deadline.
use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    ResourceSettings, RetryPolicy, SendError, Sender, Settings, client::retry_policy, mapping,
};
use crate::{
    model::{Names, Spanlet},
    record::{LiveConsumer, LiveItem as Item, LiveSummary as Summary},
};

/// Spanlets (and the names that go with them) waiting to be sent.
const QUEUE: usize = 16_384;
/// Spanlets per request.
const BATCH: usize = 512;
/// A partial batch is sent after this long.
const LINGER: Duration = Duration::from_millis(500);
/// Live export gives a failing batch fewer tries than a replay: new
/// spanlets keep coming, and the queue must keep moving.
fn live_retry() -> RetryPolicy {
    retry_policy(3, Duration::from_millis(200), Duration::from_secs(2))
}

/// Where live OTLP export goes, checked when it starts.
#[derive(Clone, Debug)]
pub struct LiveOtlp {
    pub settings: Settings,
    pub resource: ResourceSettings,
}

impl LiveOtlp {
    /// Checks the settings and starts the sending task (on the current
    /// tokio runtime).
    pub fn start(self) -> Result<LiveExporter, SendError> {
        Ok(LiveExporter::start(
            Sender::new(self.settings, live_retry())?,
            self.resource,
        ))
    }
}

/// Export figures, readable while running.
#[derive(Debug, Default)]
struct Counters {
    /// Spanlets taken into the queue.
    pub queued: AtomicU64,
    pub exported: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Dropped because their batch failed after its retries.
    pub dropped_send_failed: AtomicU64,
    /// Batches that failed after their retries.
    pub failed_batches: AtomicU64,
}

pub struct LiveExporter {
    tx: mpsc::Sender<Item>,
    counters: Arc<Counters>,
    task: JoinHandle<Option<String>>,
}

/// The names the spanlets in hand may need, and those to forget once they
/// are sent.
#[derive(Default)]
struct NameTable {
    names: Names,
    /// Exited processes and threads, forgotten once the batch in hand (which
    /// may hold their spanlets) is sent.
    forget: Vec<(u32, Option<u32>)>,
}

impl NameTable {
    fn forget_now(&mut self, pid: u32, tid: Option<u32>) {
        match tid {
            Some(tid) => self.names.remove_thread(pid, tid),
            None => self.names.remove_process(pid),
        }
    }

    fn forget_exited(&mut self) {
        for (pid, tid) in std::mem::take(&mut self.forget) {
            self.forget_now(pid, tid);
        }
    }

    /// A process (or thread) is named again: a reused PID. What was to be
    /// forgotten of the old one goes now, before the new names arrive.
    fn renamed(&mut self, pid: u32, tid: Option<u32>) {
        let due: Vec<(u32, Option<u32>)> = self
            .forget
            .iter()
            .copied()
            .filter(|&(p, t)| p == pid && (t.is_none() || t == tid))
            .collect();
        self.forget.retain(|f| !due.contains(f));
        for (p, t) in due {
            self.forget_now(p, t);
        }
    }
}

impl Counters {
    /// The figures so far: what is queued is not dropped (yet), and the
    /// last error is the sending task's to tell at the end.
    fn figures(&self) -> Summary {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Summary {
            exported: load(&self.exported),
            dropped_queue_full: load(&self.dropped_queue_full),
            dropped_send_failed: load(&self.dropped_send_failed),
            dropped_at_exit: 0,
            failed_batches: load(&self.failed_batches),
            last_error: None,
        }
    }
}

impl LiveExporter {
    /// Starts the sending task (on the current tokio runtime).
    pub fn start(sender: Sender, resource: ResourceSettings) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(sender, resource, rx, counters.clone()));
        Self { tx, counters, task }
    }

    /// Queues an item; never waits. A spanlet that does not fit is counted;
    /// false when the item did not fit.
    pub fn offer(&self, item: Item) -> bool {
        let is_spanlet = matches!(item, Item::Spanlet(_));
        let accepted = self.tx.try_send(item).is_ok();
        let counter = match accepted {
            true => &self.counters.queued,
            false => &self.counters.dropped_queue_full,
        };
        if is_spanlet {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        accepted
    }

    /// Sends what is queued, for at most `deadline`; what is left then is
    /// counted as dropped.
    pub async fn shutdown(self, deadline: Duration) -> Summary {
        let Self { tx, counters, task } = self;
        drop(tx);
        let abort = task.abort_handle();
        let last_error = match tokio::time::timeout(deadline, task).await {
            Ok(Ok(last)) => last,
            Ok(Err(join)) => Some(format!("export task failed: {join}")),
            Err(_) => {
                abort.abort();
                Some(format!("export did not finish within {deadline:?}"))
            }
        };
        let figures = counters.figures();
        Summary {
            dropped_at_exit: counters
                .queued
                .load(Ordering::Relaxed)
                .saturating_sub(figures.exported + figures.dropped_send_failed),
            last_error,
            ..figures
        }
    }
}

/// What the recording feeds the exporter.
impl LiveConsumer for LiveExporter {
    fn offer(&self, item: Item) -> bool {
        LiveExporter::offer(self, item)
    }

    fn figures(&self) -> Summary {
        self.counters.figures()
    }

    fn finish(self: Box<Self>, deadline: Duration) -> Pin<Box<dyn Future<Output = Summary>>> {
        Box::pin(self.shutdown(deadline))
    }
}

/// The sending task: batches of up to [`BATCH`] spanlets, sent when full or
/// after [`LINGER`]. Returns the last error seen, if any.
async fn run(
    mut sender: Sender,
    resource: ResourceSettings,
    mut rx: mpsc::Receiver<Item>,
    counters: Arc<Counters>,
) -> Option<String> {
    let mut names = NameTable::default();
    let mut batch: Vec<Spanlet> = Vec::with_capacity(BATCH);
    let mut last_error = None;
    loop {
        let open = fill(&mut rx, &mut names, &mut batch).await;
        if !batch.is_empty() {
            let spanlets = mapping::batch(&batch, &resource, &names.names);
            let exported = match sender.send(spanlets).await {
                Ok(()) => batch.len() as u64,
                Err(incomplete) => {
                    let err = incomplete.source;
                    let dropped = batch.len() as u64 - incomplete.delivered;
                    tracing::warn!(%err, spanlets = dropped, "OTLP export failed; spanlets dropped");
                    counters
                        .dropped_send_failed
                        .fetch_add(dropped, Ordering::Relaxed);
                    counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                    last_error = Some(err.to_string());
                    incomplete.delivered
                }
            };
            counters.exported.fetch_add(exported, Ordering::Relaxed);
            batch.clear();
        }
        names.forget_exited();
        if !open {
            return last_error;
        }
    }
}

/// Takes items until the batch is full, [`LINGER`] has passed since the
/// first spanlet, or the queue closes (returns false then).
async fn fill(
    rx: &mut mpsc::Receiver<Item>,
    names: &mut NameTable,
    batch: &mut Vec<Spanlet>,
) -> bool {
    let mut deadline = None;
    while batch.len() < BATCH {
        let next = match deadline {
            None => rx.recv().await,
            Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                Ok(item) => item,
                Err(_) => return true,
            },
        };
        match next {
            None => return false,
            Some(Item::Process(p)) => {
                names.renamed(p.pid, None);
                names.names.insert_process(p);
            }
            Some(Item::Thread(t)) => {
                names.renamed(t.pid, Some(t.tid));
                names.names.insert_thread(t);
            }
            // Nothing in hand can need the names: forget at once (an idle
            // node never fills a batch).
            Some(Item::Forget { pid, tid }) if batch.is_empty() => names.forget_now(pid, tid),
            Some(Item::Forget { pid, tid }) => names.forget.push((pid, tid)),
            Some(Item::Spanlet(s)) => {
                batch.push(*s);
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
            }
        }
    }
    true
}
