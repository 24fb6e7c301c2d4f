//! Operations: what each one owns while in flight, and the typed outcome it
//! produces.
//!
//! Everything the kernel reads or writes for an operation (buffers, socket
//! addresses, iovec arrays, paths, statx buffers, message headers) lives in
//! the [`Op`] value held by the task's slot until the final completion, in
//! heap blocks whose addresses do not change when the slot table grows.

mod outcome;
mod pools;

pub use outcome::Outcome;
pub(crate) use pools::Pools;

use std::os::fd::{OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

use crate::buffers::group::GroupInner;
use crate::buffers::{Buf, BufVec};
use crate::fd::Fd;
#[cfg(not(target_os = "linux"))] // statx is Linux's
use crate::fs::Metadata;
use crate::mailbox::{Envelope, Mailbox, ThreadShared};
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

    /// Whether the task waits on other tasks rather than on a backend.
    pub(crate) fn is_cancel(&self) -> bool {
        matches!(self, Op::Cancel | Op::CancelAll { .. })
    }
}
