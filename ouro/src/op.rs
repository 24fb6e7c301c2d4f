//! Operations: what each one owns while in flight, and the typed outcome it
//! produces.
//!
//! Everything the kernel reads or writes for an operation (buffers, socket
//! addresses, iovec arrays, paths, statx buffers, message headers) lives in
//! the [`Op`] value held by the task's slot until the final completion, in
//! heap blocks whose addresses do not change when the slot table grows.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

use crate::buffers::group::{GroupBuf, GroupInner};
use crate::buffers::{Buf, BufVec};
use crate::fd::{Fd, FdTable, RingFd};
use crate::fs::Metadata;
use crate::mailbox::{Envelope, Mailbox, Payload, ThreadShared};
use crate::net::{AddrBuf, SockAddr};

/// Flag: more completions follow for the same task (io_uring's
/// `IORING_CQE_F_MORE`, which every backend reports the same way).
pub(crate) const MORE: u32 = 1 << 1;

/// Flag: the completion took a buffer of a group, whose id is in the bits
/// from `BUFFER_SHIFT` up (io_uring's `IORING_CQE_F_BUFFER`).
pub(crate) const BUFFER: u32 = 1;
pub(crate) const BUFFER_SHIFT: u32 = 16;

/// Where a file read or write starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offset {
    /// At the file's current position, which the operation then advances
    /// (like `read(2)`/`write(2)`); what pipes, sockets and terminals use.
    Current,
    /// At this byte offset, leaving the file position alone (like `pread(2)`).
    /// At most `i64::MAX` (files cannot be larger): a larger offset fails
    /// with `InvalidInput`. Pipes, sockets and terminals ignore it (they
    /// have no position), as io_uring does.
    At(u64),
}

impl Offset {
    /// The value io_uring expects: `-1` for the current position; `None`
    /// for an offset beyond `i64::MAX`, which io_uring would take as `-1`
    /// (or reject) rather than as a position.
    pub(crate) fn raw(self) -> Option<u64> {
        match self {
            Offset::Current => Some(u64::MAX),
            Offset::At(n) if n <= i64::MAX as u64 => Some(n),
            Offset::At(_) => None,
        }
    }
}

/// Readiness bits for [`Ring::poll`](crate::Ring::poll), as in `poll(2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PollMask(u32);

impl PollMask {
    /// Data to read (`POLLIN`).
    pub const READABLE: PollMask = PollMask(libc::POLLIN as u32);
    /// Room to write (`POLLOUT`).
    pub const WRITABLE: PollMask = PollMask(libc::POLLOUT as u32);
    /// Urgent data (`POLLPRI`).
    pub const PRIORITY: PollMask = PollMask(libc::POLLPRI as u32);
    /// An error condition (`POLLERR`); always reported.
    pub const ERROR: PollMask = PollMask(libc::POLLERR as u32);
    /// Hang-up (`POLLHUP`); always reported.
    pub const HANGUP: PollMask = PollMask(libc::POLLHUP as u32);
    /// Invalid fd (`POLLNVAL`); always reported.
    pub const INVALID: PollMask = PollMask(libc::POLLNVAL as u32);

    /// From raw `POLL*` bits.
    pub const fn from_bits(bits: u32) -> PollMask {
        PollMask(bits)
    }
    /// The raw `POLL*` bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: PollMask) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: PollMask) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for PollMask {
    type Output = PollMask;
    fn bitor(self, rhs: PollMask) -> PollMask {
        PollMask(self.0 | rhs.0)
    }
}

/// Which operation a task performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum OpKind {
    /// [`Ring::noop`](crate::Ring::noop)
    Noop,
    /// [`Ring::timer`](crate::Ring::timer)
    Timer,
    /// [`Ring::cancel`](crate::Ring::cancel)
    Cancel,
    /// [`Ring::cancel_all`](crate::Ring::cancel_all)
    CancelAll,
    /// [`Ring::accept`](crate::Ring::accept)
    Accept,
    /// [`Ring::connect`](crate::Ring::connect)
    Connect,
    /// [`Ring::bind`](crate::Ring::bind)
    Bind,
    /// [`Ring::listen`](crate::Ring::listen)
    Listen,
    /// [`Ring::socket`](crate::Ring::socket)
    Socket,
    /// [`Ring::send`](crate::Ring::send)
    Send,
    /// [`Ring::recv`](crate::Ring::recv)
    Recv,
    /// [`Ring::read`](crate::Ring::read)
    Read,
    /// [`Ring::write`](crate::Ring::write)
    Write,
    /// [`Ring::readv`](crate::Ring::readv)
    Readv,
    /// [`Ring::writev`](crate::Ring::writev)
    Writev,
    /// [`Ring::close`](crate::Ring::close)
    Close,
    /// [`Ring::poll`](crate::Ring::poll)
    Poll,
    /// [`Ring::open`](crate::Ring::open)
    Open,
    /// [`Ring::stat`](crate::Ring::stat) and [`Ring::lstat`](crate::Ring::lstat)
    Stat,
    /// [`Ring::fsync`](crate::Ring::fsync)
    Fsync,
    /// [`Ring::splice`](crate::Ring::splice)
    Splice,
    /// [`Ring::shutdown`](crate::Ring::shutdown)
    Shutdown,
    /// [`Ring::sendmsg`](crate::Ring::sendmsg)
    SendMsg,
    /// [`Ring::recvmsg`](crate::Ring::recvmsg)
    RecvMsg,
    /// [`Ring::accept_multishot`](crate::Ring::accept_multishot)
    AcceptMulti,
    /// [`Ring::accept_multishot_direct`](crate::Ring::accept_multishot_direct)
    AcceptDirect,
    /// [`Ring::socket_direct`](crate::Ring::socket_direct)
    SocketDirect,
    /// [`Ring::open_direct`](crate::Ring::open_direct)
    OpenDirect,
    /// [`Ring::recv_multishot`](crate::Ring::recv_multishot)
    RecvMulti,
    /// [`Ring::msg_ring`](crate::Ring::msg_ring): the sender's side.
    MsgRing,
    /// A message arriving from another ring or thread: the receiver's side
    /// (see [`Ring::msg_ring`](crate::Ring::msg_ring)).
    Message,
    /// [`RingThread::stop`](crate::RingThread::stop)
    StopThread,
}

/// What a received message carried besides its data.
#[derive(Debug)]
pub struct RecvMeta {
    /// Bytes received.
    pub len: usize,
    /// The sender's address, for unconnected sockets.
    pub addr: Option<SockAddr>,
    /// `MSG_*` flags the kernel set (e.g. `MSG_TRUNC`).
    pub flags: i32,
}

/// The typed result of a finished task, with everything the operation owned.
///
/// Errors are [`io::Error`]s carrying the OS error. Two codes are ouro's
/// own: a task cancelled through [`Ring::cancel`](crate::Ring::cancel) fails
/// with `ECANCELED` ([`crate::is_canceled`]), one whose deadline passed with
/// `ETIME` ([`crate::is_deadline`]).
#[derive(Debug)]
pub enum Outcome {
    /// A no-op finished.
    Noop(io::Result<()>),
    /// A timer fired (`Ok`) or was cancelled.
    Timer(io::Result<()>),
    /// `Ok` when the target was cancelled; `ENOENT` when no such task was
    /// live (finished, or a stale handle); `EALREADY` when the target
    /// finished anyway with its own result.
    Cancel(io::Result<()>),
    /// How many of the ring's tasks were cancelled.
    CancelAll(io::Result<usize>),
    /// An accepted connection and its peer's address.
    Accept(io::Result<(OwnedFd, SockAddr)>),
    /// A connection was made.
    Connect(io::Result<()>),
    /// A socket was bound.
    Bind(io::Result<()>),
    /// A socket is listening.
    Listen(io::Result<()>),
    /// A new socket.
    Socket(io::Result<OwnedFd>),
    /// Bytes sent, and the buffer.
    Send(io::Result<usize>, Buf),
    /// Bytes received (0 at end of stream), and the buffer they were appended to.
    Recv(io::Result<usize>, Buf),
    /// Bytes read (0 at end of file), and the buffer they were appended to.
    Read(io::Result<usize>, Buf),
    /// Bytes written, and the buffer.
    Write(io::Result<usize>, Buf),
    /// Bytes read across the buffers, and the buffers.
    Readv(io::Result<usize>, BufVec),
    /// Bytes written from the buffers, and the buffers.
    Writev(io::Result<usize>, BufVec),
    /// The fd was closed.
    Close(io::Result<()>),
    /// The readiness bits that are set.
    Poll(io::Result<crate::PollMask>),
    /// The opened file.
    Open(io::Result<OwnedFd>),
    /// The file's metadata.
    Stat(io::Result<Metadata>),
    /// The file's data reached the device.
    Fsync(io::Result<()>),
    /// Bytes moved.
    Splice(io::Result<usize>),
    /// The socket was shut down.
    Shutdown(io::Result<()>),
    /// Bytes sent, and the buffers.
    SendMsg(io::Result<usize>, BufVec),
    /// What arrived, and the buffers it was appended to.
    RecvMsg(io::Result<RecvMeta>, BufVec),
    /// One accepted connection of a multishot accept (no peer address: the
    /// kernel would overwrite it with the next one's; ask with
    /// [`net::peer_addr`](crate::net::peer_addr) if needed).
    AcceptMulti(io::Result<OwnedFd>),
    /// One accepted connection of a multishot accept into ring fds
    /// ([`Ring::accept_multishot_direct`](crate::Ring::accept_multishot_direct)),
    /// already the ring's: close it with [`Ring::close`](crate::Ring::close).
    AcceptDirect(io::Result<RingFd>),
    /// A socket made straight into a ring fd
    /// ([`Ring::socket_direct`](crate::Ring::socket_direct)), already the
    /// ring's: close it with [`Ring::close`](crate::Ring::close).
    SocketDirect(io::Result<RingFd>),
    /// A file opened straight into a ring fd
    /// ([`Ring::open_direct`](crate::Ring::open_direct)), already the
    /// ring's: close it with [`Ring::close`](crate::Ring::close).
    OpenDirect(io::Result<RingFd>),
    /// Bytes that arrived for a multishot receive, in a buffer of the group
    /// (back to the group when dropped); empty at end of stream. `ENOBUFS`
    /// ends the task when the group has no free buffer left.
    RecvMulti(io::Result<Buf>),
    /// The sender's side of [`Ring::msg_ring`](crate::Ring::msg_ring):
    /// `Ok` when the target accepted the message (the payload is then
    /// `Payload::None`), or `EPIPE` when the target ring is closed (dropped,
    /// or its thread stopped) with the payload given back.
    MsgRing(io::Result<()>, Payload),
    /// A message from another ring or thread, with its payload.
    Message(Payload),
    /// The thread asked to stop through
    /// [`RingThread::stop`](crate::RingThread::stop) has stopped: `Ok`, or
    /// the error that ended it.
    ThreadStopped(io::Result<()>),
}

/// A message header and what it points to, boxed so its address is stable.
pub(crate) struct MsgBuf {
    pub(crate) hdr: libc::msghdr,
    pub(crate) addr: AddrBuf,
    pub(crate) iov: Vec<libc::iovec>,
}

impl MsgBuf {
    /// Points the header at the message's own iovecs and address buffer.
    pub(crate) fn prepare(&mut self, receiving: bool) {
        if receiving {
            self.addr.clear();
        }
        let has_addr = receiving || self.addr.len > 0;
        self.hdr.msg_name = if has_addr {
            self.addr.as_mut_ptr().cast()
        } else {
            std::ptr::null_mut()
        };
        self.hdr.msg_namelen = if has_addr { self.addr.len } else { 0 };
        self.hdr.msg_iov = self.iov.as_mut_ptr();
        self.hdr.msg_iovlen = self.iov.len() as _;
        self.hdr.msg_control = std::ptr::null_mut();
        self.hdr.msg_controllen = 0;
        self.hdr.msg_flags = 0;
    }
}

#[cfg(target_os = "linux")]
pub(crate) type StatBuf = libc::statx;
#[cfg(not(target_os = "linux"))]
pub(crate) type StatBuf = Metadata;

/// What an operation owns while in flight.
pub(crate) enum Op {
    Noop,
    /// Fires at `at` unless `deadline` comes first.
    Timer {
        at: u64,
        deadline: u64,
    },
    /// Waits for its target to finish (the target's slot lists it).
    Cancel,
    /// Waits for `pending` targets; counts those that ended cancelled.
    CancelAll {
        pending: u32,
        canceled: u32,
    },
    Accept {
        fd: Fd,
        addr: Box<AddrBuf>,
    },
    Connect {
        fd: Fd,
        addr: Box<AddrBuf>,
    },
    Bind {
        fd: Fd,
        addr: Box<AddrBuf>,
    },
    Listen {
        fd: Fd,
        backlog: i32,
    },
    Socket {
        domain: i32,
        ty: i32,
        protocol: i32,
    },
    Send {
        fd: Fd,
        buf: Buf,
        flags: i32,
    },
    Recv {
        fd: Fd,
        buf: Buf,
        flags: i32,
    },
    Read {
        fd: Fd,
        buf: Buf,
        offset: u64,
    },
    Write {
        fd: Fd,
        buf: Buf,
        offset: u64,
    },
    Readv {
        fd: Fd,
        bufs: BufVec,
        iov: Vec<libc::iovec>,
        offset: u64,
    },
    Writev {
        fd: Fd,
        bufs: BufVec,
        iov: Vec<libc::iovec>,
        offset: u64,
    },
    /// The fd is handed to the backend when submitted; until then the task
    /// owns it, so a task cancelled early still closes it.
    Close {
        fd: Option<OwnedFd>,
    },
    /// Closes slot `file` of the ring's fd table (once no task names it).
    CloseRing {
        file: u32,
    },
    Poll {
        fd: Fd,
        mask: u32,
    },
    /// `path` is NUL-terminated.
    Open {
        dir: RawFd,
        path: Vec<u8>,
        flags: i32,
        mode: u32,
    },
    Stat {
        dir: RawFd,
        path: Vec<u8>,
        flags: i32,
        out: Box<StatBuf>,
    },
    Fsync {
        fd: Fd,
        datasync: bool,
    },
    Splice {
        fd_in: Fd,
        off_in: i64,
        fd_out: Fd,
        off_out: i64,
        len: u32,
        flags: u32,
    },
    Shutdown {
        fd: Fd,
        how: i32,
    },
    SendMsg {
        fd: Fd,
        bufs: BufVec,
        msg: Box<MsgBuf>,
        flags: i32,
    },
    RecvMsg {
        fd: Fd,
        bufs: BufVec,
        msg: Box<MsgBuf>,
        flags: i32,
    },
    AcceptMulti {
        fd: Fd,
    },
    /// A multishot accept whose connections become ring fds: process fds
    /// the ring adopts, or (`into_table`, set by the io_uring backend)
    /// slots of the fixed file table the kernel allocated.
    AcceptDirect {
        fd: Fd,
        into_table: bool,
    },
    /// A socket that becomes a ring fd: a process fd the ring adopts, or
    /// (`into_table`, set by the io_uring backend) a slot of the fixed file
    /// table the kernel allocated.
    SocketDirect {
        domain: i32,
        ty: i32,
        protocol: i32,
        into_table: bool,
    },
    /// An open whose file becomes a ring fd, as `SocketDirect`'s socket
    /// does. `path` is NUL-terminated.
    OpenDirect {
        dir: RawFd,
        path: Vec<u8>,
        flags: i32,
        mode: u32,
        into_table: bool,
    },
    /// `held`: a buffer the backend took from the group for this receive
    /// (when the kernel does not pick one itself).
    RecvMulti {
        fd: Fd,
        group: Rc<GroupInner>,
        held: Option<u16>,
    },
    /// A message waiting in an outbox; taken out when published.
    MsgRing {
        envelope: Option<Envelope>,
    },
    /// A ring fd moving to another io_uring ring (`IORING_MSG_SEND_FD`):
    /// its parcel waits in the target's mailbox under `token`; `target` is
    /// the target's io_uring fd (see [`Ring::send_fd`](crate::Ring::send_fd)).
    SendFd {
        fd: Fd,
        token: u32,
        #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // io_uring only
        target: Arc<OwnedFd>,
        mailbox: Arc<Mailbox>,
    },
    /// A stop request waiting in an outbox, then the wait for the thread.
    StopThread {
        envelope: Option<Envelope>,
        thread: Arc<ThreadShared>,
    },
}

impl Op {
    pub(crate) fn kind(&self) -> OpKind {
        match self {
            Op::Noop => OpKind::Noop,
            Op::Timer { .. } => OpKind::Timer,
            Op::Cancel => OpKind::Cancel,
            Op::CancelAll { .. } => OpKind::CancelAll,
            Op::Accept { .. } => OpKind::Accept,
            Op::Connect { .. } => OpKind::Connect,
            Op::Bind { .. } => OpKind::Bind,
            Op::Listen { .. } => OpKind::Listen,
            Op::Socket { .. } => OpKind::Socket,
            Op::Send { .. } => OpKind::Send,
            Op::Recv { .. } => OpKind::Recv,
            Op::Read { .. } => OpKind::Read,
            Op::Write { .. } => OpKind::Write,
            Op::Readv { .. } => OpKind::Readv,
            Op::Writev { .. } => OpKind::Writev,
            Op::Close { .. } | Op::CloseRing { .. } => OpKind::Close,
            Op::Poll { .. } => OpKind::Poll,
            Op::Open { .. } => OpKind::Open,
            Op::Stat { .. } => OpKind::Stat,
            Op::Fsync { .. } => OpKind::Fsync,
            Op::Splice { .. } => OpKind::Splice,
            Op::Shutdown { .. } => OpKind::Shutdown,
            Op::SendMsg { .. } => OpKind::SendMsg,
            Op::RecvMsg { .. } => OpKind::RecvMsg,
            Op::MsgRing { .. } | Op::SendFd { .. } => OpKind::MsgRing,
            Op::StopThread { .. } => OpKind::StopThread,
            Op::AcceptMulti { .. } => OpKind::AcceptMulti,
            Op::AcceptDirect { .. } => OpKind::AcceptDirect,
            Op::SocketDirect { .. } => OpKind::SocketDirect,
            Op::OpenDirect { .. } => OpKind::OpenDirect,
            Op::RecvMulti { .. } => OpKind::RecvMulti,
        }
    }

    /// The fds the operation names (only a splice names two).
    #[inline]
    pub(crate) fn fds(&self) -> [Option<Fd>; 2] {
        match *self {
            Op::Accept { fd, .. }
            | Op::Connect { fd, .. }
            | Op::Bind { fd, .. }
            | Op::Listen { fd, .. }
            | Op::Send { fd, .. }
            | Op::Recv { fd, .. }
            | Op::Read { fd, .. }
            | Op::Write { fd, .. }
            | Op::Readv { fd, .. }
            | Op::Writev { fd, .. }
            | Op::Poll { fd, .. }
            | Op::Fsync { fd, .. }
            | Op::Shutdown { fd, .. }
            | Op::SendMsg { fd, .. }
            | Op::RecvMsg { fd, .. }
            | Op::AcceptMulti { fd }
            | Op::AcceptDirect { fd, .. }
            | Op::RecvMulti { fd, .. }
            | Op::SendFd { fd, .. } => [Some(fd), None],
            Op::Splice { fd_in, fd_out, .. } => [Some(fd_in), Some(fd_out)],
            Op::Noop
            | Op::Timer { .. }
            | Op::Cancel
            | Op::CancelAll { .. }
            | Op::Socket { .. }
            | Op::SocketDirect { .. }
            | Op::OpenDirect { .. }
            | Op::Close { .. }
            | Op::CloseRing { .. }
            | Op::Open { .. }
            | Op::Stat { .. }
            | Op::MsgRing { .. }
            | Op::StopThread { .. } => [None, None],
        }
    }

    /// Where a read-like operation writes: a read's or recv's spare room,
    /// or a multishot receive's held group buffer.
    pub(crate) fn read_target(&mut self) -> Option<(*mut u8, usize)> {
        match self {
            Op::Read { buf, .. } | Op::Recv { buf, .. } => Some(buf.spare_parts()),
            Op::RecvMulti {
                group,
                held: Some(bid),
                ..
            } => Some((group.buffer_ptr(*bid), group.size())),
            _ => None,
        }
    }

    /// The outcome of one completion of a multishot task that goes on. For
    /// a direct accept, the ring has made `res` a slot of `files`.
    pub(crate) fn shot_outcome(
        &mut self,
        res: io::Result<u32>,
        flags: u32,
        files: &FdTable,
    ) -> Outcome {
        match self {
            Op::AcceptMulti { .. } => Outcome::AcceptMulti(accepted(res)),
            Op::AcceptDirect { .. } => Outcome::AcceptDirect(res.map(|i| files.handle(i))),
            Op::RecvMulti { group, held, .. } => {
                Outcome::RecvMulti(received(group, held, res, flags))
            }
            // Only multishot operations report more completions.
            other => {
                let kind = other.kind();
                Outcome::Noop(Err(io::Error::other(format!(
                    "{kind:?} reported more than one completion"
                ))))
            }
        }
    }

    /// Whether the task waits on other tasks rather than on a backend.
    pub(crate) fn is_cancel(&self) -> bool {
        matches!(self, Op::Cancel | Op::CancelAll { .. })
    }

    /// Builds the outcome of a finished task and leaves `Op::Noop` behind.
    /// Operations that own nothing are answered in place; the others are
    /// moved out and taken apart by `into_outcome`. For a direct accept,
    /// the ring has made `res` a slot of `files`.
    #[inline(always)]
    pub(crate) fn take_outcome(
        &mut self,
        res: io::Result<u32>,
        flags: u32,
        pools: &mut Pools,
        files: &FdTable,
    ) -> Outcome {
        let unit = |res: io::Result<u32>| res.map(drop);
        let outcome = match *self {
            Op::Noop => Outcome::Noop(unit(res)),
            Op::Timer { .. } => Outcome::Timer(unit(res)),
            Op::Cancel => Outcome::Cancel(unit(res)),
            Op::CancelAll { canceled, .. } => Outcome::CancelAll(res.map(|_| canceled as usize)),
            Op::Listen { .. } => Outcome::Listen(unit(res)),
            // SAFETY: a successful socket call returns a new, unowned fd.
            Op::Socket { .. } => Outcome::Socket(res.map(|fd| unsafe { owned_fd(fd) })),
            Op::Poll { .. } => Outcome::Poll(res.map(crate::PollMask::from_bits)),
            Op::Fsync { .. } => Outcome::Fsync(unit(res)),
            Op::Splice { .. } => Outcome::Splice(res.map(|n| n as usize)),
            Op::Shutdown { .. } => Outcome::Shutdown(unit(res)),
            Op::AcceptMulti { .. } => Outcome::AcceptMulti(accepted(res)),
            Op::AcceptDirect { .. } => Outcome::AcceptDirect(res.map(|i| files.handle(i))),
            Op::SocketDirect { .. } => Outcome::SocketDirect(res.map(|i| files.handle(i))),
            Op::CloseRing { .. } => Outcome::Close(unit(res)),
            _ => return std::mem::replace(self, Op::Noop).into_outcome(res, flags, pools, files),
        };
        // SAFETY: the variants answered above hold only plain data, so
        // overwriting one without dropping it loses nothing.
        unsafe { std::ptr::write(self, Op::Noop) };
        outcome
    }

    /// Builds the outcome from the backend's result (a count, fd or mask
    /// when `Ok`; a slot of `files` for a direct accept), giving pooled
    /// memory back to `pools`.
    pub(crate) fn into_outcome(
        self,
        res: io::Result<u32>,
        flags: u32,
        pools: &mut Pools,
        files: &FdTable,
    ) -> Outcome {
        let unit = |res: io::Result<u32>| res.map(drop);
        let count = |res: io::Result<u32>| res.map(|n| n as usize);
        match self {
            Op::Noop => Outcome::Noop(unit(res)),
            Op::Timer { .. } => Outcome::Timer(unit(res)),
            Op::Cancel => Outcome::Cancel(unit(res)),
            Op::CancelAll { canceled, .. } => Outcome::CancelAll(res.map(|_| canceled as usize)),
            Op::Accept { addr, .. } => {
                let peer = addr.get().unwrap_or_else(unspecified_addr);
                pools.addrs.put(addr);
                // SAFETY: a successful accept returns a new fd that nothing
                // else owns.
                Outcome::Accept(res.map(|fd| (unsafe { owned_fd(fd) }, peer)))
            }
            Op::Connect { addr, .. } => {
                pools.addrs.put(addr);
                Outcome::Connect(unit(res))
            }
            Op::Bind { addr, .. } => {
                pools.addrs.put(addr);
                Outcome::Bind(unit(res))
            }
            Op::Listen { .. } => Outcome::Listen(unit(res)),
            // SAFETY: a successful socket call returns a new, unowned fd.
            Op::Socket { .. } => Outcome::Socket(res.map(|fd| unsafe { owned_fd(fd) })),
            Op::Send { buf, .. } => Outcome::Send(count(res), buf),
            Op::Recv { mut buf, .. } => {
                let res = advance_buf(&mut buf, res);
                Outcome::Recv(res, buf)
            }
            Op::Read { mut buf, .. } => {
                let res = advance_buf(&mut buf, res);
                Outcome::Read(res, buf)
            }
            Op::Write { buf, .. } => Outcome::Write(count(res), buf),
            Op::Readv { mut bufs, iov, .. } => {
                let res = advance_bufs(&mut bufs, &iov, res);
                pools.iovs.put(iov);
                Outcome::Readv(res, bufs)
            }
            Op::Writev { bufs, iov, .. } => {
                pools.iovs.put(iov);
                Outcome::Writev(count(res), bufs)
            }
            Op::Close { .. } | Op::CloseRing { .. } => Outcome::Close(unit(res)),
            Op::Poll { .. } => Outcome::Poll(res.map(crate::PollMask::from_bits)),
            Op::Open { path, .. } => {
                pools.paths.put(path);
                // SAFETY: a successful open returns a new, unowned fd.
                Outcome::Open(res.map(|fd| unsafe { owned_fd(fd) }))
            }
            Op::Stat { path, out, .. } => {
                pools.paths.put(path);
                let meta = res.map(|_| stat_metadata(&out));
                pools.stats.put(out);
                Outcome::Stat(meta)
            }
            Op::Fsync { .. } => Outcome::Fsync(unit(res)),
            Op::Splice { .. } => Outcome::Splice(count(res)),
            Op::Shutdown { .. } => Outcome::Shutdown(unit(res)),
            Op::SendMsg { bufs, mut msg, .. } => {
                msg.iov.clear();
                pools.msgs.put(msg);
                Outcome::SendMsg(count(res), bufs)
            }
            Op::RecvMsg {
                mut bufs, mut msg, ..
            } => {
                let res = advance_bufs(&mut bufs, &msg.iov, res).map(|len| RecvMeta {
                    len,
                    addr: (msg.hdr.msg_namelen > 0)
                        .then(|| {
                            msg.addr.len = msg.hdr.msg_namelen;
                            msg.addr.get()
                        })
                        .flatten(),
                    flags: msg.hdr.msg_flags,
                });
                msg.iov.clear();
                pools.msgs.put(msg);
                Outcome::RecvMsg(res, bufs)
            }
            Op::MsgRing { envelope } => {
                let payload = envelope.map_or(Payload::None, Envelope::into_payload);
                Outcome::MsgRing(unit(res), payload)
            }
            Op::SendFd { fd, .. } => match res {
                Ok(_) => Outcome::MsgRing(Ok(()), Payload::None),
                Err(err) => {
                    let back = fd
                        .ring_slot()
                        .map_or(Payload::None, |i| Payload::RingFd(files.handle(i)));
                    Outcome::MsgRing(Err(err), back)
                }
            },
            Op::StopThread { .. } => Outcome::ThreadStopped(unit(res)),
            Op::AcceptMulti { .. } => Outcome::AcceptMulti(accepted(res)),
            Op::AcceptDirect { .. } => Outcome::AcceptDirect(res.map(|i| files.handle(i))),
            Op::SocketDirect { .. } => Outcome::SocketDirect(res.map(|i| files.handle(i))),
            Op::OpenDirect { path, .. } => {
                pools.paths.put(path);
                Outcome::OpenDirect(res.map(|i| files.handle(i)))
            }
            Op::RecvMulti {
                group, mut held, ..
            } => Outcome::RecvMulti(received(&group, &mut held, res, flags)),
        }
    }
}

fn accepted(res: io::Result<u32>) -> io::Result<OwnedFd> {
    // SAFETY: a successful accept returns a new fd that nothing else owns.
    res.map(|fd| unsafe { owned_fd(fd) })
}

/// The buffer a multishot receive filled: the one the kernel picked
/// (reported in the flags) or the one the backend held for it.
fn received(
    group: &Rc<GroupInner>,
    held: &mut Option<u16>,
    res: io::Result<u32>,
    flags: u32,
) -> io::Result<Buf> {
    let bid = if flags & BUFFER != 0 {
        group.note_kernel_pick();
        Some((flags >> BUFFER_SHIFT) as u16)
    } else {
        held.take()
    };
    match (res, bid) {
        (Ok(n), Some(bid)) => Ok(Buf::new(GroupBuf::new(group.clone(), bid, n as usize))),
        (Ok(_), None) => Ok(Buf::new(&b""[..])),
        (Err(e), bid) => {
            if let Some(bid) = bid {
                group.recycle(bid);
            }
            Err(e)
        }
    }
}

#[cfg(target_os = "linux")]
fn new_stat_buf() -> Box<StatBuf> {
    // SAFETY: statx is plain data, for which all zeros is a valid value.
    Box::new(unsafe { std::mem::zeroed() })
}

#[cfg(not(target_os = "linux"))]
fn new_stat_buf() -> Box<StatBuf> {
    Box::default()
}

#[cfg(target_os = "linux")]
fn stat_metadata(out: &StatBuf) -> Metadata {
    Metadata::from(out)
}

#[cfg(not(target_os = "linux"))]
fn stat_metadata(out: &StatBuf) -> Metadata {
    *out
}

/// # Safety
/// `fd` is a new file descriptor that nothing else owns or will close.
unsafe fn owned_fd(fd: u32) -> OwnedFd {
    // SAFETY: forwarded from the caller.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn unspecified_addr() -> SockAddr {
    // SAFETY: an all-zero storage of length 0 is the AF_UNSPEC address.
    unsafe { SockAddr::new(socket2::SockAddrStorage::zeroed(), 0) }
}

/// Records a read of `n` bytes into `buf`'s spare region.
fn advance_buf(buf: &mut Buf, res: io::Result<u32>) -> io::Result<usize> {
    let n = res? as usize;
    let (_, spare) = buf.spare_parts();
    let n = n.min(spare);
    // SAFETY: the backend wrote `n` bytes (never more than the region it
    // was given, which is `spare` long) at the start of the spare region.
    unsafe { buf.advance(n) };
    Ok(n)
}

/// Records a vectored read of `n` bytes into `bufs`' spare regions.
fn advance_bufs(bufs: &mut BufVec, iov: &[libc::iovec], res: io::Result<u32>) -> io::Result<usize> {
    let n = res? as usize;
    let room: usize = iov.iter().map(|v| v.iov_len).sum();
    let n = n.min(room);
    // SAFETY: the backend wrote `n` bytes through these iovecs, in order.
    unsafe { bufs.advance(n) };
    Ok(n)
}

/// Reusable heap blocks for the parts of operations the kernel touches, so
/// that steady-state operation does not allocate.
#[derive(Default)]
pub(crate) struct Pools {
    pub(crate) addrs: Pool<Box<AddrBuf>>,
    pub(crate) iovs: Pool<Vec<libc::iovec>>,
    pub(crate) paths: Pool<Vec<u8>>,
    pub(crate) stats: Pool<Box<StatBuf>>,
    pub(crate) msgs: Pool<Box<MsgBuf>>,
}

/// A free list of reusable values, capped so a burst does not pin memory.
pub(crate) struct Pool<T> {
    free: Vec<T>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool { free: Vec::new() }
    }
}

const POOL_CAP: usize = 256;

impl<T> Pool<T> {
    pub(crate) fn take(&mut self) -> Option<T> {
        self.free.pop()
    }
    pub(crate) fn put(&mut self, value: T) {
        if self.free.len() < POOL_CAP {
            self.free.push(value);
        }
    }
}

impl Pools {
    pub(crate) fn addr(&mut self) -> Box<AddrBuf> {
        let mut addr = self.addrs.take().unwrap_or_else(AddrBuf::empty);
        addr.clear();
        addr
    }

    pub(crate) fn iov(&mut self) -> Vec<libc::iovec> {
        self.iovs.take().unwrap_or_default()
    }

    /// `path` as a NUL-terminated byte string, or an `InvalidInput` error
    /// if it contains a NUL.
    pub(crate) fn path(&mut self, path: &std::path::Path) -> io::Result<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        if bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path contains an interior NUL byte",
            ));
        }
        let mut buf = self.paths.take().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        buf.push(0);
        Ok(buf)
    }

    pub(crate) fn stat(&mut self) -> Box<StatBuf> {
        self.stats.take().unwrap_or_else(new_stat_buf)
    }

    pub(crate) fn msg(&mut self) -> Box<MsgBuf> {
        let mut msg = self.msgs.take().unwrap_or_else(|| {
            Box::new(MsgBuf {
                // SAFETY: msghdr is plain data; all zeros is a valid empty header.
                hdr: unsafe { std::mem::zeroed() },
                addr: *AddrBuf::empty(),
                iov: Vec::new(),
            })
        });
        msg.addr.clear();
        msg
    }
}
