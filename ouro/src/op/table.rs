//! The table of operations: one row each, from which `define_ops!`
//! (`define.rs`) makes [`OpKind`], the `Op` a task owns, [`Outcome`] and
//! the conversion between them. Adding an operation is a row here, a
//! `Ring` method, and one arm in each backend's prep (see CONTRIBUTING.md).
//!
//! A conversion sees the result `res` (`io::Result<u32>`), the completion
//! `flags`, the ring's `pools` (to give pooled memory back) and its fd
//! table `files`, and the op's fields by name.

use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;

use super::define::ErrorOf;
use super::outcome::{
    accepted, advance_buf, advance_bufs, count, owned_fd, received, reported, stat_metadata, unit,
    unspecified_addr,
};
use super::{Datagram, MsgBuf, Pools, RecvMeta, StatBuf};
use crate::buffers::group::GroupInner;
use crate::buffers::{Buf, BufVec};
use crate::fd::{Fd, FdTable, RingFd};
use crate::fs::Metadata;
use crate::mailbox::{Envelope, Mailbox, Payload, ThreadShared};
use crate::net::{AddrBuf, SockAddr};

define_ops! {
    |res, flags, pools, files|

    /// [`Ring::noop`](crate::Ring::noop)
    Noop "noop" kernel "5.1"
    /// A no-op finished.
    => Noop(io::Result<()>)
    {
        Noop fds() paths() plain => Outcome::Noop(unit(res));
    }

    /// [`Ring::timer`](crate::Ring::timer)
    Timer "timer" kernel "none (timers live in user space)"
    /// A timer fired (`Ok`) or was cancelled.
    => Timer(io::Result<()>)
    {
        /// Fires at `at` unless `deadline` comes first.
        Timer { at: u64, deadline: u64 } fds() paths() plain => Outcome::Timer(unit(res));
    }

    /// [`Ring::cancel`](crate::Ring::cancel)
    Cancel "cancel" kernel "none (cancels are done in user space)"
    /// `Ok` when the target was cancelled; `ENOENT` when no such task was
    /// live (finished, or a stale handle); `EALREADY` when the target
    /// finished anyway, with its own result or its deadline's `ETIME`.
    => Cancel(io::Result<()>)
    {
        /// Waits for its target to finish (the target's slot lists it).
        Cancel fds() paths() plain => Outcome::Cancel(unit(res));
    }

    /// [`Ring::cancel_all`](crate::Ring::cancel_all)
    CancelAll "cancel_all" kernel "none (cancels are done in user space)"
    /// How many of the ring's tasks were cancelled.
    => CancelAll(io::Result<usize>)
    {
        /// Waits for `pending` targets; counts those that ended cancelled.
        CancelAll { pending: u32, canceled: u32 } fds() paths() plain
            => Outcome::CancelAll(res.map(|_| canceled as usize));
    }

    /// [`Ring::accept`](crate::Ring::accept)
    Accept "accept" kernel "5.5"
    /// An accepted connection and its peer's address.
    => Accept(io::Result<(OwnedFd, SockAddr)>)
    {
        Accept { fd: Fd, addr: Box<AddrBuf> } fds(fd) paths() owns => {
            let peer = addr.get().unwrap_or_else(unspecified_addr);
            pools.addrs.put(addr);
            // SAFETY: a successful accept returns a new fd that nothing
            // else owns.
            Outcome::Accept(res.map(|fd| (unsafe { owned_fd(fd) }, peer)))
        };
    }

    /// [`Ring::connect`](crate::Ring::connect)
    Connect "connect" kernel "5.5"
    /// A connection was made.
    => Connect(io::Result<()>)
    {
        Connect { fd: Fd, addr: Box<AddrBuf> } fds(fd) paths() owns => {
            pools.addrs.put(addr);
            Outcome::Connect(unit(res))
        };
    }

    /// [`Ring::bind`](crate::Ring::bind)
    Bind "bind" kernel "6.11 (older: the system call, made at once)"
    /// A socket was bound.
    => Bind(io::Result<()>)
    {
        Bind { fd: Fd, addr: Box<AddrBuf> } fds(fd) paths() owns => {
            pools.addrs.put(addr);
            Outcome::Bind(unit(res))
        };
    }

    /// [`Ring::listen`](crate::Ring::listen)
    Listen "listen" kernel "6.11 (older: the system call, made at once)"
    /// A socket is listening.
    => Listen(io::Result<()>)
    {
        Listen { fd: Fd, backlog: i32 } fds(fd) paths() plain => Outcome::Listen(unit(res));
    }

    /// [`Ring::socket`](crate::Ring::socket)
    Socket "socket" kernel "5.19 (older: the system call, made at once)"
    /// A new socket.
    => Socket(io::Result<OwnedFd>)
    {
        Socket { domain: i32, ty: i32, protocol: i32 } fds() paths() plain
            // SAFETY: a successful socket call returns a new, unowned fd.
            => Outcome::Socket(res.map(|fd| unsafe { owned_fd(fd) }));
    }

    /// [`Ring::send`](crate::Ring::send)
    Send "send" kernel "5.6"
    /// Bytes sent, and the buffer.
    => Send(io::Result<usize>, Buf)
    {
        Send { fd: Fd, buf: Buf, flags: i32 } fds(fd) paths() owns
            => Outcome::Send(count(res), buf);
    }

    /// [`Ring::recv`](crate::Ring::recv)
    Recv "recv" kernel "5.6"
    /// Bytes received (0 at end of stream), and the buffer they were appended to.
    => Recv(io::Result<usize>, Buf)
    {
        Recv { fd: Fd, buf: Buf, flags: i32 } fds(fd) paths() owns
            => Outcome::Recv(advance_buf(&mut buf, res), buf);
    }

    /// [`Ring::read`](crate::Ring::read)
    Read "read" kernel "5.6"
    /// Bytes read (0 at end of file), and the buffer they were appended to.
    => Read(io::Result<usize>, Buf)
    {
        Read { fd: Fd, buf: Buf, offset: u64 } fds(fd) paths() owns
            => Outcome::Read(advance_buf(&mut buf, res), buf);
    }

    /// [`Ring::write`](crate::Ring::write)
    Write "write" kernel "5.6"
    /// Bytes written, and the buffer.
    => Write(io::Result<usize>, Buf)
    {
        Write { fd: Fd, buf: Buf, offset: u64 } fds(fd) paths() owns
            => Outcome::Write(count(res), buf);
    }

    /// [`Ring::readv`](crate::Ring::readv)
    Readv "readv" kernel "5.1"
    /// Bytes read across the buffers, and the buffers.
    => Readv(io::Result<usize>, BufVec)
    {
        Readv { fd: Fd, bufs: BufVec, iov: Vec<libc::iovec>, offset: u64 } fds(fd) paths() owns
            => {
                let res = advance_bufs(&mut bufs, &iov, res);
                pools.iovs.put(iov);
                Outcome::Readv(res, bufs)
            };
    }

    /// [`Ring::writev`](crate::Ring::writev)
    Writev "writev" kernel "5.1"
    /// Bytes written from the buffers, and the buffers.
    => Writev(io::Result<usize>, BufVec)
    {
        Writev { fd: Fd, bufs: BufVec, iov: Vec<libc::iovec>, offset: u64 } fds(fd) paths() owns
            => {
                pools.iovs.put(iov);
                Outcome::Writev(count(res), bufs)
            };
    }

    /// [`Ring::close`](crate::Ring::close)
    Close "close" kernel "5.6 (a fixed file: 5.15)"
    /// The fd was closed.
    => Close(io::Result<()>)
    {
        /// The fd is handed to the backend when submitted; until then the
        /// task owns it, so a task cancelled early still closes it.
        Close { fd: Option<OwnedFd> } fds() paths() owns => Outcome::Close(unit(res));
        /// Closes slot `file` of the ring's fd table (once no task names it).
        CloseRing { file: u32 } fds() paths() plain => Outcome::Close(unit(res));
    }

    /// [`Ring::poll`](crate::Ring::poll)
    Poll "poll" kernel "5.1"
    /// The readiness bits that are set.
    => Poll(io::Result<crate::PollMask>)
    {
        Poll { fd: Fd, mask: u32 } fds(fd) paths() plain
            => Outcome::Poll(res.map(|bits| crate::PollMask::from_bits(bits & reported(mask))));
    }

    /// [`Ring::open`](crate::Ring::open)
    Open "open" kernel "5.6"
    /// The opened file.
    => Open(io::Result<OwnedFd>)
    {
        /// `path` is NUL-terminated.
        Open { dir: std::os::fd::RawFd, path: Vec<u8>, flags: i32, mode: u32 } fds() paths(path)
            owns => {
                pools.paths.put(path);
                // SAFETY: a successful open returns a new, unowned fd.
                Outcome::Open(res.map(|fd| unsafe { owned_fd(fd) }))
            };
    }

    /// [`Ring::stat`](crate::Ring::stat), [`Ring::lstat`](crate::Ring::lstat)
    /// and [`Ring::fstat`](crate::Ring::fstat)
    Stat "stat" kernel "5.6"
    /// The file's metadata.
    => Stat(io::Result<Metadata>)
    {
        Stat { dir: std::os::fd::RawFd, path: Vec<u8>, flags: i32, out: Box<StatBuf> } fds()
            paths(path) owns => {
                pools.paths.put(path);
                let meta = res.map(|_| stat_metadata(&out));
                pools.stats.put(out);
                Outcome::Stat(meta)
            };
        /// The metadata of the file `fd` is open on.
        StatFd { fd: Fd, out: Box<StatBuf> } fds(fd) paths() owns => {
            let meta = res.map(|_| stat_metadata(&out));
            pools.stats.put(out);
            Outcome::Stat(meta)
        };
    }

    /// [`Ring::fsync`](crate::Ring::fsync)
    Fsync "fsync" kernel "5.1"
    /// The file's data reached the device.
    => Fsync(io::Result<()>)
    {
        Fsync { fd: Fd, datasync: bool } fds(fd) paths() plain => Outcome::Fsync(unit(res));
    }

    /// [`Ring::ftruncate`](crate::Ring::ftruncate)
    Ftruncate "ftruncate" kernel "6.9"
    /// The file has the length asked for.
    => Ftruncate(io::Result<()>)
    {
        Ftruncate { fd: Fd, len: u64 } fds(fd) paths() plain => Outcome::Ftruncate(unit(res));
    }

    /// [`Ring::unlink`](crate::Ring::unlink) and
    /// [`Ring::remove_dir`](crate::Ring::remove_dir)
    Unlink "unlink" kernel "5.11"
    /// The file or directory was removed.
    => Unlink(io::Result<()>)
    {
        /// `flags`: `AT_REMOVEDIR` for a directory.
        Unlink { path: Vec<u8>, flags: i32 } fds() paths(path) owns => {
            pools.paths.put(path);
            Outcome::Unlink(unit(res))
        };
    }

    /// [`Ring::rename`](crate::Ring::rename)
    Rename "rename" kernel "5.11"
    /// The file or directory has its new name.
    => Rename(io::Result<()>)
    {
        /// `from` and `to` are NUL-terminated.
        Rename { from: Vec<u8>, to: Vec<u8> } fds() paths(from, to) owns => {
            pools.paths.put(from);
            pools.paths.put(to);
            Outcome::Rename(unit(res))
        };
    }

    /// [`Ring::mkdir`](crate::Ring::mkdir)
    Mkdir "mkdir" kernel "5.15"
    /// The directory was made.
    => Mkdir(io::Result<()>)
    {
        Mkdir { path: Vec<u8>, mode: u32 } fds() paths(path) owns => {
            pools.paths.put(path);
            Outcome::Mkdir(unit(res))
        };
    }

    /// [`Ring::symlink`](crate::Ring::symlink)
    Symlink "symlink" kernel "5.15"
    /// The symbolic link was made.
    => Symlink(io::Result<()>)
    {
        /// A link at `link` whose content is `target`.
        Symlink { target: Vec<u8>, link: Vec<u8> } fds() paths(target, link) owns => {
            pools.paths.put(target);
            pools.paths.put(link);
            Outcome::Symlink(unit(res))
        };
    }

    /// [`Ring::hard_link`](crate::Ring::hard_link)
    HardLink "hard_link" kernel "5.15"
    /// The new name of the file was made.
    => HardLink(io::Result<()>)
    {
        /// A new name `link` for the file `original` names.
        HardLink { original: Vec<u8>, link: Vec<u8> } fds() paths(original, link) owns => {
            pools.paths.put(original);
            pools.paths.put(link);
            Outcome::HardLink(unit(res))
        };
    }

    /// [`Ring::madvise`](crate::Ring::madvise)
    Madvise "madvise" kernel "5.6"
    /// The advice about the buffer's whole pages was taken, and the buffer.
    => Madvise(io::Result<()>, Buf)
    {
        /// The advice covers the whole pages inside `buf` (see
        /// `backend::whole_pages`).
        Madvise { buf: Buf, advice: crate::fs::MemoryAdvice } fds() paths() owns
            => Outcome::Madvise(unit(res), buf);
    }

    /// [`Ring::fallocate`](crate::Ring::fallocate)
    Fallocate "fallocate" kernel "5.6"
    /// The file's space was allocated (or changed as the mode asked).
    => Fallocate(io::Result<()>)
    {
        Fallocate { fd: Fd, mode: i32, offset: u64, len: u64 } fds(fd) paths() plain
            => Outcome::Fallocate(unit(res));
    }

    /// [`Ring::fadvise`](crate::Ring::fadvise)
    Fadvise "fadvise" kernel "5.6"
    /// The advice about the file's range was taken.
    => Fadvise(io::Result<()>)
    {
        /// `len` 0: to the end of the file.
        Fadvise { fd: Fd, offset: u64, len: u64, advice: crate::fs::Advice } fds(fd) paths()
            plain => Outcome::Fadvise(unit(res));
    }

    /// [`Ring::splice`](crate::Ring::splice)
    Splice "splice" kernel "5.7"
    /// Bytes moved.
    => Splice(io::Result<usize>)
    {
        Splice { fd_in: Fd, off_in: i64, fd_out: Fd, off_out: i64, len: u32, flags: u32 }
            fds(fd_in, fd_out) paths() plain => Outcome::Splice(count(res));
    }

    /// [`Ring::shutdown`](crate::Ring::shutdown)
    Shutdown "shutdown" kernel "5.11 (older: the system call, made at once)"
    /// The socket was shut down.
    => Shutdown(io::Result<()>)
    {
        Shutdown { fd: Fd, how: i32 } fds(fd) paths() plain => Outcome::Shutdown(unit(res));
    }

    /// [`Ring::sendmsg`](crate::Ring::sendmsg)
    SendMsg "sendmsg" kernel "5.3"
    /// Bytes sent, and the buffers.
    => SendMsg(io::Result<usize>, BufVec)
    {
        SendMsg { fd: Fd, bufs: BufVec, msg: Box<MsgBuf>, flags: i32 } fds(fd) paths() owns
            => {
                msg.iov.clear();
                pools.msgs.put(msg);
                Outcome::SendMsg(count(res), bufs)
            };
    }

    /// [`Ring::recvmsg`](crate::Ring::recvmsg)
    RecvMsg "recvmsg" kernel "5.3"
    /// What arrived, and the buffers it was appended to.
    => RecvMsg(io::Result<RecvMeta>, BufVec)
    {
        RecvMsg { fd: Fd, bufs: BufVec, msg: Box<MsgBuf>, flags: i32 } fds(fd) paths() owns
            => {
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
            };
    }

    /// [`Ring::send_to`](crate::Ring::send_to)
    SendTo "send_to" kernel "5.3"
    /// Bytes sent as one datagram, and the buffer.
    => SendTo(io::Result<usize>, Buf)
    {
        /// `msg` names the destination and points at `buf`.
        SendTo { fd: Fd, buf: Buf, msg: Box<MsgBuf> } fds(fd) paths() owns => {
            msg.iov.clear();
            pools.msgs.put(msg);
            Outcome::SendTo(count(res), buf)
        };
    }

    /// [`Ring::recv_from`](crate::Ring::recv_from)
    RecvFrom "recv_from" kernel "5.3"
    /// One datagram received (its length, sender and whether it was cut
    /// short), and the buffer it was appended to.
    => RecvFrom(io::Result<Datagram>, Buf)
    {
        /// `msg` points at `buf`'s spare room and receives the sender.
        RecvFrom { fd: Fd, buf: Buf, msg: Box<MsgBuf> } fds(fd) paths() owns => {
            let res = advance_buf(&mut buf, res).map(|len| msg.datagram(len));
            msg.iov.clear();
            pools.msgs.put(msg);
            Outcome::RecvFrom(res, buf)
        };
    }

    /// [`Ring::accept_multishot`](crate::Ring::accept_multishot)
    AcceptMulti "accept_multishot" kernel "5.19 (older: one accept at a time)"
    /// One accepted connection of a multishot accept (no peer address: the
    /// kernel would overwrite it with the next one's; ask with
    /// [`net::peer_addr`](crate::net::peer_addr) if needed).
    => AcceptMulti(io::Result<OwnedFd>)
    {
        AcceptMulti { fd: Fd } fds(fd) paths() plain => Outcome::AcceptMulti(accepted(res));
    }

    /// [`Ring::accept_multishot_direct`](crate::Ring::accept_multishot_direct)
    AcceptDirect "accept_multishot_direct" kernel "5.19"
    /// One accepted connection of a multishot accept into ring fds
    /// ([`Ring::accept_multishot_direct`](crate::Ring::accept_multishot_direct)),
    /// already the ring's: close it with [`Ring::close`](crate::Ring::close).
    => AcceptDirect(io::Result<RingFd>)
    {
        /// A multishot accept whose connections become ring fds: process
        /// fds the ring adopts, or (`into_table`, set by the io_uring
        /// backend) slots of the fixed file table the kernel allocated.
        AcceptDirect { fd: Fd, into_table: bool } fds(fd) paths() plain
            => Outcome::AcceptDirect(res.map(|i| files.handle(i)));
    }

    /// [`Ring::socket_direct`](crate::Ring::socket_direct)
    SocketDirect "socket_direct" kernel "5.19"
    /// A socket made straight into a ring fd
    /// ([`Ring::socket_direct`](crate::Ring::socket_direct)), already the
    /// ring's: close it with [`Ring::close`](crate::Ring::close).
    => SocketDirect(io::Result<RingFd>)
    {
        /// A socket that becomes a ring fd: a process fd the ring adopts,
        /// or (`into_table`, set by the io_uring backend) a slot of the
        /// fixed file table the kernel allocated.
        SocketDirect { domain: i32, ty: i32, protocol: i32, into_table: bool } fds() paths()
            plain => Outcome::SocketDirect(res.map(|i| files.handle(i)));
    }

    /// [`Ring::open_direct`](crate::Ring::open_direct)
    OpenDirect "open_direct" kernel "5.19"
    /// A file opened straight into a ring fd
    /// ([`Ring::open_direct`](crate::Ring::open_direct)), already the
    /// ring's: close it with [`Ring::close`](crate::Ring::close).
    => OpenDirect(io::Result<RingFd>)
    {
        /// An open whose file becomes a ring fd, as `SocketDirect`'s socket
        /// does. `path` is NUL-terminated.
        OpenDirect {
            dir: std::os::fd::RawFd,
            path: Vec<u8>,
            flags: i32,
            mode: u32,
            into_table: bool,
        } fds() paths(path) owns => {
            pools.paths.put(path);
            Outcome::OpenDirect(res.map(|i| files.handle(i)))
        };
    }

    /// [`Ring::recv_multishot`](crate::Ring::recv_multishot)
    RecvMulti "recv_multishot" kernel "6.0 (older: one receive at a time)"
    /// Bytes that arrived for a multishot receive, in a buffer of the group
    /// (back to the group when dropped); empty at end of stream. `ENOBUFS`
    /// ends the task when the group has no free buffer left.
    => RecvMulti(io::Result<Buf>)
    {
        /// `held`: a buffer the backend took from the group for this
        /// receive (when the kernel does not pick one itself).
        RecvMulti { fd: Fd, group: Rc<GroupInner>, held: Option<u16> } fds(fd) paths() owns
            => Outcome::RecvMulti(received(&group, &mut held, res, flags));
    }

    /// [`Ring::msg_ring`](crate::Ring::msg_ring): the sender's side.
    MsgRing "msg_ring" kernel "6.3 (older: a mailbox and an eventfd)"
    /// The sender's side of [`Ring::msg_ring`](crate::Ring::msg_ring):
    /// `Ok` when the target accepted the message (the payload is then
    /// `Payload::None`), or `EPIPE` when the target ring is closed (dropped,
    /// or its thread stopped) with the payload given back.
    => MsgRing(io::Result<()>, Payload)
    {
        /// A message waiting in an outbox; taken out when published.
        MsgRing { envelope: Option<Envelope> } fds() paths() owns => {
            let payload = envelope.map_or(Payload::None, Envelope::into_payload);
            Outcome::MsgRing(unit(res), payload)
        };
        /// A ring fd moving to another io_uring ring
        /// (`IORING_MSG_SEND_FD`): its parcel waits in the target's mailbox
        /// under `token`; `target` is the target's io_uring fd (see
        /// [`Ring::send_fd`](crate::Ring::send_fd)).
        SendFd {
            fd: Fd,
            token: u32,
            #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // io_uring only
            target: Arc<OwnedFd>,
            mailbox: Arc<Mailbox>,
        } fds(fd) paths() owns => match res {
            Ok(_) => Outcome::MsgRing(Ok(()), Payload::None),
            Err(err) => {
                let back = fd
                    .ring_slot()
                    .map_or(Payload::None, |i| Payload::RingFd(files.handle(i)));
                Outcome::MsgRing(Err(err), back)
            }
        };
    }

    /// A message arriving from another ring or thread: the receiver's side
    /// (see [`Ring::msg_ring`](crate::Ring::msg_ring)).
    Message "message" kernel "6.3 (older: a mailbox and an eventfd)"
    /// A message from another ring or thread, with its payload.
    => Message(Payload)
    {
    }

    /// [`RingThread::stop`](crate::RingThread::stop)
    StopThread "stop" kernel "none (a message, then a wait for the thread)"
    /// The thread asked to stop through
    /// [`RingThread::stop`](crate::RingThread::stop) has stopped: `Ok`, or
    /// the error that ended it.
    => ThreadStopped(io::Result<()>)
    {
        /// A stop request waiting in an outbox, then the wait for the thread.
        StopThread { envelope: Option<Envelope>, thread: Arc<ThreadShared> } fds() paths() owns
            => Outcome::ThreadStopped(unit(res));
    }
}
