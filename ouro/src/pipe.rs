//! Pipes: both ends close-on-exec and non-blocking, as owned fds or as the
//! ring's.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::fd::RingFd;
use crate::ring::{Ctx, Ring};

/// The two ends of a new pipe, made by [`pipe`]: whatever is written to
/// `writer` is read from `reader`.
#[derive(Debug)]
pub struct Pipe {
    /// The end to read (or splice) from.
    pub reader: OwnedFd,
    /// The end to write (or splice) to.
    pub writer: OwnedFd,
}

/// The two ends of a pipe handed to a ring ([`Pipe::register`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingPipe {
    /// The end to read (or splice) from.
    pub reader: RingFd,
    /// The end to write (or splice) to.
    pub writer: RingFd,
}

/// Makes a pipe whose ends are close-on-exec (a child process does not
/// inherit them) and non-blocking.
///
/// Non-blocking because the readiness backend makes one attempt at a call
/// and then waits for readiness in its loop: where no flag asks a single
/// call not to wait (reads and writes on a pipe outside Linux, a splice's
/// pipe end), a blocking pipe would make that attempt wait inside the
/// call, and every other task of the ring with it. io_uring waits either
/// way, but in a splice: there a non-blocking end that is not ready ends
/// the splice with `EAGAIN` (see [`Ring::splice`](crate::Ring::splice)).
///
/// On Linux and FreeBSD both flags are set atomically (`pipe2`); on macOS,
/// which has no `pipe2`, right after `pipe`, so a process forked by another
/// thread in between may inherit the ends.
///
/// Fails with the OS error, e.g. `EMFILE` when the process has no fd left
/// (`RLIMIT_NOFILE`) or `ENFILE` when the system has none.
pub fn pipe() -> io::Result<Pipe> {
    let [reader, writer] = new_pipe()?;
    // SAFETY: the pipe call succeeded: both are new fds that nothing else
    // owns.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(reader), OwnedFd::from_raw_fd(writer)) };
    #[cfg(target_vendor = "apple")]
    for fd in [&reader, &writer] {
        set_cloexec_nonblock(fd)?;
    }
    Ok(Pipe { reader, writer })
}

impl Pipe {
    /// Hands both ends to `ring` for good (see
    /// [`Ring::register_fd`]): on io_uring they go into its fixed file
    /// table, on the readiness backend their registration is made once.
    /// Close them with [`RingPipe::close`] (or each with [`Ring::close`]).
    pub fn register<S>(self, ring: &mut Ring<S>) -> RingPipe {
        RingPipe {
            reader: ring.register_fd(self.reader),
            writer: ring.register_fd(self.writer),
        }
    }
}

impl RingPipe {
    /// Closes both ends, after the tasks still naming them (which are
    /// cancelled: see [`Ring::close`]); nothing is reported.
    pub fn close<S>(self, ring: &mut Ring<S>) {
        ring.close(self.reader, Ctx::none());
        ring.close(self.writer, Ctx::none());
    }
}

#[cfg(not(target_vendor = "apple"))]
fn new_pipe() -> io::Result<[RawFd; 2]> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    let res = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fds)
}

#[cfg(target_vendor = "apple")]
fn new_pipe() -> io::Result<[RawFd; 2]> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two fds pipe writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fds)
}

#[cfg(target_vendor = "apple")]
fn set_cloexec_nonblock(fd: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    let ok = unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) >= 0
            && libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) >= 0
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
