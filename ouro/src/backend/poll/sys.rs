//! The readiness backend's system calls, one function per kind of call,
//! each made from a [`Call`](super::call::Call)'s arguments: an attempt
//! that never blocks (`fn(&mut SysArgs) -> Attempt`), or the blocking form
//! a pool thread runs (`fn(&mut SysArgs) -> i32`). Prep arms name them.
//!
//! Everything here is portable POSIX; what differs by platform (accept4 and
//! `RWF_NOWAIT` reads on Linux, statx, splice) lives in `linux.rs` and
//! `other.rs`, which export the same functions.
//!
//! User fds keep their flags wherever a per-call form exists: sockets get
//! `MSG_DONTWAIT`, reads and writes on Linux `RWF_NOWAIT`. `accept` and
//! `connect` have no such form: a blocking listening socket is switched to
//! non-blocking mode (it stays so), and a blocking socket given to `connect`
//! is non-blocking only until the connection is made, fails, or is given
//! up (cancel, deadline). Sockets this backend creates (socket, accept) are
//! non-blocking. A splice has no per-call form for its non-pipe end
//! (`SPLICE_F_NONBLOCK` covers the pipe): a blocking socket end is made
//! non-blocking for the length of each splice call, and the call then
//! waits for readiness like any other; only one whose end is some other
//! blocking stream (a character device) runs on the pool, where waiting
//! blocks nothing else.

use std::os::fd::RawFd;

use mio::Interest;

use super::call::{Attempt, Call, IoVecs, Progress, SysArgs};
use crate::backend::{BUFFER, BUFFER_SHIFT};
use crate::buffers::group::GroupInner;
use crate::syscall::{self, last_errno, result};

#[cfg(target_os = "linux")]
#[path = "sys/linux.rs"]
mod platform;
#[cfg(not(target_os = "linux"))]
#[path = "sys/other.rs"]
mod platform;

#[cfg(target_os = "linux")]
pub(super) use platform::{arm_timer, clear_timer, timer_fd};
pub(super) use platform::{
    fstat, fsync, read_blocking, splice_blocking, stat, try_read, try_splice, try_write,
    write_blocking,
};

fn would_block(res: i32) -> bool {
    res == -libc::EAGAIN || res == -libc::EWOULDBLOCK
}

/// What to do after a call that may say "not ready".
fn ready_or_wait(res: i32, fd: RawFd, interest: Interest) -> Attempt {
    if would_block(res) {
        Attempt::Wait(fd, interest)
    } else {
        Attempt::Done(res)
    }
}

/// `accept` on `fds[0]`, the peer's address into `ptrs[0]` (its length
/// `ptrs[1]`).
pub(super) fn accept(a: &mut SysArgs) -> Attempt {
    accept_into(a.fds[0], a.ptrs[0].cast(), a.ptrs[1].cast())
}

/// One connection of a multishot accept on `fds[0]`.
pub(super) fn accept_multi(a: &mut SysArgs) -> Attempt {
    match accept_into(a.fds[0], std::ptr::null_mut(), std::ptr::null_mut()) {
        Attempt::Done(res) if res >= 0 => Attempt::Shot(res, 0),
        other => other,
    }
}

/// `connect` of `fds[0]` to the `nums[0]` bytes of address at `ptrs[0]`;
/// one in progress is finished once the socket is writable.
pub(super) fn connect(a: &mut SysArgs) -> Attempt {
    let (fd, addr, len) = (a.fds[0], a.ptrs[0].cast(), a.nums[0] as libc::socklen_t);
    match a.progress {
        Progress::Connecting { restore_blocking } => {
            // A socket that is not writable yet is still connecting (the
            // wake-up was for another reason); SO_ERROR reads 0 then too.
            if poll_revents(fd, libc::POLLOUT) == 0 {
                return Attempt::Wait(fd, Interest::WRITABLE);
            }
            let error = socket_error(fd);
            let res = if error == 0 {
                // Connecting again says how it went (a Unix socket's
                // connect that found the backlog full tries again).
                // SAFETY: `addr` holds `len` bytes of a socket address.
                match result(unsafe { libc::connect(fd, addr, len) } as isize) {
                    res if res == -libc::EISCONN => 0,
                    res => res,
                }
            } else {
                // Failed: left unconnected, as the kernel's own wait leaves
                // it, so that a later connect starts afresh rather than
                // failing with `ECONNABORTED`; not connected again, which
                // on a socket shut down while connecting would send a new
                // SYN to the peer given up on.
                disconnect(fd);
                error
            };
            restore(fd, restore_blocking);
            Attempt::Done(res)
        }
        _ => {
            let restore_blocking = match set_nonblocking(fd) {
                Ok(was_blocking) => was_blocking,
                Err(res) => return Attempt::Done(res),
            };
            // SAFETY: `addr` holds `len` bytes of a socket address.
            let res = result(unsafe { libc::connect(fd, addr, len) } as isize);
            if res == -libc::EINPROGRESS || would_block(res) {
                a.progress = Progress::Connecting { restore_blocking };
                return Attempt::Wait(fd, Interest::WRITABLE);
            }
            restore(fd, restore_blocking);
            Attempt::Done(res)
        }
    }
}

/// `bind` of `fds[0]` to the `nums[0]` bytes of address at `ptrs[0]`.
pub(super) fn bind(a: &mut SysArgs) -> Attempt {
    let (addr, len) = (a.ptrs[0].cast(), a.nums[0] as libc::socklen_t);
    // SAFETY: `addr` holds `len` bytes of a socket address.
    Attempt::Done(unsafe { syscall::bind(a.fds[0], addr, len) })
}

/// `listen` on `fds[0]` with backlog `nums[0]`.
pub(super) fn listen(a: &mut SysArgs) -> Attempt {
    Attempt::Done(syscall::listen(a.fds[0], a.nums[0] as i32))
}

/// A new socket of domain `nums[0]`, type `flags`, protocol `nums[1]`.
pub(super) fn socket(a: &mut SysArgs) -> Attempt {
    Attempt::Done(platform::socket(
        a.nums[0] as i32,
        a.flags,
        a.nums[1] as i32,
    ))
}

/// `shutdown` of `fds[0]`, `how` being `nums[0]`.
pub(super) fn shutdown(a: &mut SysArgs) -> Attempt {
    Attempt::Done(syscall::shutdown(a.fds[0], a.nums[0] as i32))
}

/// `close` of `fds[0]`, which the close operation owned and gave up.
pub(super) fn close(a: &mut SysArgs) -> Attempt {
    // SAFETY: nothing else owns the fd (see above).
    Attempt::Done(result(unsafe { libc::close(a.fds[0]) } as isize))
}

/// `send` of the one buffer on `fds[0]`.
pub(super) fn send(a: &mut SysArgs) -> Attempt {
    let (fd, (ptr, len)) = (a.fds[0], a.iov.single());
    // SAFETY: `ptr` points to `len` readable bytes the op owns.
    let res = unsafe { libc::send(fd, ptr, len, a.flags | libc::MSG_DONTWAIT) };
    ready_or_wait(result(res), fd, Interest::WRITABLE)
}

/// `recv` into the one buffer from `fds[0]`.
pub(super) fn recv(a: &mut SysArgs) -> Attempt {
    let (fd, (ptr, len)) = (a.fds[0], a.iov.single());
    // SAFETY: `ptr` points to `len` writable bytes the op owns.
    let res = unsafe { libc::recv(fd, ptr, len, a.flags | libc::MSG_DONTWAIT) };
    ready_or_wait(result(res), fd, Interest::READABLE)
}

/// `sendmsg` of the message header at `ptrs[0]` on `fds[0]`.
pub(super) fn send_msg(a: &mut SysArgs) -> Attempt {
    let fd = a.fds[0];
    // SAFETY: the header and all it points to are owned by the op.
    let res = unsafe { libc::sendmsg(fd, a.ptrs[0].cast(), a.flags | libc::MSG_DONTWAIT) };
    ready_or_wait(result(res), fd, Interest::WRITABLE)
}

/// `recvmsg` into the message header at `ptrs[0]` from `fds[0]`.
pub(super) fn recv_msg(a: &mut SysArgs) -> Attempt {
    let fd = a.fds[0];
    // SAFETY: as above; the kernel writes through the header.
    let res = unsafe { libc::recvmsg(fd, a.ptrs[0].cast(), a.flags | libc::MSG_DONTWAIT) };
    ready_or_wait(result(res), fd, Interest::READABLE)
}

/// `openat` of `paths[0]` in directory `fds[0]`, with `flags` and mode
/// `nums[0]`, close-on-exec, tried as io_uring tries it (checked on Linux
/// 6.18): first without blocking (`O_NONBLOCK`, taken off the file again
/// unless asked for), unless it creates or truncates; only an open that
/// would block (`EAGAIN`) is made again, blocking. So a FIFO opens at once
/// for reading, and fails with `ENXIO` for writing while it has no reader,
/// on both backends.
pub(super) fn open(a: &mut SysArgs) -> i32 {
    let (flags, mode) = (a.flags | libc::O_CLOEXEC, a.nums[0] as libc::c_uint);
    // SAFETY: `paths[0]` is the op's NUL-terminated path.
    let open = |flags| result(unsafe { libc::openat(a.fds[0], a.paths[0], flags, mode) } as isize);
    if flags & (libc::O_NONBLOCK | OPENS_THAT_BLOCK) != 0 {
        return open(flags);
    }
    match open(flags | libc::O_NONBLOCK) {
        res if res == -libc::EAGAIN => open(flags),
        fd if fd >= 0 => clear_nonblocking(fd, flags),
        err => err,
    }
}

/// Flags with which io_uring never tries an open without blocking.
#[cfg(target_os = "linux")]
const OPENS_THAT_BLOCK: libc::c_int = libc::O_CREAT | libc::O_TRUNC | libc::O_TMPFILE;
#[cfg(not(target_os = "linux"))]
const OPENS_THAT_BLOCK: libc::c_int = libc::O_CREAT | libc::O_TRUNC;

/// Takes `O_NONBLOCK` off the file `fd` (just opened with `flags` and
/// `O_NONBLOCK`) names; closes it if that fails. `F_SETFL` changes only the
/// status flags and ignores the others, so `flags` say what to keep without
/// a `F_GETFL` first.
fn clear_nonblocking(fd: RawFd, flags: libc::c_int) -> i32 {
    // SAFETY: `fd` is an fd this job just opened and still owns.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } == 0 {
        return fd;
    }
    let err = last_errno();
    // SAFETY: nobody else has this fd yet.
    unsafe { libc::close(fd) };
    err
}

fn accept_into(fd: RawFd, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> Attempt {
    if let Err(res) = ensure_nonblocking(fd) {
        return Attempt::Done(res);
    }
    // SAFETY: `addr`/`len` are null (multishot: no address) or the op's
    // address buffer and its capacity (the kernel writes them only on
    // success, which ends the operation).
    let res = unsafe { platform::accept(fd, addr, len) };
    ready_or_wait(res, fd, Interest::READABLE)
}

/// One receive from `fds[0]` into a buffer of the group at `ptrs[0]`,
/// reported as the kernel reports a buffer it picked; the buffer goes back
/// to the group if nothing came.
pub(super) fn recv_multi(a: &mut SysArgs) -> Attempt {
    let fd = a.fds[0];
    // SAFETY: the operation holds the group alive (an `Rc`) until it
    // completes.
    let group = unsafe { &*a.ptrs[0].cast::<GroupInner>() };
    let Some(bid) = group.take_free() else {
        // As with io_uring, running out of buffers ends the receive only
        // when data comes.
        if poll_revents(fd, libc::POLLIN) == 0 {
            return Attempt::Wait(fd, Interest::READABLE);
        }
        return Attempt::Done(-libc::ENOBUFS);
    };
    // SAFETY: buffer `bid` is `size` writable bytes of the group, taken
    // from its free list for this call.
    let res = unsafe {
        libc::recv(
            fd,
            group.buffer_ptr(bid).cast(),
            group.size(),
            libc::MSG_DONTWAIT,
        )
    };
    match result(res) {
        n if n > 0 => Attempt::Shot(n, BUFFER | (u32::from(bid) << BUFFER_SHIFT)),
        res => {
            group.recycle(bid);
            ready_or_wait(res, fd, Interest::READABLE)
        }
    }
}

/// A call given up while it waits (cancelled, or cut by its deadline):
/// undoes what its attempts changed on the user's fd, as the call itself
/// would have when it finished. A connect that made a blocking socket
/// non-blocking makes it blocking again.
pub(super) fn abandon(call: &Call) {
    if let Progress::Connecting { restore_blocking } = call.args.progress {
        restore(call.args.fds[0], restore_blocking);
    }
}

fn restore(fd: RawFd, restore_blocking: bool) {
    if restore_blocking {
        let _ = set_flag(fd, libc::O_NONBLOCK, false);
    }
}

/// Dissolves a socket's association with its peer (`connect` to
/// `AF_UNSPEC`); an error (a family that has no such thing) changes
/// nothing and is of no interest.
fn disconnect(fd: RawFd) {
    // SAFETY: a socket address is plain data, all zeros a valid one: the
    // family `AF_UNSPEC`.
    let unspecified: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: `unspecified` holds more than `len` bytes of a socket address.
    let _ = unsafe {
        libc::connect(
            fd,
            (&unspecified as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
}

/// The pending error of a socket (0 when none), as a result.
fn socket_error(fd: RawFd) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid for getsockopt to write an int.
    let res = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if res < 0 {
        last_errno()
    } else {
        -err
    }
}

/// Makes `fd` non-blocking; `Ok(true)` if it was blocking.
fn set_nonblocking(fd: RawFd) -> Result<bool, i32> {
    set_flag(fd, libc::O_NONBLOCK, true)
}

fn ensure_nonblocking(fd: RawFd) -> Result<(), i32> {
    set_nonblocking(fd).map(|_| ())
}

/// Sets or clears a status flag; `Ok(true)` if it changed.
fn set_flag(fd: RawFd, flag: i32, on: bool) -> Result<bool, i32> {
    // SAFETY: plain fcntl calls on an integer fd.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(last_errno());
    }
    let wanted = if on { flags | flag } else { flags & !flag };
    if wanted == flags {
        return Ok(false);
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, wanted) } < 0 {
        return Err(last_errno());
    }
    Ok(true)
}

/// Whether `fd` is a TCP socket, whose receive returns less than asked
/// only when its queue is empty (or at urgent data). Not a Unix stream
/// socket: its receive also stops after a message that carried fds or
/// other credentials, with more queued behind it.
pub(super) fn is_tcp_socket(fd: RawFd) -> bool {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `ty` and `len` are valid for getsockopt to write an int.
    let res = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if res != 0 || ty != libc::SOCK_STREAM {
        return false;
    }
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `addr` has room for any socket address; `len` says so.
    let res = unsafe {
        libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    res == 0 && matches!(i32::from(addr.ss_family), libc::AF_INET | libc::AF_INET6)
}

/// Runs a positioned call on `fd`, treating an offset on a non-seekable fd
/// as io_uring does (checked on Linux 6.18), where `pread(2)` would fail
/// with `ESPIPE`: an offset whose end (offset plus the buffers' length)
/// passes `i64::MAX` is `EINVAL` (the kernel's range check comes first);
/// otherwise a pipe or terminal ignores it, and a socket takes offset 0
/// and fails with `ESPIPE` for any other (the socket layer's own check,
/// which io_uring reaches). Only the rare `ESPIPE` costs an `fstat`.
fn at_offset(fd: RawFd, offset: i64, iov: &IoVecs, call: impl Fn(i64) -> i32) -> i32 {
    match call(offset) {
        res if res == -libc::ESPIPE && offset >= 0 => {
            match unseekable_offset_error(fd, offset, iov) {
                0 => call(-1),
                error => error,
            }
        }
        res => res,
    }
}

/// The error `offset` alone gives a call on `fd`, an fd with no position
/// (see [`at_offset`]), or 0 if the call may ignore it.
fn unseekable_offset_error(fd: RawFd, offset: i64, iov: &IoVecs) -> i32 {
    if offset.checked_add(iov.total_len()).is_none() {
        -libc::EINVAL
    } else if offset > 0 && is_socket(fd) {
        -libc::ESPIPE
    } else {
        0
    }
}

/// Whether `fd` is a socket.
fn is_socket(fd: RawFd) -> bool {
    stat_of(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

/// `fstat(2)` of `fd`, or its error (`-errno`).
fn stat_of(fd: RawFd) -> Result<libc::stat, i32> {
    // SAFETY: fstat writes into the zeroed buffer we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid stat buffer.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(last_errno());
    }
    Ok(st)
}

/// `poll(2)` without waiting: the bits of `mask` (plus error, hang-up and
/// invalid) that are set now.
pub(super) fn poll_revents(fd: RawFd, mask: libc::c_short) -> u32 {
    let mut pfd = libc::pollfd {
        fd,
        events: mask,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n <= 0 {
        return 0;
    }
    u32::from(pfd.revents as u16)
}

/// A poll of `fds[0]` for the mask `nums[0]`: the ready bits, like
/// io_uring's `POLL_ADD`.
pub(super) fn poll(a: &mut SysArgs) -> Attempt {
    let (fd, mask) = (a.fds[0], a.nums[0] as u32);
    let always = (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) as u32;
    let revents = poll_revents(fd, mask as libc::c_short) & (mask | always);
    if revents & libc::POLLNVAL as u32 != 0 {
        return Attempt::Done(-libc::EBADF);
    }
    if revents != 0 {
        return Attempt::Done(revents as i32);
    }
    match poll_interest(mask) {
        Some(interest) => Attempt::Wait(fd, interest),
        None => Attempt::Done(-libc::EOPNOTSUPP),
    }
}

/// The readiness to wait for before polling `mask` again; `None` when the
/// platform cannot wait for what the mask asks (priority data off Linux).
fn poll_interest(mask: u32) -> Option<Interest> {
    let has = |bit: libc::c_short| mask & bit as u32 != 0;
    let add = |interest: Option<Interest>, more: Interest| {
        Some(interest.map_or(more, |i: Interest| i | more))
    };
    let mut interest = None;
    if has(libc::POLLIN) {
        interest = add(interest, Interest::READABLE);
    }
    if has(libc::POLLOUT) {
        interest = add(interest, Interest::WRITABLE);
    }
    // Priority data, or nothing but errors and hang-ups (which every
    // registration reports).
    if has(libc::POLLPRI) || interest.is_none() {
        interest = add(interest, platform::priority_interest()?);
    }
    interest
}
