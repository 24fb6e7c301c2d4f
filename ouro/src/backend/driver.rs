//! The backend contract: what the ring needs of every backend. Each
//! backend implements [`Driver`]; the [`Backend`](super::Backend) enum
//! forwards to it (static dispatch: one match per call, no `dyn`), so the
//! compiler checks that every backend has the shape the ring calls.
//!
//! The required methods are what every backend does (start, cancel,
//! submit and wait, reap, wake, keep ring fds); the provided ones are
//! capabilities only some backends have (a completion queue read in place,
//! a fixed file table, MSG_RING doorbells, a pollable fd, kernel-shared
//! buffer rings), whose defaults say "not here".

use std::io;
use std::net::IpAddr;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

use super::{BackendKind, RawCompletion, Started, Wake};
use crate::buffers::group::GroupInner;
use crate::op::Op;
use crate::time::Clock;

/// What a backend must provide; see the [module docs](self) and, for what
/// messages between rings need, the [backend module docs](super).
pub(crate) trait Driver {
    /// Which backend this is.
    const KIND: BackendKind;

    /// Starts `op`, identified by `user_data` in its completion.
    ///
    /// # Safety
    ///
    /// When this returns [`Started::Yes`], the backend has handed raw
    /// pointers into the memory `op` owns (buffers, socket addresses,
    /// iovecs, paths, statx and msghdr blocks) to the kernel or to a pool
    /// thread, which may read or write through them at any time until the
    /// operation ends. The caller keeps that memory alive and in place: it
    /// must not be freed, moved or reused until the operation's final
    /// completion has been reaped from this backend, or until the backend
    /// has been drained of the operation (cancelled and its completion
    /// reaped) before it is torn down. The `Op` value itself may move (its
    /// kernel-visible memory is in heap blocks it owns); what those blocks
    /// hold must not be touched meanwhile.
    unsafe fn start(&mut self, user_data: u64, op: &mut Op, clock: &Clock) -> Started;

    /// Asks to cancel the operation started with `user_data`; `false` when
    /// there is no room to ask now.
    fn cancel(&mut self, user_data: u64) -> bool;

    /// Hands what was started to the kernel without waiting, to make room;
    /// `false` when that was not possible now.
    fn flush(&mut self) -> io::Result<bool>;

    /// Submits what was started and waits until a completion is available
    /// or `timeout` nanoseconds pass (`None`: no limit).
    fn wait(&mut self, timeout: Option<u64>, clock: &mut Clock) -> io::Result<()>;

    /// Appends every available completion to `out`.
    fn reap(&mut self, out: &mut Vec<RawCompletion>);

    /// The backend's thread-safe waker, set up on the first call.
    fn waker(&mut self) -> io::Result<Arc<dyn Wake>>;

    /// What the backend is, for diagnostics.
    fn describe(&self) -> String;

    /// A random number for the ring's components: the OS CSPRNG, unless
    /// the backend has a seeded source of its own (the simulator).
    fn random_u64(&mut self) -> io::Result<u64> {
        super::random::os_u64()
    }

    /// The local address the machine would use to reach `dest`, asked
    /// with the ring's `probe`, unless the backend has a network of its
    /// own (the simulator).
    fn source_address(
        &mut self,
        probe: &mut crate::net::RouteProbe,
        dest: IpAddr,
    ) -> io::Result<IpAddr> {
        probe.source(dest)
    }

    /// The flags of the machine's IPv6 addresses (deprecated, home),
    /// unless the backend has a network of its own (the simulator).
    fn local_address_flags(&mut self) -> io::Result<crate::net::LocalAddressFlags> {
        crate::net::local_address_flags()
    }

    /// Takes `fd` as ring fd `file` (a slot the ring chose). A backend with
    /// a fixed file table may also put it there, if `may_use_table` (no
    /// direct accept could be filling slots not yet reported).
    fn adopt_fd(&mut self, file: u32, fd: OwnedFd, may_use_table: bool);

    /// The process fd of ring fd `file`, if it has one.
    fn file_fd(&self, file: u32) -> io::Result<BorrowedFd<'_>>;

    /// Gives ring fd `file` back as an `OwnedFd` (no task names it).
    /// Completions the backend reaps meanwhile go to `stash`.
    fn take_file(&mut self, file: u32, stash: &mut Vec<RawCompletion>) -> io::Result<OwnedFd>;

    /// Ring fd `file` was closed (its close operation finished): drops
    /// whatever the backend still keeps of it.
    fn forget_file(&mut self, file: u32);

    /// The ring is dropped and nothing is in flight: closes every ring fd.
    fn close_files(&mut self);

    /// The ring is dropped with operations still in flight: the ring fds
    /// they may name stay open, for good.
    fn leak_files(&mut self);

    /// How many completions wait to be taken one by one with
    /// `next_completion` (a queue read in place, as io_uring's); `None`
    /// for a backend that `reap`s into a batch instead.
    #[inline]
    fn queued(&mut self) -> Option<usize> {
        None
    }

    /// The next of the `queued` completions.
    #[inline]
    fn next_completion(&mut self) -> Option<RawCompletion> {
        None
    }

    /// After the `queued` completions have been taken: `true` when more may
    /// have arrived (an overflow moved over).
    fn settle_queue(&mut self) -> bool {
        false
    }

    /// Lets the backend share `group` with the kernel, if it can; a backend
    /// that cannot takes buffers from the group's free list. (An `Rc`: the
    /// simulator keeps a weak handle, to check at the end that every
    /// buffer came back.)
    fn register_group(&mut self, group: &Rc<GroupInner>) {
        let _ = group;
    }

    /// Takes a registered group back from the kernel.
    fn unregister_group(&mut self, group: &GroupInner) {
        let _ = group;
    }

    /// Sets the fixed file table up now if it is not yet, for an operation
    /// whose fd the kernel may put there.
    fn ensure_fixed_table(&mut self) {}

    /// The fixed-table slot of ring fd `file`, which `IORING_MSG_SEND_FD`
    /// can move.
    fn fixed_slot(&self, file: u32) -> Option<u32> {
        let _ = file;
        None
    }

    /// A direct accept, socket or open has had its final completion: the
    /// slots it may have taken in the fixed table are all known now.
    fn direct_ended(&mut self, op: &Op) {
        let _ = op;
    }

    /// The fixed table's used slots and size if the kernel, which picks
    /// the slots of direct operations, finds none free (io_uring).
    fn fixed_table_full(&self) -> Option<(u32, u32)> {
        None
    }

    /// Whether other rings can move files into this ring's fixed table.
    fn accepts_fixed(&mut self) -> bool {
        false
    }

    /// Empties fixed-table `slot`, filled by a parcel nobody takes.
    fn close_orphan(&mut self, slot: u32) {
        let _ = slot;
    }

    /// Takes fixed-table slot `slot`, which a direct accept filled, as ring
    /// fd `file`. Only a backend with a fixed table reports slots.
    fn adopt_fixed(&mut self, file: u32, slot: u32) {
        tracing::error!(
            file,
            slot,
            "a backend without a fixed file table reported a slot"
        );
    }

    /// The fd other rings can aim MSG_RING doorbells at, if this backend
    /// and kernel support them (and so can also send them).
    fn doorbell_target(&self) -> Option<RawFd> {
        None
    }

    /// Queues a MSG_RING doorbell to the ring `target`; if it fails, that
    /// comes back as a completion with `user_data` (success is silent).
    /// `false` when that is not possible now (no room, or no support): wake
    /// the target otherwise.
    fn ring_doorbell(&mut self, target: RawFd, user_data: u64) -> bool {
        let _ = (target, user_data);
        false
    }

    /// Whether started operations wait in a queue not yet handed to the
    /// kernel (so an fd they name must stay open).
    fn has_unsubmitted(&mut self) -> bool {
        false
    }

    /// An fd readable while completions wait, if the backend was set up
    /// to be polled.
    fn pollable_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Before a pollable ring stops running: submits what is queued and
    /// makes the pollable fd readable now (`now`), or after `after_ns`.
    /// Whether it armed a timer for `after_ns`: not when it made the fd
    /// readable now instead, which the ring must then arm on a later call.
    fn prepare_poll(&mut self, now: bool, after_ns: Option<u64>) -> io::Result<bool> {
        let _ = (now, after_ns);
        Ok(false)
    }

    /// The io_uring fd, for rings that attach to this one's work queue.
    fn uring_fd(&self) -> Option<RawFd> {
        None
    }
}
