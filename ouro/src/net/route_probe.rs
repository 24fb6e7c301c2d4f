//! The sockets a ring asks for route sources with, kept from one probe to
//! the next.

use std::io;
use std::net::IpAddr;

use socket2::{Domain, SockAddr, Socket, Type};

use super::{probe_address, source_through};

/// Finds the source address the kernel would use to reach a destination,
/// as [`route_source`](super::route_source) does, but on Linux with one
/// UDP socket per family kept from one probe to the next: a probe is a
/// connect, a `getsockname` and a disconnect (a connect to `AF_UNSPEC`).
/// A socket made and closed per probe costs more than its system calls: a
/// UDP socket that was bound (a connect binds it, even one that fails for
/// want of a route) is freed by the kernel after an RCU grace period, and
/// on a CPU kept busy those frees pile up and run in one batch of a
/// millisecond or more, stalling whatever the CPU runs then. Elsewhere a
/// socket per probe, as before.
#[derive(Debug, Default)]
pub(crate) struct RouteProbe {
    /// The IPv4 and the IPv6 socket, each made at its family's first probe.
    sockets: [Option<Socket>; 2],
}

impl RouteProbe {
    /// The source address for `dest`; the kernel's error when there is no
    /// route (`ENETUNREACH`) or `dest` is a link-local IPv6 address without
    /// an interface (`EINVAL`).
    pub(crate) fn source(&mut self, dest: IpAddr) -> io::Result<IpAddr> {
        let dest = probe_address(dest);
        let slot = &mut self.sockets[usize::from(dest.is_ipv6())];
        let socket = match slot.take() {
            Some(socket) => socket,
            None => Socket::new(Domain::for_address(dest), Type::DGRAM, None)?,
        };
        let source = source_through(&socket, dest);
        // Linux keeps a connected UDP socket's source address when it is
        // connected again, and resets it (and unbinds the port) only on a
        // disconnect: without one, the next probe would report this
        // source. A socket that cannot be disconnected is closed.
        if cfg!(target_os = "linux") && socket.connect(&unspecified()).is_ok() {
            *slot = Some(socket);
        }
        source
    }
}

/// The `AF_UNSPEC` address, whose connect disconnects a datagram socket.
fn unspecified() -> SockAddr {
    let storage = socket2::SockAddrStorage::zeroed();
    // The kernel reads the family, which must be there: a zeroed one is
    // `AF_UNSPEC`.
    let len = std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t;
    // SAFETY: `storage` is zeroed, and its first `len` bytes are a
    // `sockaddr` family, `AF_UNSPEC` (0).
    unsafe { SockAddr::new(storage, len) }
}
