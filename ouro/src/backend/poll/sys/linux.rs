//! Linux: `accept4`, `preadv2`/`pwritev2` with `RWF_NOWAIT` (one attempt
//! that never blocks, on any fd, whatever its flags), `statx`, `splice`.

use std::os::fd::RawFd;

use mio::Interest;

use super::super::call::{Attempt, IoVecs, Progress, SysArgs};
use super::{at_offset, poll_revents, ready_or_wait, restore, set_nonblocking, stat_of};
use crate::syscall::{self, result};

/// A new socket, close-on-exec and non-blocking: every fd this backend
/// creates is, so that no later call on it can block the loop.
pub(super) fn socket(domain: i32, ty: i32, protocol: i32) -> i32 {
    let ty = ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    syscall::socket(domain, ty, protocol)
}

/// # Safety
/// `addr` and `len` are valid for the kernel to write an address into.
pub(super) unsafe fn accept(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> i32 {
    let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: forwarded from the caller.
    result(unsafe { libc::accept4(fd, addr, len, flags) } as isize)
}

fn preadv2(fd: RawFd, iov: &IoVecs, offset: i64, flags: i32) -> i32 {
    let vecs = iov.as_slice();
    // SAFETY: the iovecs describe writable memory the operation owns.
    let res = unsafe { libc::preadv2(fd, vecs.as_ptr(), iov.count(), offset, flags) };
    result(res)
}

fn pwritev2(fd: RawFd, iov: &IoVecs, offset: i64, flags: i32) -> i32 {
    let vecs = iov.as_slice();
    // SAFETY: the iovecs describe readable memory the operation owns.
    let res = unsafe { libc::pwritev2(fd, vecs.as_ptr(), iov.count(), offset, flags) };
    result(res)
}

/// A read from `fds[0]` into the buffers at offset `nums[0]`, with
/// `RWF_NOWAIT`: it fails with `EAGAIN` instead of blocking, also on
/// regular files whose data is not cached (those then go to the pool). An
/// fd that refuses `RWF_NOWAIT` (some character devices) is read after
/// readiness, with the plain call.
pub(in crate::backend::poll) fn try_read(a: &mut SysArgs) -> Attempt {
    try_rw(a, Interest::READABLE, preadv2)
}

/// A write, as [`try_read`] reads.
pub(in crate::backend::poll) fn try_write(a: &mut SysArgs) -> Attempt {
    try_rw(a, Interest::WRITABLE, pwritev2)
}

fn try_rw(
    a: &mut SysArgs,
    interest: Interest,
    call: fn(RawFd, &IoVecs, i64, i32) -> i32,
) -> Attempt {
    let (fd, iov, offset) = (a.fds[0], &a.iov, a.nums[0]);
    if a.progress == Progress::AfterReadiness {
        let bit = if interest.is_readable() {
            libc::POLLIN
        } else {
            libc::POLLOUT
        };
        if poll_revents(fd, bit) == 0 {
            return Attempt::Wait(fd, interest);
        }
        // Readiness promises little to a blocking fd that ignores
        // RWF_NOWAIT (an eventfd is writable while a write of a large
        // value would block): non-blocking for the call only.
        let attempt = || at_offset(fd, offset, iov, |o| call(fd, iov, o, 0));
        return ready_or_wait(nonblocking_during(fd, attempt), fd, interest);
    }
    let res = at_offset(fd, offset, iov, |o| call(fd, iov, o, libc::RWF_NOWAIT));
    if res > 0
        && i64::from(res) < iov.total_len()
        && stopped_short_in_a_file(fd, offset, res, interest)
    {
        a.progress = Progress::Partial(res);
        return Attempt::Pool;
    }
    if res != -libc::EOPNOTSUPP {
        return ready_or_wait(res, fd, interest);
    }
    if is_file(fd) {
        return Attempt::Pool;
    }
    a.progress = Progress::AfterReadiness;
    try_rw(a, interest, call)
}

/// Whether `fd` is a regular file or block device, whose reads and writes
/// block without ever being "not ready".
fn is_file(fd: RawFd) -> bool {
    stat_of(fd).is_ok_and(|st| matches!(st.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFBLK))
}

/// Whether a read or write that moved `done` bytes without blocking,
/// fewer than asked, left some that a blocking call would move: on a
/// regular file or block device (a socket's or pipe's short result is its
/// whole answer) whose other pages were not cached, which for a read is
/// short of the file's end. io_uring moves those in a worker.
fn stopped_short_in_a_file(fd: RawFd, offset: i64, done: i32, interest: Interest) -> bool {
    let Ok(st) = stat_of(fd) else {
        return false;
    };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG if interest.is_readable() => {
            let end = if offset >= 0 {
                offset.saturating_add(i64::from(done))
            } else {
                // SAFETY: lseek of a valid fd by 0 only reports its position.
                unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) }
            };
            end >= 0 && end < st.st_size
        }
        libc::S_IFREG | libc::S_IFBLK => true,
        _ => false,
    }
}

/// A read on a pool thread, where it may block.
pub(in crate::backend::poll) fn read_blocking(a: &mut SysArgs) -> i32 {
    rw_blocking(a, preadv2)
}

/// A write on a pool thread, where it may block.
pub(in crate::backend::poll) fn write_blocking(a: &mut SysArgs) -> i32 {
    rw_blocking(a, pwritev2)
}

fn rw_blocking(a: &mut SysArgs, call: fn(RawFd, &IoVecs, i64, i32) -> i32) -> i32 {
    let (fd, iov, offset) = (a.fds[0], &a.iov, a.nums[0]);
    let Progress::Partial(done) = a.progress else {
        return at_offset(fd, offset, iov, |o| call(fd, iov, o, 0));
    };
    // The rest of a file's read or write begun without blocking: until
    // every byte has moved, the file ends, or a call fails, whose error
    // the next call meets (the bytes moved are the result, as io_uring
    // gives them). No call may move more than the result can count (the
    // kernel's own cap on one read or write), or a read at the position
    // would pass bytes it never reports.
    let mut moved = done;
    while let Some(rest) = iov.after(moved as usize) {
        let room = MAX_RW_COUNT - moved;
        if room <= 0 {
            break;
        }
        let at = if offset < 0 {
            -1
        } else {
            offset.saturating_add(i64::from(moved))
        };
        let res = call(fd, &rest.capped(room as usize), at, 0);
        if res <= 0 {
            break;
        }
        moved += res;
    }
    moved
}

/// The most one read or write moves (Linux's `MAX_RW_COUNT`): a larger
/// one is cut to it, on io_uring too.
const MAX_RW_COUNT: i32 = i32::MAX & !4095;

pub(in crate::backend::poll) fn stat(
    dir: RawFd,
    path: *const libc::c_char,
    flags: i32,
    out: *mut crate::op::StatBuf,
) -> i32 {
    let mask = crate::fs::STATX_MASK;
    // SAFETY: `path` is NUL-terminated and `out` a statx buffer, both owned
    // by the operation.
    result(unsafe { libc::statx(dir, path, flags, mask, out) } as isize)
}

/// The metadata of the file `fd` is open on.
pub(in crate::backend::poll) fn fstat(fd: RawFd, out: *mut crate::op::StatBuf) -> i32 {
    stat(fd, c"".as_ptr(), libc::AT_EMPTY_PATH, out)
}

pub(in crate::backend::poll) fn fsync(fd: RawFd, datasync: bool) -> i32 {
    // SAFETY: plain system calls on an integer fd.
    let res = unsafe {
        if datasync {
            libc::fdatasync(fd)
        } else {
            libc::fsync(fd)
        }
    };
    result(res as isize)
}

/// The splice [`try_splice`] describes, with `extra_flags`.
fn splice(a: &SysArgs, extra_flags: u32) -> i32 {
    let [fd_in, fd_out] = a.fds;
    let [mut off_in, mut off_out, len] = a.nums;
    let flags = a.flags as u32;
    let offset_ptr = |off: &mut i64| {
        if *off < 0 {
            std::ptr::null_mut()
        } else {
            off as *mut i64
        }
    };
    let (p_in, p_out) = (offset_ptr(&mut off_in), offset_ptr(&mut off_out));
    // SAFETY: the offsets are local copies (or null for "current").
    let res = unsafe {
        libc::splice(
            fd_in,
            p_in,
            fd_out,
            p_out,
            len as usize,
            flags | extra_flags,
        )
    };
    result(res)
}

/// What one end of a splice needs so that the call does not wait.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SpliceEnd {
    /// Nothing: a pipe (`SPLICE_F_NONBLOCK` covers it), a regular file or
    /// block device (never waits for a peer), an fd already non-blocking,
    /// or one `fstat` refuses (the call itself reports the bad fd).
    NeverWaits,
    /// A blocking socket: made non-blocking for the length of the call,
    /// as for a `connect`, since `SPLICE_F_NONBLOCK` does not reach it.
    BlockingSocket,
    /// Another blocking stream (a character device, say), whose flags
    /// are not ouro's to change: it may wait inside the call.
    Blocks,
}

fn splice_end(fd: RawFd) -> SpliceEnd {
    // SAFETY: fstat writes into the zeroed buffer we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid stat buffer.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return SpliceEnd::NeverWaits;
    }
    let kind = st.st_mode & libc::S_IFMT;
    if matches!(kind, libc::S_IFIFO | libc::S_IFREG | libc::S_IFBLK) {
        return SpliceEnd::NeverWaits;
    }
    // SAFETY: plain fcntl on an integer fd.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || flags & libc::O_NONBLOCK != 0 {
        SpliceEnd::NeverWaits
    } else if kind == libc::S_IFSOCK {
        SpliceEnd::BlockingSocket
    } else {
        SpliceEnd::Blocks
    }
}

/// A splice from `fds[0]` to `fds[1]`, at offsets `nums[0]` and `nums[1]`
/// (`-1`: the fd's position), of `nums[2]` bytes, with `flags`. A blocking
/// socket end is non-blocking for the length of the call only, so the
/// call moves what fits and the wait for the rest is a readiness wait,
/// which a cancel or deadline ends (a splice blocked on a pool thread
/// could not be reached, and "writable" promises some room, not a pipe's
/// worth). Only a splice with some other blocking stream goes to the pool.
pub(in crate::backend::poll) fn try_splice(a: &mut SysArgs) -> Attempt {
    let [fd_in, fd_out] = a.fds;
    let ends = a.fds.map(splice_end);
    if ends.contains(&SpliceEnd::Blocks) {
        // Blocking there is fine; a cancel reaches it only before it
        // starts (as with any pool job).
        return Attempt::Pool;
    }
    let nonblocking = || splice(a, libc::SPLICE_F_NONBLOCK);
    // A splice needs a pipe at one end (two others fail at once with
    // `EINVAL`), so at most one end is a socket.
    let res = match ends
        .iter()
        .position(|&end| end == SpliceEnd::BlockingSocket)
    {
        Some(socket) => nonblocking_during(a.fds[socket], nonblocking),
        None => nonblocking(),
    };
    if res != -libc::EAGAIN {
        return Attempt::Done(res);
    }
    if a.progress == Progress::SpliceWaitsOut {
        a.progress = Progress::Start;
        Attempt::Wait(fd_out, Interest::WRITABLE)
    } else {
        a.progress = Progress::SpliceWaitsOut;
        Attempt::Wait(fd_in, Interest::READABLE)
    }
}

/// Runs `call` with `fd` non-blocking, and makes it blocking again (if it
/// was) before returning, whatever `call` gave: the flag is the
/// open file's, shared with every fd and thread using it, so it is
/// changed for no longer than the call.
fn nonblocking_during(fd: RawFd, call: impl FnOnce() -> i32) -> i32 {
    match set_nonblocking(fd) {
        Ok(was_blocking) => {
            let res = call();
            restore(fd, was_blocking);
            res
        }
        Err(res) => res,
    }
}

/// A splice on a pool thread, where it may block.
pub(in crate::backend::poll) fn splice_blocking(a: &mut SysArgs) -> i32 {
    splice(a, 0)
}

pub(super) fn priority_interest() -> Option<Interest> {
    Some(Interest::PRIORITY)
}

/// A close-on-exec, non-blocking timer fd on the monotonic clock, for a
/// pollable ring's nearest timer.
pub(in crate::backend::poll) fn timer_fd() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system call on integers.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: timerfd_create returned a new fd that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Makes the timer fd readable `after_ns` from now (once), clearing an
/// expiry not yet read so that the poller sees a fresh edge.
pub(in crate::backend::poll) fn arm_timer(fd: RawFd, after_ns: u64) -> std::io::Result<()> {
    clear_timer(fd);
    let after_ns = after_ns.max(1);
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (after_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (after_ns % 1_000_000_000) as libc::c_long,
        },
    };
    // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
    let res = unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) };
    if res < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads a timer fd's expiry count, if any, so it is no longer readable.
pub(in crate::backend::poll) fn clear_timer(fd: RawFd) {
    let mut count = 0u64;
    // SAFETY: reads at most 8 bytes into a live u64; the fd is
    // non-blocking, so nothing to read is just EAGAIN.
    unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Bytes the stand-in call moved in all.
        static MOVED: Cell<i64> = const { Cell::new(0) };
    }

    /// Stands in for `preadv2` on a file of unbounded length: moves all
    /// it is given, up to the kernel's cap, and touches no memory.
    fn read_capped(_: RawFd, iov: &IoVecs, _: i64, _: i32) -> i32 {
        let n = iov.total_len().min(i64::from(MAX_RW_COUNT));
        MOVED.with(|moved| moved.set(moved.get() + n));
        n as i32
    }

    /// A read of 3 GiB begun without blocking (4 KiB moved) ends with as
    /// many bytes as were moved, at the cap: none passed unreported.
    #[test]
    fn the_rest_of_a_huge_read_moves_no_more_than_its_result_counts() {
        let array = [1000usize, 3 << 29, 1 << 30].map(|len| libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: len,
        });
        let many = IoVecs::Many(array.as_ptr(), array.len());
        for iov in [IoVecs::one(std::ptr::null(), 3 << 30), many] {
            MOVED.with(|moved| moved.set(4096));
            let mut args = SysArgs {
                fds: [0, -1],
                iov,
                nums: [-1, 0, 0],
                progress: Progress::Partial(4096),
                ..SysArgs::NONE
            };
            let res = rw_blocking(&mut args, read_capped);
            assert_eq!(res, MAX_RW_COUNT);
            assert_eq!(i64::from(res), MOVED.with(Cell::get));
        }
    }
}
