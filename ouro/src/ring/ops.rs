//! The operations a ring schedules, one method each.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::slab::State;
use super::Ctx;
use super::Ring;
use crate::buffers::{Buf, BufVec, IntoBuf, IntoBufMut, IoBuf, IoBufMut};
use crate::error::{no_room_error, offset_error};
use crate::fd::sealed::Closing;
use crate::fd::{CloseFd, OpFd};
use crate::fs::OpenOptions;
use crate::net::{Domain, Protocol, SockAddr, Type};
use crate::op::{Offset, Op, PollMask};
use crate::task::Task;
use crate::time::duration_ns;

impl<S> Ring<S> {
    /// Does nothing, through the backend (an io_uring `NOP`): a round trip.
    pub fn noop(&mut self, ctx: Ctx<S>) -> Task {
        self.schedule(Op::Noop, ctx)
    }

    /// Fires after `after`. Timers live in user space and never cost a
    /// system call; a zero duration fires on the next turn.
    pub fn timer(&mut self, after: Duration, ctx: Ctx<S>) -> Task {
        let at = if after.is_zero() {
            0
        } else {
            self.clock.now().saturating_add(duration_ns(after)).max(1)
        };
        let op = Op::Timer {
            at,
            deadline: u64::MAX,
        };
        // Timers and cancels name no fd and never reach the backend.
        let task = self.slab.insert(op, ctx);
        self.start_timer(task.index, at);
        task
    }

    /// Cancels `target`. Its callback runs first, with `ECANCELED` (see
    /// [`is_canceled`](crate::is_canceled)) unless it finished on its own
    /// before the cancellation took effect; then this task's callback runs,
    /// with [`Outcome::Cancel`](crate::Outcome::Cancel): `Ok` (cancelled),
    /// `ENOENT` (no such live task: finished already, or a stale handle —
    /// nothing else is touched) or `EALREADY` (it finished anyway).
    pub fn cancel(&mut self, target: Task, ctx: Ctx<S>) -> Task {
        let task = self.slab.insert(Op::Cancel, ctx);
        self.start_cancel(task.index, target);
        task
    }

    /// Cancels every task of the ring except cancel tasks, as
    /// [`cancel`](Ring::cancel) does one; this task's callback runs after all
    /// of theirs, with how many were cancelled.
    pub fn cancel_all(&mut self, ctx: Ctx<S>) -> Task {
        let op = Op::CancelAll {
            pending: 0,
            canceled: 0,
        };
        let task = self.slab.insert(op, ctx);
        self.start_cancel_all(task.index);
        task
    }

    /// Gives `task` a deadline (replacing an earlier one): if it has not
    /// finished by `at`, it is cancelled and its callback gets `ETIME` (see
    /// [`is_deadline`](crate::is_deadline)), exactly once. A deadline in the
    /// past takes effect on the next turn. Cancel tasks ignore deadlines.
    ///
    /// Fails with `NotFound` if the task is no longer live.
    pub fn set_deadline(&mut self, task: Task, at: Instant) -> io::Result<()> {
        let index = self
            .slab
            .live_index(task)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        let at = self.clock.to_ns(at);
        let slot = &mut self.slab.slots[index as usize];
        match (&mut slot.op, slot.state) {
            // A stop task's wait for its thread can end at a deadline too.
            (Op::StopThread { .. }, State::Waiting) => self.schedule_timer(index, at),
            (_, State::Ready | State::Waiting) => {}
            (Op::Timer { at: fire, deadline }, _) => {
                *deadline = at;
                if slot.state == State::Timer {
                    let wake = at.min(*fire);
                    self.schedule_timer(index, wake);
                }
            }
            _ => self.schedule_timer(index, at),
        }
        Ok(())
    }

    /// Accepts a connection on a listening socket; the new socket is
    /// close-on-exec. Kernel: 5.5.
    pub fn accept(&mut self, listener: impl OpFd, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(listener);
        let addr = self.pools.addr();
        self.schedule(Op::Accept { fd, addr }, ctx)
    }

    /// Connects a socket to `addr`. Kernel: 5.5.
    pub fn connect(&mut self, fd: impl OpFd, addr: impl Into<SockAddr>, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        let mut buf = self.pools.addr();
        buf.set(&addr.into());
        self.schedule(Op::Connect { fd, addr: buf }, ctx)
    }

    /// Binds a socket to `addr`. Kernel: 6.11 for the io_uring op; older
    /// kernels do the (non-blocking) system call.
    pub fn bind(&mut self, fd: impl OpFd, addr: impl Into<SockAddr>, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        let mut buf = self.pools.addr();
        buf.set(&addr.into());
        self.schedule(Op::Bind { fd, addr: buf }, ctx)
    }

    /// Makes a bound socket listen. Kernel: 6.11 for the io_uring op; older
    /// kernels do the system call.
    pub fn listen(&mut self, fd: impl OpFd, backlog: i32, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        self.schedule(Op::Listen { fd, backlog }, ctx)
    }

    /// Creates a close-on-exec socket. Kernel: 5.19 for the io_uring op;
    /// older kernels do the system call.
    pub fn socket(
        &mut self,
        domain: Domain,
        ty: Type,
        protocol: Option<Protocol>,
        ctx: Ctx<S>,
    ) -> Task {
        let op = Op::Socket {
            domain: domain.into(),
            ty: ty.into(),
            protocol: protocol.map(i32::from).unwrap_or(0),
        };
        self.schedule(op, ctx)
    }

    /// Creates a socket as a ring fd ([`Outcome::SocketDirect`]), e.g. to
    /// [`connect`](Ring::connect) with. On io_uring (5.19) the kernel puts
    /// it straight into the ring's fixed file table: no process fd at all,
    /// so [`Ring::fd`] cannot lend one (set options through an op, or
    /// [take it out](Ring::take_fd)); when the table is full or missing,
    /// and on the other backends, the socket is made as
    /// [`socket`](Ring::socket) makes it and registered.
    ///
    /// [`Outcome::SocketDirect`]: crate::Outcome::SocketDirect
    pub fn socket_direct(
        &mut self,
        domain: Domain,
        ty: Type,
        protocol: Option<Protocol>,
        ctx: Ctx<S>,
    ) -> Task {
        let op = Op::SocketDirect {
            domain: domain.into(),
            ty: ty.into(),
            protocol: protocol.map(i32::from).unwrap_or(0),
            into_table: false,
        };
        self.files.directs_live += 1;
        self.backend.ensure_fixed_table();
        self.schedule(op, ctx)
    }

    /// Sends `buf` on a connected socket (with `MSG_NOSIGNAL`: a closed peer
    /// is an `EPIPE` error, not a signal). Kernel: 5.6.
    pub fn send(&mut self, fd: impl OpFd, buf: impl IntoBuf, ctx: Ctx<S>) -> Task {
        let op = Op::Send {
            fd: self.op_fd(fd),
            buf: buf.into_buf(),
            flags: libc::MSG_NOSIGNAL,
        };
        self.schedule(op, ctx)
    }

    /// Receives into `buf`'s spare room (a `Vec`'s spare capacity: give it
    /// some; a buffer without room fails with `InvalidInput`). 0 bytes means
    /// the peer closed. Kernel: 5.6.
    pub fn recv(&mut self, fd: impl OpFd, buf: impl IntoBufMut, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        match unusable_read_buffer(buf) {
            Ok(buf) => self.schedule(Op::Recv { fd, buf, flags: 0 }, ctx),
            Err((buf, err)) => self.reject(Op::Recv { fd, buf, flags: 0 }, ctx, err),
        }
    }

    /// Reads into `buf`'s spare room at `offset` (a buffer without room,
    /// or an offset beyond `i64::MAX`, fails with `InvalidInput`). 0 bytes
    /// means end of file. Kernel: 5.6.
    pub fn read(
        &mut self,
        fd: impl OpFd,
        buf: impl IntoBufMut,
        offset: Offset,
        ctx: Ctx<S>,
    ) -> Task {
        let (fd, raw) = (self.op_fd(fd), offset.raw());
        let offset = raw.unwrap_or(0);
        let checked = match raw {
            Some(_) => unusable_read_buffer(buf),
            None => Err((buf.into_buf_mut().unwrap_or_else(|buf| buf), offset_error())),
        };
        match checked {
            Ok(buf) => self.schedule(Op::Read { fd, buf, offset }, ctx),
            Err((buf, err)) => self.reject(Op::Read { fd, buf, offset }, ctx, err),
        }
    }

    /// Writes `buf` at `offset`; a partial write is not an error (re-submit
    /// the rest: [`Buf::consume`](crate::Buf::consume) what was written and
    /// pass the `Buf` back). An offset beyond `i64::MAX` fails with
    /// `InvalidInput`. Kernel: 5.6.
    pub fn write(&mut self, fd: impl OpFd, buf: impl IntoBuf, offset: Offset, ctx: Ctx<S>) -> Task {
        let raw = offset.raw();
        let op = Op::Write {
            fd: self.op_fd(fd),
            buf: buf.into_buf(),
            offset: raw.unwrap_or(0),
        };
        if raw.is_none() {
            return self.reject(op, ctx, offset_error());
        }
        self.schedule(op, ctx)
    }

    /// Reads into the buffers' spare room, in order (buffers without any
    /// room, or an offset beyond `i64::MAX`, fail with `InvalidInput`).
    /// Kernel: 5.1.
    pub fn readv<B: IoBufMut>(
        &mut self,
        fd: impl OpFd,
        bufs: Vec<B>,
        offset: Offset,
        ctx: Ctx<S>,
    ) -> Task {
        let no_room = bufs.iter().all(|buf| buf.spare_len() == 0);
        let raw = offset.raw();
        let op = Op::Readv {
            fd: self.op_fd(fd),
            bufs: BufVec::new_mut(bufs),
            iov: self.pools.iov(),
            offset: raw.unwrap_or(0),
        };
        if raw.is_none() {
            return self.reject(op, ctx, offset_error());
        }
        if no_room {
            return self.reject(op, ctx, no_room_error());
        }
        self.schedule(op, ctx)
    }

    /// Writes the buffers, in order (an offset beyond `i64::MAX` fails with
    /// `InvalidInput`). Kernel: 5.1.
    pub fn writev<B: IoBuf>(
        &mut self,
        fd: impl OpFd,
        bufs: Vec<B>,
        offset: Offset,
        ctx: Ctx<S>,
    ) -> Task {
        let raw = offset.raw();
        let op = Op::Writev {
            fd: self.op_fd(fd),
            bufs: BufVec::new(bufs),
            iov: self.pools.iov(),
            offset: raw.unwrap_or(0),
        };
        if raw.is_none() {
            return self.reject(op, ctx, offset_error());
        }
        self.schedule(op, ctx)
    }

    /// Closes `fd`: an `OwnedFd`, closed even if the task is cancelled
    /// before it reaches the kernel; or a [`RingFd`](crate::RingFd), which goes stale at
    /// once (new operations naming it fail with `EBADF`) — the tasks still
    /// naming it are cancelled, and the file is closed once the last of
    /// them has completed (their callbacks run first, with `ECANCELED` or
    /// their own result). A ring fd's close cannot be cancelled; a stale
    /// one fails with `EBADF`. Kernel: 5.6 (a fixed file: 5.15).
    pub fn close(&mut self, fd: impl CloseFd, ctx: Ctx<S>) -> Task {
        match fd.closing() {
            Closing::Owned(fd) => self.schedule(Op::Close { fd: Some(fd) }, ctx),
            Closing::Ring(fd) => self.close_ring_fd(fd, ctx),
        }
    }

    /// Waits until `fd` is ready for `mask`; returns the bits that are set.
    /// Kernel: 5.1.
    pub fn poll(&mut self, fd: impl OpFd, mask: PollMask, ctx: Ctx<S>) -> Task {
        let op = Op::Poll {
            fd: self.op_fd(fd),
            mask: mask.bits(),
        };
        self.schedule(op, ctx)
    }

    /// Opens `path` (relative to the current directory). A path with a NUL
    /// byte fails with `InvalidInput`. Kernel: 5.6.
    pub fn open(&mut self, path: impl AsRef<Path>, options: &OpenOptions, ctx: Ctx<S>) -> Task {
        let (flags, mode) = (options.flags(), options.mode_bits());
        match self.pools.path(path.as_ref()) {
            Ok(path) => self.schedule(
                Op::Open {
                    dir: libc::AT_FDCWD,
                    path,
                    flags,
                    mode,
                },
                ctx,
            ),
            Err(err) => self.reject(
                Op::Open {
                    dir: libc::AT_FDCWD,
                    path: Vec::new(),
                    flags,
                    mode,
                },
                ctx,
                err,
            ),
        }
    }

    /// Opens `path` (relative to the current directory) as a ring fd
    /// ([`Outcome::OpenDirect`]). On io_uring (with the fixed file table,
    /// 5.19) the kernel puts the file straight into the table: no process fd at
    /// all, so [`Ring::fd`] cannot lend one ([take it out](Ring::take_fd)
    /// for calls that need one); when the table is full or missing, and on
    /// the other backends, the file is opened as [`open`](Ring::open) opens
    /// it and registered. A path with a NUL byte fails with `InvalidInput`.
    ///
    /// [`Outcome::OpenDirect`]: crate::Outcome::OpenDirect
    pub fn open_direct(
        &mut self,
        path: impl AsRef<Path>,
        options: &OpenOptions,
        ctx: Ctx<S>,
    ) -> Task {
        let (flags, mode) = (options.flags(), options.mode_bits());
        let op = |path| Op::OpenDirect {
            dir: libc::AT_FDCWD,
            path,
            flags,
            mode,
            into_table: false,
        };
        self.files.directs_live += 1;
        match self.pools.path(path.as_ref()) {
            Ok(path) => {
                self.backend.ensure_fixed_table();
                self.schedule(op(path), ctx)
            }
            Err(err) => self.reject(op(Vec::new()), ctx, err),
        }
    }

    /// Moves up to `len` bytes from `fd_in` to `fd_out`, one of which must
    /// be a pipe; `None` offsets use (and advance) the current position.
    /// Kernel: 5.7.
    pub fn splice(
        &mut self,
        fd_in: impl OpFd,
        off_in: Option<u64>,
        fd_out: impl OpFd,
        off_out: Option<u64>,
        len: u32,
        ctx: Ctx<S>,
    ) -> Task {
        let offset = |o: Option<u64>| o.map_or(-1, |o| i64::try_from(o).unwrap_or(i64::MAX));
        let op = Op::Splice {
            fd_in: self.op_fd(fd_in),
            off_in: offset(off_in),
            fd_out: self.op_fd(fd_out),
            off_out: offset(off_out),
            len,
            flags: 0,
        };
        self.schedule(op, ctx)
    }

    /// Shuts down one or both directions of a socket. Kernel: 5.11 for the
    /// io_uring op; older kernels do the system call.
    pub fn shutdown(&mut self, fd: impl OpFd, how: std::net::Shutdown, ctx: Ctx<S>) -> Task {
        let how = match how {
            std::net::Shutdown::Read => libc::SHUT_RD,
            std::net::Shutdown::Write => libc::SHUT_WR,
            std::net::Shutdown::Both => libc::SHUT_RDWR,
        };
        let fd = self.op_fd(fd);
        self.schedule(Op::Shutdown { fd, how }, ctx)
    }

    /// Sends the buffers as one message, to `to` on an unconnected socket
    /// (with `MSG_NOSIGNAL`). Kernel: 5.3.
    pub fn sendmsg<B: IoBuf>(
        &mut self,
        fd: impl OpFd,
        bufs: Vec<B>,
        to: Option<SockAddr>,
        ctx: Ctx<S>,
    ) -> Task {
        let mut msg = self.pools.msg();
        match &to {
            Some(addr) => msg.addr.set(addr),
            None => msg.addr.len = 0,
        }
        let op = Op::SendMsg {
            fd: self.op_fd(fd),
            bufs: BufVec::new(bufs),
            msg,
            flags: libc::MSG_NOSIGNAL,
        };
        self.schedule(op, ctx)
    }

    /// Receives one message into the buffers' spare room, with the sender's
    /// address (buffers without any room fail with `InvalidInput`).
    /// Kernel: 5.3.
    pub fn recvmsg<B: IoBufMut>(&mut self, fd: impl OpFd, bufs: Vec<B>, ctx: Ctx<S>) -> Task {
        let no_room = bufs.iter().all(|buf| buf.spare_len() == 0);
        let op = Op::RecvMsg {
            fd: self.op_fd(fd),
            bufs: BufVec::new_mut(bufs),
            msg: self.pools.msg(),
            flags: 0,
        };
        if no_room {
            return self.reject(op, ctx, no_room_error());
        }
        self.schedule(op, ctx)
    }

    /// Sends `buf` as one datagram to `to` (with `MSG_NOSIGNAL`), on a
    /// datagram socket that need not be connected. An address of another
    /// family than the socket's fails as the kernel says (`EAFNOSUPPORT`
    /// or `EINVAL`); a datagram larger than the socket allows, with
    /// `EMSGSIZE`. Kernel: 5.3 (`IORING_OP_SENDMSG`).
    pub fn send_to(
        &mut self,
        fd: impl OpFd,
        buf: impl IntoBuf,
        to: impl Into<SockAddr>,
        ctx: Ctx<S>,
    ) -> Task {
        let mut msg = self.pools.msg();
        msg.addr.set(&to.into());
        let op = Op::SendTo {
            fd: self.op_fd(fd),
            buf: buf.into_buf(),
            msg,
        };
        self.schedule(op, ctx)
    }

    /// Receives one datagram into `buf`'s spare room, with its sender
    /// ([`Datagram`](crate::Datagram)). A datagram longer than the room
    /// is cut to it and marked `truncated` (the rest is lost, as with
    /// `recvfrom(2)`); an empty one is a `Datagram` of length 0. A
    /// read-only buffer, or one without spare room, fails with
    /// `InvalidInput`. Kernel: 5.3 (`IORING_OP_RECVMSG`).
    pub fn recv_from(&mut self, fd: impl OpFd, buf: impl IntoBufMut, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        let msg = self.pools.msg();
        match unusable_read_buffer(buf) {
            Ok(buf) => self.schedule(Op::RecvFrom { fd, buf, msg }, ctx),
            Err((buf, err)) => self.reject(Op::RecvFrom { fd, buf, msg }, ctx, err),
        }
    }
}

/// A buffer a read or recv cannot use: read-only, or without spare room
/// (which would read 0 bytes and look like end of file).
fn unusable_read_buffer(buf: impl IntoBufMut) -> Result<Buf, (Buf, io::Error)> {
    let mut buf = match buf.into_buf_mut() {
        Ok(buf) => buf,
        Err(buf) => {
            let err = io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot read into a read-only buffer",
            );
            return Err((buf, err));
        }
    };
    if buf.spare_parts().1 == 0 {
        return Err((buf, no_room_error()));
    }
    Ok(buf)
}
