//! The readiness backend's system calls: what an operation captures when it
//! starts ([`Call`]), one non-blocking attempt at it ([`attempt`]), and the
//! blocking form a pool thread runs ([`blocking`]).
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
//! non-blocking. A splice has no per-call form for its non-pipe end: one
//! whose socket (or other stream) end is blocking runs on the pool, where
//! waiting for the peer blocks nothing else.

use std::io;
use std::os::fd::RawFd;

use mio::Interest;

use crate::backend::{BUFFER, BUFFER_SHIFT};
use crate::buffers::group::GroupInner;

#[cfg(target_os = "linux")]
#[path = "sys/linux.rs"]
mod platform;
#[cfg(not(target_os = "linux"))]
#[path = "sys/other.rs"]
mod platform;

#[cfg(target_os = "linux")]
pub(super) use platform::{arm_timer, clear_timer, timer_fd};
pub(super) use platform::{fstat, fsync, stat, Rw};

/// What became of one attempt at a call.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Attempt {
    /// Finished with this result (a count, fd or mask, or `-errno`).
    Done(i32),
    /// Not possible yet: try again when the fd is ready for this.
    Wait(RawFd, Interest),
    /// It may block (a regular file): run it on a pool thread.
    Pool,
    /// One result of a multishot call (with its completion flags); more
    /// may follow at once.
    Shot(i32, u32),
}

/// The buffers of a read or write: one (stored here) or an iovec array in
/// memory the operation owns.
#[derive(Clone, Copy)]
pub(super) enum IoVecs {
    One(libc::iovec),
    Many(*const libc::iovec, usize),
}

impl IoVecs {
    pub(super) fn one(ptr: *const u8, len: usize) -> IoVecs {
        IoVecs::One(libc::iovec {
            iov_base: ptr as *mut libc::c_void,
            iov_len: len,
        })
    }

    pub(super) fn as_slice(&self) -> &[libc::iovec] {
        match self {
            IoVecs::One(iov) => std::slice::from_ref(iov),
            // SAFETY: the array lives in the operation's own `Vec`, which
            // is neither touched nor freed until the operation completes.
            IoVecs::Many(ptr, len) => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }

    fn count(&self) -> libc::c_int {
        libc::c_int::try_from(self.as_slice().len()).unwrap_or(libc::c_int::MAX)
    }
}

/// Where a connect is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Connecting {
    Start,
    /// `connect` said `EINPROGRESS`; `restore_blocking` if ouro made the
    /// socket non-blocking for it.
    InProgress {
        restore_blocking: bool,
    },
}

/// An operation's system call with its arguments: pointers into memory the
/// operation owns (heap blocks that stay put until its completion), like an
/// io_uring submission entry.
#[derive(Clone, Copy)]
pub(super) enum Call {
    Noop,
    Accept {
        fd: RawFd,
        addr: *mut libc::sockaddr,
        len: *mut libc::socklen_t,
    },
    Connect {
        fd: RawFd,
        addr: *const libc::sockaddr,
        len: libc::socklen_t,
        state: Connecting,
    },
    Bind {
        fd: RawFd,
        addr: *const libc::sockaddr,
        len: libc::socklen_t,
    },
    Listen {
        fd: RawFd,
        backlog: i32,
    },
    Socket {
        domain: i32,
        ty: i32,
        protocol: i32,
    },
    Shutdown {
        fd: RawFd,
        how: i32,
    },
    Close {
        fd: RawFd,
    },
    Send {
        fd: RawFd,
        ptr: *const u8,
        len: usize,
        flags: i32,
    },
    Recv {
        fd: RawFd,
        ptr: *mut u8,
        len: usize,
        flags: i32,
    },
    Read {
        fd: RawFd,
        iov: IoVecs,
        offset: i64,
        rw: Rw,
    },
    Write {
        fd: RawFd,
        iov: IoVecs,
        offset: i64,
        rw: Rw,
    },
    SendMsg {
        fd: RawFd,
        msg: *const libc::msghdr,
        flags: i32,
    },
    RecvMsg {
        fd: RawFd,
        msg: *mut libc::msghdr,
        flags: i32,
    },
    Poll {
        fd: RawFd,
        mask: u32,
    },
    AcceptMulti {
        fd: RawFd,
    },
    /// `group` is kept alive by the operation (an `Rc` it holds).
    RecvMulti {
        fd: RawFd,
        group: *const GroupInner,
    },
    Open {
        dir: RawFd,
        path: *const libc::c_char,
        flags: i32,
        mode: u32,
    },
    /// A call that may block (a file-system call), made on a pool thread:
    /// `run` on `args`, which return its result (`-errno` on failure).
    /// Each operation's prep arm gives both, so the system call is written
    /// once, next to what it is made from.
    Blocking {
        run: fn(&SysArgs) -> i32,
        args: SysArgs,
    },
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // splice is Linux's
    Splice {
        fd_in: RawFd,
        off_in: i64,
        fd_out: RawFd,
        off_out: i64,
        len: u32,
        flags: u32,
        /// Which side the next wait is for: splice cannot say which one
        /// was not ready, so waits alternate between them.
        wait_out: bool,
    },
}

/// The arguments of a [`Call::Blocking`]: plain values, and pointers into
/// memory the operation owns (its NUL-terminated paths, its output block).
#[derive(Clone, Copy)]
pub(super) struct SysArgs {
    pub(super) fds: [RawFd; 2],
    pub(super) paths: [*const libc::c_char; 2],
    pub(super) flags: i32,
    pub(super) nums: [u64; 2],
    pub(super) out: *mut libc::c_void,
}

impl SysArgs {
    /// No arguments: what a call's own fill in.
    pub(super) const NONE: SysArgs = SysArgs {
        fds: [-1, -1],
        paths: [std::ptr::null(), std::ptr::null()],
        flags: 0,
        nums: [0, 0],
        out: std::ptr::null_mut(),
    };
}

// SAFETY: a `Call` is plain arguments; the memory its pointers reach is
// owned by the operation, which lends it to whichever thread performs the
// call (the ring's, or one pool thread) and does not touch it until the
// completion comes back, exactly as it lends it to the kernel for io_uring.
unsafe impl Send for Call {}

/// `-errno` of the last failed call.
pub(super) fn last_errno() -> i32 {
    -io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A system call's return value as a completion result.
pub(super) fn result(ret: isize) -> i32 {
    if ret < 0 {
        last_errno()
    } else {
        i32::try_from(ret).unwrap_or(i32::MAX)
    }
}

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

/// One attempt at `call` that does not block the loop: it finishes, says
/// which readiness to wait for, or sends the call to the pool. Progress
/// (a connect in flight, which side a splice waits for) is kept in `call`.
pub(super) fn attempt(call: &mut Call) -> Attempt {
    match call {
        Call::Noop => Attempt::Done(0),
        Call::Accept { fd, addr, len } => accept(*fd, *addr, *len),
        Call::Connect {
            fd,
            addr,
            len,
            state,
        } => connect(*fd, *addr, *len, state),
        Call::Bind { fd, addr, len } => {
            // SAFETY: `addr` holds `len` bytes of a socket address.
            Attempt::Done(result(unsafe { libc::bind(*fd, *addr, *len) } as isize))
        }
        Call::Listen { fd, backlog } => {
            // SAFETY: a plain system call on integers.
            Attempt::Done(result(unsafe { libc::listen(*fd, *backlog) } as isize))
        }
        Call::Socket {
            domain,
            ty,
            protocol,
        } => Attempt::Done(platform::socket(*domain, *ty, *protocol)),
        Call::Shutdown { fd, how } => {
            // SAFETY: a plain system call on integers.
            Attempt::Done(result(unsafe { libc::shutdown(*fd, *how) } as isize))
        }
        // SAFETY: the close operation owned this fd and gave it up.
        Call::Close { fd } => Attempt::Done(result(unsafe { libc::close(*fd) } as isize)),
        Call::Send {
            fd,
            ptr,
            len,
            flags,
        } => {
            // SAFETY: `ptr` points to `len` readable bytes the op owns.
            let res = unsafe { libc::send(*fd, ptr.cast(), *len, *flags | libc::MSG_DONTWAIT) };
            ready_or_wait(result(res), *fd, Interest::WRITABLE)
        }
        Call::Recv {
            fd,
            ptr,
            len,
            flags,
        } => {
            // SAFETY: `ptr` points to `len` writable bytes the op owns.
            let res = unsafe { libc::recv(*fd, ptr.cast(), *len, *flags | libc::MSG_DONTWAIT) };
            ready_or_wait(result(res), *fd, Interest::READABLE)
        }
        Call::SendMsg { fd, msg, flags } => {
            // SAFETY: the header and all it points to are owned by the op.
            let res = unsafe { libc::sendmsg(*fd, *msg, *flags | libc::MSG_DONTWAIT) };
            ready_or_wait(result(res), *fd, Interest::WRITABLE)
        }
        Call::RecvMsg { fd, msg, flags } => {
            // SAFETY: as above; the kernel writes through the header.
            let res = unsafe { libc::recvmsg(*fd, *msg, *flags | libc::MSG_DONTWAIT) };
            ready_or_wait(result(res), *fd, Interest::READABLE)
        }
        Call::Read {
            fd,
            iov,
            offset,
            rw,
        } => platform::try_read(*fd, iov, *offset, rw),
        Call::Write {
            fd,
            iov,
            offset,
            rw,
        } => platform::try_write(*fd, iov, *offset, rw),
        Call::Poll { fd, mask } => poll_now(*fd, *mask),
        Call::AcceptMulti { fd } => match accept(*fd, std::ptr::null_mut(), std::ptr::null_mut()) {
            Attempt::Done(res) if res >= 0 => Attempt::Shot(res, 0),
            other => other,
        },
        // SAFETY: the operation holds the group alive until it completes.
        Call::RecvMulti { fd, group } => recv_multi(*fd, unsafe { &**group }),
        Call::Splice { .. } => platform::try_splice(call),
        Call::Open { .. } | Call::Blocking { .. } => Attempt::Pool,
    }
}

/// Performs `call` on a pool thread, where blocking is fine.
pub(super) fn blocking(call: &mut Call) -> i32 {
    match *call {
        Call::Read {
            fd, iov, offset, ..
        } => platform::read_blocking(fd, &iov, offset),
        Call::Write {
            fd, iov, offset, ..
        } => platform::write_blocking(fd, &iov, offset),
        Call::Open {
            dir,
            path,
            flags,
            mode,
        } => {
            // SAFETY: `path` is the op's NUL-terminated path.
            let res =
                unsafe { libc::openat(dir, path, flags | libc::O_CLOEXEC, mode as libc::c_uint) };
            result(res as isize)
        }
        Call::Splice { .. } => platform::splice_blocking(call),
        Call::Blocking { run, args } => run(&args),
        _ => match attempt(call) {
            Attempt::Done(res) | Attempt::Shot(res, _) => res,
            Attempt::Wait(..) | Attempt::Pool => -libc::EAGAIN,
        },
    }
}

fn accept(fd: RawFd, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> Attempt {
    if let Err(res) = ensure_nonblocking(fd) {
        return Attempt::Done(res);
    }
    // SAFETY: `addr`/`len` are null (multishot: no address) or the op's
    // address buffer and its capacity (the kernel writes them only on
    // success, which ends the operation).
    let res = unsafe { platform::accept(fd, addr, len) };
    ready_or_wait(res, fd, Interest::READABLE)
}

/// One receive into a buffer of `group`, reported as the kernel reports a
/// buffer it picked; the buffer goes back to the group if nothing came.
fn recv_multi(fd: RawFd, group: &GroupInner) -> Attempt {
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

fn connect(
    fd: RawFd,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
    state: &mut Connecting,
) -> Attempt {
    match *state {
        Connecting::Start => {
            let restore_blocking = match set_nonblocking(fd) {
                Ok(was_blocking) => was_blocking,
                Err(res) => return Attempt::Done(res),
            };
            // SAFETY: `addr` holds `len` bytes of a socket address.
            let res = result(unsafe { libc::connect(fd, addr, len) } as isize);
            if res == -libc::EINPROGRESS || would_block(res) {
                *state = Connecting::InProgress { restore_blocking };
                return Attempt::Wait(fd, Interest::WRITABLE);
            }
            restore(fd, restore_blocking);
            Attempt::Done(res)
        }
        Connecting::InProgress { restore_blocking } => {
            // A socket that is not writable yet is still connecting (the
            // wake-up was for another reason); SO_ERROR reads 0 then too.
            let ready = poll_revents(fd, libc::POLLOUT);
            if ready == 0 {
                return Attempt::Wait(fd, Interest::WRITABLE);
            }
            let res = socket_error(fd);
            restore(fd, restore_blocking);
            Attempt::Done(res)
        }
    }
}

/// A call given up while it waits (cancelled, or cut by its deadline):
/// undoes what its attempts changed on the user's fd, as the call itself
/// would have when it finished. A connect that made a blocking socket
/// non-blocking makes it blocking again.
pub(super) fn abandon(call: &Call) {
    if let Call::Connect {
        fd,
        state: Connecting::InProgress { restore_blocking },
        ..
    } = *call
    {
        restore(fd, restore_blocking);
    }
}

fn restore(fd: RawFd, restore_blocking: bool) {
    if restore_blocking {
        let _ = set_flag(fd, libc::O_NONBLOCK, false);
    }
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

/// The fd, readiness and byte count of a call that moves bytes through one
/// buffer: a receive or read, a send or write.
pub(super) fn asked(call: &Call) -> Option<(RawFd, Interest, usize)> {
    match *call {
        Call::Recv { fd, len, .. } => Some((fd, Interest::READABLE, len)),
        // SAFETY: the operation holds the group alive until it completes.
        Call::RecvMulti { fd, group } => Some((fd, Interest::READABLE, unsafe { &*group }.size())),
        Call::Read {
            fd,
            iov: IoVecs::One(iov),
            ..
        } => Some((fd, Interest::READABLE, iov.iov_len)),
        Call::Send { fd, len, .. } => Some((fd, Interest::WRITABLE, len)),
        Call::Write {
            fd,
            iov: IoVecs::One(iov),
            ..
        } => Some((fd, Interest::WRITABLE, iov.iov_len)),
        _ => None,
    }
}

/// Runs a positioned call on `fd`, treating an offset on a non-seekable fd
/// as io_uring does (checked on Linux 6.18), where `pread(2)` would fail
/// with `ESPIPE`: a pipe or terminal ignores it; a socket takes offset 0
/// and fails with `ESPIPE` for any other (the socket layer's own check,
/// which io_uring reaches). Only the rare `ESPIPE` costs an `fstat`.
fn at_offset(fd: RawFd, offset: i64, call: impl Fn(i64) -> i32) -> i32 {
    match call(offset) {
        res if res == -libc::ESPIPE && offset >= 0 => {
            if offset > 0 && is_socket(fd) {
                res
            } else {
                call(-1)
            }
        }
        res => res,
    }
}

/// Whether `fd` is a socket.
fn is_socket(fd: RawFd) -> bool {
    // SAFETY: fstat writes into the zeroed buffer we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid stat buffer.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return false;
    }
    st.st_mode & libc::S_IFMT == libc::S_IFSOCK
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

/// A poll operation: the ready bits, like io_uring's `POLL_ADD`.
fn poll_now(fd: RawFd, mask: u32) -> Attempt {
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
