//! What a finished operation comes to: the typed `Outcome`, built from
//! the result and what the operation owned.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use super::{Op, Outcome, StatBuf, BUFFER, BUFFER_SHIFT};
use crate::buffers::group::{GroupBuf, GroupInner};
use crate::buffers::{Buf, BufVec};
use crate::fd::FdTable;
use crate::fs::Metadata;
use crate::net::SockAddr;

impl Op {
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
}

pub(super) fn accepted(res: io::Result<u32>) -> io::Result<OwnedFd> {
    // SAFETY: a successful accept returns a new fd that nothing else owns.
    res.map(|fd| unsafe { owned_fd(fd) })
}

/// The buffer a multishot receive filled: the one the kernel picked
/// (reported in the flags) or the one the backend held for it.
pub(super) fn received(
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
pub(super) fn stat_metadata(out: &StatBuf) -> Metadata {
    Metadata::from(out)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn stat_metadata(out: &StatBuf) -> Metadata {
    *out
}

/// # Safety
/// `fd` is a new file descriptor that nothing else owns or will close.
pub(super) unsafe fn owned_fd(fd: u32) -> OwnedFd {
    // SAFETY: forwarded from the caller.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

pub(super) fn unspecified_addr() -> SockAddr {
    // SAFETY: an all-zero storage of length 0 is the AF_UNSPEC address.
    unsafe { SockAddr::new(socket2::SockAddrStorage::zeroed(), 0) }
}

/// Records a read of `n` bytes into `buf`'s spare region.
pub(super) fn advance_buf(buf: &mut Buf, res: io::Result<u32>) -> io::Result<usize> {
    let n = res? as usize;
    let (_, spare) = buf.spare_parts();
    let n = n.min(spare);
    // SAFETY: the backend wrote `n` bytes (never more than the region it
    // was given, which is `spare` long) at the start of the spare region.
    unsafe { buf.advance(n) };
    Ok(n)
}

/// Records a vectored read of `n` bytes into `bufs`' spare regions.
pub(super) fn advance_bufs(
    bufs: &mut BufVec,
    iov: &[libc::iovec],
    res: io::Result<u32>,
) -> io::Result<usize> {
    let n = res? as usize;
    let room: usize = iov.iter().map(|v| v.iov_len).sum();
    let n = n.min(room);
    // SAFETY: the backend wrote `n` bytes through these iovecs, in order.
    unsafe { bufs.advance(n) };
    Ok(n)
}

/// A result that carries nothing but success.
pub(super) fn unit(res: io::Result<u32>) -> io::Result<()> {
    res.map(drop)
}

/// The readiness bits a poll for `asked` reports: those asked for, and
/// the error, hang-up and invalid bits, which are always reported. (A
/// kernel may set more, such as io_uring's `POLLRDHUP` on a socket its
/// peer shut: left out, so every backend gives the same mask.)
pub(super) fn reported(asked: u32) -> u32 {
    asked | (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) as u32
}

/// A byte count.
pub(super) fn count(res: io::Result<u32>) -> io::Result<usize> {
    res.map(|n| n as usize)
}
