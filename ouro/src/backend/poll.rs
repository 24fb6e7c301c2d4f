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

mod pool;
mod sys;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::mem;
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};

use self::pool::Pool;
use self::sys::{Attempt, Call, Connecting, IoVecs, Rw};
use super::{OwnedFiles, RawCompletion, Started, Wake, MORE};
use crate::fd::{Fd, Named};
use crate::op::Op;
use crate::task::user_data;
use crate::time::Clock;

/// The token of the waker (pool results, messages from other threads);
/// every other token is an fd...
const WAKER: Token = Token(usize::MAX);
/// ...but this one: a pollable ring's timer fd.
const POLL_TIMER: Token = Token(usize::MAX - 1);

const NIL: u32 = u32::MAX;

/// Results a multishot operation delivers in a row before the others get
/// a turn.
const MAX_SHOTS: usize = 32;

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
        call: Call::Noop,
    };
}

/// What the backend knows of an fd it waits on.
#[derive(Clone, Copy)]
struct FdState {
    /// First request waiting on it.
    head: u32,
    /// Whether it is (as far as we know) in the poller.
    registered: bool,
    /// A ring fd: registered once, readiness tracked in `ready`.
    owned: bool,
    /// For a ring fd: `READY_*` bits set by events, cleared when an attempt
    /// finds the fd not ready.
    ready: u8,
    /// For a ring fd: what it is registered for (what its waits have
    /// needed so far; it only grows).
    interest: Option<Interest>,
    /// For a ring fd: a TCP socket, which a short receive (or send) shows
    /// empty (or full).
    tcp: bool,
    /// For a ring fd: `READY_*` bits an event reported closed (hang-up,
    /// peer's FIN, error). They stay set until the fd is forgotten: a
    /// short receive does not clear read readiness then, since the end of
    /// stream (or error) that came with the last bytes is still to be read
    /// and no new edge will announce it.
    closed: u8,
    /// The last first attempt of a read found it empty: reads wait for
    /// readiness without trying first...
    read_would_block: bool,
    /// ...except every `PROBE_EVERY`th, which tries, in case data now
    /// tends to be there already (a stream rather than request-response).
    skipped_tries: u8,
    /// Reads and writes at the current position in the pool: later ones
    /// follow them there, so that they happen in order.
    in_pool_at_position: u32,
}

impl FdState {
    const NEW: FdState = FdState {
        head: NIL,
        registered: false,
        owned: false,
        ready: READY_ALL,
        interest: None,
        tcp: false,
        closed: 0,
        read_would_block: false,
        skipped_tries: 0,
        in_pool_at_position: 0,
    };

    /// Whether a read should wait without trying first.
    fn skip_try(&mut self) -> bool {
        if !self.read_would_block {
            return false;
        }
        self.skipped_tries += 1;
        if self.skipped_tries < PROBE_EVERY {
            return true;
        }
        self.skipped_tries = 0;
        false
    }
}

/// Fds numbered below this have their state in a table indexed by number
/// (no hashing on the hot path, ring fds included); higher ones, which only
/// a process with a raised fd limit has, in a map, so that no table grows
/// with an fd's value (a `dup2` to fd 2^29 must not cost gigabytes).
const DENSE_FDS: usize = 1 << 16;

/// The state of each fd the backend knows, by number.
#[derive(Default)]
struct FdTable {
    dense: Vec<FdState>,
    sparse: HashMap<RawFd, FdState>,
}

impl FdTable {
    fn get(&self, fd: RawFd) -> Option<&FdState> {
        match usize::try_from(fd) {
            Ok(i) if i < DENSE_FDS => self.dense.get(i),
            _ => self.sparse.get(&fd),
        }
    }

    fn get_mut(&mut self, fd: RawFd) -> Option<&mut FdState> {
        match usize::try_from(fd) {
            Ok(i) if i < DENSE_FDS => self.dense.get_mut(i),
            _ => self.sparse.get_mut(&fd),
        }
    }

    /// `fd`'s state, created if new.
    fn entry(&mut self, fd: RawFd) -> &mut FdState {
        match usize::try_from(fd) {
            Ok(i) if i < DENSE_FDS => {
                if i >= self.dense.len() {
                    self.dense.resize(i + 1, FdState::NEW);
                }
                &mut self.dense[i]
            }
            _ => self.sparse.entry(fd).or_insert(FdState::NEW),
        }
    }

    /// Drops the state of a high-numbered fd nothing refers to any more
    /// (the table's entries cost nothing to keep; the map's would add up).
    fn trim(&mut self, fd: RawFd) {
        if usize::try_from(fd).is_ok_and(|i| i < DENSE_FDS) {
            return;
        }
        if let Some(state) = self.sparse.get(&fd) {
            if state.head == NIL && state.in_pool_at_position == 0 && !state.registered {
                self.sparse.remove(&fd);
            }
        }
    }
}

impl std::ops::Index<RawFd> for FdTable {
    type Output = FdState;

    /// The state of an fd known to have one (as indexing a `Vec`).
    fn index(&self, fd: RawFd) -> &FdState {
        self.get(fd).expect("state of an unknown fd")
    }
}

impl std::ops::IndexMut<RawFd> for FdTable {
    fn index_mut(&mut self, fd: RawFd) -> &mut FdState {
        self.get_mut(fd).expect("state of an unknown fd")
    }
}

/// How often a read on an fd that was empty last time tries first anyway.
const PROBE_EVERY: u8 = 8;

/// Readiness bits of a ring fd.
const READY_READ: u8 = 1;
const READY_WRITE: u8 = 2;
const READY_ALL: u8 = READY_READ | READY_WRITE;

/// The readiness bits a wait for `interest` is about.
fn ready_bits(interest: Interest) -> u8 {
    let mut bits = 0;
    if interest.is_readable() || interest.is_priority() {
        bits |= READY_READ;
    }
    if interest.is_writable() {
        bits |= READY_WRITE;
    }
    bits
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
            return Err(super::not_pollable());
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
    /// (results wait in user space), or when its nearest timer is due.
    pub(crate) fn prepare_poll(&mut self, now: bool, after_ns: Option<u64>) -> io::Result<()> {
        // Queued operations are attempted (and registered) only here or in
        // `wait`: the poller must know them before the ring stops running.
        self.run_queued();
        self.take_pool_results();
        if now || !self.done.is_empty() || !self.deferred.is_empty() {
            Wake::wake(&*self.waker);
            return Ok(());
        }
        let Some(after_ns) = after_ns else {
            return Ok(());
        };
        self.arm_poll_timer(after_ns)
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
        Err(super::not_pollable())
    }

    /// The poll timer fired: read it, so its next expiry is a new edge.
    fn clear_poll_timer(&mut self) {
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
                self.complete(index, -libc::ECANCELED);
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
        let polled = self.poll.poll(&mut events, timeout);
        for event in events.iter() {
            match event.token() {
                WAKER => {}
                POLL_TIMER => self.clear_poll_timer(),
                token => self.on_event(token.0 as RawFd, event),
            }
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
        if let Call::Close { fd } = self.requests[index as usize].call {
            self.forget_fd(fd);
        }
        if let Some(fd) = at_position(&self.requests[index as usize].call) {
            if self.fd_state(fd).in_pool_at_position > 0 {
                return self.hand_to_pool(index);
            }
        }
        let call = &self.requests[index as usize].call;
        if let Some((fd, interest)) = needs(call) {
            let state = self.fd_state(fd);
            if state.owned && state.ready & ready_bits(interest) == 0 {
                // Known not ready: an event will say when it is.
                return self.wait_for(index, fd, interest);
            }
        }
        let call = &self.requests[index as usize].call;
        let hinted = read_hint(call).filter(|&fd| !self.fd_state(fd).owned);
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
            let attempt = sys::attempt(&mut self.requests[index as usize].call);
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
        let attempt = match self.requests[index as usize].call {
            Call::AcceptMulti { fd } | Call::RecvMulti { fd, .. } => {
                Attempt::Wait(fd, Interest::READABLE)
            }
            _ => Attempt::Done(-libc::EINVAL),
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
        let (fd, interest, asked) = sys::asked(&self.requests[index as usize].call)?;
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
        request.call = Call::Noop;
        self.done.push(RawCompletion {
            user_data: request.user_data,
            res,
            flags: 0,
        });
    }

    fn hand_to_pool(&mut self, index: u32) {
        let order = at_position(&self.requests[index as usize].call);
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
            request.call = Call::Noop;
        }
    }

    /// Bookkeeping of a request that left the pool (done or taken back).
    fn left_pool(&mut self, index: u32) {
        if let Some(fd) = at_position(&self.requests[index as usize].call) {
            self.fds[fd].in_pool_at_position -= 1;
        }
    }

    fn fd_state(&mut self, fd: RawFd) -> &mut FdState {
        self.fds.entry(fd)
    }

    /// Puts a request on `fd`'s waiting list and makes sure an event will
    /// wake it (see `watch`).
    fn wait_for(&mut self, index: u32, fd: RawFd, interest: Interest) {
        if fd < 0 {
            return self.complete(index, -libc::EBADF);
        }
        self.link(index, fd, interest);
        // A splice cannot say which of its fds was not ready.
        let sure = !matches!(self.requests[index as usize].call, Call::Splice { .. });
        if let Err(res) = self.watch(fd, interest, sure) {
            self.unlink(index, fd);
            self.unpollable(index, fd, interest, res);
        }
    }

    /// Makes sure the poller reports `fd` when it becomes ready for a
    /// waiter's `interest` (`not_ready`: an attempt just found it not
    /// ready). A borrowed fd is (re-)armed for everything its waiters need.
    /// A ring fd stays registered for everything its waits have needed so
    /// far: an event will come when it becomes ready — unless it may be
    /// ready already (the edge passed) or is not registered for `interest`
    /// yet, when it is (re-)armed, which reports it at once. So a
    /// connection is armed once for reading and once more if a send ever
    /// waits.
    fn watch(&mut self, fd: RawFd, interest: Interest, not_ready: bool) -> Result<(), i32> {
        let state = &mut self.fds[fd];
        if !state.owned {
            let wanted = self.interest_of(fd);
            return self.arm(fd, wanted);
        }
        let bits = ready_bits(interest);
        if not_ready {
            state.ready &= !bits;
        }
        let wanted = state.interest.map_or(interest, |armed| armed | interest);
        if state.registered && state.interest == Some(wanted) && state.ready & bits == 0 {
            return Ok(());
        }
        self.arm(fd, wanted)?;
        self.fds[fd].interest = Some(wanted);
        Ok(())
    }

    /// A request whose fd cannot be polled: `EPERM` means a regular file
    /// or directory, which is always ready and may block; anything else is
    /// the operation's error.
    fn unpollable(&mut self, index: u32, fd: RawFd, interest: Interest, res: i32) {
        if res != -libc::EPERM {
            return self.complete(index, res);
        }
        let call = &mut self.requests[index as usize].call;
        match call {
            Call::Read { .. } | Call::Write { .. } => {
                // A file is never "empty": the next read tries at once (the
                // page cache may serve it).
                let state = self.fd_state(fd);
                state.read_would_block = false;
                state.ready = READY_ALL;
                self.hand_to_pool(index);
            }
            Call::Splice {
                fd_in,
                fd_out,
                wait_out,
                ..
            } => {
                // Wait on the other end, which must be a pipe; if it is
                // the same file, the call can only block.
                let other = if fd == *fd_in { *fd_out } else { *fd_in };
                if other == fd {
                    return self.hand_to_pool(index);
                }
                let other_interest = if other == *fd_out {
                    Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                *wait_out = other != *fd_out;
                self.link(index, other, other_interest);
                if self.watch(other, other_interest, false).is_err() {
                    self.unlink(index, other);
                    self.hand_to_pool(index);
                }
            }
            // io_uring waits forever for such a poll (until cancelled): so
            // does the request, on the list without a registration.
            Call::Poll { .. } => self.link(index, fd, interest),
            _ => self.complete(index, res),
        }
    }

    fn link(&mut self, index: u32, fd: RawFd, interest: Interest) {
        let head = self.fd_state(fd).head;
        let request = &mut self.requests[index as usize];
        request.place = Place::Waiting { fd, interest };
        request.next = head;
        self.fds[fd].head = index;
    }

    fn unlink(&mut self, index: u32, fd: RawFd) {
        let next = self.requests[index as usize].next;
        let state = &mut self.fds[fd];
        if state.head == index {
            state.head = next;
            return;
        }
        let mut at = state.head;
        while at != NIL {
            let request = &mut self.requests[at as usize];
            if request.next == index {
                request.next = next;
                return;
            }
            at = request.next;
        }
    }

    fn interest_of(&self, fd: RawFd) -> Interest {
        let mut wanted: Option<Interest> = None;
        let mut at = self.fds[fd].head;
        while at != NIL {
            let request = &self.requests[at as usize];
            if let Place::Waiting { interest, .. } = request.place {
                wanted = Some(wanted.map_or(interest, |w| w | interest));
            }
            at = request.next;
        }
        wanted.unwrap_or(Interest::READABLE)
    }

    /// Registers `fd` for `interest`, or re-arms its registration; the
    /// poller reports the fd at once if it is ready already.
    fn arm(&mut self, fd: RawFd, interest: Interest) -> Result<(), i32> {
        let registry = self.poll.registry();
        let token = Token(fd as usize);
        let state = &mut self.fds[fd];
        let result = if state.registered {
            match registry.reregister(&mut SourceFd(&fd), token, interest) {
                // Closed (and maybe reused) since: register it afresh.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    registry.register(&mut SourceFd(&fd), token, interest)
                }
                other => other,
            }
        } else {
            match registry.register(&mut SourceFd(&fd), token, interest) {
                // Registered before and forgotten (an fd we stopped
                // tracking): re-arm it.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    registry.reregister(&mut SourceFd(&fd), token, interest)
                }
                other => other,
            }
        };
        state.registered = result.is_ok();
        result.map_err(|e| -e.raw_os_error().unwrap_or(libc::EIO))
    }

    /// Attempts again what waits on `fd` for the readiness `event` reports.
    fn on_event(&mut self, fd: RawFd, event: &mio::event::Event) {
        let Some(state) = self.fds.get_mut(fd) else {
            return;
        };
        let failed = event.is_error();
        let readable =
            failed || event.is_readable() || event.is_read_closed() || event.is_priority();
        let writable = failed || event.is_writable() || event.is_write_closed();
        if state.owned {
            if readable {
                state.ready |= READY_READ;
            }
            if writable {
                state.ready |= READY_WRITE;
            }
            if failed || event.is_read_closed() {
                state.closed |= READY_READ;
            }
            if failed || event.is_write_closed() {
                state.closed |= READY_WRITE;
            }
        } else if state.head == NIL {
            // Nobody waits (they finished or were cancelled): stop the
            // edge-triggered registration from waking the loop again.
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            state.registered = false;
            self.fds.trim(fd);
            return;
        }
        let mut at = state.head;
        while at != NIL {
            let request = &self.requests[at as usize];
            let next = request.next;
            if let Place::Waiting { interest, .. } = request.place {
                let woken = (readable && (interest.is_readable() || interest.is_priority()))
                    || (writable && interest.is_writable());
                if woken {
                    self.retry(at, fd, interest);
                }
            }
            at = next;
        }
    }

    /// Attempts a waiting request again after its fd became ready.
    fn retry(&mut self, index: u32, fd: RawFd, interest: Interest) {
        let (attempt, limited) = self.attempt(index);
        match attempt {
            // Still not ready: the edge-triggered registration of a
            // borrowed fd stays armed for it, and the next change of state
            // wakes it again. A multishot call stopped by its limit is
            // re-armed instead; a wait on a ring fd goes through `watch`.
            Attempt::Wait(again, wanted)
                if again == fd && wanted == interest && !limited && !self.fds[fd].owned => {}
            attempt => {
                self.unlink(index, fd);
                self.settle(index, attempt, limited);
            }
        }
    }

    /// Takes `fd` as ring fd `file`: registered at its first wait, then
    /// kept registered; first attempts try at once.
    pub(crate) fn adopt_fd(&mut self, file: u32, fd: std::os::fd::OwnedFd) {
        use std::os::fd::AsRawFd;
        let tcp = sys::is_tcp_socket(fd.as_raw_fd());
        let state = self.fd_state(fd.as_raw_fd());
        state.owned = true;
        state.ready = READY_ALL;
        state.interest = None;
        state.tcp = tcp;
        state.closed = 0;
        // Whatever was registered under this number before may be a closed
        // file's registration: the first wait registers (or re-arms) it.
        state.registered = false;
        self.files.insert(file, fd);
    }

    /// Gives ring fd `file` back, without its registration.
    pub(crate) fn take_file(&mut self, file: u32) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::AsRawFd;
        let fd = self.files.take(file)?;
        self.forget_fd(fd.as_raw_fd());
        Some(fd)
    }

    /// `fd` is about to be closed or handed back: its registration (if a
    /// ring fd's, or left by a borrowed fd's waits) goes, and the number is
    /// no longer a ring fd. Requests still waiting on it (borrowed fds
    /// closed under them) stay until cancelled.
    fn forget_fd(&mut self, fd: RawFd) {
        let Some(state) = self.fds.get_mut(fd) else {
            return;
        };
        if state.registered {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        *state = FdState {
            head: state.head,
            in_pool_at_position: state.in_pool_at_position,
            ..FdState::NEW
        };
        self.fds.trim(fd);
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

#[cfg(target_os = "linux")]
const POLLER: &str = "epoll";
#[cfg(not(target_os = "linux"))]
const POLLER: &str = "kqueue";

/// The fd of a read or write at the fd's current position (whose order
/// matters).
fn at_position(call: &Call) -> Option<RawFd> {
    match call {
        Call::Read { fd, offset, .. } | Call::Write { fd, offset, .. }
            if *offset < 0 && *fd >= 0 =>
        {
            Some(*fd)
        }
        _ => None,
    }
}

/// The fd and readiness an operation needs before it can make progress,
/// for the calls that fail with `EAGAIN` until then.
fn needs(call: &Call) -> Option<(RawFd, Interest)> {
    match *call {
        Call::Recv { fd, .. }
        | Call::RecvMsg { fd, .. }
        | Call::Read { fd, .. }
        | Call::Accept { fd, .. }
        | Call::AcceptMulti { fd }
        | Call::RecvMulti { fd, .. } => Some((fd, Interest::READABLE)),
        Call::Send { fd, .. } | Call::SendMsg { fd, .. } | Call::Write { fd, .. } => {
            Some((fd, Interest::WRITABLE))
        }
        _ => None,
    }
    .filter(|&(fd, _)| fd >= 0)
}

/// The fd of a read that keeps the per-fd "was empty" hint.
fn read_hint(call: &Call) -> Option<RawFd> {
    match call {
        Call::Recv { fd, .. } | Call::Read { fd, .. } if *fd >= 0 => Some(*fd),
        _ => None,
    }
}

/// Captures an operation's arguments, pointing into memory it owns; a ring
/// fd becomes the number of the fd kept in `files` (or a ring fd's close
/// takes it from there).
fn prepare(op: &mut Op, files: &mut OwnedFiles) -> Result<Call, i32> {
    let offset = |o: u64| o as i64;
    let raw = |fd: &Fd| match fd.named() {
        Named::Raw(raw) => raw,
        Named::Ring(file) => files.raw(file),
    };
    let call = match op {
        Op::Noop => Call::Noop,
        Op::Accept { fd, addr } => {
            addr.clear();
            Call::Accept {
                fd: raw(fd),
                addr: addr.as_mut_ptr(),
                len: &mut addr.len,
            }
        }
        Op::Connect { fd, addr } => Call::Connect {
            fd: raw(fd),
            addr: addr.as_ptr(),
            len: addr.len,
            state: Connecting::Start,
        },
        Op::Bind { fd, addr } => Call::Bind {
            fd: raw(fd),
            addr: addr.as_ptr(),
            len: addr.len,
        },
        Op::Listen { fd, backlog } => Call::Listen {
            fd: raw(fd),
            backlog: *backlog,
        },
        Op::Socket {
            domain,
            ty,
            protocol,
        }
        | Op::SocketDirect {
            domain,
            ty,
            protocol,
            ..
        } => Call::Socket {
            domain: *domain,
            ty: *ty,
            protocol: *protocol,
        },
        Op::Send { fd, buf, flags } => {
            let (ptr, len) = buf.raw_parts();
            Call::Send {
                fd: raw(fd),
                ptr,
                len,
                flags: *flags,
            }
        }
        Op::Recv { fd, buf, flags } => {
            let (ptr, len) = buf.spare_parts();
            Call::Recv {
                fd: raw(fd),
                ptr,
                len,
                flags: *flags,
            }
        }
        Op::Read { fd, buf, offset: o } => {
            let (ptr, len) = buf.spare_parts();
            Call::Read {
                fd: raw(fd),
                iov: IoVecs::one(ptr, len),
                offset: offset(*o),
                rw: Rw::FIRST,
            }
        }
        Op::Write { fd, buf, offset: o } => {
            let (ptr, len) = buf.raw_parts();
            Call::Write {
                fd: raw(fd),
                iov: IoVecs::one(ptr, len),
                offset: offset(*o),
                rw: Rw::FIRST,
            }
        }
        Op::Readv {
            fd,
            bufs,
            iov,
            offset: o,
        } => {
            bufs.fill_iovecs(iov, true);
            Call::Read {
                fd: raw(fd),
                iov: IoVecs::Many(iov.as_ptr(), iov.len()),
                offset: offset(*o),
                rw: Rw::FIRST,
            }
        }
        Op::Writev {
            fd,
            bufs,
            iov,
            offset: o,
        } => {
            bufs.fill_iovecs(iov, false);
            Call::Write {
                fd: raw(fd),
                iov: IoVecs::Many(iov.as_ptr(), iov.len()),
                offset: offset(*o),
                rw: Rw::FIRST,
            }
        }
        Op::Close { fd } => {
            let owned = fd.take().ok_or(-libc::EBADF)?;
            Call::Close {
                fd: owned.into_raw_fd(),
            }
        }
        Op::CloseRing { file } => {
            let owned = files.take(*file).ok_or(-libc::EBADF)?;
            Call::Close {
                fd: owned.into_raw_fd(),
            }
        }
        Op::Poll { fd, mask } => Call::Poll {
            fd: raw(fd),
            mask: *mask,
        },
        Op::Open {
            dir,
            path,
            flags,
            mode,
        }
        | Op::OpenDirect {
            dir,
            path,
            flags,
            mode,
            ..
        } => Call::Open {
            dir: *dir,
            path: path.as_ptr().cast(),
            flags: *flags,
            mode: *mode,
        },
        Op::Stat {
            dir,
            path,
            flags,
            out,
        } => Call::Stat {
            dir: *dir,
            path: path.as_ptr().cast(),
            flags: *flags,
            out: &mut **out,
        },
        Op::Fsync { fd, datasync } => Call::Fsync {
            fd: raw(fd),
            datasync: *datasync,
        },
        Op::Splice {
            fd_in,
            off_in,
            fd_out,
            off_out,
            len,
            flags,
        } => Call::Splice {
            fd_in: raw(fd_in),
            off_in: *off_in,
            fd_out: raw(fd_out),
            off_out: *off_out,
            len: *len,
            flags: *flags,
            wait_out: false,
        },
        Op::Shutdown { fd, how } => Call::Shutdown {
            fd: raw(fd),
            how: *how,
        },
        Op::SendMsg {
            fd,
            bufs,
            msg,
            flags,
        } => {
            bufs.fill_iovecs(&mut msg.iov, false);
            msg.prepare(false);
            Call::SendMsg {
                fd: raw(fd),
                msg: &msg.hdr,
                flags: *flags,
            }
        }
        Op::RecvMsg {
            fd,
            bufs,
            msg,
            flags,
        } => {
            bufs.fill_iovecs(&mut msg.iov, true);
            msg.prepare(true);
            Call::RecvMsg {
                fd: raw(fd),
                msg: &mut msg.hdr,
                flags: *flags,
            }
        }
        Op::AcceptMulti { fd } | Op::AcceptDirect { fd, .. } => Call::AcceptMulti { fd: raw(fd) },
        Op::RecvMulti { fd, group, .. } => Call::RecvMulti {
            fd: raw(fd),
            group: std::rc::Rc::as_ptr(group),
        },
        Op::Timer { .. }
        | Op::Cancel
        | Op::CancelAll { .. }
        | Op::MsgRing { .. }
        | Op::SendFd { .. }
        | Op::StopThread { .. } => return Err(-libc::EINVAL),
    };
    Ok(call)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A huge fd number costs one map entry, not a table that long; the
    /// entry goes once nothing refers to the fd.
    #[test]
    fn a_huge_fd_number_does_not_size_the_table() {
        let mut fds = FdTable::default();
        fds.entry(3).head = 0;
        let huge = 1 << 29;
        fds.entry(huge).head = 7;
        assert_eq!(fds.dense.len(), 4);
        assert_eq!(fds[huge].head, 7);
        fds.trim(huge);
        assert!(fds.get(huge).is_some(), "trimmed while a request waits");
        fds[huge].head = NIL;
        fds.trim(huge);
        assert!(fds.get(huge).is_none());
        assert_eq!(fds[3].head, 0);
    }
}
