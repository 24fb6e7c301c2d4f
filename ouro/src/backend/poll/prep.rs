//! From an operation to its system call: one arm per operation gives the
//! function that makes the call and the arguments it is made with (a
//! [`Call`]), and what the backend must know to wait for it.

use std::os::fd::{IntoRawFd, RawFd};

use mio::Interest;

use super::call::{Call, IoVecs, SysArgs, Unpollable};
use super::sys;
use super::OwnedFiles;
use crate::fd::{Fd, Named};
use crate::op::Op;
use crate::syscall::result;

/// Captures an operation's arguments, pointing into memory it owns; a ring
/// fd becomes the number of the fd kept in `files` (or a ring fd's close
/// takes it from there).
pub(super) fn prepare(op: &mut Op, files: &mut OwnedFiles) -> Result<Call, i32> {
    let raw = |fd: &Fd| match fd.named() {
        Named::Raw(raw) => raw,
        Named::Ring(file) => files.raw(file),
    };
    let on = |fd: RawFd| SysArgs {
        fds: [fd, -1],
        ..SysArgs::NONE
    };
    let call = match op {
        Op::Noop => Call::NOOP,
        Op::Accept { fd, addr } => {
            addr.clear();
            let args = SysArgs {
                ptrs: [addr.as_mut_ptr().cast(), (&mut addr.len as *mut u32).cast()],
                ..on(raw(fd))
            };
            Call::new(sys::accept, args).needs(Interest::READABLE)
        }
        Op::Connect { fd, addr } => Call::new(
            sys::connect,
            SysArgs {
                ptrs: [addr.as_ptr().cast_mut().cast(), std::ptr::null_mut()],
                nums: [i64::from(addr.len), 0, 0],
                ..on(raw(fd))
            },
        ),
        Op::Bind { fd, addr } => Call::new(
            sys::bind,
            SysArgs {
                ptrs: [addr.as_ptr().cast_mut().cast(), std::ptr::null_mut()],
                nums: [i64::from(addr.len), 0, 0],
                ..on(raw(fd))
            },
        ),
        Op::Listen { fd, backlog } => Call::new(
            sys::listen,
            SysArgs {
                nums: [i64::from(*backlog), 0, 0],
                ..on(raw(fd))
            },
        ),
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
        } => Call::new(
            sys::socket,
            SysArgs {
                flags: *ty,
                nums: [i64::from(*domain), i64::from(*protocol), 0],
                ..SysArgs::NONE
            },
        ),
        Op::Send { fd, buf, flags } => {
            let (ptr, len) = buf.raw_parts();
            let args = SysArgs {
                iov: IoVecs::one(ptr, len),
                flags: *flags,
                ..on(raw(fd))
            };
            Call {
                asked: len,
                ..Call::new(sys::send, args).needs(Interest::WRITABLE)
            }
        }
        Op::Recv { fd, buf, flags } => {
            let (ptr, len) = buf.spare_parts();
            let args = SysArgs {
                iov: IoVecs::one(ptr, len),
                flags: *flags,
                ..on(raw(fd))
            };
            Call {
                asked: len,
                read_hint: true,
                ..Call::new(sys::recv, args).needs(Interest::READABLE)
            }
        }
        Op::Read { fd, buf, offset } => {
            let (ptr, len) = buf.spare_parts();
            Call {
                asked: len,
                ..read(raw(fd), IoVecs::one(ptr, len), *offset)
            }
        }
        Op::Write { fd, buf, offset } => {
            let (ptr, len) = buf.raw_parts();
            Call {
                asked: len,
                ..write(raw(fd), IoVecs::one(ptr, len), *offset)
            }
        }
        Op::Readv {
            fd,
            bufs,
            iov,
            offset,
        } => {
            bufs.fill_iovecs(iov, true);
            read(raw(fd), IoVecs::Many(iov.as_ptr(), iov.len()), *offset)
        }
        Op::Writev {
            fd,
            bufs,
            iov,
            offset,
        } => {
            bufs.fill_iovecs(iov, false);
            write(raw(fd), IoVecs::Many(iov.as_ptr(), iov.len()), *offset)
        }
        Op::Close { fd } => {
            let owned = fd.take().ok_or(-libc::EBADF)?;
            close(owned.into_raw_fd())
        }
        Op::CloseRing { file } => {
            let owned = files.take(*file).ok_or(-libc::EBADF)?;
            close(owned.into_raw_fd())
        }
        Op::Poll { fd, mask } => Call {
            unpollable: Unpollable::WaitsForever,
            ..Call::new(
                sys::poll,
                SysArgs {
                    nums: [i64::from(*mask), 0, 0],
                    ..on(raw(fd))
                },
            )
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
        } => Call {
            makes_fd: true,
            ..Call::on_pool(
                sys::open,
                SysArgs {
                    paths: [path.as_ptr().cast(), std::ptr::null()],
                    flags: *flags,
                    nums: [i64::from(*mode), 0, 0],
                    ..on(*dir)
                },
            )
        },
        Op::Stat {
            dir,
            path,
            flags,
            out,
        } => Call::on_pool(
            |a| sys::stat(a.fds[0], a.paths[0], a.flags, a.ptrs[0].cast()),
            SysArgs {
                fds: [*dir, -1],
                paths: [path.as_ptr().cast(), std::ptr::null()],
                flags: *flags,
                ptrs: [
                    (&mut **out as *mut crate::op::StatBuf).cast(),
                    std::ptr::null_mut(),
                ],
                ..SysArgs::NONE
            },
        ),
        Op::Fsync { fd, datasync } => Call::on_pool(
            |a| sys::fsync(a.fds[0], a.flags != 0),
            SysArgs {
                fds: [raw(fd), -1],
                flags: i32::from(*datasync),
                ..SysArgs::NONE
            },
        ),
        Op::Ftruncate { fd, len } => Call::on_pool(
            |a| {
                // SAFETY: plain system call on integers.
                let res = unsafe { libc::ftruncate(a.fds[0], a.nums[0]) };
                result(res as isize)
            },
            SysArgs {
                fds: [raw(fd), -1],
                nums: [*len as i64, 0, 0],
                ..SysArgs::NONE
            },
        ),
        Op::Unlink { path, flags } => Call::on_pool(
            |a| {
                // SAFETY: `paths[0]` is the op's NUL-terminated path.
                let res = unsafe { libc::unlinkat(libc::AT_FDCWD, a.paths[0], a.flags) };
                result(res as isize)
            },
            SysArgs {
                paths: [path.as_ptr().cast(), std::ptr::null()],
                flags: *flags,
                ..SysArgs::NONE
            },
        ),
        Op::Rename { from, to } => Call::on_pool(
            |a| {
                let cwd = libc::AT_FDCWD;
                // SAFETY: `paths` are the op's NUL-terminated paths.
                let res = unsafe { libc::renameat(cwd, a.paths[0], cwd, a.paths[1]) };
                result(res as isize)
            },
            SysArgs {
                paths: [from.as_ptr().cast(), to.as_ptr().cast()],
                ..SysArgs::NONE
            },
        ),
        Op::Mkdir { path, mode } => Call::on_pool(
            |a| {
                let mode = a.nums[0] as libc::mode_t;
                // SAFETY: `paths[0]` is the op's NUL-terminated path.
                let res = unsafe { libc::mkdirat(libc::AT_FDCWD, a.paths[0], mode) };
                result(res as isize)
            },
            SysArgs {
                paths: [path.as_ptr().cast(), std::ptr::null()],
                nums: [i64::from(*mode), 0, 0],
                ..SysArgs::NONE
            },
        ),
        Op::Symlink { target, link } => Call::on_pool(
            |a| {
                // SAFETY: `paths` are the op's NUL-terminated paths.
                let res = unsafe { libc::symlinkat(a.paths[0], libc::AT_FDCWD, a.paths[1]) };
                result(res as isize)
            },
            SysArgs {
                paths: [target.as_ptr().cast(), link.as_ptr().cast()],
                ..SysArgs::NONE
            },
        ),
        Op::HardLink { original, link } => Call::on_pool(
            |a| {
                let cwd = libc::AT_FDCWD;
                // SAFETY: `paths` are the op's NUL-terminated paths.
                let res = unsafe { libc::linkat(cwd, a.paths[0], cwd, a.paths[1], 0) };
                result(res as isize)
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
        } => Call::on_pool(
            fallocate,
            SysArgs {
                fds: [raw(fd), -1],
                flags: *mode,
                nums: [*offset as i64, *len as i64, 0],
                ..SysArgs::NONE
            },
        ),
        Op::Fadvise {
            fd,
            offset,
            len,
            advice,
        } => Call::on_pool(
            fadvise,
            SysArgs {
                fds: [raw(fd), -1],
                flags: advice_number(*advice),
                nums: [*offset as i64, *len as i64, 0],
                ..SysArgs::NONE
            },
        ),
        Op::Madvise { buf, advice } => {
            let (ptr, len) = buf.raw_parts();
            let (start, len) = crate::backend::whole_pages(ptr, len);
            Call::on_pool(
                |a| {
                    let len = a.nums[0] as usize;
                    // SAFETY: `ptrs[0]` and `len` are the whole pages inside
                    // the buffer the op owns; the advice offered never
                    // changes their contents.
                    result(unsafe { libc::madvise(a.ptrs[0], len, a.flags) } as isize)
                },
                SysArgs {
                    flags: advice.raw(),
                    nums: [len as i64, 0, 0],
                    ptrs: [start.cast_mut().cast(), std::ptr::null_mut()],
                    ..SysArgs::NONE
                },
            )
        }
        Op::StatFd { fd, out } => Call::on_pool(
            |a| sys::fstat(a.fds[0], a.ptrs[0].cast()),
            SysArgs {
                fds: [raw(fd), -1],
                ptrs: [
                    (&mut **out as *mut crate::op::StatBuf).cast(),
                    std::ptr::null_mut(),
                ],
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
        } => Call {
            unpollable: Unpollable::OtherEnd,
            ..Call::new(
                sys::try_splice,
                SysArgs {
                    fds: [raw(fd_in), raw(fd_out)],
                    flags: *flags as i32,
                    nums: [*off_in, *off_out, i64::from(*len)],
                    ..SysArgs::NONE
                },
            )
            .or_on_pool(sys::splice_blocking)
        },
        Op::Shutdown { fd, how } => Call::new(
            sys::shutdown,
            SysArgs {
                nums: [i64::from(*how), 0, 0],
                ..on(raw(fd))
            },
        ),
        Op::SendMsg {
            fd,
            bufs,
            msg,
            flags,
        } => {
            bufs.fill_iovecs(&mut msg.iov, false);
            msg.prepare(false);
            send_msg(raw(fd), &mut msg.hdr, *flags)
        }
        Op::RecvMsg {
            fd,
            bufs,
            msg,
            flags,
        } => {
            bufs.fill_iovecs(&mut msg.iov, true);
            msg.prepare(true);
            recv_msg(raw(fd), &mut msg.hdr, *flags)
        }
        Op::SendTo { fd, buf, msg } => {
            let (ptr, len) = buf.raw_parts();
            msg.prepare_one(ptr.cast_mut(), len, false);
            send_msg(raw(fd), &mut msg.hdr, libc::MSG_NOSIGNAL)
        }
        Op::RecvFrom { fd, buf, msg } => {
            let (ptr, len) = buf.spare_parts();
            msg.prepare_one(ptr, len, true);
            recv_msg(raw(fd), &mut msg.hdr, 0)
        }
        Op::AcceptMulti { fd } | Op::AcceptDirect { fd, .. } => {
            Call::new(sys::accept_multi, on(raw(fd))).needs(Interest::READABLE)
        }
        Op::RecvMulti { fd, group, .. } => {
            let args = SysArgs {
                ptrs: [
                    std::rc::Rc::as_ptr(group).cast_mut().cast(),
                    std::ptr::null_mut(),
                ],
                ..on(raw(fd))
            };
            Call {
                asked: group.size(),
                ..Call::new(sys::recv_multi, args).needs(Interest::READABLE)
            }
        }
        Op::Timer { .. }
        | Op::Cancel
        | Op::CancelAll { .. }
        | Op::MsgRing { .. }
        | Op::SendFd { .. }
        | Op::StopThread { .. } => return Err(-libc::EINVAL),
    };
    Ok(call)
}

/// A read of `fd` into `iov` at `offset` (`u64::MAX`: the fd's position).
fn read(fd: RawFd, iov: IoVecs, offset: u64) -> Call {
    let offset = offset as i64;
    let args = SysArgs {
        fds: [fd, -1],
        iov,
        nums: [offset, 0, 0],
        ..SysArgs::NONE
    };
    Call {
        // Only at the fd's position: an error the offset alone causes
        // (`ESPIPE` on a socket, `EINVAL` past `i64::MAX`) must come at
        // once, not when the fd turns readable.
        read_hint: offset <= 0,
        unpollable: Unpollable::ToPool,
        ..Call::new(sys::try_read, args)
            .or_on_pool(sys::read_blocking)
            .needs(Interest::READABLE)
            .at_offset(offset)
    }
}

/// A write, as [`read`] reads.
fn write(fd: RawFd, iov: IoVecs, offset: u64) -> Call {
    let offset = offset as i64;
    let args = SysArgs {
        fds: [fd, -1],
        iov,
        nums: [offset, 0, 0],
        ..SysArgs::NONE
    };
    Call {
        unpollable: Unpollable::ToPool,
        ..Call::new(sys::try_write, args)
            .or_on_pool(sys::write_blocking)
            .needs(Interest::WRITABLE)
            .at_offset(offset)
    }
}

/// The close of `fd`, which the operation gave up.
fn close(fd: RawFd) -> Call {
    let args = SysArgs {
        fds: [fd, -1],
        ..SysArgs::NONE
    };
    Call {
        closes_fd: true,
        ..Call::new(sys::close, args)
    }
}

/// A `sendmsg` of the operation's header `hdr` on `fd`.
fn send_msg(fd: RawFd, hdr: &mut libc::msghdr, flags: i32) -> Call {
    let args = SysArgs {
        fds: [fd, -1],
        ptrs: [(hdr as *mut libc::msghdr).cast(), std::ptr::null_mut()],
        flags,
        ..SysArgs::NONE
    };
    Call::new(sys::send_msg, args).needs(Interest::WRITABLE)
}

/// A `recvmsg` into the operation's header `hdr` from `fd`.
fn recv_msg(fd: RawFd, hdr: &mut libc::msghdr, flags: i32) -> Call {
    let args = SysArgs {
        fds: [fd, -1],
        ptrs: [(hdr as *mut libc::msghdr).cast(), std::ptr::null_mut()],
        flags,
        ..SysArgs::NONE
    };
    Call::new(sys::recv_msg, args).needs(Interest::READABLE)
}

/// `fallocate(2)` of `fds[0]` in mode `flags`, at `nums[0]` for `nums[1]`
/// bytes.
#[cfg(target_os = "linux")]
fn fallocate(a: &mut SysArgs) -> i32 {
    let [offset, len, _] = a.nums;
    // SAFETY: plain system call on integers.
    result(unsafe { libc::fallocate(a.fds[0], a.flags, offset, len) } as isize)
}

/// Only Linux has `fallocate(2)`; `posix_fallocate` has no modes.
#[cfg(not(target_os = "linux"))]
fn fallocate(_: &mut SysArgs) -> i32 {
    -libc::EOPNOTSUPP
}

/// `posix_fadvise(2)` of `fds[0]` with advice `flags`, at `nums[0]` for
/// `nums[1]` bytes.
#[cfg(target_os = "linux")]
fn fadvise(a: &mut SysArgs) -> i32 {
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
fn fadvise(_: &mut SysArgs) -> i32 {
    -libc::EOPNOTSUPP
}

#[cfg(not(target_os = "linux"))]
fn advice_number(_: crate::fs::Advice) -> i32 {
    0
}
