//! System calls ouro makes itself, rather than through io_uring: a return
//! value as a completion result (a count or fd, or `-errno`), and the
//! socket calls both backends make (the readiness backend always; io_uring
//! in place of an opcode the kernel lacks, as these never block).

use std::io;
use std::os::fd::RawFd;

/// `-errno` of the last failed call.
pub(crate) fn last_errno() -> i32 {
    -io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A system call's return value as a completion result: a count or fd
/// (clamped to `i32::MAX`), or `-errno` when it failed.
pub(crate) fn result(ret: isize) -> i32 {
    if ret < 0 {
        last_errno()
    } else {
        i32::try_from(ret).unwrap_or(i32::MAX)
    }
}

/// `socket(2)` with `ty` as given (the caller adds its flags).
pub(crate) fn socket(domain: i32, ty: i32, protocol: i32) -> i32 {
    // SAFETY: a plain system call on integers.
    result(unsafe { libc::socket(domain, ty, protocol) } as isize)
}

/// `bind(2)`.
///
/// # Safety
///
/// `addr` points to `len` readable bytes of a socket address.
pub(crate) unsafe fn bind(fd: RawFd, addr: *const libc::sockaddr, len: libc::socklen_t) -> i32 {
    // SAFETY: forwarded from the caller.
    result(unsafe { libc::bind(fd, addr, len) } as isize)
}

/// `listen(2)`.
pub(crate) fn listen(fd: RawFd, backlog: i32) -> i32 {
    // SAFETY: a plain system call on integers.
    result(unsafe { libc::listen(fd, backlog) } as isize)
}

/// `shutdown(2)`.
pub(crate) fn shutdown(fd: RawFd, how: i32) -> i32 {
    // SAFETY: a plain system call on integers.
    result(unsafe { libc::shutdown(fd, how) } as isize)
}
