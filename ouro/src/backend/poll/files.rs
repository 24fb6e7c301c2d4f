//! What the backend knows of each fd: the requests waiting on it, its
//! registration and readiness; ring fds adopted and given back.

use std::collections::HashMap;
use std::os::fd::RawFd;

use mio::unix::SourceFd;
use mio::Interest;

use super::{sys, PollBackend, NIL};

/// What the backend knows of an fd it waits on.
#[derive(Clone, Copy)]
pub(super) struct FdState {
    /// First request waiting on it.
    pub(super) head: u32,
    /// Whether it is (as far as we know) in the poller.
    pub(super) registered: bool,
    /// A ring fd: registered once, readiness tracked in `ready`.
    pub(super) owned: bool,
    /// For a ring fd: `READY_*` bits set by events, cleared when an attempt
    /// finds the fd not ready.
    pub(super) ready: u8,
    /// For a ring fd: what it is registered for (what its waits have
    /// needed so far; it only grows).
    pub(super) interest: Option<Interest>,
    /// For a ring fd: a TCP socket, which a short receive (or send) shows
    /// empty (or full).
    pub(super) tcp: bool,
    /// For a ring fd: `READY_*` bits an event reported closed (hang-up,
    /// peer's FIN, error). They stay set until the fd is forgotten: a
    /// short receive does not clear read readiness then, since the end of
    /// stream (or error) that came with the last bytes is still to be read
    /// and no new edge will announce it.
    pub(super) closed: u8,
    /// The last first attempt of a read found it empty: reads wait for
    /// readiness without trying first...
    pub(super) read_would_block: bool,
    /// ...except every `PROBE_EVERY`th, which tries, in case data now
    /// tends to be there already (a stream rather than request-response).
    pub(super) skipped_tries: u8,
    /// Reads and writes at the current position in the pool: later ones
    /// follow them there, so that they happen in order.
    pub(super) in_pool_at_position: u32,
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
    pub(super) fn skip_try(&mut self) -> bool {
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
pub(super) struct FdTable {
    pub(super) dense: Vec<FdState>,
    pub(super) sparse: HashMap<RawFd, FdState>,
}

impl FdTable {
    fn get(&self, fd: RawFd) -> Option<&FdState> {
        match usize::try_from(fd) {
            Ok(i) if i < DENSE_FDS => self.dense.get(i),
            _ => self.sparse.get(&fd),
        }
    }

    pub(super) fn get_mut(&mut self, fd: RawFd) -> Option<&mut FdState> {
        match usize::try_from(fd) {
            Ok(i) if i < DENSE_FDS => self.dense.get_mut(i),
            _ => self.sparse.get_mut(&fd),
        }
    }

    /// `fd`'s state, created if new.
    pub(super) fn entry(&mut self, fd: RawFd) -> &mut FdState {
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
    pub(super) fn trim(&mut self, fd: RawFd) {
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
pub(super) const READY_READ: u8 = 1;
pub(super) const READY_WRITE: u8 = 2;
pub(super) const READY_ALL: u8 = READY_READ | READY_WRITE;

/// The readiness bits a wait for `interest` is about.
pub(super) fn ready_bits(interest: Interest) -> u8 {
    let mut bits = 0;
    if interest.is_readable() || interest.is_priority() {
        bits |= READY_READ;
    }
    if interest.is_writable() {
        bits |= READY_WRITE;
    }
    bits
}

impl PollBackend {
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
    pub(super) fn forget_fd(&mut self, fd: RawFd) {
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
