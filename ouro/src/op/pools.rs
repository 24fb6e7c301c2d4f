//! Reusable heap blocks for what operations lend the kernel.

use std::io;

use super::{MsgBuf, StatBuf};
use crate::net::AddrBuf;

/// Reusable heap blocks for the parts of operations the kernel touches, so
/// that steady-state operation does not allocate.
#[derive(Default)]
pub(crate) struct Pools {
    pub(crate) addrs: Pool<Box<AddrBuf>>,
    pub(crate) iovs: Pool<Vec<libc::iovec>>,
    pub(crate) paths: Pool<Vec<u8>>,
    pub(crate) stats: Pool<Box<StatBuf>>,
    pub(crate) msgs: Pool<Box<MsgBuf>>,
}

/// A free list of reusable values, capped so a burst does not pin memory.
pub(crate) struct Pool<T> {
    free: Vec<T>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool { free: Vec::new() }
    }
}

const POOL_CAP: usize = 256;

impl<T> Pool<T> {
    pub(crate) fn take(&mut self) -> Option<T> {
        self.free.pop()
    }
    pub(crate) fn put(&mut self, value: T) {
        if self.free.len() < POOL_CAP {
            self.free.push(value);
        }
    }
}

impl Pools {
    pub(crate) fn addr(&mut self) -> Box<AddrBuf> {
        let mut addr = self.addrs.take().unwrap_or_else(AddrBuf::empty);
        addr.clear();
        addr
    }

    pub(crate) fn iov(&mut self) -> Vec<libc::iovec> {
        self.iovs.take().unwrap_or_default()
    }

    /// `path` as a NUL-terminated byte string, or an `InvalidInput` error
    /// if it contains a NUL.
    pub(crate) fn path(&mut self, path: &std::path::Path) -> io::Result<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        if bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path contains an interior NUL byte",
            ));
        }
        let mut buf = self.paths.take().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        buf.push(0);
        Ok(buf)
    }

    pub(crate) fn stat(&mut self) -> Box<StatBuf> {
        self.stats.take().unwrap_or_else(new_stat_buf)
    }

    pub(crate) fn msg(&mut self) -> Box<MsgBuf> {
        let mut msg = self.msgs.take().unwrap_or_else(|| {
            Box::new(MsgBuf {
                // SAFETY: msghdr is plain data; all zeros is a valid empty header.
                hdr: unsafe { std::mem::zeroed() },
                addr: *AddrBuf::empty(),
                iov: Vec::new(),
            })
        });
        msg.addr.clear();
        msg
    }
}

#[cfg(target_os = "linux")]
fn new_stat_buf() -> Box<StatBuf> {
    // SAFETY: statx is plain data, for which all zeros is a valid value.
    Box::new(unsafe { std::mem::zeroed() })
}

#[cfg(not(target_os = "linux"))]
fn new_stat_buf() -> Box<StatBuf> {
    Box::default()
}
