//! The operations on files and other fds a ring schedules, one method
//! each: opening, reading and writing, splicing, polling and closing.

use std::io;
use std::path::Path;

use super::Ctx;
use super::Ring;
use crate::buffers::{Buf, BufVec, IntoBuf, IntoBufMut, IoBuf, IoBufMut};
use crate::error::{no_room_error, offset_error};
use crate::fd::sealed::Closing;
use crate::fd::{CloseFd, OpFd};
use crate::fs::OpenOptions;
use crate::op::{Offset, Op, PollMask};
use crate::task::Task;

impl<S> Ring<S> {
    /// Opens `path` (relative to the current directory). A path with a NUL
    /// byte fails with `InvalidInput`, options std would refuse too
    /// (see [`OpenOptions`]). Kernel: 5.6.
    pub fn open(&mut self, path: impl AsRef<Path>, options: &OpenOptions, ctx: Ctx<S>) -> Task {
        let mode = options.mode_bits();
        let op = |path, flags| Op::Open {
            dir: libc::AT_FDCWD,
            path,
            flags,
            mode,
        };
        let checked = options
            .flags()
            .and_then(|flags| Ok((self.pools.path(path.as_ref())?, flags)));
        match checked {
            Ok((path, flags)) => self.schedule(op(path, flags), ctx),
            Err(err) => self.reject(op(Vec::new(), 0), ctx, err),
        }
    }

    /// Opens `path` (relative to the current directory) as a ring fd
    /// ([`Outcome::OpenDirect`]). On io_uring (with the fixed file table,
    /// 5.19) the kernel puts the file straight into the table: no process fd at
    /// all, so [`Ring::fd`] cannot lend one ([take it out](Ring::take_fd)
    /// for calls that need one); when the table is full or missing, and on
    /// the other backends, the file is opened as [`open`](Ring::open) opens
    /// it and registered. Full counts the slots that direct operations in
    /// flight may take, since the kernel picks them as they finish: one
    /// for each direct open or socket, every free one while a [direct
    /// accept](Ring::accept_multishot_direct) runs. A path with a NUL byte
    /// fails with `InvalidInput`.
    ///
    /// [`Outcome::OpenDirect`]: crate::Outcome::OpenDirect
    pub fn open_direct(
        &mut self,
        path: impl AsRef<Path>,
        options: &OpenOptions,
        ctx: Ctx<S>,
    ) -> Task {
        let mode = options.mode_bits();
        let op = |path, flags| Op::OpenDirect {
            dir: libc::AT_FDCWD,
            path,
            flags,
            mode,
            into_table: false,
        };
        self.files.directs_live += 1;
        let checked = options
            .flags()
            .and_then(|flags| Ok((self.pools.path(path.as_ref())?, flags)));
        match checked {
            Ok((path, flags)) => {
                self.backend.ensure_fixed_table();
                self.schedule(op(path, flags), ctx)
            }
            Err(err) => self.reject(op(Vec::new(), 0), ctx, err),
        }
    }

    /// Reads into `buf`'s spare room at `offset` (a buffer without room,
    /// or an offset beyond `i64::MAX`, fails with `InvalidInput`). 0 bytes
    /// means end of file. Kernel: 5.6.
    pub fn read(
        &mut self,
        fd: impl OpFd,
        buf: impl IntoBufMut,
        offset: Offset,
        ctx: Ctx<S>,
    ) -> Task {
        let (fd, raw) = (self.op_fd(fd), offset.raw());
        let offset = raw.unwrap_or(0);
        let checked = match raw {
            Some(_) => unusable_read_buffer(buf),
            None => Err((buf.into_buf_mut().unwrap_or_else(|buf| buf), offset_error())),
        };
        match checked {
            Ok(buf) => self.schedule(Op::Read { fd, buf, offset }, ctx),
            Err((buf, err)) => self.reject(Op::Read { fd, buf, offset }, ctx, err),
        }
    }

    /// Writes `buf` at `offset`; a partial write is not an error (re-submit
    /// the rest: [`Buf::consume`](crate::Buf::consume) what was written and
    /// pass the `Buf` back). An offset beyond `i64::MAX` fails with
    /// `InvalidInput`. Kernel: 5.6.
    pub fn write(&mut self, fd: impl OpFd, buf: impl IntoBuf, offset: Offset, ctx: Ctx<S>) -> Task {
        let raw = offset.raw();
        let op = Op::Write {
            fd: self.op_fd(fd),
            buf: buf.into_buf(),
            offset: raw.unwrap_or(0),
        };
        if raw.is_none() {
            return self.reject(op, ctx, offset_error());
        }
        self.schedule(op, ctx)
    }

    /// Reads into the buffers' spare room, in order (buffers without any
    /// room, or an offset beyond `i64::MAX`, fail with `InvalidInput`).
    /// Kernel: 5.1.
    pub fn readv<B: IoBufMut>(
        &mut self,
        fd: impl OpFd,
        bufs: Vec<B>,
        offset: Offset,
        ctx: Ctx<S>,
    ) -> Task {
        let no_room = bufs.iter().all(|buf| buf.spare_len() == 0);
        let raw = offset.raw();
        let op = Op::Readv {
            fd: self.op_fd(fd),
            bufs: BufVec::new_mut(bufs),
            iov: self.pools.iov(),
            offset: raw.unwrap_or(0),
        };
        if raw.is_none() {
            return self.reject(op, ctx, offset_error());
        }
        if no_room {
            return self.reject(op, ctx, no_room_error());
        }
        self.schedule(op, ctx)
    }

    /// Writes the buffers, in order (an offset beyond `i64::MAX` fails with
    /// `InvalidInput`). Kernel: 5.1.
    pub fn writev<B: IoBuf>(
        &mut self,
        fd: impl OpFd,
        bufs: Vec<B>,
        offset: Offset,
        ctx: Ctx<S>,
    ) -> Task {
        let raw = offset.raw();
        let op = Op::Writev {
            fd: self.op_fd(fd),
            bufs: BufVec::new(bufs),
            iov: self.pools.iov(),
            offset: raw.unwrap_or(0),
        };
        if raw.is_none() {
            return self.reject(op, ctx, offset_error());
        }
        self.schedule(op, ctx)
    }

    /// Moves up to `len` bytes from `fd_in` to `fd_out`, one of which must
    /// be a pipe; `None` offsets use (and advance) the current position.
    /// An offset beyond `i64::MAX` fails with `InvalidInput`. Kernel: 5.7.
    /// On the readiness backend a blocking socket at the other end is made
    /// non-blocking for the length of each splice call (as for
    /// [`connect`](Ring::connect)), so that the splice waits for readiness
    /// where a cancel or deadline can end it. On io_uring a splice waits
    /// only if both ends block: a non-blocking end that is not ready (the
    /// ends [`pipe`](crate::pipe()) makes are) ends it with `EAGAIN` at
    /// once. Wait for readiness first ([`poll`](Ring::poll)), as
    /// [`SendFile`](crate::SendFile) does.
    pub fn splice(
        &mut self,
        fd_in: impl OpFd,
        off_in: Option<u64>,
        fd_out: impl OpFd,
        off_out: Option<u64>,
        len: u32,
        ctx: Ctx<S>,
    ) -> Task {
        // -1: the current position, as the kernel reads it.
        let offset = |o: Option<u64>| o.map_or(Some(-1), |o| i64::try_from(o).ok());
        let (off_in, off_out) = (offset(off_in), offset(off_out));
        let (fd_in, fd_out) = self.op_fds(fd_in, fd_out);
        let op = Op::Splice {
            fd_in,
            off_in: off_in.unwrap_or(-1),
            fd_out,
            off_out: off_out.unwrap_or(-1),
            len,
            flags: 0,
        };
        if off_in.is_none() || off_out.is_none() {
            return self.reject(op, ctx, offset_error());
        }
        self.schedule(op, ctx)
    }

    /// Waits until `fd` is ready for `mask`; returns the bits that are set.
    /// Kernel: 5.1.
    pub fn poll(&mut self, fd: impl OpFd, mask: PollMask, ctx: Ctx<S>) -> Task {
        let op = Op::Poll {
            fd: self.op_fd(fd),
            mask: mask.bits(),
        };
        self.schedule(op, ctx)
    }

    /// Closes `fd`: an `OwnedFd`, closed even if the task is cancelled
    /// before it reaches the kernel; or a [`RingFd`](crate::RingFd), which goes stale at
    /// once (new operations naming it fail with `EBADF`) — the tasks still
    /// naming it are cancelled, and the file is closed once the last of
    /// them has completed (their callbacks run first, with `ECANCELED` or
    /// their own result). A ring fd's close cannot be cancelled; a stale
    /// one fails with `EBADF`. Kernel: 5.6 (a fixed file: 5.15).
    pub fn close(&mut self, fd: impl CloseFd, ctx: Ctx<S>) -> Task {
        match fd.closing() {
            Closing::Owned(fd) => self.schedule(Op::Close { fd: Some(fd) }, ctx),
            Closing::Ring(fd) => self.close_ring_fd(fd, ctx),
        }
    }
}

/// A buffer a read or recv cannot use: read-only, or without spare room
/// (which would read 0 bytes and look like end of file).
pub(super) fn unusable_read_buffer(buf: impl IntoBufMut) -> Result<Buf, (Buf, io::Error)> {
    let mut buf = match buf.into_buf_mut() {
        Ok(buf) => buf,
        Err(buf) => {
            let err = io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot read into a read-only buffer",
            );
            return Err((buf, err));
        }
    };
    if buf.spare_parts().1 == 0 {
        return Err((buf, no_room_error()));
    }
    Ok(buf)
}
