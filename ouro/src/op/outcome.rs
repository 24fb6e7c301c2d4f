//! What a finished operation comes to: the typed `Outcome`, built from
//! the result and what the operation owned.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use super::pools::Pools;
use super::{Op, RecvMeta, StatBuf, BUFFER, BUFFER_SHIFT};
use crate::buffers::group::{GroupBuf, GroupInner};
use crate::buffers::{Buf, BufVec};
use crate::fd::{FdTable, RingFd};
use crate::fs::Metadata;
use crate::mailbox::{Envelope, Payload};
use crate::net::SockAddr;

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
