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
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

mod address_flags;
mod route_probe;

pub use address_flags::{local_address_flags, AddressFlags, LocalAddressFlags};
pub(crate) use route_probe::RouteProbe;

/// A socket's address family (IPv4, IPv6, Unix), for [`Ring::socket`](crate::Ring::socket).
pub use socket2::Domain;
/// A socket's protocol (usually `None`: the family's default), for
/// [`Ring::socket`](crate::Ring::socket).
pub use socket2::Protocol;
/// Any socket address the kernel reads or writes (IP or Unix): what
/// [`Ring::connect`](crate::Ring::connect) and [`Ring::bind`](crate::Ring::bind)
/// take (a `SocketAddr` converts into one) and what accept and `recvmsg`
/// report; [`SockAddr::as_socket`] gives the `SocketAddr` of an IP one.
pub use socket2::SockAddr;
/// A socket's type (stream, datagram), for [`Ring::socket`](crate::Ring::socket).
pub use socket2::Type;

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

/// A UDP socket bound to `addr` (port 0: any free port, which
/// [`local_addr`] tells), close-on-exec and blocking (on io_uring, a
/// receive on a non-blocking socket that the kernel hands to a worker
/// completes with `EAGAIN` instead of waiting; the readiness backend never
/// blocks on a socket either way): ready for
/// [`Ring::send_to`](crate::Ring::send_to) and
/// [`Ring::recv_from`](crate::Ring::recv_from), or, once given a peer by
/// [`Ring::connect`](crate::Ring::connect), for
/// [`Ring::send`](crate::Ring::send) and [`Ring::recv`](crate::Ring::recv).
pub fn udp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let socket = socket2::Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The source address the kernel would use to reach `dest`: the local
/// address of a UDP socket connected to it (a route lookup; no packet is
/// sent), as glibc's `getaddrinfo` finds it. Fails with the kernel's
/// error when there is no route (`ENETUNREACH`) or `dest` is a link-local
/// IPv6 address, which needs an interface (`EINVAL`). Four system calls
/// (socket, connect, getsockname, close) on the calling thread; a UDP
/// connect never blocks.
pub fn route_source(dest: IpAddr) -> io::Result<IpAddr> {
    let dest = probe_address(dest);
    let socket = socket2::Socket::new(Domain::for_address(dest), Type::DGRAM, None)?;
    source_through(&socket, dest)
}

/// The address a route probe connects to: `dest` with a port that is
/// never sent to (any non-zero one will do).
fn probe_address(dest: IpAddr) -> SocketAddr {
    SocketAddr::new(dest, 9)
}

/// The source address the kernel picks for `dest`, found by connecting
/// the UDP `socket` to it (a route lookup; nothing is sent).
fn source_through(socket: &socket2::Socket, dest: SocketAddr) -> io::Result<IpAddr> {
    socket.connect(&dest.into())?;
    Ok(ip_addr(&socket.local_addr()?)?.ip())
}

/// The IP address of a connected socket's peer (e.g. after a multishot
/// accept, which does not report it). For a socket that is not IP (a Unix
/// socket) an `InvalidInput` error: ask [`peer_sock_addr`] for any family.
pub fn peer_addr(fd: impl AsFd) -> io::Result<SocketAddr> {
    ip_addr(&peer_sock_addr(fd)?)
}

/// The local IP address a socket is bound to (useful after binding port
/// 0). For a socket that is not IP (a Unix socket) an `InvalidInput`
/// error: ask [`local_sock_addr`] for any family.
pub fn local_addr(fd: impl AsFd) -> io::Result<SocketAddr> {
    ip_addr(&local_sock_addr(fd)?)
}

/// The address of a connected socket's peer, of any family (IP or Unix).
pub fn peer_sock_addr(fd: impl AsFd) -> io::Result<SockAddr> {
    socket2::SockRef::from(&fd).peer_addr()
}

/// The local address a socket is bound to, of any family (IP or Unix).
pub fn local_sock_addr(fd: impl AsFd) -> io::Result<SockAddr> {
    socket2::SockRef::from(&fd).local_addr()
}

/// `addr` as an IP address, or the `InvalidInput` error every IP-only
/// accessor gives for another family.
pub(crate) fn ip_addr(addr: &SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an IP socket (its address is a SockAddr)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel's sockets")]
    fn peer_and_local_addresses_are_socket_addrs_for_ip() {
        let listener = tcp_listener("127.0.0.1:0".parse().unwrap(), 4).unwrap();
        let addr = local_addr(&listener).unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        assert_eq!(peer_addr(&client).unwrap(), addr);
        assert_eq!(local_addr(&client).unwrap(), client.local_addr().unwrap());
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel's sockets")]
    fn a_unix_socket_address_is_invalid_input_as_ip_and_a_sock_addr_otherwise() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(
            peer_addr(&a).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            local_addr(&a).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(peer_sock_addr(&a).unwrap().is_unix());
        assert!(local_sock_addr(&a).unwrap().is_unix());
    }
}
