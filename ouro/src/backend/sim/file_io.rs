//! Carrying out operations on the world's files ([`Files`]): reads and
//! writes with their faults, fsync, truncation, allocation, stat; and the
//! dispatch from a ring's operation to them.

use std::io;
use std::os::fd::AsRawFd;

use super::faults::{Fault, Stream};
use super::files::{OpenFile, BLOCK, LARGEST_FILE};
use super::net::Reply;
use super::world::State;
use super::{unsupported, SimBackend};
use crate::fd::{Fd, Named};
use crate::op::{Op, StatBuf};

impl State {
    /// The host's files lose what was not synced, and its open files
    /// close (their fds, still open in the process, are then `EBADF`).
    pub(crate) fn crash_files(&mut self) {
        let torn = self.fs.crash(self.streams.get(Stream::FilesCrash));
        for _ in 0..torn {
            self.faults.add(Fault::FilesTorn);
        }
    }

    /// An error a write or fsync fails with, if the configuration draws
    /// one: `EIO` or `ENOSPC`, as the kernel can return for both.
    fn file_error(&mut self) -> Option<i32> {
        if !self
            .streams
            .chance(Stream::FilesErrors, self.config.file_errors)
        {
            return None;
        }
        if self.streams.get(Stream::FilesErrors).bool() {
            self.faults.add(Fault::FilesEio);
            Some(libc::EIO)
        } else {
            self.faults.add(Fault::FilesEnospc);
            Some(libc::ENOSPC)
        }
    }

    /// How many of `n` bytes a read or write moves: all, or fewer if the
    /// configuration draws a short one.
    fn file_amount(&mut self, n: usize, class: Fault) -> usize {
        if n > 1
            && self
                .streams
                .chance(Stream::FilesShort, self.config.file_short_io)
        {
            self.faults.add(class);
            return self.streams.get(Stream::FilesShort).usize(1..n);
        }
        n
    }

    /// Where a read or write of open file `open` starts (`u64::MAX`: at
    /// its position), and whether it moves the position.
    fn start_at(&self, open: usize, offset: u64, write: bool) -> (usize, bool) {
        let file = self.fs.open[open].as_ref().expect("an open file");
        let len = self.fs.inodes[file.inode].data.len();
        if write && file.append {
            // Linux's pwrite on an `O_APPEND` fd appends too, but leaves
            // the position where it was.
            (len, offset == u64::MAX)
        } else if offset == u64::MAX {
            (usize::try_from(file.pos).unwrap_or(usize::MAX), true)
        } else {
            (usize::try_from(offset).unwrap_or(usize::MAX), false)
        }
    }

    /// Reads from open file `open` into `room` pieces of memory.
    fn read_file(&mut self, open: usize, offset: u64, room: &[libc::iovec]) -> i32 {
        let file = self.fs.open[open].as_ref().expect("an open file");
        let (inode, readable) = (file.inode, file.read);
        if self.fs.inodes[inode].dir {
            return -libc::EISDIR;
        }
        if !readable {
            return -libc::EBADF;
        }
        let total: usize = room.iter().map(|v| v.iov_len).sum();
        if offset != u64::MAX && past_largest_offset(offset, total) {
            return -libc::EINVAL;
        }
        let (at, moves) = self.start_at(open, offset, false);
        let len = self.fs.inodes[inode].data.len();
        let n = self.file_amount(total.min(len.saturating_sub(at)), Fault::FilesShortRead);
        let data = &self.fs.inodes[inode].data[at.min(len)..at.min(len) + n];
        let mut copied = 0;
        for piece in room {
            let part = piece.iov_len.min(n - copied);
            let to = piece.iov_base.cast::<u8>();
            // SAFETY: each piece is room the operation owns until it
            // completes, `iov_len` bytes long; `part` is at most that.
            unsafe { std::ptr::copy_nonoverlapping(data[copied..].as_ptr(), to, part) };
            copied += part;
        }
        self.advance(open, moves, at + n);
        n as i32
    }

    /// Writes the `bytes` pieces into open file `open`.
    fn write_file(&mut self, open: usize, offset: u64, bytes: &[libc::iovec]) -> i32 {
        let file = self.fs.open[open].as_ref().expect("an open file");
        if !file.write {
            return -libc::EBADF;
        }
        let inode = file.inode;
        let total: usize = bytes.iter().map(|v| v.iov_len).sum();
        if offset != u64::MAX && past_largest_offset(offset, total) {
            return -libc::EINVAL;
        }
        if total == 0 {
            return 0;
        }
        if let Some(errno) = self.file_error() {
            return -errno;
        }
        let n = self.file_amount(total, Fault::FilesShortWrite);
        let (at, moves) = self.start_at(open, offset, true);
        if at.checked_add(n).is_none_or(|end| end > LARGEST_FILE) {
            return -libc::EFBIG;
        }
        let file = &mut self.fs.inodes[inode];
        if file.data.len() < at + n {
            file.data.resize(at + n, 0);
        }
        let mut copied = 0;
        for piece in bytes {
            let part = piece.iov_len.min(n - copied);
            let from = piece.iov_base.cast::<u8>().cast_const();
            // SAFETY: each piece is memory of a buffer the operation owns
            // until it completes, `iov_len` bytes long; `part` is at most that.
            let piece = unsafe { std::slice::from_raw_parts(from, part) };
            file.data[at + copied..at + copied + part].copy_from_slice(piece);
            copied += part;
        }
        file.dirty = true;
        let rewritten = at / BLOCK..(at + n).div_ceil(BLOCK);
        file.forgotten.retain(|b| !rewritten.contains(b));
        self.advance(open, moves, at + n);
        n as i32
    }

    fn advance(&mut self, open: usize, moves: bool, to: usize) {
        if let (true, Some(file)) = (moves, self.fs.open[open].as_mut()) {
            file.pos = to as u64;
        }
    }

    fn fsync_file(&mut self, open: usize) -> i32 {
        let inode = self.fs.open[open].as_ref().expect("an open file").inode;
        if let Some(errno) = self.file_error() {
            self.fs.forget(inode);
            return -errno;
        }
        if self.bug == Some(super::Bug::FsyncForgets) && self.streams.chance(Stream::Planted, 0.2) {
            return 0;
        }
        self.fs.sync(inode);
        0
    }

    fn truncate_file(&mut self, open: usize, len: u64) -> i32 {
        let file = self.fs.open[open].as_ref().expect("an open file");
        let inode = &mut self.fs.inodes[file.inode];
        if !file.write || inode.dir || len > i64::MAX as u64 {
            return -libc::EINVAL;
        }
        if len > LARGEST_FILE as u64 {
            return -libc::EFBIG;
        }
        inode.data.resize(len as usize, 0);
        inode.dirty = true;
        inode.forgotten.retain(|&b| b * BLOCK < len as usize);
        0
    }

    fn allocate_file(&mut self, open: usize, mode: i32, offset: u64, len: u64) -> i32 {
        let file = self.fs.open[open].as_ref().expect("an open file");
        let inode = &mut self.fs.inodes[file.inode];
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= LARGEST_FILE as u64);
        match end {
            _ if len == 0 || offset > i64::MAX as u64 => -libc::EINVAL,
            _ if !file.write => -libc::EBADF,
            _ if inode.dir => -libc::EISDIR,
            None => -libc::EFBIG,
            Some(_) if mode == libc::FALLOC_FL_KEEP_SIZE => 0,
            Some(end) if mode == 0 => {
                if inode.data.len() < end as usize {
                    inode.data.resize(end as usize, 0);
                    inode.dirty = true;
                }
                0
            }
            Some(_) => -libc::EOPNOTSUPP,
        }
    }

    fn stat_inode(&self, inode: usize, out: &mut StatBuf) {
        let file = &self.fs.inodes[inode];
        let kind = if file.dir {
            libc::S_IFDIR
        } else {
            libc::S_IFREG
        };
        fill_stat(
            out,
            kind | file.mode,
            file.data.len() as u64,
            file.links,
            inode as u64 + 1,
        );
    }
}

fn fill_stat(out: &mut StatBuf, mode: u32, size: u64, nlink: u32, ino: u64) {
    // SAFETY: statx is plain integers, for which all zeroes is a value.
    *out = unsafe { std::mem::zeroed() };
    out.stx_mask = libc::STATX_BASIC_STATS;
    out.stx_mode = mode as u16;
    out.stx_size = size;
    out.stx_nlink = nlink;
    out.stx_ino = ino;
    out.stx_blksize = BLOCK as u32;
    out.stx_blocks = size.div_ceil(512);
}

impl SimBackend {
    /// The open file `fd` names, if the world made it and it is still open.
    fn file_of(&self, state: &State, fd: Fd) -> Option<usize> {
        match fd.named() {
            Named::Raw(raw) => state.fs.lookup(raw),
            Named::Ring(file) => state.fs.lookup(self.files.raw(file)),
        }
    }

    /// Carries out `op` if it works on the world's files: a path operation,
    /// or one on an fd of an open file; `None` for any other.
    pub(super) fn carry_out_file(
        &mut self,
        state: &mut State,
        op: &mut Op,
    ) -> Option<io::Result<Reply>> {
        let done = |res: Result<(), i32>| Reply::Res(res.err().map_or(0, |e| -e));
        let reply = match op {
            Op::Open {
                path, flags, mode, ..
            } => match state.fs.open_inode(path, *flags, *mode) {
                Ok(inode) => {
                    let access = *flags & libc::O_ACCMODE;
                    let file = OpenFile {
                        inode,
                        pos: 0,
                        read: access != libc::O_WRONLY,
                        write: access != libc::O_RDONLY,
                        append: *flags & libc::O_APPEND != 0,
                    };
                    match state.fs.fd_for(file) {
                        Ok(fd) => Reply::Fd(fd),
                        Err(err) => Reply::Res(-err.raw_os_error().unwrap_or(libc::EMFILE)),
                    }
                }
                Err(errno) => Reply::Res(-errno),
            },
            Op::Stat { path, out, .. } => match state.fs.resolve(path) {
                Ok((_, Some(inode))) => {
                    state.stat_inode(inode, out);
                    Reply::Res(0)
                }
                Ok((_, None)) => Reply::Res(-libc::ENOENT),
                Err(errno) => Reply::Res(-errno),
            },
            Op::Unlink { path, flags } => {
                done(state.fs.unlink(path, *flags & libc::AT_REMOVEDIR != 0))
            }
            Op::Rename { from, to } => done(state.fs.rename(from, to)),
            Op::Mkdir { path, mode } => done(state.fs.mkdir(path, *mode)),
            Op::HardLink { original, link } => done(state.fs.hard_link(original, link)),
            Op::Close { fd } => {
                let raw = fd.as_ref()?.as_raw_fd();
                state.fs.lookup(raw)?;
                state.fs.close(raw);
                drop(fd.take());
                Reply::Res(0)
            }
            Op::CloseRing { file } => {
                self.file_of(state, Fd::ring(*file))?;
                state.fs.close(self.files.raw(*file));
                drop(self.take_ring_file(state, *file));
                Reply::Res(0)
            }
            _ => {
                let [first, second] = op.fds();
                if let Some(open) = first.and_then(|fd| self.file_of(state, fd)) {
                    return Some(carry_out_on_file(state, op, open));
                }
                // A splice into a file.
                self.file_of(state, second?)?;
                return Some(Err(unsupported(&format!("{:?} on a file", op.kind()))));
            }
        };
        Some(Ok(reply))
    }
}

fn piece(ptr: *mut u8, len: usize) -> libc::iovec {
    libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len,
    }
}

/// Carries out `op` on open file `open`.
fn carry_out_on_file(state: &mut State, op: &mut Op, open: usize) -> io::Result<Reply> {
    let res = match op {
        Op::Read { offset, .. } => {
            let offset = *offset;
            let (ptr, room) = op.read_target().unwrap_or((std::ptr::null_mut(), 0));
            state.read_file(open, offset, &[piece(ptr, room)])
        }
        Op::Readv {
            bufs, iov, offset, ..
        } => {
            bufs.fill_iovecs(iov, true);
            state.read_file(open, *offset, iov)
        }
        Op::Write { buf, offset, .. } => {
            let bytes = piece(buf.as_ptr().cast_mut(), buf.len());
            state.write_file(open, *offset, &[bytes])
        }
        Op::Writev {
            bufs, iov, offset, ..
        } => {
            bufs.fill_iovecs(iov, false);
            state.write_file(open, *offset, iov)
        }
        Op::Fsync { .. } => state.fsync_file(open),
        Op::Ftruncate { len, .. } => state.truncate_file(open, *len),
        Op::Fallocate {
            mode, offset, len, ..
        } => state.allocate_file(open, *mode, *offset, *len),
        Op::Fadvise { .. } => 0,
        Op::StatFd { out, .. } => {
            let inode = state.fs.open[open].as_ref().expect("an open file").inode;
            state.stat_inode(inode, out);
            0
        }
        op => return Err(unsupported(&format!("{:?} on a file", op.kind()))),
    };
    Ok(Reply::Res(res))
}

/// Whether `len` bytes at `offset` would end past the largest offset a
/// file has (`i64::MAX`): the kernel refuses such a read or write with
/// `EINVAL` before it looks at the file.
fn past_largest_offset(offset: u64, len: usize) -> bool {
    offset
        .checked_add(len as u64)
        .is_none_or(|end| end > i64::MAX as u64)
}
