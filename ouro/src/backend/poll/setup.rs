//! Setting the backend up: the poller, its waker, and the fd another
//! ring polls a pollable ring by (with its timer).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use mio::Events;
#[cfg(target_os = "linux")] // the pollable ring's timer
use mio::{unix::SourceFd, Interest};

use super::files::FdTable;
use super::pool::Pool;
#[cfg(target_os = "linux")] // the pollable ring's timer
use super::{sys, POLL_TIMER};
use super::{PollBackend, WAKER};
use crate::backend::{not_pollable, OwnedFiles, Wake};

impl Wake for mio::Waker {
    fn wake(&self) {
        if let Err(err) = mio::Waker::wake(self) {
            tracing::error!(error = %err, "waking a ring failed");
        }
    }
}

impl PollBackend {
    /// A backend with room for `entries` queued operations; `pollable`: its
    /// poller's fd will be polled by another ring (Linux only, so far).
    pub(crate) fn new(entries: u32, pollable: bool) -> io::Result<PollBackend> {
        if pollable && !cfg!(target_os = "linux") {
            return Err(not_pollable());
        }
        let poll = mio::Poll::new()?;
        // The pool wakes `wait` when results are ready; messages from other
        // threads share this waker.
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        let pool_waker = waker.clone();
        let pool = Pool::new(Box::new(move || Wake::wake(&*pool_waker)));
        let capacity = (entries as usize).clamp(64, 1024);
        tracing::debug!(entries, poller = POLLER, "readiness backend ready");
        Ok(PollBackend {
            poll,
            events: Events::with_capacity(capacity),
            requests: Vec::with_capacity(entries as usize * 2),
            queued: VecDeque::with_capacity(entries as usize),
            deferred: Vec::new(),
            entries: entries as usize,
            fds: FdTable::default(),
            done: Vec::with_capacity(capacity),
            pool,
            skipped_poll: false,
            waker,
            pollable: pollable.then_some(None),
            files: OwnedFiles::default(),
        })
    }

    /// The poller's own fd: readable while it has events to report.
    pub(crate) fn pollable_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsRawFd;
        self.pollable.as_ref()?;
        // SAFETY: the poller's fd stays open as long as `self`, which the
        // borrow keeps alive.
        Some(unsafe { std::os::fd::BorrowedFd::borrow_raw(self.poll.as_raw_fd()) })
    }

    /// Before a pollable ring stops running: makes the poller readable now
    /// (results wait in user space), or when its nearest timer is due;
    /// whether it armed the timer.
    pub(crate) fn prepare_poll(&mut self, now: bool, after_ns: Option<u64>) -> io::Result<bool> {
        // Queued operations are attempted (and registered) only here or in
        // `wait`: the poller must know them before the ring stops running.
        self.run_queued();
        self.take_pool_results();
        if now || !self.done.is_empty() || !self.deferred.is_empty() {
            Wake::wake(&*self.waker);
            return Ok(false);
        }
        let Some(after_ns) = after_ns else {
            return Ok(false);
        };
        self.arm_poll_timer(after_ns)?;
        Ok(true)
    }

    #[cfg(target_os = "linux")]
    fn arm_poll_timer(&mut self, after_ns: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let Some(timer) = &mut self.pollable else {
            return Ok(());
        };
        if timer.is_none() {
            let fd = sys::timer_fd()?;
            self.poll.registry().register(
                &mut SourceFd(&fd.as_raw_fd()),
                POLL_TIMER,
                Interest::READABLE,
            )?;
            *timer = Some(fd);
        }
        let fd = timer.as_ref().map(|fd| fd.as_raw_fd()).unwrap_or(-1);
        sys::arm_timer(fd, after_ns)
    }

    #[cfg(not(target_os = "linux"))]
    fn arm_poll_timer(&mut self, _after_ns: u64) -> io::Result<()> {
        Err(not_pollable())
    }

    /// The poll timer fired: read it, so its next expiry is a new edge.
    pub(super) fn clear_poll_timer(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(Some(fd)) = &self.pollable {
            sys::clear_timer(std::os::fd::AsRawFd::as_raw_fd(fd));
        }
    }

    pub(crate) fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        Ok(self.waker.clone())
    }

    /// The system's poller, for diagnostics.
    pub(crate) fn poller(&self) -> &'static str {
        POLLER
    }
}

#[cfg(target_os = "linux")]
const POLLER: &str = "epoll";
#[cfg(not(target_os = "linux"))]
const POLLER: &str = "kqueue";
