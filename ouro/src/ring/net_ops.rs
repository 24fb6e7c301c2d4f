//! The socket operations a ring schedules, one method each (the multishot
//! ones are in `multishot.rs`).

use super::file_ops::unusable_read_buffer;
use super::Ctx;
use super::Ring;
use crate::buffers::{BufVec, IntoBuf, IntoBufMut, IoBuf, IoBufMut};
use crate::error::no_room_error;
use crate::fd::OpFd;
use crate::net::{Domain, Protocol, SockAddr, Type};
use crate::op::Op;
use crate::task::Task;

impl<S> Ring<S> {
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
    /// [`socket`](Ring::socket) makes it and registered. Full counts the
    /// slots direct operations in flight may take, as for
    /// [`open_direct`](Ring::open_direct).
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
