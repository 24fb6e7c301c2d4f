//! Buffer groups and the multishot operations that complete many times.

use std::io;
use std::rc::Rc;

use super::Ctx;
use super::Ring;
use crate::buffers::group::{BufferGroup, GroupInner};
use crate::fd::OpFd;
use crate::op::Op;
use crate::task::Task;

impl<S> Ring<S> {
    /// Makes a group of `count` buffers (a power of two, at most 32768) of
    /// `size` bytes (1 to `u32::MAX`, just under 4 GiB) for this ring's
    /// [`recv_multishot`](Ring::recv_multishot). On io_uring (5.19) the
    /// kernel picks a buffer only when data arrives. Other sizes are an
    /// `InvalidInput` error; a group too large for memory is an
    /// `OutOfMemory` error.
    ///
    /// A group lives while a handle, a buffer or an operation holds it;
    /// one that nothing holds any more is freed (its memory unmapped, its
    /// id free for the next group) when the ring next makes a group, or
    /// when the ring is dropped. At most 65,536 groups live on a ring at
    /// once; beyond that this fails with an `OutOfMemory` error.
    pub fn buffer_group(&mut self, count: u16, size: usize) -> io::Result<BufferGroup> {
        self.free_unused_groups();
        let id = self.unused_group_id().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                "65,536 buffer groups live on this ring: drop some to make another",
            )
        })?;
        let group = Rc::new(GroupInner::new(self.files.ring_id(), id, count, size)?);
        self.backend.register_group(&group);
        self.groups.push(group.clone());
        Ok(BufferGroup { inner: group })
    }

    /// Takes back from the backend, and frees, the groups only the ring
    /// still holds: no handle, buffer or operation (which all hold one)
    /// is left, so neither the kernel nor a backend can pick a buffer of
    /// theirs any more.
    fn free_unused_groups(&mut self) {
        let backend = &mut self.backend;
        self.groups.retain(|group| {
            let used = Rc::strong_count(group) > 1;
            if !used {
                backend.unregister_group(group);
            }
            used
        });
    }

    /// The lowest id no live group has.
    fn unused_group_id(&self) -> Option<u16> {
        let mut taken = vec![false; self.groups.len() + 1];
        for group in &self.groups {
            if let Some(slot) = taken.get_mut(usize::from(group.id)) {
                *slot = true;
            }
        }
        let free = taken.iter().position(|&taken| !taken)?;
        u16::try_from(free).ok()
    }

    /// Accepts connections until cancelled, an error ends it, or the
    /// kernel ends it with a connection: one completion per connection
    /// ([`Outcome::AcceptMulti`]), the last one final
    /// ([`Completion::is_final`](crate::Completion::is_final)). The kernel
    /// ends it so when its completion queue has no room for the next
    /// completion (a burst of connections on a small ring), and before
    /// 5.19 after every connection: re-arm on a final success. Kernel:
    /// 5.19.
    ///
    /// [`Outcome::AcceptMulti`]: crate::Outcome::AcceptMulti
    pub fn accept_multishot(&mut self, listener: impl OpFd, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(listener);
        self.schedule(Op::AcceptMulti { fd }, ctx)
    }

    /// Like [`accept_multishot`](Ring::accept_multishot), but each
    /// connection arrives as a [`RingFd`](crate::RingFd) ([`Outcome::AcceptDirect`]). On
    /// io_uring (5.19) the kernel puts each one straight into the ring's
    /// fixed file table: no process fd at all, so [`Ring::fd`] cannot lend
    /// one (socket options set on the listener, such as `TCP_NODELAY`, are
    /// inherited by accepted sockets on Linux); when the table is full or
    /// missing, or a [direct open](Ring::open_direct) or
    /// [socket](Ring::socket_direct) in flight counts on a slot (the accept
    /// could take it first), connections are accepted as plain fds and
    /// registered. On the
    /// other backends they are accepted and registered. A connection the
    /// kernel accepted into a table that filled meanwhile is lost: the task
    /// ends with [`FdTableFull`](crate::FdTableFull) (the kernel's `ENFILE`;
    /// see [`is_fd_table_full`](crate::is_fd_table_full)); re-arm it: the
    /// ring then accepts plain fds.
    ///
    /// [`Outcome::AcceptDirect`]: crate::Outcome::AcceptDirect
    pub fn accept_multishot_direct(&mut self, listener: impl OpFd, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(listener);
        self.files.directs_live += 1;
        self.backend.ensure_fixed_table();
        self.schedule(
            Op::AcceptDirect {
                fd,
                into_table: false,
            },
            ctx,
        )
    }

    /// Receives until the peer closes (a final `Ok` with an empty buffer),
    /// cancelled, an error, or the kernel ends it with data: one
    /// completion per arrival ([`Outcome::RecvMulti`]), each in a buffer of
    /// `group` taken only when data arrives. `ENOBUFS` ends the task when
    /// every buffer is held: drop some and re-arm. The kernel ends it with
    /// data when its completion queue has no room for the next completion
    /// (a fast stream on a small ring), and before 6.0 after every
    /// arrival: re-arm on a final success that is not empty. Kernel: 6.0.
    /// A group made by another ring fails the task with `InvalidInput` and
    /// is left as it was.
    ///
    /// Made for streams. On a datagram socket each completion is one
    /// datagram, but an empty datagram ends the task (its final completion
    /// is `Ok` with an empty buffer, as a peer's close is on a stream), and
    /// a datagram longer than the group's buffers is cut to them without a
    /// mark: take datagrams with [`recv_from`](Ring::recv_from), which says
    /// who sent each and whether it was cut.
    ///
    /// [`Outcome::RecvMulti`]: crate::Outcome::RecvMulti
    pub fn recv_multishot(&mut self, fd: impl OpFd, group: &BufferGroup, ctx: Ctx<S>) -> Task {
        let op = Op::RecvMulti {
            fd: self.op_fd(fd),
            group: group.inner.clone(),
            held: None,
        };
        if group.inner.ring() != self.files.ring_id() {
            // The backend would resolve the group's id to this ring's own
            // group of that id (or none): never let it see the group.
            let err = io::Error::new(
                io::ErrorKind::InvalidInput,
                "the buffer group belongs to another ring",
            );
            return self.reject(op, ctx, err);
        }
        self.schedule(op, ctx)
    }
}
