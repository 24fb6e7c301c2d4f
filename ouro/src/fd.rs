//! Ring fds: files handed to a ring for good, named by a [`RingFd`] handle.
//!
//! The ring keeps a table of them (generations, how many tasks name each
//! one, a close waiting for those tasks); each backend keeps the files
//! themselves — io_uring in its fixed file table where it can, the readiness
//! and mock backends as `OwnedFd`s — at the same index.
//!
//! Operations name their fd through [`OpFd`]: a `RingFd`, which the ring
//! resolves and holds open until the operation's final completion; a shared
//! owner (`Rc<T>`, `Arc<T>`), a clone of which the operation holds as long;
//! a standard stream or `BorrowedFd<'static>`, open for the whole program;
//! or an [`UncheckedFd`], whose `unsafe` constructor is the caller's
//! promise to keep it open.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A file the ring owns, named by (slot, generation) like a
/// [`Task`](crate::Task): see [`Ring::register_fd`](crate::Ring::register_fd).
///
/// Operations take it wherever they take any other fd ([`OpFd`]). It cannot
/// be closed under an operation: the ring keeps the file open
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

/// An fd an operation can work on. Every kind keeps the file open until
/// the operation's final completion, so that an operation never acts on
/// another file that reuses the number (std's I/O safety):
///
/// - a [`RingFd`] (or `&RingFd`): the ring owns the file;
/// - a shared owner, `Rc<T>` or `Arc<T>` where `T: AsFd` (e.g.
///   `Rc<TcpStream>`, `Rc<File>`, `Arc<OwnedFd>`), by value or by
///   reference: the operation holds a clone until its final completion (a
///   count increment, no allocation), so the file closes only when the
///   last owner — the caller's or the operation's — lets go;
/// - the process's standard streams (`Stdin`, `Stdout`, `Stderr`, by value
///   or by reference) and any `BorrowedFd<'static>`, which stay open for
///   the whole program;
/// - an [`UncheckedFd`], whose constructor is `unsafe`: the caller promises
///   to keep the fd open (liburing's and ourio's contract).
///
/// A plain `&T: AsFd` is not accepted: the borrow ends when the call
/// returns, and the caller could then close the file while the kernel
/// still works on its number.
///
/// ```compile_fail
/// # use ouro::{Ctx, Ring};
/// let mut ring: Ring<()> = Ring::new(8).unwrap();
/// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
/// ring.send(&a, &b"hi"[..], Ctx::none()); // a borrowed fd: refused
/// drop(a);
/// ```
pub trait OpFd: sealed::OpFdSource {}

impl OpFd for RingFd {}
impl OpFd for &RingFd {}
impl<T: AsFd + 'static> OpFd for Rc<T> {}
impl<T: AsFd + 'static> OpFd for &Rc<T> {}
impl<T: AsFd + 'static> OpFd for Arc<T> {}
impl<T: AsFd + 'static> OpFd for &Arc<T> {}
impl OpFd for BorrowedFd<'static> {}
impl OpFd for io::Stdin {}
impl OpFd for &io::Stdin {}
impl OpFd for io::Stdout {}
impl OpFd for &io::Stdout {}
impl OpFd for io::Stderr {}
impl OpFd for &io::Stderr {}
impl OpFd for UncheckedFd {}

/// An fd number the ring does not keep open: the caller does. Made only by
/// the `unsafe` [`UncheckedFd::new`]; for a file the program owns, prefer
/// a [`RingFd`] or a shared owner (`Rc<T>`, `Arc<T>`), which need no
/// promise (see [`OpFd`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UncheckedFd(RawFd);

impl UncheckedFd {
    /// Names `fd` for operations without keeping it open.
    ///
    /// # Safety
    /// The fd must stay open, naming the same file, until the final
    /// completion of every task it is given to has been delivered (or the
    /// ring has been dropped): cancel such tasks and wait for their
    /// callbacks before closing it. Closed earlier, its number may be
    /// reused by another file, which the operation would then read, write
    /// or close.
    pub unsafe fn new(fd: BorrowedFd<'_>) -> UncheckedFd {
        UncheckedFd(fd.as_raw_fd())
    }

    /// The fd's number.
    pub fn as_raw_fd(self) -> RawFd {
        self.0
    }
}

/// An fd [`Ring::close`](crate::Ring::close) closes: an `OwnedFd` (closed
/// even if the task is cancelled before it reaches the kernel) or a
/// [`RingFd`] (after the tasks naming it have finished: see `close`).
pub trait CloseFd: sealed::CloseFdSource {}

impl CloseFd for OwnedFd {}
impl CloseFd for RingFd {}

pub(crate) mod sealed {
    use super::*;

    /// A clone of a shared owner an operation holds until its final
    /// completion, so that the file stays open under it (only dropped,
    /// never read).
    pub enum Keep {
        Local(#[allow(dead_code)] Rc<dyn AsFd>),
        Shared(#[allow(dead_code)] Arc<dyn AsFd>),
    }

    /// What an [`OpFd`] names.
    pub enum Source {
        /// An fd open for the whole program, or one the caller promised
        /// to keep open.
        Kept(RawFd),
        /// An fd whose owner the operation must hold.
        Shared(RawFd, Keep),
        Ring(RingFd),
    }

    /// What a [`CloseFd`] closes.
    pub enum Closing {
        Owned(OwnedFd),
        Ring(RingFd),
    }

    pub trait OpFdSource {
        fn source(self) -> Source;
    }

    pub trait CloseFdSource {
        fn closing(self) -> Closing;
    }

    impl OpFdSource for RingFd {
        fn source(self) -> Source {
            Source::Ring(self)
        }
    }

    impl OpFdSource for &RingFd {
        fn source(self) -> Source {
            Source::Ring(*self)
        }
    }

    impl<T: AsFd + 'static> OpFdSource for Rc<T> {
        fn source(self) -> Source {
            let raw = self.as_fd().as_raw_fd();
            Source::Shared(raw, Keep::Local(self))
        }
    }

    impl<T: AsFd + 'static> OpFdSource for &Rc<T> {
        fn source(self) -> Source {
            Rc::clone(self).source()
        }
    }

    impl<T: AsFd + 'static> OpFdSource for Arc<T> {
        fn source(self) -> Source {
            let raw = self.as_fd().as_raw_fd();
            Source::Shared(raw, Keep::Shared(self))
        }
    }

    impl<T: AsFd + 'static> OpFdSource for &Arc<T> {
        fn source(self) -> Source {
            Arc::clone(self).source()
        }
    }

    impl OpFdSource for BorrowedFd<'static> {
        fn source(self) -> Source {
            Source::Kept(self.as_raw_fd())
        }
    }

    /// The standard streams' fds stay open for the whole program (std
    /// lends them as borrowed fds of any lifetime).
    macro_rules! stdio_source {
        ($($ty:ty),+) => {$(
            impl OpFdSource for $ty {
                fn source(self) -> Source {
                    Source::Kept(self.as_fd().as_raw_fd())
                }
            }
            impl OpFdSource for &$ty {
                fn source(self) -> Source {
                    Source::Kept(self.as_fd().as_raw_fd())
                }
            }
        )+};
    }
    stdio_source!(io::Stdin, io::Stdout, io::Stderr);

    impl OpFdSource for UncheckedFd {
        fn source(self) -> Source {
            Source::Kept(self.0)
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

/// The next id of `counter`, which stops at `u32::MAX` rather than wrap.
fn take_id(counter: &AtomicU32) -> Option<u32> {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |id| id.checked_add(1))
        .ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Open,
    /// On its way to another ring (a `send_fd` between io_uring rings is in
    /// flight): closed for new operations, open again if the move fails.
    Moving,
    /// Closed for new operations; the file closes once `users` is 0.
    Closing,
}

struct Entry {
    generation: u32,
    state: State,
    /// The first of the live tasks that name this fd (a [`Use`]), or NIL.
    users: u32,
    /// While closing: the close task waiting for the users to finish (or
    /// NIL). While free: the next free slot.
    link: u32,
}

/// One task's naming of one ring fd: `2 * task + i` for the task's `i`-th
/// fd (a splice names two).
pub(crate) type Use = u32;

/// The ring's side of its fds: which slots are live, their generations,
/// the tasks that name each, and the close waiting for them.
///
/// The tasks naming a ring fd form a list through `next_use`, so that
/// closing the fd finds them without looking at any other task, and the
/// fd is busy exactly while its list is not empty.
pub(crate) struct FdTable {
    ring: u32,
    entries: Vec<Entry>,
    /// For each [`Use`], the next one of the same fd (or NIL); indexed by
    /// use, grown with the task slab.
    next_use: Vec<u32>,
    free_head: u32,
    live: u32,
    /// Live tasks whose fds become ring fds: direct accepts, sockets and
    /// opens (io_uring may be allocating fixed-table slots for them).
    pub(crate) directs_live: u32,
    /// Ring fds moved to another ring (already closing, so their handles
    /// are stale), whose close the next turn starts.
    pub(crate) moved: Vec<u32>,
}

impl FdTable {
    /// Fails once the process has made 2^32 - 1 rings: ids are never
    /// reused, since a handle of a dropped ring must stay stale on every
    /// later one (a buffer group taken for another ring's would let the
    /// kernel's buffer index address memory the group does not have).
    pub(crate) fn new() -> io::Result<FdTable> {
        let ring = take_id(&NEXT_RING).ok_or_else(|| {
            io::Error::other("this process has made 2^32 - 1 rings, the most it can")
        })?;
        Ok(FdTable {
            ring,
            entries: Vec::new(),
            next_use: Vec::new(),
            free_head: NIL,
            live: 0,
            directs_live: 0,
            moved: Vec::new(),
        })
    }

    /// The ring's identity, which its ring fds, tasks and buffer groups
    /// carry: no other ring of the process ever has it.
    pub(crate) fn ring_id(&self) -> u32 {
        self.ring
    }

    /// Slots open or closing.
    pub(crate) fn live(&self) -> u32 {
        self.live
    }

    /// Whether completions may need ring fd bookkeeping: fds are live, or
    /// a direct accept may produce one.
    #[inline]
    pub(crate) fn in_use(&self) -> bool {
        self.live > 0 || self.directs_live > 0
    }

    /// A new open slot.
    pub(crate) fn insert(&mut self) -> u32 {
        self.live += 1;
        if self.free_head != NIL {
            let index = self.free_head;
            let entry = &mut self.entries[index as usize];
            self.free_head = entry.link;
            entry.state = State::Open;
            entry.users = NIL;
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
            users: NIL,
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

    /// How a new task names `fd`: its slot, or `Fd::STALE`. The task is
    /// then [listed](FdTable::add_users) under the slot.
    pub(crate) fn resolve(&self, fd: RingFd) -> Fd {
        self.lookup(fd).map_or(Fd::STALE, Fd::ring)
    }

    /// Lists new task `task` under the ring fds it names (`fds`, as its
    /// op says).
    #[inline]
    pub(crate) fn add_users(&mut self, task: u32, fds: [Option<Fd>; 2]) {
        for (i, fd) in fds.into_iter().enumerate() {
            let Some(index) = fd.and_then(Fd::ring_slot) else {
                continue;
            };
            let use_ = 2 * task + i as u32;
            if use_ as usize >= self.next_use.len() {
                // Grown with the slab (which doubles), so rarely.
                self.next_use.resize(2 * (task as usize + 1), NIL);
            }
            let entry = &mut self.entries[index as usize];
            self.next_use[use_ as usize] = entry.users;
            entry.users = use_;
        }
    }

    /// Task `task` has finished: it no longer names its ring fds (`fds`).
    /// Returns the closes to start: those waiting for fds whose last user
    /// it was.
    pub(crate) fn remove_users(&mut self, task: u32, fds: [Option<Fd>; 2]) -> [Option<u32>; 2] {
        let mut closers = [None, None];
        for (i, fd) in fds.into_iter().enumerate() {
            let Some(index) = fd.and_then(Fd::ring_slot) else {
                continue;
            };
            self.unlink(index, 2 * task + i as u32);
            let entry = &mut self.entries[index as usize];
            if entry.users == NIL && entry.state == State::Closing && entry.link != NIL {
                closers[i] = Some(std::mem::replace(&mut entry.link, NIL));
            }
        }
        closers
    }

    /// Takes `use_` out of slot `index`'s list (short: the tasks of one fd).
    fn unlink(&mut self, index: u32, use_: Use) {
        let after = self.next_use[use_ as usize];
        let entry = &mut self.entries[index as usize];
        if entry.users == use_ {
            entry.users = after;
            return;
        }
        let mut at = entry.users;
        while at != NIL {
            let next = self.next_use[at as usize];
            if next == use_ {
                self.next_use[at as usize] = after;
                return;
            }
            at = next;
        }
        debug_assert!(false, "a task's use of ring fd {index} was not listed");
    }

    /// Walks the tasks that name slot `index`: the use after `after` (the
    /// first for `None`), and its task.
    pub(crate) fn next_user(&self, index: u32, after: Option<Use>) -> Option<(Use, u32)> {
        let next = match after {
            None => self.entries[index as usize].users,
            Some(use_) => self.next_use[use_ as usize],
        };
        (next != NIL).then_some((next, next / 2))
    }

    /// The tasks that name slot `index` (a task naming it twice, twice).
    #[cfg(test)]
    fn users(&self, index: u32) -> Vec<u32> {
        let mut at = None;
        std::iter::from_fn(|| {
            let (use_, task) = self.next_user(index, at)?;
            at = Some(use_);
            Some(task)
        })
        .collect()
    }

    /// Makes open slot `index` (no task names it) stale to new operations
    /// while its file moves to another ring.
    pub(crate) fn begin_move(&mut self, index: u32) {
        self.entries[index as usize].state = State::Moving;
    }

    /// The move of slot `index` begun by [`begin_move`](Self::begin_move)
    /// is over: the slot is queued for closing if its file `left`, or open
    /// again. Nothing for a slot not moving (freed meanwhile).
    pub(crate) fn end_move(&mut self, index: u32, left: bool) {
        let Some(entry) = self.entries.get_mut(index as usize) else {
            return;
        };
        if entry.state != State::Moving {
            return;
        }
        if left {
            self.close_moved(index);
        } else {
            entry.state = State::Open;
        }
    }

    /// Whether tasks name slot `index`.
    pub(crate) fn busy(&self, index: u32) -> bool {
        self.entries[index as usize].users != NIL
    }

    /// Makes slot `index` (no task names it) stale at once and queues it
    /// for closing at the next turn.
    pub(crate) fn close_moved(&mut self, index: u32) {
        self.entries[index as usize].state = State::Closing;
        self.moved.push(index);
    }

    /// Starts closing slot `index` with the close task `closer`: new
    /// operations can no longer name it. Returns whether tasks still do
    /// (the close then waits for them).
    pub(crate) fn begin_close(&mut self, index: u32, closer: u32) -> bool {
        let busy = self.busy(index);
        let entry = &mut self.entries[index as usize];
        entry.state = State::Closing;
        if busy {
            entry.link = closer;
        }
        busy
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
        entry.users = NIL;
        self.live -= 1;
        if entry.generation == 0 {
            // Gone round: reused, the slot would give its first handles
            // the file that comes next. Retired instead, one slot per 2^32
            // files through it.
            entry.link = NIL;
            return;
        }
        entry.link = self.free_head;
        self.free_head = index;
    }
}

#[cfg(test)]
mod tests;
