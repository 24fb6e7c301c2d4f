//! The readiness backend: completions emulated on readiness notification
//! (epoll on Linux, kqueue on macOS and the BSDs, both through `mio`), for
//! systems where io_uring is missing or forbidden.
//!
//! It has the io_uring backend's shape and returns the same raw results, so
//! the ring builds identical outcomes. An operation started here is queued
//! (nothing reaches the kernel until the ring waits or flushes, as with
//! io_uring); then, in order, each one is attempted once without blocking
//! (`MSG_DONTWAIT`, `RWF_NOWAIT`, non-blocking accept/connect). If it is not
//! possible yet it waits on its fd's readiness and is attempted again when
//! the fd becomes ready, until it finishes. Calls that block without ever
//! being "not ready" (open, stat, fsync, reads and writes of regular files)
//! go to a small thread pool whose results come back as completions.
//!
//! Registrations are edge-triggered. A borrowed fd's is re-armed
//! (`EPOLL_CTL_MOD`) each time an operation starts waiting: ouro does not
//! own the fd, so it cannot know whether fd 7 is still the file it
//! registered; re-arming notices a closed and reused fd (`ENOENT`, then add)
//! and reports current readiness, so no wake-up is ever lost. A read that
//! last found its fd empty skips the attempt and waits at once (a hint per
//! fd, harmless when stale), so a request-response connection costs one
//! re-arm instead of a failed read per request.
//!
//! A ring fd is the backend's own, so its number stays its file until the
//! ring closes it: it is registered once (for reading and writing) and
//! stays registered, with readiness flags per fd that events set and an
//! attempt that finds the fd not ready clears (mio's and tokio's model). On
//! a TCP socket, a receive or send that moves fewer bytes than it could
//! clears them too, as tokio does: the socket's queue was empty (or full)
//! then, and what changes it is a new edge. (Not on a Unix stream socket,
//! whose receive also stops after a message that carried fds.) Hang-up
//! and error readiness are sticky: once an event reports the peer's FIN,
//! a hang-up or an error, a short receive no longer clears read readiness
//! (the end of stream that came with the last bytes is still to be read,
//! and no new edge would announce it). An operation on a ring fd known
//! not to be ready waits without trying, and waiting costs no system call. A multishot operation stopped at its limit
//! of results in a row, whose fd is still ready, goes again on the next
//! turn (no event would wake it). Closing a ring fd removes its
//! registration.

mod call;
mod files;
mod pool;
mod prep;
mod readiness;
mod setup;
mod sys;

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Interest, Token};

use self::call::{Attempt, Call};
use self::files::{ready_bits, FdTable};
use self::pool::Pool;
use self::prep::prepare;
use super::driver::Driver;
use super::{BackendKind, OwnedFiles, RawCompletion, Started, Wake, MORE};
use crate::error::bad_ring_fd;
use crate::op::Op;
use crate::task::user_data;
use crate::time::Clock;

/// The token of the waker (pool results, messages from other threads);
/// every other token is an fd...
const WAKER: Token = Token(usize::MAX);
/// ...but this one: a pollable ring's timer fd.
const POLL_TIMER: Token = Token(usize::MAX - 1);

const NIL: u32 = u32::MAX;

/// The fewest readiness events one wait handles before it stops polling
/// again for more (the io_uring backend's budget of completions per turn
/// is the same).
const MIN_EVENT_BUDGET: usize = 4096;

/// Results a multishot operation delivers in a row before the others get
/// a turn. Few, because receives sharing a buffer group share its buffers
/// too, and none come back before the ring has handled the turn's
/// results: at 32, 16 connections sending without pause took a 512-buffer
/// group's every buffer each turn, and a 65th one's request got `ENOBUFS`
/// turn after turn (up to a second under load); at 8, 64 of them leave
/// some for it.
const MAX_SHOTS: usize = 8;

/// Where an operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Free,
    /// Started, not attempted yet.
    Queued,
    /// In its fd's list of waiters, for `interest`.
    Waiting {
        fd: RawFd,
        interest: Interest,
    },
    /// On a pool thread (or in its queue).
    Pool,
    /// A multishot operation stopped at its limit on a ready ring fd: it
    /// goes again next turn.
    Deferred,
}

/// An operation in flight, kept at its task's slot index.
struct Request {
    user_data: u64,
    place: Place,
    /// The next request waiting on the same fd.
    next: u32,
    call: Call,
}

impl Request {
    const FREE: Request = Request {
        user_data: 0,
        place: Place::Free,
        next: NIL,
        call: Call::NOOP,
    };
}

pub(crate) struct PollBackend {
    poll: mio::Poll,
    events: Events,
    requests: Vec<Request>,
    /// Started and not attempted yet, in order.
    queued: VecDeque<u32>,
    /// Multishot operations to attempt again next turn (`Place::Deferred`).
    deferred: Vec<u32>,
    /// How many operations may be queued at once: the ring's size, like
    /// io_uring's submission queue (the ring keeps the rest until `flush`).
    entries: usize,
    fds: FdTable,
    done: Vec<RawCompletion>,
    pool: Pool,
    /// The last wait returned without polling because results were ready;
    /// the next one polls, so ready fds are never starved.
    skipped_poll: bool,
    /// Wakes `wait` from other threads: the pool, and messages.
    waker: Arc<mio::Waker>,
    /// For a ring another ring polls (its fd is the poller's): makes the
    /// poller readable when the ring's nearest timer is due. Created on
    /// first use.
    pollable: Option<Option<std::os::fd::OwnedFd>>,
    /// The ring fds, by slot.
    pub(crate) files: OwnedFiles,
}

impl PollBackend {
    /// Starts `op`; see [`Backend::start`](super::Backend::start).
    ///
    /// # Safety
    ///
    /// The memory `op` owns (buffers, addresses, iovecs, paths, statx and
    /// msghdr blocks) must stay alive and in place, untouched by the caller,
    /// until the operation's final completion has been reaped from this
    /// backend, or until the backend has been drained of it before it is
    /// torn down.
    pub(crate) unsafe fn start(&mut self, user_data: u64, op: &mut Op, _clock: &Clock) -> Started {
        if self.queued.len() >= self.entries {
            return Started::Full;
        }
        let call = match prepare(op, &mut self.files) {
            Ok(call) => call,
            Err(res) => return Started::Done(res),
        };
        let index = user_data::index(user_data) as usize;
        if index >= self.requests.len() {
            self.requests.resize_with(index + 1, || Request::FREE);
        }
        self.requests[index] = Request {
            user_data,
            place: Place::Queued,
            next: NIL,
            call,
        };
        self.queued.push_back(index as u32);
        Started::Yes
    }

    /// Cancels a waiting operation at once (`ECANCELED`) and a queued pool
    /// job; one already running finishes with its own result. Operations
    /// started before the cancel request are attempted first, as io_uring
    /// issues them before it.
    pub(crate) fn cancel(&mut self, target: u64) -> bool {
        self.run_queued();
        let index = user_data::index(target);
        let Some(request) = self.requests.get(index as usize) else {
            return true;
        };
        if request.user_data != target {
            return true;
        }
        match request.place {
            Place::Waiting { fd, .. } => {
                self.unlink(index, fd);
                sys::abandon(&self.requests[index as usize].call);
                self.complete(index, -libc::ECANCELED);
            }
            Place::Pool if self.pool.cancel(target) => {
                self.left_pool(index);
                // Bytes a file's read or write moved before it went to the
                // pool cannot be taken back: they are its result, as on
                // io_uring.
                let res = match self.requests[index as usize].call.args.progress {
                    #[cfg(target_os = "linux")]
                    call::Progress::Partial(done) => done,
                    _ => -libc::ECANCELED,
                };
                self.complete(index, res);
            }
            Place::Deferred => {
                self.deferred.retain(|&i| i != index);
                self.complete(index, -libc::ECANCELED);
            }
            Place::Pool | Place::Free | Place::Queued => {}
        }
        true
    }

    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        self.run_queued();
        Ok(true)
    }

    pub(crate) fn wait(&mut self, timeout: Option<u64>, _clock: &mut Clock) -> io::Result<()> {
        self.run_queued();
        self.take_pool_results();
        let ready = !self.done.is_empty();
        if ready && !self.skipped_poll {
            self.skipped_poll = true;
            return Ok(());
        }
        self.skipped_poll = false;
        let timeout = if ready || !self.deferred.is_empty() {
            Some(Duration::ZERO)
        } else {
            timeout.map(Duration::from_nanos)
        };
        let mut events = mem::replace(&mut self.events, Events::with_capacity(0));
        let mut polled = self.poll.poll(&mut events, timeout);
        // A full buffer may have left ready fds behind: poll again, without
        // waiting, so that one turn delivers all that is ready (as io_uring
        // does), within a budget that a peer which never stops sending
        // cannot make endless.
        let mut budget = events.capacity().max(MIN_EVENT_BUDGET);
        loop {
            let mut count = 0;
            for event in events.iter() {
                count += 1;
                match event.token() {
                    WAKER => {}
                    POLL_TIMER => self.clear_poll_timer(),
                    token => self.on_event(token.0 as RawFd, event),
                }
            }
            budget = budget.saturating_sub(count);
            if polled.is_err() || count < events.capacity() || budget == 0 {
                break;
            }
            polled = self.poll.poll(&mut events, Some(Duration::ZERO));
        }
        self.events = events;
        // Multishot operations stopped at their limit go again, after the
        // fds this poll found ready.
        for index in self.deferred.drain(..) {
            self.requests[index as usize].place = Place::Queued;
            self.queued.push_back(index);
        }
        self.take_pool_results();
        match polled {
            Err(err) if err.kind() != io::ErrorKind::Interrupted => Err(err),
            _ => Ok(()),
        }
    }

    pub(crate) fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        self.take_pool_results();
        out.append(&mut self.done);
    }

    /// Attempts every queued operation, in order.
    fn run_queued(&mut self) {
        while let Some(index) = self.queued.pop_front() {
            if self.requests[index as usize].place == Place::Queued {
                self.first_attempt(index);
            }
        }
    }

    fn first_attempt(&mut self, index: u32) {
        let call = &self.requests[index as usize].call;
        if call.closes_fd {
            self.forget_fd(call.args.fds[0]);
        }
        if let Some(fd) = self.requests[index as usize].call.at_position() {
            if self.fd_state(fd).in_pool_at_position > 0 {
                return self.hand_to_pool(index);
            }
        }
        let call = &self.requests[index as usize].call;
        if let Some((fd, interest)) = call.waits_on() {
            let state = self.fd_state(fd);
            if state.owned && state.ready & ready_bits(interest) == 0 {
                // Known not ready: an event will say when it is.
                return self.wait_for(index, fd, interest);
            }
        }
        let call = &self.requests[index as usize].call;
        let hinted = call.read_hint().filter(|&fd| !self.fd_state(fd).owned);
        if let Some(fd) = hinted {
            if self.fd_state(fd).skip_try() {
                return self.wait_for(index, fd, Interest::READABLE);
            }
        }
        let (attempt, limited) = self.attempt(index);
        if let Some(fd) = hinted {
            self.fd_state(fd).read_would_block = matches!(attempt, Attempt::Wait(..));
        }
        self.settle(index, attempt, limited);
    }

    /// Attempts a request; a multishot one again after each result it
    /// delivers, up to a limit (then it must wait, re-armed, for its turn:
    /// the second value says so).
    fn attempt(&mut self, index: u32) -> (Attempt, bool) {
        for _ in 0..MAX_SHOTS {
            let attempt = self.requests[index as usize].call.attempt();
            let drained = self.note_short(index, &attempt);
            match attempt {
                Attempt::Shot(res, flags) => {
                    self.done.push(RawCompletion {
                        user_data: self.requests[index as usize].user_data,
                        res,
                        flags: flags | MORE,
                    });
                    if let Some((fd, interest)) = drained {
                        // No need to find it empty with another call.
                        return (Attempt::Wait(fd, interest), false);
                    }
                }
                attempt => return (attempt, false),
            }
        }
        // Only a multishot call gets here; it waits for what it needs.
        let attempt = match self.requests[index as usize].call.waits_on() {
            Some((fd, interest)) => Attempt::Wait(fd, interest),
            None => Attempt::Done(-libc::EINVAL),
        };
        (attempt, true)
    }

    /// A receive or send on a ring fd that is a TCP socket moved fewer
    /// bytes than it could: the socket is not ready for more (its queue was
    /// empty, or full), so its readiness is cleared; returns the fd and
    /// readiness a multishot call now waits for.
    fn note_short(&mut self, index: u32, attempt: &Attempt) -> Option<(RawFd, Interest)> {
        let moved = match *attempt {
            Attempt::Done(res) | Attempt::Shot(res, _) if res > 0 => res as usize,
            _ => return None,
        };
        let call = &self.requests[index as usize].call;
        let (fd, interest) = call.waits_on()?;
        let asked = call.asked;
        if asked == 0 {
            return None;
        }
        let state = self.fds.get_mut(fd)?;
        let bits = ready_bits(interest) & !state.closed;
        if !state.owned || !state.tcp || moved >= asked || bits == 0 {
            return None;
        }
        state.ready &= !bits;
        Some((fd, interest))
    }

    /// Finishes, parks or hands over a request after an attempt (`limited`:
    /// a multishot one stopped at its limit, its fd still ready).
    fn settle(&mut self, index: u32, attempt: Attempt, limited: bool) {
        match attempt {
            Attempt::Done(res) | Attempt::Shot(res, _) => self.complete(index, res),
            Attempt::Wait(fd, _) if limited && self.fd_state(fd).owned => {
                // No event would come for a ring fd still ready.
                self.requests[index as usize].place = Place::Deferred;
                self.deferred.push(index);
            }
            Attempt::Wait(fd, interest) => self.wait_for(index, fd, interest),
            Attempt::Pool => self.hand_to_pool(index),
        }
    }

    fn complete(&mut self, index: u32, res: i32) {
        let request = &mut self.requests[index as usize];
        request.place = Place::Free;
        request.call = Call::NOOP;
        self.done.push(RawCompletion {
            user_data: request.user_data,
            res,
            flags: 0,
        });
    }

    fn hand_to_pool(&mut self, index: u32) {
        let order = self.requests[index as usize].call.at_position();
        let request = &mut self.requests[index as usize];
        request.place = Place::Pool;
        if let Err(res) = self.pool.submit(request.user_data, request.call, order) {
            return self.complete(index, res);
        }
        if let Some(fd) = order {
            self.fd_state(fd).in_pool_at_position += 1;
        }
    }

    /// Takes the pool's results: the requests are done.
    fn take_pool_results(&mut self) {
        if self.pool.in_flight() == 0 {
            return;
        }
        let first = self.done.len();
        self.pool.take_done(&mut self.done);
        for i in first..self.done.len() {
            let index = user_data::index(self.done[i].user_data);
            self.left_pool(index);
            let request = &mut self.requests[index as usize];
            request.place = Place::Free;
            request.call = Call::NOOP;
        }
    }

    /// Bookkeeping of a request that left the pool (done or taken back).
    fn left_pool(&mut self, index: u32) {
        if let Some(fd) = self.requests[index as usize].call.at_position() {
            self.fds[fd].in_pool_at_position -= 1;
        }
    }
}

impl Drop for PollBackend {
    fn drop(&mut self) {
        if self.pool.in_flight() > 0 {
            tracing::debug!(
                jobs = self.pool.in_flight(),
                "dropping the readiness backend with pool jobs running"
            );
        }
    }
}

impl Driver for PollBackend {
    const KIND: BackendKind = BackendKind::Poll;

    #[inline(always)]
    unsafe fn start(&mut self, user_data: u64, op: &mut Op, clock: &Clock) -> Started {
        // SAFETY: forwarded: our caller keeps what `op` owns alive and in
        // place until its final completion.
        unsafe { PollBackend::start(self, user_data, op, clock) }
    }

    fn cancel(&mut self, user_data: u64) -> bool {
        PollBackend::cancel(self, user_data)
    }

    fn flush(&mut self) -> io::Result<bool> {
        PollBackend::flush(self)
    }

    fn wait(&mut self, timeout: Option<u64>, clock: &mut Clock) -> io::Result<()> {
        PollBackend::wait(self, timeout, clock)
    }

    #[inline]
    fn reap(&mut self, out: &mut Vec<RawCompletion>) {
        PollBackend::reap(self, out)
    }

    fn waker(&mut self) -> io::Result<Arc<dyn Wake>> {
        PollBackend::waker(self)
    }

    fn describe(&self) -> String {
        format!("readiness ({} and a file thread pool)", self.poller())
    }

    /// Registered at its first wait (there is no fixed table to use).
    fn adopt_fd(&mut self, file: u32, fd: OwnedFd, may_use_table: bool) {
        let _ = may_use_table;
        PollBackend::adopt_fd(self, file, fd)
    }

    fn file_fd(&self, file: u32) -> io::Result<BorrowedFd<'_>> {
        self.files
            .get(file)
            .map(AsFd::as_fd)
            .ok_or_else(bad_ring_fd)
    }

    fn take_file(&mut self, file: u32, stash: &mut Vec<RawCompletion>) -> io::Result<OwnedFd> {
        let _ = stash;
        PollBackend::take_file(self, file).ok_or_else(bad_ring_fd)
    }

    fn forget_file(&mut self, file: u32) {
        drop(PollBackend::take_file(self, file));
    }

    fn close_files(&mut self) {
        self.files.close_all();
    }

    fn leak_files(&mut self) {
        self.files.leak_all();
    }

    fn pollable_fd(&self) -> Option<BorrowedFd<'_>> {
        PollBackend::pollable_fd(self)
    }

    fn prepare_poll(&mut self, now: bool, after_ns: Option<u64>) -> io::Result<bool> {
        PollBackend::prepare_poll(self, now, after_ns)
    }
}
