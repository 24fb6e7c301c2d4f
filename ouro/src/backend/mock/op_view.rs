//! What a script sees of an operation: its kind, fd, offset and paths, the
//! bytes a write carries and the room a read has — vectored ones included,
//! whose iovecs the mock points at the buffers as a kernel backend would.

use std::borrow::Cow;
use std::os::fd::{AsRawFd, RawFd};

use super::OwnedFiles;
use crate::fd::Named;
use crate::op::{Op, OpKind};

/// An operation as a script sees it.
pub struct MockOp<'a> {
    pub(super) op: &'a mut Op,
    pub(super) files: &'a OwnedFiles,
    pub(super) filled: u32,
}

impl MockOp<'_> {
    /// Which operation it is.
    pub fn kind(&self) -> OpKind {
        self.op.kind()
    }

    /// The fd it operates on, if it takes one (the first, for a splice):
    /// for a ring fd, the number of the fd the mock keeps for it.
    pub fn fd(&self) -> Option<RawFd> {
        match &*self.op {
            Op::Close { fd } => fd.as_ref().map(|fd| fd.as_raw_fd()),
            Op::CloseRing { file } => Some(self.files.raw(*file)),
            op => op.fds()[0].map(|fd| match fd.named() {
                Named::Raw(raw) => raw,
                Named::Ring(file) => self.files.raw(file),
            }),
        }
    }

    /// The bytes a write, send, send_to, writev or sendmsg would write (a
    /// vectored one's buffers joined, in order); empty for every other
    /// operation.
    pub fn data(&self) -> Cow<'_, [u8]> {
        match &*self.op {
            Op::Write { buf, .. } | Op::Send { buf, .. } | Op::SendTo { buf, .. } => {
                Cow::Borrowed(buf)
            }
            Op::Writev { iov, .. } => Cow::Owned(joined(iov)),
            Op::SendMsg { msg, .. } => Cow::Owned(joined(&msg.iov)),
            _ => Cow::Borrowed(&[]),
        }
    }

    /// The file offset of a read or write, vectored or not (`None`: the
    /// current position).
    pub fn offset(&self) -> Option<u64> {
        match &*self.op {
            Op::Read { offset, .. }
            | Op::Write { offset, .. }
            | Op::Readv { offset, .. }
            | Op::Writev { offset, .. } => (*offset != u64::MAX).then_some(*offset),
            _ => None,
        }
    }

    /// The path an operation names (the first, for one that names two),
    /// without its terminating NUL.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.paths()[0]
    }

    /// The paths an operation names (a rename or link names two), without
    /// their terminating NUL.
    pub fn paths(&self) -> [Option<&std::path::Path>; 2] {
        use std::os::unix::ffi::OsStrExt;
        self.op.paths().map(|path| {
            path.map(|path| {
                let path = &path[..path.len().saturating_sub(1)];
                std::path::Path::new(std::ffi::OsStr::from_bytes(path))
            })
        })
    }

    /// How many bytes a read, readv, recv, recv_from, recvmsg or multishot
    /// receive can take.
    pub fn room(&mut self) -> usize {
        read_regions(self.op).iter().map(|&(_, len)| len).sum()
    }

    /// Copies as much of `data` as fits into a read's buffer (a vectored
    /// read's buffers in order), after what earlier `fill` calls put there,
    /// and returns the total so far, to be returned as `Reply::Value`.
    pub fn fill(&mut self, data: &[u8]) -> u32 {
        let mut skip = self.filled as usize;
        let mut data = data;
        for (ptr, len) in read_regions(self.op) {
            if data.is_empty() {
                break;
            }
            if skip >= len {
                skip -= len;
                continue;
            }
            let n = data.len().min(len - skip);
            // SAFETY: `ptr` is a region of `len` writable bytes the
            // operation owns; `[skip, skip + n)` lies inside it.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr.add(skip), n) };
            self.filled += n as u32;
            data = &data[n..];
            skip = 0;
        }
        self.filled
    }
}

/// Points a vectored operation's iovecs at its buffers (the spare regions
/// of a read's), as a kernel backend does when it submits, and clears what
/// a receive reports besides its bytes: a scripted message has no sender
/// address and no flags.
pub(super) fn prepare_vectors(op: &mut Op) {
    match op {
        Op::Readv { bufs, iov, .. } => bufs.fill_iovecs(iov, true),
        Op::Writev { bufs, iov, .. } => bufs.fill_iovecs(iov, false),
        Op::SendMsg { bufs, msg, .. } => bufs.fill_iovecs(&mut msg.iov, false),
        Op::RecvMsg { bufs, msg, .. } => {
            bufs.fill_iovecs(&mut msg.iov, true);
            msg.hdr.msg_namelen = 0;
            msg.hdr.msg_flags = 0;
        }
        _ => {}
    }
}

/// A read's target is zeroed first, so a script that claims more bytes
/// than it filled never exposes uninitialised memory.
pub(super) fn zero_read_regions(op: &mut Op) {
    for (ptr, len) in read_regions(op) {
        // SAFETY: the region is `len` writable bytes the operation owns.
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
    }
}

/// Where a read-like operation writes, in order: its buffer's spare
/// region, a held group buffer, or a vectored read's iovecs (which
/// `prepare_vectors` pointed at the buffers' spare regions).
fn read_regions(op: &mut Op) -> Vec<(*mut u8, usize)> {
    let iov = match op {
        Op::Readv { iov, .. } => iov,
        Op::RecvMsg { msg, .. } => &msg.iov,
        op => return op.read_target().into_iter().collect(),
    };
    iov.iter()
        .filter(|v| v.iov_len > 0)
        .map(|v| (v.iov_base.cast(), v.iov_len))
        .collect()
}

/// The bytes a vectored write's iovecs point at, joined.
fn joined(iov: &[libc::iovec]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for v in iov.iter().filter(|v| v.iov_len > 0) {
        // SAFETY: `prepare_vectors` pointed each iovec at a buffer's
        // initialised bytes, which the operation owns and nothing writes
        // while the script looks.
        bytes
            .extend_from_slice(unsafe { std::slice::from_raw_parts(v.iov_base.cast(), v.iov_len) });
    }
    bytes
}
