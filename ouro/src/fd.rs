//! Ring fds: files handed to a ring for good, named by a [`RingFd`] handle.
//!
//! The ring keeps a table of them (generations, how many tasks name each
//! one, a close waiting for those tasks); each backend keeps the files
//! themselves — io_uring in its fixed file table where it can, the readiness
//! and mock backends as `OwnedFd`s — at the same index.
//!
//! Operations name their fd through [`OpFd`]: a borrowed fd (`&T` where
//! `T: AsFd`), whose number the operation keeps, or a `RingFd`, which the
//! ring resolves and holds open until the operation's final completion.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// A file the ring owns, named by (slot, generation) like a
/// [`Task`](crate::Task): see [`Ring::register_fd`](crate::Ring::register_fd).
///
/// Operations take it wherever they take a borrowed fd. Unlike a borrowed
/// fd, it cannot be closed under an operation: the ring keeps the file open
/// while any task names it, and [closing](crate::Ring::close) it cancels
/// those tasks and closes the file after the last one has finished. Once
/// closed (or taken back with [`Ring::take_fd`](crate::Ring::take_fd)) the
/// handle is stale: every use of it fails with `EBADF` and never touches a
/// file that reuses the slot. A `RingFd` belongs to the ring that made it;
/// another ring answers `EBADF` too.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingFd {
    pub(crate) index: u32,
    pub(crate) generation: u32,
    pub(crate) ring: u32,
}

impl fmt::Debug for RingFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingFd({}#{})", self.index, self.generation)
    }
}

/// How an operation names its fd, in the four bytes of an fd number (so
/// that the fd costs a task slot no more than before): a borrowed fd's
/// number (never negative), or slot `i` of the ring's fd table, stored as
/// `-2 - i` (-1 stays "no fd"). [`Fd::named`] says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fd(i32);

/// What an [`Fd`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Named {
    /// A borrowed fd's number (or -1, no fd).
    Raw(RawFd),
    /// A slot of the ring's fd table, which the backend resolves (a fixed
    /// file, or the fd it keeps).
    Ring(u32),
}

impl Fd {
    /// What a stale `RingFd` becomes: a number no fd has, which every
    /// backend (and the kernel) answers with `EBADF`.
    pub(crate) const STALE: Fd = Fd(-1);

    pub(crate) fn raw(fd: RawFd) -> Fd {
        Fd(fd)
    }

    /// Slot `index` of the ring's fd table (below `MAX_SLOTS`).
    pub(crate) fn ring(index: u32) -> Fd {
        debug_assert!(index < MAX_SLOTS);
        Fd(-2 - index as i32)
    }

    #[inline(always)]
    pub(crate) fn named(self) -> Named {
        if self.0 >= -1 {
            Named::Raw(self.0)
        } else {
            Named::Ring((-2 - self.0) as u32)
        }
    }

    /// The slot of the ring's fd table, for a ring fd.
    pub(crate) fn ring_slot(self) -> Option<u32> {
        match self.named() {
            Named::Ring(index) => Some(index),
            Named::Raw(_) => None,
        }
    }
}

/// Ring fds per ring: as many as an [`Fd`] can name.
const MAX_SLOTS: u32 = i32::MAX as u32 - 1;

/// An fd an operation can work on: a borrowed fd (`&T` where `T: AsFd`,
/// e.g. `&OwnedFd`, `&TcpStream`), or a [`RingFd`] (also by reference).
///
/// A borrowed fd must stay open until the task's final completion (the
/// ring keeps only its number); a `RingFd` is kept open by the ring.
pub trait OpFd: sealed::OpFdSource {}

impl<T: AsFd + ?Sized> OpFd for &T {}
impl OpFd for RingFd {}
impl OpFd for &RingFd {}

/// An fd [`Ring::close`](crate::Ring::close) closes: an `OwnedFd` (closed
/// even if the task is cancelled before it reaches the kernel) or a
/// [`RingFd`] (after the tasks naming it have finished: see `close`).
pub trait CloseFd: sealed::CloseFdSource {}

impl CloseFd for OwnedFd {}
impl CloseFd for RingFd {}

pub(crate) mod sealed {
    use super::*;

    /// What an [`OpFd`] names.
    pub enum Source {
        Borrowed(RawFd),
        Ring(RingFd),
    }

    /// What a [`CloseFd`] closes.
    pub enum Closing {
        Owned(OwnedFd),
        Ring(RingFd),
    }

    pub trait OpFdSource {
        fn source(&self) -> Source;
    }

    pub trait CloseFdSource {
        fn closing(self) -> Closing;
    }

    impl<T: AsFd + ?Sized> OpFdSource for &T {
        fn source(&self) -> Source {
            Source::Borrowed(self.as_fd().as_raw_fd())
        }
    }

    impl OpFdSource for RingFd {
        fn source(&self) -> Source {
            Source::Ring(*self)
        }
    }

    impl OpFdSource for &RingFd {
        fn source(&self) -> Source {
            Source::Ring(**self)
        }
    }

    impl CloseFdSource for OwnedFd {
        fn closing(self) -> Closing {
            Closing::Owned(self)
        }
    }

    impl CloseFdSource for RingFd {
        fn closing(self) -> Closing {
            Closing::Ring(self)
        }
    }
}

const NIL: u32 = u32::MAX;

/// Gives each ring's table its own id, so that a `RingFd` of one ring is
/// stale on every other.
static NEXT_RING: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Open,
    /// Closed for new operations; the file closes once `users` is 0.
    Closing,
}

struct Entry {
    generation: u32,
    state: State,
    /// Live tasks that name this fd.
    users: u32,
    /// While closing: the close task waiting for `users` to reach 0 (or
    /// NIL). While free: the next free slot.
    link: u32,
}

/// The ring's side of its fds: which slots are live, their generations,
/// how many tasks name each, and the close waiting for them.
pub(crate) struct FdTable {
    ring: u32,
    entries: Vec<Entry>,
    free_head: u32,
    live: u32,
    /// Live multishot accepts into ring fds (io_uring may be allocating
    /// fixed-table slots for them).
    pub(crate) direct_accepts: u32,
}

impl FdTable {
    pub(crate) fn new() -> FdTable {
        FdTable {
            ring: NEXT_RING.fetch_add(1, Ordering::Relaxed),
            entries: Vec::new(),
            free_head: NIL,
            live: 0,
            direct_accepts: 0,
        }
    }

    /// Slots open or closing.
    pub(crate) fn live(&self) -> u32 {
        self.live
    }

    /// Whether completions may need ring fd bookkeeping: fds are live, or
    /// a direct accept may produce one.
    #[inline]
    pub(crate) fn in_use(&self) -> bool {
        self.live > 0 || self.direct_accepts > 0
    }

    /// A new open slot.
    pub(crate) fn insert(&mut self) -> u32 {
        self.live += 1;
        if self.free_head != NIL {
            let index = self.free_head;
            let entry = &mut self.entries[index as usize];
            self.free_head = entry.link;
            entry.state = State::Open;
            entry.users = 0;
            entry.link = NIL;
            return index;
        }
        let index = u32::try_from(self.entries.len())
            .ok()
            .filter(|&index| index < MAX_SLOTS)
            .expect("more than 2^31 ring fds");
        self.entries.push(Entry {
            generation: 0,
            state: State::Open,
            users: 0,
            link: NIL,
        });
        index
    }

    pub(crate) fn handle(&self, index: u32) -> RingFd {
        RingFd {
            index,
            generation: self.entries[index as usize].generation,
            ring: self.ring,
        }
    }

    /// The slot of an open ring fd of this ring.
    pub(crate) fn lookup(&self, fd: RingFd) -> Option<u32> {
        let entry = self.entries.get(fd.index as usize)?;
        let open =
            fd.ring == self.ring && entry.generation == fd.generation && entry.state == State::Open;
        open.then_some(fd.index)
    }

    /// How a new task names `fd`: its slot, now counted as in use, or
    /// `Fd::STALE`.
    pub(crate) fn acquire(&mut self, fd: RingFd) -> Fd {
        match self.lookup(fd) {
            Some(index) => {
                self.entries[index as usize].users += 1;
                Fd::ring(index)
            }
            None => Fd::STALE,
        }
    }

    /// A task naming slot `index` has finished; returns the close task to
    /// start if it was the last one a close waited for.
    pub(crate) fn release(&mut self, index: u32) -> Option<u32> {
        let entry = &mut self.entries[index as usize];
        entry.users -= 1;
        if entry.users > 0 || entry.state != State::Closing || entry.link == NIL {
            return None;
        }
        Some(std::mem::replace(&mut entry.link, NIL))
    }

    /// Starts closing slot `index` with the close task `closer`: new
    /// operations can no longer name it. Returns how many tasks still do
    /// (the close then waits for them).
    pub(crate) fn begin_close(&mut self, index: u32, closer: u32) -> u32 {
        let entry = &mut self.entries[index as usize];
        entry.state = State::Closing;
        if entry.users > 0 {
            entry.link = closer;
        }
        entry.users
    }

    /// The slot's file is gone (closed or taken back): the slot is free
    /// and its handles stale.
    pub(crate) fn free(&mut self, index: u32) {
        let entry = &mut self.entries[index as usize];
        if entry.state == State::Free {
            return;
        }
        entry.generation = entry.generation.wrapping_add(1);
        entry.state = State::Free;
        entry.users = 0;
        entry.link = self.free_head;
        self.free_head = index;
        self.live -= 1;
    }

    /// How many tasks name the slot.
    pub(crate) fn users(&self, index: u32) -> u32 {
        self.entries[index as usize].users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fds_say_what_they_name() {
        assert_eq!(Fd::raw(0).named(), Named::Raw(0));
        assert_eq!(Fd::raw(7).named(), Named::Raw(7));
        assert_eq!(Fd::STALE.named(), Named::Raw(-1));
        assert_eq!(Fd::ring(0).named(), Named::Ring(0));
        assert_eq!(Fd::ring(MAX_SLOTS - 1).named(), Named::Ring(MAX_SLOTS - 1));
        assert_eq!(Fd::ring(5).ring_slot(), Some(5));
        assert_eq!(Fd::raw(5).ring_slot(), None);
    }

    #[test]
    fn freed_slots_are_reused_with_a_new_generation() {
        let mut table = FdTable::new();
        let a = table.insert();
        let old = table.handle(a);
        assert_eq!(table.lookup(old), Some(a));
        table.free(a);
        assert_eq!(table.lookup(old), None);
        assert_eq!(table.acquire(old), Fd::STALE);
        let b = table.insert();
        assert_eq!(a, b);
        assert_ne!(table.handle(b), old);
        assert_eq!(table.live(), 1);
    }

    #[test]
    fn a_close_waits_for_the_last_user() {
        let mut table = FdTable::new();
        let a = table.insert();
        let fd = table.handle(a);
        assert_eq!(table.acquire(fd), Fd::ring(a));
        assert_eq!(table.acquire(fd), Fd::ring(a));
        assert_eq!(table.begin_close(a, 7), 2);
        assert_eq!(table.acquire(fd), Fd::STALE, "closing: no new users");
        assert_eq!(table.release(a), None);
        assert_eq!(table.release(a), Some(7));
    }

    #[test]
    fn handles_of_another_ring_are_stale() {
        let mut one = FdTable::new();
        let other = FdTable::new();
        let a = one.insert();
        let mut foreign = one.handle(a);
        foreign.ring = other.ring;
        assert_eq!(one.lookup(foreign), None);
    }
}
