//! macOS and the BSDs (kqueue): no per-call non-blocking flag for reads and
//! writes, so a read or write first asks what the fd is: regular files and
//! block devices go to the pool; anything else waits for readiness, then
//! makes the plain call. (If the fd is blocking and another process drains
//! it between the readiness check and the call, that call blocks: the price
//! of leaving the user's fd flags alone.)

use std::os::fd::RawFd;

use mio::Interest;

use super::super::call::{Attempt, IoVecs, Progress, SysArgs};
use super::{at_offset, poll_revents, ready_or_wait, stat_of, unseekable_offset_error};
use crate::fs::Metadata;
use crate::syscall::{self, last_errno, result};

/// Marks a new fd close-on-exec, a socket non-blocking (and, on Apple
/// systems, which have no `MSG_NOSIGNAL`, a socket as not raising SIGPIPE).
fn prepare_new_fd(fd: i32, socket: bool) -> i32 {
    if fd < 0 {
        return fd;
    }
    // SAFETY: plain fcntl on a new fd we own.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        let err = last_errno();
        // SAFETY: the fd is ours and unused.
        unsafe { libc::close(fd) };
        return err;
    }
    // Every socket this backend creates is non-blocking, so that no later
    // call on it can block the loop.
    if socket {
        if let Err(err) = super::set_nonblocking(fd) {
            // SAFETY: the fd is ours and unused.
            unsafe { libc::close(fd) };
            return err;
        }
    }
    #[cfg(target_vendor = "apple")]
    if socket {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads one int.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_NOSIGPIPE,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    #[cfg(not(target_vendor = "apple"))]
    let _ = socket;
    fd
}

pub(super) fn socket(domain: i32, ty: i32, protocol: i32) -> i32 {
    prepare_new_fd(syscall::socket(domain, ty, protocol), true)
}

/// # Safety
/// `addr` and `len` are valid for the kernel to write an address into.
pub(super) unsafe fn accept(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> i32 {
    // SAFETY: forwarded from the caller.
    let new = result(unsafe { libc::accept(fd, addr, len) } as isize);
    prepare_new_fd(new, true)
}

fn readv(fd: RawFd, iov: &IoVecs, offset: i64) -> i32 {
    let vecs = iov.as_slice();
    // SAFETY: the iovecs describe writable memory the operation owns.
    let res = unsafe {
        if offset < 0 {
            libc::readv(fd, vecs.as_ptr(), iov.count())
        } else {
            libc::preadv(fd, vecs.as_ptr(), iov.count(), offset as libc::off_t)
        }
    };
    result(res)
}

fn writev(fd: RawFd, iov: &IoVecs, offset: i64) -> i32 {
    let vecs = iov.as_slice();
    // SAFETY: the iovecs describe readable memory the operation owns.
    let res = unsafe {
        if offset < 0 {
            libc::writev(fd, vecs.as_ptr(), iov.count())
        } else {
            libc::pwritev(fd, vecs.as_ptr(), iov.count(), offset as libc::off_t)
        }
    };
    result(res)
}

/// A read from `fds[0]` into the buffers at offset `nums[0]`: a file goes
/// to the pool; anything else is read after readiness.
pub(in crate::backend::poll) fn try_read(a: &mut SysArgs) -> Attempt {
    try_rw(a, Interest::READABLE, readv)
}

/// A write, as [`try_read`] reads.
pub(in crate::backend::poll) fn try_write(a: &mut SysArgs) -> Attempt {
    try_rw(a, Interest::WRITABLE, writev)
}

fn try_rw(a: &mut SysArgs, interest: Interest, call: fn(RawFd, &IoVecs, i64) -> i32) -> Attempt {
    let (fd, offset) = (a.fds[0], a.nums[0]);
    if a.progress == Progress::Start {
        match file_kind(fd) {
            Err(res) => return Attempt::Done(res),
            Ok(true) => return Attempt::Pool,
            Ok(false) => a.progress = Progress::AfterReadiness,
        }
        // An error of the offset's comes at once, not once the fd is ready.
        if offset >= 0 {
            match unseekable_offset_error(fd, offset, &a.iov) {
                0 => {}
                error => return Attempt::Done(error),
            }
        }
    }
    let iov = &a.iov;
    let bit = if interest.is_readable() {
        libc::POLLIN
    } else {
        libc::POLLOUT
    };
    if poll_revents(fd, bit) == 0 {
        return Attempt::Wait(fd, interest);
    }
    ready_or_wait(
        at_offset(fd, offset, iov, |o| call(fd, iov, o)),
        fd,
        interest,
    )
}

/// Whether `fd` is a regular file or block device (whose reads and writes
/// block without ever being "not ready"), or its `fstat` error.
fn file_kind(fd: RawFd) -> Result<bool, i32> {
    let st = stat_of(fd)?;
    Ok(matches!(
        st.st_mode & libc::S_IFMT,
        libc::S_IFREG | libc::S_IFBLK | libc::S_IFDIR
    ))
}

/// A read on a pool thread, where it may block.
pub(in crate::backend::poll) fn read_blocking(a: &mut SysArgs) -> i32 {
    let (fd, iov) = (a.fds[0], &a.iov);
    at_offset(fd, a.nums[0], iov, |o| readv(fd, iov, o))
}

/// A write on a pool thread, where it may block.
pub(in crate::backend::poll) fn write_blocking(a: &mut SysArgs) -> i32 {
    let (fd, iov) = (a.fds[0], &a.iov);
    at_offset(fd, a.nums[0], iov, |o| writev(fd, iov, o))
}

pub(in crate::backend::poll) fn stat(
    dir: RawFd,
    path: *const libc::c_char,
    flags: i32,
    out: *mut crate::op::StatBuf,
) -> i32 {
    // SAFETY: fstatat writes into the zeroed buffer we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is the operation's NUL-terminated path.
    let res = unsafe { libc::fstatat(dir, path, &mut st, flags) };
    if res < 0 {
        return last_errno();
    }
    // SAFETY: `out` is the operation's own metadata block.
    unsafe { out.write(metadata(&st)) };
    0
}

/// The metadata of the file `fd` is open on.
pub(in crate::backend::poll) fn fstat(fd: RawFd, out: *mut crate::op::StatBuf) -> i32 {
    // SAFETY: fstat writes into the zeroed buffer we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid stat buffer.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return last_errno();
    }
    // SAFETY: `out` is the operation's own metadata block.
    unsafe { out.write(metadata(&st)) };
    0
}

#[allow(clippy::unnecessary_cast)] // field types differ between the BSDs
fn metadata(st: &libc::stat) -> Metadata {
    let dev = |d: libc::dev_t| crate::fs::split_dev(d as u64);
    Metadata {
        mode: st.st_mode as u32,
        size: st.st_size as u64,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        ino: st.st_ino as u64,
        blocks: st.st_blocks as u64,
        blksize: st.st_blksize as u32,
        dev: dev(st.st_dev),
        rdev: dev(st.st_rdev),
        atime: (st.st_atime as i64, st.st_atime_nsec as u32),
        mtime: (st.st_mtime as i64, st.st_mtime_nsec as u32),
        ctime: (st.st_ctime as i64, st.st_ctime_nsec as u32),
        btime: Some((st.st_birthtime as i64, st.st_birthtime_nsec as u32)),
        ..Metadata::default()
    }
}

pub(in crate::backend::poll) fn fsync(fd: RawFd, datasync: bool) -> i32 {
    #[cfg(target_vendor = "apple")]
    let _ = datasync;
    // SAFETY: plain system calls on an integer fd.
    #[cfg(not(target_vendor = "apple"))]
    let res = unsafe {
        if datasync {
            libc::fdatasync(fd)
        } else {
            libc::fsync(fd)
        }
    };
    // SAFETY: as above (Apple systems have no fdatasync).
    #[cfg(target_vendor = "apple")]
    let res = unsafe { libc::fsync(fd) };
    result(res as isize)
}

/// splice(2) exists only on Linux.
pub(in crate::backend::poll) fn try_splice(_: &mut SysArgs) -> Attempt {
    Attempt::Done(-libc::ENOSYS)
}

/// splice(2) exists only on Linux.
pub(in crate::backend::poll) fn splice_blocking(_: &mut SysArgs) -> i32 {
    -libc::ENOSYS
}

/// kqueue has no filter for priority data alone.
pub(super) fn priority_interest() -> Option<Interest> {
    None
}
