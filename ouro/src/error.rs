//! Errors: what a result code means, and the errors ouro makes itself.
//! Every error is an `io::Error`; those from the system carry its code.

use std::io;

/// Whether `err` says the task was cancelled through [`Ring::cancel`] or
/// [`Ring::cancel_all`] (`ECANCELED`).
///
/// [`Ring::cancel`]: crate::Ring::cancel
/// [`Ring::cancel_all`]: crate::Ring::cancel_all
pub fn is_canceled(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ECANCELED)
}

/// The error a cancelled task ends with (`ECANCELED`), for components on
/// the ring that end their own operations at a cancel the same way
/// ([`is_canceled`] is true of it).
pub fn canceled_error() -> io::Error {
    io::Error::from_raw_os_error(libc::ECANCELED)
}

/// The error of a task whose deadline passed: `ETIME`, or `ETIMEDOUT` where
/// there is no `ETIME` (FreeBSD).
#[cfg(not(target_os = "freebsd"))]
pub(crate) const ETIME: i32 = libc::ETIME;
/// The error of a task whose deadline passed: `ETIMEDOUT`, as FreeBSD has
/// no `ETIME`.
#[cfg(target_os = "freebsd")]
pub(crate) const ETIME: i32 = libc::ETIMEDOUT;

/// Whether `err` says the task's deadline passed (`ETIME`; `ETIMEDOUT` on
/// FreeBSD, which has no `ETIME`).
pub fn is_deadline(err: &io::Error) -> bool {
    err.raw_os_error() == Some(ETIME)
}

/// The error a task past its deadline ends with, for components on the
/// ring that end their own operations at a deadline the same way
/// ([`is_deadline`] is true of it).
pub fn deadline_error() -> io::Error {
    io::Error::from_raw_os_error(ETIME)
}

/// Stands for "the error is in `Ring::rejections`" in a result.
pub(crate) const REJECTED: i32 = i32::MIN;

/// The kernel's own error codes (`ERESTARTSYS` = 512 and up, to
/// `MAX_ERRNO`), negated: meant never to leave it, but an io_uring request
/// can end with one (a splice interrupted on a worker thread by its
/// cancellation ends with `ERESTARTSYS`). `REJECTED` lies outside.
pub(crate) const KERNEL_INTERNAL: std::ops::RangeInclusive<i32> = -4095..=-512;

/// What user space would have seen for a kernel-internal error code: a
/// restart code means the call was interrupted (by its cancellation, the
/// ring's teardown, or a stop and continue of the process or a tracer
/// attaching to it), so `EINTR`, which `finish` turns into `ECANCELED` or
/// `ETIME` for a task it cancelled and starts again otherwise;
/// `ENOIOCTLCMD` is `ENOTTY` and `ENOTSUPP` is `EOPNOTSUPP`, as the system
/// calls answer; any other becomes `EIO` rather than a number no `errno`
/// means.
#[cold]
#[inline(never)]
pub(crate) fn user_space_error(res: i32) -> i32 {
    /// Linux's `include/linux/errno.h`.
    const ERESTARTSYS: i32 = 512;
    const ERESTARTNOINTR: i32 = 513;
    const ERESTARTNOHAND: i32 = 514;
    const ENOIOCTLCMD: i32 = 515;
    const ERESTART_RESTARTBLOCK: i32 = 516;
    const ENOTSUPP: i32 = 524;
    match -res {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK => -libc::EINTR,
        ENOIOCTLCMD => -libc::ENOTTY,
        ENOTSUPP => -libc::EOPNOTSUPP,
        code => {
            tracing::warn!(code, "a kernel-internal error code reached user space");
            -libc::EIO
        }
    }
}

/// Whether a final result says the call was interrupted: `EINTR`, or a
/// restart code (io_uring hands some on as they are).
#[inline(always)]
pub(crate) fn is_interruption(res: i32) -> bool {
    res == -libc::EINTR || (-516..=-512).contains(&res)
}

/// `res` with a kernel-internal code replaced by what user space would see.
pub(crate) fn user_space_code(res: i32) -> i32 {
    if KERNEL_INTERNAL.contains(&res) {
        user_space_error(res)
    } else {
        res
    }
}

/// A backend's result as a count, fd or mask, or the OS error.
#[inline]
pub(crate) fn raw_result(res: i32) -> io::Result<u32> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as u32)
    }
}

/// A ring fd that is stale, closing or another ring's.
pub(crate) fn bad_ring_fd() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

/// An `Offset::At` beyond `i64::MAX`: no file is that large, and io_uring
/// would read `u64::MAX` as "the current position".
#[cold]
pub(crate) fn offset_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a file offset must be at most i64::MAX",
    )
}

/// Reading into no room could only read 0 bytes, which would look like end
/// of file.
pub(crate) fn no_room_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "the buffer has no spare room to read into (give the Vec some capacity)",
    )
}

/// `io::Error` is not `Clone`; ouro's errors are OS errors or simple kinds.
pub(crate) fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// The error of a message to a closed mailbox.
pub(crate) fn closed_error() -> io::Error {
    io::Error::from_raw_os_error(libc::EPIPE)
}
