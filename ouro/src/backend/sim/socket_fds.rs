//! The process fds of simulated sockets. Each socket user code holds has a
//! real fd (a memfd) of its own, recorded by number with its identity
//! (device and inode): its number is unique while it is open, a stale or
//! foreign fd (or a number another file took since) is told apart, and an
//! fd the program closed without the world seeing it is found.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// The records, indexed by fd number (small and dense, as the kernel hands
/// out the lowest free one): (socket, device, inode).
#[derive(Default)]
pub(crate) struct SocketFds {
    fds: Vec<Option<(usize, u64, u64)>>,
}

impl SocketFds {
    /// The socket behind process fd `raw`, if it is still the fd the world
    /// made (not closed, its number not reused by another file).
    pub(crate) fn lookup(&self, raw: RawFd) -> Option<usize> {
        let (sock, dev, ino) = self.record(raw)?;
        (identity(raw) == Some((dev, ino))).then_some(sock)
    }

    fn record(&self, raw: RawFd) -> Option<(usize, u64, u64)> {
        *self.fds.get(usize::try_from(raw).ok()?)?
    }

    /// The socket behind process fd `raw` as the world last recorded it,
    /// without checking the fd's identity: for fds whose identity was
    /// checked when their holder took them and that it keeps open since.
    pub(crate) fn recorded(&self, raw: RawFd) -> Option<usize> {
        self.record(raw).map(|(sock, _, _)| sock)
    }

    /// A new fd for socket `sock`, recorded as its.
    pub(crate) fn make(&mut self, sock: usize) -> io::Result<OwnedFd> {
        let (fd, (dev, ino)) = memfd(c"ouro-sim")?;
        let i = fd.as_raw_fd() as usize;
        if i >= self.fds.len() {
            self.fds.resize(i + 1, None);
        }
        self.fds[i] = Some((sock, dev, ino));
        Ok(fd)
    }

    /// Gives up ownership of `fd` to the ring: its number.
    pub(crate) fn hand_over(&mut self, fd: OwnedFd) -> RawFd {
        fd.into_raw_fd()
    }

    /// Drops the record of `raw`, which is being closed.
    pub(crate) fn forget(&mut self, raw: RawFd) {
        if let Some(record) = usize::try_from(raw).ok().and_then(|i| self.fds.get_mut(i)) {
            *record = None;
        }
    }

    /// The sockets whose fds were closed without the world seeing it (an
    /// `OwnedFd` dropped, a ring dropped with its files), their records
    /// dropped; in the world's order, which does not depend on fd numbers.
    pub(crate) fn take_dropped(&mut self) -> Vec<usize> {
        let mut dropped = Vec::new();
        for (raw, record) in self.fds.iter_mut().enumerate() {
            if let Some((sock, dev, ino)) = *record {
                if identity(raw as RawFd) != Some((dev, ino)) {
                    *record = None;
                    dropped.push(sock);
                }
            }
        }
        dropped.sort_unstable();
        dropped
    }

    /// The sockets whose fds are still open.
    pub(crate) fn open_sockets(&self) -> Vec<usize> {
        let mut open: Vec<usize> = (0..self.fds.len())
            .filter_map(|raw| self.lookup(raw as RawFd))
            .collect();
        open.sort_unstable();
        open
    }

    /// Whether `sock` still has an fd: one whose holder closed it, or
    /// dropped it with its ring, without the world seeing a close holds
    /// no address any more.
    pub(crate) fn has_fd(&self, sock: usize) -> bool {
        (0..self.fds.len()).any(|raw| {
            let raw = raw as RawFd;
            matches!(self.record(raw), Some((s, dev, ino)) if s == sock && identity(raw) == Some((dev, ino)))
        })
    }
}

/// A new memfd named `name` (a simulated socket or file's own fd), and its
/// identity.
pub(crate) fn memfd(name: &CStr) -> io::Result<(OwnedFd, (u64, u64))> {
    // SAFETY: a NUL-terminated name; memfd_create returns a new fd or -1.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just made, and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let identity = identity(raw).ok_or_else(io::Error::last_os_error)?;
    Ok((fd, identity))
}

/// The device and inode of the file `fd` names, if it is open.
pub(crate) fn identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat only writes into the zeroed struct we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat buffer.
    let res = unsafe { libc::fstat(fd, &mut st) };
    #[allow(clippy::unnecessary_cast)] // dev_t and ino_t differ by platform
    (res == 0).then_some((st.st_dev as u64, st.st_ino as u64))
}
