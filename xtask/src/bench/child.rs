//! Child processes of a run: killed (by their pid, never by name) and
//! reaped when a run fails or takes too long, so nothing is left behind.

use std::{
    process::{Child, ChildStdout, Command, ExitStatus},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::util::display;

/// A child process that is killed (by its pid) and reaped if dropped while
/// still running, so a failed run leaves nothing behind.
pub struct Guard(Option<Child>);

impl Guard {
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start `{}`", display(cmd)))?;
        Ok(Self(Some(child)))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child present until dropped")
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    pub fn stdout(&mut self) -> Result<ChildStdout> {
        self.child().stdout.take().context("child stdout")
    }

    pub fn signal(&mut self, sig: libc::c_int) {
        if let Ok(pid) = i32::try_from(self.id()) {
            // SAFETY: kill has no memory-safety preconditions; the pid is our
            // own child, not yet reaped.
            unsafe { libc::kill(pid, sig) };
        }
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child().try_wait().context("polling a child process")
    }

    /// Waits up to `timeout` for it to exit; kills it after that.
    pub fn wait_for(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                self.0 = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.kill();
                bail!("did not exit within {timeout:?}; killed");
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills a process (by its pid) if the run takes longer than its timeout.
/// It is disarmed before the process is reaped, so the pid is still ours.
pub struct Watchdog {
    cancel: mpsc::Sender<()>,
    fired: thread::JoinHandle<bool>,
}

impl Watchdog {
    pub fn arm(pid: u32, timeout: Duration) -> Self {
        let (cancel, rx) = mpsc::channel::<()>();
        let fired = thread::spawn(move || {
            if rx.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
                if let Ok(pid) = i32::try_from(pid) {
                    // SAFETY: as in Guard::signal; the child is reaped only
                    // after `check` has joined this thread.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                return true;
            }
            false
        });
        Self { cancel, fired }
    }

    /// Disarms it; an error if it had to kill.
    pub fn check(self) -> Result<()> {
        drop(self.cancel);
        if self.fired.join().unwrap_or(false) {
            bail!("timed out and killed");
        }
        Ok(())
    }
}

/// Polls `ready` until it holds; fails if `child` exits first or at `deadline`.
pub fn wait_until(
    child: &mut Guard,
    deadline: Instant,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the tracer exited before it was attached ({status})");
        }
        if Instant::now() > deadline {
            bail!("the tracer did not attach in time");
        }
        thread::sleep(Duration::from_millis(20));
    }
}
