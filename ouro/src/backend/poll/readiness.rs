//! Waiting for readiness: linking requests to their fds, arming
//! registrations, and retrying requests when an event comes.

use std::os::fd::RawFd;

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::call::{Attempt, Progress, Unpollable};
use super::files::{ready_bits, FdState, READY_ALL, READY_READ, READY_WRITE};
use super::{Place, PollBackend, NIL};

impl PollBackend {
    pub(super) fn fd_state(&mut self, fd: RawFd) -> &mut FdState {
        self.fds.entry(fd)
    }

    /// Puts a request on `fd`'s waiting list and makes sure an event will
    /// wake it (see `watch`).
    pub(super) fn wait_for(&mut self, index: u32, fd: RawFd, interest: Interest) {
        if fd < 0 {
            return self.complete(index, -libc::EBADF);
        }
        self.link(index, fd, interest);
        let sure = self.requests[index as usize].call.knows_its_wait();
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
        match call.unpollable {
            Unpollable::ToPool => {
                // A file is never "empty": the next read tries at once (the
                // page cache may serve it).
                let state = self.fd_state(fd);
                state.read_would_block = false;
                state.ready = READY_ALL;
                self.hand_to_pool(index);
            }
            Unpollable::OtherEnd => {
                // Wait on the other end, which must be a pipe; if it is
                // the same file, the call can only block.
                let [fd_in, fd_out] = call.args.fds;
                let other = if fd == fd_in { fd_out } else { fd_in };
                if other == fd {
                    return self.hand_to_pool(index);
                }
                let (other_interest, progress) = if other == fd_out {
                    (Interest::WRITABLE, Progress::Start)
                } else {
                    (Interest::READABLE, Progress::SpliceWaitsOut)
                };
                call.args.progress = progress;
                self.link(index, other, other_interest);
                if self.watch(other, other_interest, false).is_err() {
                    self.unlink(index, other);
                    self.hand_to_pool(index);
                }
            }
            // io_uring waits forever for such a poll (until cancelled): so
            // does the request, on the list without a registration.
            Unpollable::WaitsForever => self.link(index, fd, interest),
            Unpollable::Fails => self.complete(index, res),
        }
    }

    fn link(&mut self, index: u32, fd: RawFd, interest: Interest) {
        let head = self.fd_state(fd).head;
        let request = &mut self.requests[index as usize];
        request.place = Place::Waiting { fd, interest };
        request.next = head;
        self.fds[fd].head = index;
    }

    pub(super) fn unlink(&mut self, index: u32, fd: RawFd) {
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
    pub(super) fn on_event(&mut self, fd: RawFd, event: &mio::event::Event) {
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
}
