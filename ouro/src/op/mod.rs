//! Operations: what each one owns while in flight, and the typed outcome it
//! produces.
//!
//! Everything the kernel reads or writes for an operation (buffers, socket
//! addresses, iovec arrays, paths, statx buffers, message headers) lives in
//! the [`Op`] value held by the task's slot until the final completion, in
//! heap blocks whose addresses do not change when the slot table grows.

#[macro_use]
mod define;
mod outcome;
mod pools;
mod table;

pub(crate) use pools::Pools;
pub(crate) use table::Op;
pub use table::{OpKind, Outcome};

#[cfg(not(target_os = "linux"))] // statx is Linux's
use crate::fs::Metadata;
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
    /// with `InvalidInput`. Pipes and terminals ignore it (they have no
    /// position), and sockets take only 0 (`ESPIPE` otherwise), as io_uring
    /// does; on any fd, an offset whose end passes `i64::MAX` is `EINVAL`.
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

/// One datagram a [`Ring::recv_from`](crate::Ring::recv_from) received.
#[derive(Debug)]
pub struct Datagram {
    /// Bytes appended to the buffer (0 for an empty datagram, which is
    /// not an end of stream: datagram sockets have none).
    pub len: usize,
    /// Whether the datagram was longer than the buffer's spare room: the
    /// kernel discarded its tail (`MSG_TRUNC`), and `len` bytes arrived.
    pub truncated: bool,
    /// The sender's address, of any family; `AF_UNSPEC` (length 0) when
    /// the kernel gave none. [`peer_addr`](Datagram::peer_addr) gives it
    /// as a `SocketAddr`.
    pub from: SockAddr,
}

impl Datagram {
    /// The sender's IP address; for a sender that is not IP (a Unix
    /// socket) an `InvalidInput` error, as
    /// [`net::peer_addr`](crate::net::peer_addr) does: [`from`](Datagram::from)
    /// has it for any family.
    pub fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        crate::net::ip_addr(&self.from)
    }
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

impl MsgBuf {
    /// Points the header at one buffer of `len` bytes at `ptr` (the op's
    /// own), keeping the iovec array's room for the next operation.
    pub(crate) fn prepare_one(&mut self, ptr: *mut u8, len: usize, receiving: bool) {
        self.iov.clear();
        self.iov.push(libc::iovec {
            iov_base: ptr.cast(),
            iov_len: len,
        });
        self.prepare(receiving);
    }

    /// What a receive of `len` bytes into this header comes to.
    pub(crate) fn datagram(&mut self, len: usize) -> Datagram {
        self.addr.len = self.hdr.msg_namelen;
        Datagram {
            len,
            truncated: self.hdr.msg_flags & libc::MSG_TRUNC != 0,
            from: self.addr.get().unwrap_or_else(outcome::unspecified_addr),
        }
    }
}

#[cfg(target_os = "linux")]
pub(crate) type StatBuf = libc::statx;
#[cfg(not(target_os = "linux"))]
pub(crate) type StatBuf = Metadata;

impl Op {
    /// Where a read-like operation writes: a read's, recv's or
    /// recv_from's spare room, or a multishot receive's held group buffer.
    pub(crate) fn read_target(&mut self) -> Option<(*mut u8, usize)> {
        match self {
            Op::Read { buf, .. } | Op::Recv { buf, .. } | Op::RecvFrom { buf, .. } => {
                Some(buf.spare_parts())
            }
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

    /// Whether an interrupted call of this operation did nothing (the
    /// kernel answers with what was done, if anything), so that starting
    /// it again is what an interrupted system call does.
    pub(crate) fn starts_again_when_interrupted(&self) -> bool {
        matches!(
            self,
            Op::Read { .. }
                | Op::Write { .. }
                | Op::Readv { .. }
                | Op::Writev { .. }
                | Op::Recv { .. }
                | Op::Send { .. }
                | Op::RecvFrom { .. }
                | Op::SendTo { .. }
                | Op::RecvMsg { .. }
                | Op::SendMsg { .. }
                | Op::Splice { .. }
                | Op::Accept { .. }
                | Op::Open { .. }
        )
    }
}
