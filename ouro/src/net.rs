//! Socket addresses in the form the kernel reads and writes, and small
//! synchronous helpers for setting sockets up.
//!
//! Binding and listening never block, so besides the [`Ring::bind`] and
//! [`Ring::listen`] operations, [`tcp_listener`] and friends do it in one
//! call for setup code.
//!
//! [`Ring::bind`]: crate::Ring::bind
//! [`Ring::listen`]: crate::Ring::listen

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

pub use socket2::{Domain, Protocol, SockAddr, Type};

/// A socket address the kernel may read or write, with its length. Kept in
/// a box owned by the task, so its address is stable while in flight.
pub(crate) struct AddrBuf {
    pub(crate) storage: socket2::SockAddrStorage,
    pub(crate) len: libc::socklen_t,
}

impl AddrBuf {
    pub(crate) fn empty() -> Box<AddrBuf> {
        let storage = socket2::SockAddrStorage::zeroed();
        let len = storage.size_of();
        Box::new(AddrBuf { storage, len })
    }

    /// Resets the buffer to receive an address.
    pub(crate) fn clear(&mut self) {
        self.len = self.storage.size_of();
    }

    pub(crate) fn set(&mut self, addr: &SockAddr) {
        let len = addr.len();
        // SAFETY: `SockAddr` holds `len` valid bytes of a sockaddr that fits
        // in a sockaddr_storage, which is what `storage` is.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr.as_ptr().cast::<u8>(),
                (&mut self.storage as *mut socket2::SockAddrStorage).cast::<u8>(),
                len as usize,
            );
        }
        self.len = len;
    }

    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const socket2::SockAddrStorage).cast()
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut libc::sockaddr {
        (&mut self.storage as *mut socket2::SockAddrStorage).cast()
    }

    /// The address the kernel wrote, if it wrote one.
    pub(crate) fn get(&self) -> Option<SockAddr> {
        if self.len == 0 || self.len > self.storage.size_of() {
            return None;
        }
        let mut storage = socket2::SockAddrStorage::zeroed();
        // SAFETY: both are sockaddr_storage-sized, and `len` bytes of
        // `self.storage` were written by the kernel as a sockaddr of the
        // family it records.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&self.storage as *const socket2::SockAddrStorage).cast::<u8>(),
                (&mut storage as *mut socket2::SockAddrStorage).cast::<u8>(),
                self.len as usize,
            );
            Some(SockAddr::new(storage, self.len))
        }
    }
}

/// A TCP socket bound to `addr` and listening, with `SO_REUSEADDR` set and
/// close-on-exec: ready for [`Ring::accept`](crate::Ring::accept).
pub fn tcp_listener(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let socket = socket2::Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// A UDP socket bound to `addr`, close-on-exec.
pub fn udp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let socket = socket2::Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The address of a connected socket's peer (e.g. after a multishot
/// accept, which does not report it).
pub fn peer_addr(fd: impl std::os::fd::AsFd) -> io::Result<SockAddr> {
    socket2::SockRef::from(&fd).peer_addr()
}

/// The local address a socket is bound to (useful after binding port 0).
pub fn local_addr(fd: impl std::os::fd::AsFd) -> io::Result<SocketAddr> {
    let socket = socket2::SockRef::from(&fd);
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
}
