//! The file-system operations a ring schedules (besides open, read and
//! write), one method each, and the advice about files and memory.

use std::path::Path;

use super::Ctx;
use super::Ring;
use crate::buffers::IntoBuf;
use crate::error::offset_error;
use crate::fd::OpFd;
use crate::fs::{Advice, MemoryAdvice};
use crate::op::Op;
use crate::task::Task;

impl<S> Ring<S> {
    /// The metadata of `path`, following symbolic links. Kernel: 5.6.
    pub fn stat(&mut self, path: impl AsRef<Path>, ctx: Ctx<S>) -> Task {
        self.statx(path.as_ref(), 0, ctx)
    }

    /// The metadata of `path` itself, even if it is a symbolic link.
    /// Kernel: 5.6.
    pub fn lstat(&mut self, path: impl AsRef<Path>, ctx: Ctx<S>) -> Task {
        self.statx(path.as_ref(), libc::AT_SYMLINK_NOFOLLOW, ctx)
    }

    fn statx(&mut self, path: &Path, flags: i32, ctx: Ctx<S>) -> Task {
        let out = self.pools.stat();
        match self.pools.path(path) {
            Ok(path) => self.schedule(
                Op::Stat {
                    dir: libc::AT_FDCWD,
                    path,
                    flags,
                    out,
                },
                ctx,
            ),
            Err(err) => self.reject(
                Op::Stat {
                    dir: libc::AT_FDCWD,
                    path: Vec::new(),
                    flags,
                    out,
                },
                ctx,
                err,
            ),
        }
    }

    /// Flushes a file's data and metadata to its device. Kernel: 5.1.
    pub fn fsync(&mut self, fd: impl OpFd, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        self.schedule(
            Op::Fsync {
                fd,
                datasync: false,
            },
            ctx,
        )
    }

    /// Flushes a file's data (and the metadata needed to read it back).
    /// Kernel: 5.1.
    pub fn fdatasync(&mut self, fd: impl OpFd, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        self.schedule(Op::Fsync { fd, datasync: true }, ctx)
    }

    /// Sets the length of a file open for writing: cut, or extended with
    /// zeros. A length beyond `i64::MAX` fails with `InvalidInput`.
    /// Kernel: 6.9 (older: `Unsupported` on io_uring).
    pub fn ftruncate(&mut self, fd: impl OpFd, len: u64, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        let op = Op::Ftruncate { fd, len };
        if i64::try_from(len).is_err() {
            return self.reject(op, ctx, offset_error());
        }
        self.schedule(op, ctx)
    }

    /// Removes the name `path` (relative to the current directory) of a
    /// file, symbolic link or other non-directory, as `unlink(2)`. A path
    /// with a NUL byte fails with `InvalidInput`. Kernel: 5.11.
    pub fn unlink(&mut self, path: impl AsRef<Path>, ctx: Ctx<S>) -> Task {
        self.with_path(path.as_ref(), |path| Op::Unlink { path, flags: 0 }, ctx)
    }

    /// Removes the empty directory `path`, as `rmdir(2)`. Kernel: 5.11.
    pub fn remove_dir(&mut self, path: impl AsRef<Path>, ctx: Ctx<S>) -> Task {
        let flags = libc::AT_REMOVEDIR;
        self.with_path(path.as_ref(), |path| Op::Unlink { path, flags }, ctx)
    }

    /// Schedules the op `make` builds around `path` (NUL-terminated), or
    /// rejects it when the path holds a NUL byte.
    fn with_path(&mut self, path: &Path, make: impl FnOnce(Vec<u8>) -> Op, ctx: Ctx<S>) -> Task {
        match self.pools.path(path) {
            Ok(path) => self.schedule(make(path), ctx),
            Err(err) => self.reject(make(Vec::new()), ctx, err),
        }
    }

    /// Renames `from` to `to` (both relative to the current directory),
    /// replacing what `to` names, as `rename(2)`. A path with a NUL byte
    /// fails with `InvalidInput`. Kernel: 5.11.
    pub fn rename(&mut self, from: impl AsRef<Path>, to: impl AsRef<Path>, ctx: Ctx<S>) -> Task {
        let make = |from, to| Op::Rename { from, to };
        self.with_paths(from.as_ref(), to.as_ref(), make, ctx)
    }

    /// [`with_path`](Self::with_path) for an op that names two paths.
    fn with_paths(
        &mut self,
        first: &Path,
        second: &Path,
        make: impl FnOnce(Vec<u8>, Vec<u8>) -> Op,
        ctx: Ctx<S>,
    ) -> Task {
        match (self.pools.path(first), self.pools.path(second)) {
            (Ok(first), Ok(second)) => self.schedule(make(first, second), ctx),
            (Err(err), other) | (other, Err(err)) => {
                let kept = other.unwrap_or_default();
                self.reject(make(kept, Vec::new()), ctx, err)
            }
        }
    }

    /// Makes the directory `path` with permission bits `mode` (before the
    /// umask), as `mkdir(2)`. A path with a NUL byte fails with
    /// `InvalidInput`. Kernel: 5.15 (older: `Unsupported` on io_uring).
    pub fn mkdir(&mut self, path: impl AsRef<Path>, mode: u32, ctx: Ctx<S>) -> Task {
        self.with_path(path.as_ref(), |path| Op::Mkdir { path, mode }, ctx)
    }

    /// Makes a symbolic link at `link` that points to `target` (kept as
    /// given, not resolved), as `symlink(2)`. A path with a NUL byte fails
    /// with `InvalidInput`. Kernel: 5.15 (older:
    /// `Unsupported` on io_uring).
    pub fn symlink(
        &mut self,
        target: impl AsRef<Path>,
        link: impl AsRef<Path>,
        ctx: Ctx<S>,
    ) -> Task {
        let make = |target, link| Op::Symlink { target, link };
        self.with_paths(target.as_ref(), link.as_ref(), make, ctx)
    }

    /// Gives the file `original` names a new name, `link`, as `link(2)`
    /// (`linkat` without following a symbolic link `original`). A path
    /// with a NUL byte fails with `InvalidInput`. Kernel: 5.15 (older:
    /// `Unsupported` on io_uring).
    pub fn hard_link(
        &mut self,
        original: impl AsRef<Path>,
        link: impl AsRef<Path>,
        ctx: Ctx<S>,
    ) -> Task {
        let make = |original, link| Op::HardLink { original, link };
        self.with_paths(original.as_ref(), link.as_ref(), make, ctx)
    }

    /// Allocates disk space for `len` bytes of a file open for writing from
    /// `offset`, as `fallocate(2)`: with `mode` 0 the file grows to cover
    /// them; `libc::FALLOC_FL_*` flags keep its size, punch a hole, and so
    /// on. An offset or length beyond `i64::MAX` fails with `InvalidInput`.
    /// Linux only: elsewhere `EOPNOTSUPP`. Kernel: 5.6.
    pub fn fallocate(
        &mut self,
        fd: impl OpFd,
        mode: i32,
        offset: u64,
        len: u64,
        ctx: Ctx<S>,
    ) -> Task {
        let fd = self.op_fd(fd);
        let op = Op::Fallocate {
            fd,
            mode,
            offset,
            len,
        };
        if i64::try_from(offset).is_err() || i64::try_from(len).is_err() {
            return self.reject(op, ctx, offset_error());
        }
        self.schedule(op, ctx)
    }

    /// The metadata of the file `fd` is open on (`statx` of the fd itself,
    /// with every field [`Metadata`](crate::fs::Metadata) has). A ring fd
    /// without a process fd (a direct descriptor) fails with
    /// `Unsupported`: the kernel's statx takes no fixed file. Kernel: 5.6.
    pub fn fstat(&mut self, fd: impl OpFd, ctx: Ctx<S>) -> Task {
        let fd = self.op_fd(fd);
        let out = self.pools.stat();
        self.schedule(Op::StatFd { fd, out }, ctx)
    }
}

impl<S> Ring<S> {
    /// Tells the kernel how `len` bytes of the file `fd` is open on, from
    /// `offset`, will be read (`len` 0: to the end of the file), as
    /// `posix_fadvise(2)`: [`Advice::WillNeed`] starts reading them into
    /// the page cache, [`Advice::DontNeed`] lets it drop them, and so on;
    /// what reads return never changes. A pipe fails with `ESPIPE`; a
    /// socket takes the advice and ignores it, as `posix_fadvise` does.
    /// An offset beyond `i64::MAX` fails with `InvalidInput`, as
    /// does a length beyond `u32::MAX` (io_uring's entry holds 32 bits: give
    /// 0 to reach the end of a larger file, or advise it in parts). Linux
    /// only: elsewhere `EOPNOTSUPP`. Kernel: 5.6.
    pub fn fadvise(
        &mut self,
        fd: impl OpFd,
        offset: u64,
        len: u64,
        advice: Advice,
        ctx: Ctx<S>,
    ) -> Task {
        let fd = self.op_fd(fd);
        let op = Op::Fadvise {
            fd,
            offset,
            len,
            advice,
        };
        if i64::try_from(offset).is_err() {
            return self.reject(op, ctx, offset_error());
        }
        if u32::try_from(len).is_err() {
            return self.reject(op, ctx, too_long_for_an_entry());
        }
        self.schedule(op, ctx)
    }

    /// Tells the kernel how the memory of `buf` will be used, as
    /// `madvise(2)`; the buffer comes back in
    /// [`Outcome::Madvise`](crate::Outcome::Madvise), its contents as they
    /// were.
    ///
    /// The advice covers the whole memory pages inside the buffer's bytes:
    /// `madvise` needs a page-aligned start, and rounding the start up and
    /// the end down keeps it off memory the buffer does not own. A buffer
    /// that holds no whole page (most small ones) is advised nothing, and
    /// the operation succeeds. Only [`MemoryAdvice`], advice that never
    /// changes contents, is offered: advice that frees memory would zero
    /// the buffer under safe code. A buffer longer than `u32::MAX` bytes
    /// fails with `InvalidInput` (io_uring's entry holds 32 bits).
    /// Kernel: 5.6.
    pub fn madvise(&mut self, buf: impl IntoBuf, advice: MemoryAdvice, ctx: Ctx<S>) -> Task {
        let buf = buf.into_buf();
        let too_long = u32::try_from(buf.len()).is_err();
        let op = Op::Madvise { buf, advice };
        if too_long {
            return self.reject(op, ctx, too_long_for_an_entry());
        }
        self.schedule(op, ctx)
    }
}

/// The error for a length io_uring's 32-bit field cannot hold.
fn too_long_for_an_entry() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "length beyond u32::MAX (io_uring's entry holds 32 bits)",
    )
}
