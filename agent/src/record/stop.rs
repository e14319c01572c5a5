//! Stopping a recording: detach, drain what the kernel wrote, report the
//! waits still open, and close the capture and the live consumer.
use std::{process::ExitStatus, sync::atomic::Ordering, time::Duration};

use super::{RecordError, RecordSummary, recording::Recording};
use crate::{kernel::clock::EpochClock, model::CaptureEnd};

/// How long the end of a run may spend sending what is still queued.
const EXPORT_FLUSH: Duration = Duration::from_secs(5);

impl Recording {
    pub(super) async fn stop(
        mut self,
        reason: String,
        command_status: Option<ExitStatus>,
    ) -> Result<RecordSummary, RecordError> {
        // Detach first, so nothing races in; then drain what the kernel has
        // written, and report the waits still open as in progress.
        self.hooks.set_ready(false);
        self.ring_fill = None;
        self.tracer.detach();
        let stopped_ns = EpochClock::monotonic_now();
        self.drain().await?;
        self.read_kernel_counters()?;
        self.open_waits(stopped_ns)?;
        let stats = &mut self.sink.stats;
        stats.dropped_user_queue_full = self.reader_counters.queue_full.load(Ordering::Relaxed);
        stats.malformed_events = self.reader_counters.malformed.load(Ordering::Relaxed);
        self.progress.stopped();
        let end = CaptureEnd {
            end_unix_nano: EpochClock::unix_now(),
            reason,
        };
        self.sink.finish_capture(&end)?;
        let export = match self.sink.live.take() {
            Some(live) => {
                let summary = live.finish(EXPORT_FLUSH).await;
                // The final figures, for the last metrics export.
                let figures = self.figures(Some(summary.clone()));
                self.hooks.publish(&self.tracer, &figures);
                Some(summary)
            }
            None => None,
        };
        let Self {
            tracer,
            launched,
            sink,
            started,
            ..
        } = self;
        drop(tracer);
        Ok(RecordSummary {
            stats: sink.stats,
            end,
            elapsed: started.elapsed(),
            left_running: launched.filter(|_| command_status.is_none()).map(|l| l.pid),
            command_status,
            export,
        })
    }

    /// Stops the reader and handles what it still had.
    async fn drain(&mut self) -> Result<(), RecordError> {
        let _ = self.stop_reader.send(true);
        while let Some(event) = self.events.recv().await {
            self.seen.event(&event, &mut self.sink)?;
        }
        match (&mut self.reader).await {
            Ok(result) => result.map_err(|source| RecordError::Io {
                what: "draining the event ring",
                source,
            }),
            Err(join) => Err(RecordError::Io {
                what: "event reader task",
                source: std::io::Error::other(join),
            }),
        }
    }

    /// The waits still open in the processes seen, as spanlets in progress
    /// until `stopped_ns` (or counted as below `--min-wait`).
    fn open_waits(&mut self, stopped_ns: u64) -> Result<(), RecordError> {
        for (tid, wait) in self.tracer.open_waits(self.seen.threads()) {
            if stopped_ns.saturating_sub(wait.block_ns) < self.min_wait_ns {
                self.sink.stats.below_min_wait += 1;
            } else {
                self.seen
                    .open_wait(tid, &wait, stopped_ns, &mut self.sink)?;
            }
        }
        Ok(())
    }
}
