//! From an operation to the system call the backend attempts (`Call`),
//! and what a call needs to wait for.

use std::os::fd::{IntoRawFd, RawFd};

use mio::Interest;

use super::sys::{self, Call, Connecting, IoVecs, Rw, SysArgs};
use super::OwnedFiles;
use crate::fd::{Fd, Named};
use crate::op::Op;

/// The fd of a read or write at the fd's current position (whose order
/// matters).
pub(super) fn at_position(call: &Call) -> Option<RawFd> {
    match call {
        Call::Read { fd, offset, .. } | Call::Write { fd, offset, .. }
            if *offset < 0 && *fd >= 0 =>
        {
            Some(*fd)
        }
        _ => None,
    }
}

/// The fd and readiness an operation needs before it can make progress,
/// for the calls that fail with `EAGAIN` until then.
pub(super) fn needs(call: &Call) -> Option<(RawFd, Interest)> {
    match *call {
        Call::Recv { fd, .. }
        | Call::RecvMsg { fd, .. }
        | Call::Read { fd, .. }
        | Call::Accept { fd, .. }
        | Call::AcceptMulti { fd }
        | Call::RecvMulti { fd, .. } => Some((fd, Interest::READABLE)),
        Call::Send { fd, .. } | Call::SendMsg { fd, .. } | Call::Write { fd, .. } => {
            Some((fd, Interest::WRITABLE))
        }
        _ => None,
    }
    .filter(|&(fd, _)| fd >= 0)
}

/// The fd of a read that keeps the per-fd "was empty" hint.
pub(super) fn read_hint(call: &Call) -> Option<RawFd> {
    match call {
        Call::Recv { fd, .. } | Call::Read { fd, .. } if *fd >= 0 => Some(*fd),
        _ => None,
    }
}

/// Captures an operation's arguments, pointing into memory it owns; a ring
/// fd becomes the number of the fd kept in `files` (or a ring fd's close
/// takes it from there).
pub(super) fn prepare(op: &mut Op, files: &mut OwnedFiles) -> Result<Call, i32> {
    let offset = |o: u64| o as i64;
    let raw = |fd: &Fd| match fd.named() {
        Named::Raw(raw) => raw,
        Named::Ring(file) => files.raw(file),
    };
    let call = match op {
        Op::Noop => Call::Noop,
        Op::Accept { fd, addr } => {
            addr.clear();
            Call::Accept {
                fd: raw(fd),
                addr: addr.as_mut_ptr(),
                len: &mut addr.len,
            }
        }
        Op::Connect { fd, addr } => Call::Connect {
            fd: raw(fd),
            addr: addr.as_ptr(),
            len: addr.len,
            state: Connecting::Start,
        },
        Op::Bind { fd, addr } => Call::Bind {
            fd: raw(fd),
            addr: addr.as_ptr(),
            len: addr.len,
        },
        Op::Listen { fd, backlog } => Call::Listen {
            fd: raw(fd),
            backlog: *backlog,
        },
        Op::Socket {
            domain,
            ty,
            protocol,
        }
        | Op::SocketDirect {
            domain,
            ty,
            protocol,
            ..
        } => Call::Socket {
            domain: *domain,
            ty: *ty,
            protocol: *protocol,
        },
        Op::Send { fd, buf, flags } => {
            let (ptr, len) = buf.raw_parts();
            Call::Send {
                fd: raw(fd),
                ptr,
                len,
                flags: *flags,
            }
        }
        Op::Recv { fd, buf, flags } => {
            let (ptr, len) = buf.spare_parts();
            Call::Recv {
                fd: raw(fd),
                ptr,
                len,
                flags: *flags,
            }
        }
        Op::Read { fd, buf, offset: o } => {
            let (ptr, len) = buf.spare_parts();
            Call::Read {
                fd: raw(fd),
                iov: IoVecs::one(ptr, len),
                offset: offset(*o),
                rw: Rw::FIRST,
            }
        }
        Op::Write { fd, buf, offset: o } => {
            let (ptr, len) = buf.raw_parts();
            Call::Write {
                fd: raw(fd),
                iov: IoVecs::one(ptr, len),
                offset: offset(*o),
                rw: Rw::FIRST,
            }
        }
        Op::Readv {
            fd,
            bufs,
            iov,
            offset: o,
        } => {
            bufs.fill_iovecs(iov, true);
            Call::Read {
                fd: raw(fd),
                iov: IoVecs::Many(iov.as_ptr(), iov.len()),
                offset: offset(*o),
                rw: Rw::FIRST,
            }
        }
        Op::Writev {
            fd,
            bufs,
            iov,
            offset: o,
        } => {
            bufs.fill_iovecs(iov, false);
            Call::Write {
                fd: raw(fd),
                iov: IoVecs::Many(iov.as_ptr(), iov.len()),
                offset: offset(*o),
                rw: Rw::FIRST,
            }
        }
        Op::Close { fd } => {
            let owned = fd.take().ok_or(-libc::EBADF)?;
            Call::Close {
                fd: owned.into_raw_fd(),
            }
        }
        Op::CloseRing { file } => {
            let owned = files.take(*file).ok_or(-libc::EBADF)?;
            Call::Close {
                fd: owned.into_raw_fd(),
            }
        }
        Op::Poll { fd, mask } => Call::Poll {
            fd: raw(fd),
            mask: *mask,
        },
        Op::Open {
            dir,
            path,
            flags,
            mode,
        }
        | Op::OpenDirect {
            dir,
            path,
            flags,
            mode,
            ..
        } => Call::Open {
            dir: *dir,
            path: path.as_ptr().cast(),
            flags: *flags,
            mode: *mode,
        },
        Op::Stat {
            dir,
            path,
            flags,
            out,
        } => blocking(
            |a| sys::stat(a.fds[0], a.paths[0], a.flags, a.out.cast()),
            SysArgs {
                fds: [*dir, -1],
                paths: [path.as_ptr().cast(), std::ptr::null()],
                flags: *flags,
                out: (&mut **out as *mut crate::op::StatBuf).cast(),
                ..SysArgs::NONE
            },
        ),
        Op::Fsync { fd, datasync } => blocking(
            |a| sys::fsync(a.fds[0], a.flags != 0),
            SysArgs {
                fds: [raw(fd), -1],
                flags: i32::from(*datasync),
                ..SysArgs::NONE
            },
        ),
        Op::Ftruncate { fd, len } => blocking(
            |a| {
                // SAFETY: plain system call on integers.
                let res = unsafe { libc::ftruncate(a.fds[0], a.nums[0] as libc::off_t) };
                sys::result(res as isize)
            },
            SysArgs {
                fds: [raw(fd), -1],
                nums: [*len, 0],
                ..SysArgs::NONE
            },
        ),
        Op::Unlink { path, flags } => blocking(
            |a| {
                // SAFETY: `paths[0]` is the op's NUL-terminated path.
                let res = unsafe { libc::unlinkat(libc::AT_FDCWD, a.paths[0], a.flags) };
                sys::result(res as isize)
            },
            SysArgs {
                paths: [path.as_ptr().cast(), std::ptr::null()],
                flags: *flags,
                ..SysArgs::NONE
            },
        ),
        Op::Rename { from, to } => blocking(
            |a| {
                let cwd = libc::AT_FDCWD;
                // SAFETY: `paths` are the op's NUL-terminated paths.
                let res = unsafe { libc::renameat(cwd, a.paths[0], cwd, a.paths[1]) };
                sys::result(res as isize)
            },
            SysArgs {
                paths: [from.as_ptr().cast(), to.as_ptr().cast()],
                ..SysArgs::NONE
            },
        ),
        Op::Mkdir { path, mode } => blocking(
            |a| {
                let mode = a.nums[0] as libc::mode_t;
                // SAFETY: `paths[0]` is the op's NUL-terminated path.
                let res = unsafe { libc::mkdirat(libc::AT_FDCWD, a.paths[0], mode) };
                sys::result(res as isize)
            },
            SysArgs {
                paths: [path.as_ptr().cast(), std::ptr::null()],
                nums: [u64::from(*mode), 0],
                ..SysArgs::NONE
            },
        ),
        Op::Symlink { target, link } => blocking(
            |a| {
                // SAFETY: `paths` are the op's NUL-terminated paths.
                let res = unsafe { libc::symlinkat(a.paths[0], libc::AT_FDCWD, a.paths[1]) };
                sys::result(res as isize)
            },
            SysArgs {
                paths: [target.as_ptr().cast(), link.as_ptr().cast()],
                ..SysArgs::NONE
            },
        ),
        Op::HardLink { original, link } => blocking(
            |a| {
                let cwd = libc::AT_FDCWD;
                // SAFETY: `paths` are the op's NUL-terminated paths.
                let res = unsafe { libc::linkat(cwd, a.paths[0], cwd, a.paths[1], 0) };
                sys::result(res as isize)
            },
            SysArgs {
                paths: [original.as_ptr().cast(), link.as_ptr().cast()],
                ..SysArgs::NONE
            },
        ),
        Op::Fallocate {
            fd,
            mode,
            offset,
            len,
        } => blocking(
            fallocate,
            SysArgs {
                fds: [raw(fd), -1],
                flags: *mode,
                nums: [*offset, *len],
                ..SysArgs::NONE
            },
        ),
        Op::Fadvise {
            fd,
            offset,
            len,
            advice,
        } => blocking(
            fadvise,
            SysArgs {
                fds: [raw(fd), -1],
                flags: advice_number(*advice),
                nums: [*offset, *len],
                ..SysArgs::NONE
            },
        ),
        Op::Madvise { buf, advice } => {
            let (ptr, len) = buf.raw_parts();
            let (start, len) = crate::backend::whole_pages(ptr, len);
            blocking(
                |a| {
                    let len = a.nums[0] as usize;
                    // SAFETY: `out` and `len` are the whole pages inside the
                    // buffer the op owns; the advice offered never changes
                    // their contents.
                    sys::result(unsafe { libc::madvise(a.out, len, a.flags) } as isize)
                },
                SysArgs {
                    flags: advice.raw(),
                    nums: [len as u64, 0],
                    out: start.cast_mut().cast(),
                    ..SysArgs::NONE
                },
            )
        }
        Op::StatFd { fd, out } => blocking(
            |a| sys::fstat(a.fds[0], a.out.cast()),
            SysArgs {
                fds: [raw(fd), -1],
                out: (&mut **out as *mut crate::op::StatBuf).cast(),
                ..SysArgs::NONE
            },
        ),
        Op::Splice {
            fd_in,
            off_in,
            fd_out,
            off_out,
            len,
            flags,
        } => Call::Splice {
            fd_in: raw(fd_in),
            off_in: *off_in,
            fd_out: raw(fd_out),
            off_out: *off_out,
            len: *len,
            flags: *flags,
            wait_out: false,
        },
        Op::Shutdown { fd, how } => Call::Shutdown {
            fd: raw(fd),
            how: *how,
        },
        Op::SendMsg {
            fd,
            bufs,
            msg,
            flags,
        } => {
            bufs.fill_iovecs(&mut msg.iov, false);
            msg.prepare(false);
            Call::SendMsg {
                fd: raw(fd),
                msg: &msg.hdr,
                flags: *flags,
            }
        }
        Op::RecvMsg {
            fd,
            bufs,
            msg,
            flags,
        } => {
            bufs.fill_iovecs(&mut msg.iov, true);
            msg.prepare(true);
            Call::RecvMsg {
                fd: raw(fd),
                msg: &mut msg.hdr,
                flags: *flags,
            }
        }
        Op::SendTo { fd, buf, msg } => {
            let (ptr, len) = buf.raw_parts();
            msg.prepare_one(ptr.cast_mut(), len, false);
            Call::SendMsg {
                fd: raw(fd),
                msg: &msg.hdr,
                flags: libc::MSG_NOSIGNAL,
            }
        }
        Op::RecvFrom { fd, buf, msg } => {
            let (ptr, len) = buf.spare_parts();
            msg.prepare_one(ptr, len, true);
            Call::RecvMsg {
                fd: raw(fd),
                msg: &mut msg.hdr,
                flags: 0,
            }
        }
        Op::AcceptMulti { fd } | Op::AcceptDirect { fd, .. } => Call::AcceptMulti { fd: raw(fd) },
        Op::RecvMulti { fd, group, .. } => Call::RecvMulti {
            fd: raw(fd),
            group: std::rc::Rc::as_ptr(group),
        },
        Op::Timer { .. }
        | Op::Cancel
        | Op::CancelAll { .. }
        | Op::MsgRing { .. }
        | Op::SendFd { .. }
        | Op::StopThread { .. } => return Err(-libc::EINVAL),
    };
    Ok(call)
}

/// A call a pool thread makes: `run` on `args`.
fn blocking(run: fn(&SysArgs) -> i32, args: SysArgs) -> Call {
    Call::Blocking { run, args }
}

/// `fallocate(2)` of `fds[0]` in mode `flags`, at `nums[0]` for `nums[1]`
/// bytes.
#[cfg(target_os = "linux")]
fn fallocate(a: &SysArgs) -> i32 {
    let (offset, len) = (a.nums[0] as libc::off_t, a.nums[1] as libc::off_t);
    // SAFETY: plain system call on integers.
    sys::result(unsafe { libc::fallocate(a.fds[0], a.flags, offset, len) } as isize)
}

/// Only Linux has `fallocate(2)`; `posix_fallocate` has no modes.
#[cfg(not(target_os = "linux"))]
fn fallocate(_: &SysArgs) -> i32 {
    -libc::EOPNOTSUPP
}

/// `posix_fadvise(2)` of `fds[0]` with advice `flags`, at `nums[0]` for
/// `nums[1]` bytes.
#[cfg(target_os = "linux")]
fn fadvise(a: &SysArgs) -> i32 {
    let (offset, len) = (a.nums[0] as libc::off_t, a.nums[1] as libc::off_t);
    // SAFETY: plain system call on integers.
    let res = unsafe { libc::posix_fadvise(a.fds[0], offset, len, a.flags) };
    // posix_fadvise returns the error number rather than setting errno.
    -res
}

/// The number `posix_fadvise(2)` takes for `advice`.
#[cfg(target_os = "linux")]
fn advice_number(advice: crate::fs::Advice) -> i32 {
    advice.raw()
}

/// Only Linux has `posix_fadvise(2)` among the readiness backend's systems.
#[cfg(not(target_os = "linux"))]
fn fadvise(_: &SysArgs) -> i32 {
    -libc::EOPNOTSUPP
}

#[cfg(not(target_os = "linux"))]
fn advice_number(_: crate::fs::Advice) -> i32 {
    0
}
