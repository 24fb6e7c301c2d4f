//! The simulated network: TCP sockets between addresses of one world,
//! byte streams cut into segments that arrive in order after a delay,
//! half-close, resets and refused connects. Every socket user code holds
//! has a real fd of its own (`socket_fds.rs`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::faults::{Fault, Stream};
use super::multishot::Shot;
use super::socket_fds::SocketFds;
use super::world::{State, What};
use crate::backend::MORE;
use crate::net::AddrBuf;

/// A receive or accept waiting for the network, and where it writes.
#[derive(Clone, Copy)]
pub(crate) struct Parked {
    pub(crate) node: u32,
    pub(crate) user_data: u64,
    /// A receive's room, or an accept's address block.
    pub(crate) ptr: *mut u8,
    pub(crate) room: usize,
    /// Once, or until it ends (a multishot accept or receive).
    pub(crate) shot: Shot,
}

#[derive(Default)]
enum Role {
    #[default]
    Fresh,
    Listening {
        backlog: VecDeque<usize>,
        most: usize,
    },
    Connected {
        peer: usize,
    },
}

#[derive(Default)]
struct Socket {
    role: Role,
    local: Option<SocketAddr>,
    /// The host a connected socket is on (a server's connection records
    /// its peer's address as `local`, for accept to report).
    host: Option<IpAddr>,
    /// Bytes sent to this socket: the first `arrived` have arrived, the
    /// rest are on their way, in order. Kept here rather than in the
    /// arrival events so that a segment costs no allocation.
    rx: VecDeque<u8>,
    arrived: usize,
    /// The peer will send nothing more (after `rx`).
    rx_fin: bool,
    /// The connection was reset: sends fail with `EPIPE`, receives end
    /// after what had arrived.
    reset: bool,
    /// The reset's error, reported once, by the next send or receive:
    /// `ECONNRESET`, or `EPIPE` if the peer had already sent its FIN.
    error: Option<i32>,
    write_shut: bool,
    /// Shut for reading: receives end after what had arrived.
    read_shut: bool,
    closed: bool,
    /// When the last segment bound here arrives: segments keep order.
    arrival: u64,
    waiting: VecDeque<Parked>,
}

#[derive(Default)]
pub(crate) struct Net {
    sockets: Vec<Socket>,
    listeners: BTreeMap<SocketAddr, usize>,
    /// The addresses sockets bound, or listened on, until they close.
    bound: BTreeMap<SocketAddr, usize>,
    /// The process fds of the sockets.
    pub(crate) fds: SocketFds,
    next_port: u16,
    /// The hosts that listened or connected, which partitions come between.
    hosts: BTreeSet<IpAddr>,
}

impl Net {
    /// Takes the parked operation `user_data` of `node` off its socket.
    pub(crate) fn unpark(&mut self, node: u32, user_data: u64) -> bool {
        for sock in &mut self.sockets {
            let found = sock
                .waiting
                .iter()
                .position(|p| p.node == node && p.user_data == user_data);
            if let Some(i) = found {
                sock.waiting.remove(i);
                return true;
            }
        }
        false
    }

    /// Whether an operation of `node` waits on a socket.
    pub(crate) fn has_parked(&self, node: u32) -> bool {
        self.sockets
            .iter()
            .any(|s| s.waiting.iter().any(|p| p.node == node))
    }

    /// The hosts partitions may come between.
    pub(crate) fn hosts(&self) -> Vec<IpAddr> {
        self.hosts.iter().copied().collect()
    }

    /// The host `sock` sends from: its bound address's, else the one
    /// ephemeral ports are on.
    pub(crate) fn host_of(&self, sock: usize) -> IpAddr {
        let socket = &self.sockets[sock];
        socket
            .host
            .or(socket.local.map(|a| a.ip()))
            .unwrap_or(EPHEMERAL_HOST)
    }

    /// The path from the peer of connected socket `sock` to it.
    pub(crate) fn path_to(&self, sock: usize) -> Option<(IpAddr, IpAddr)> {
        let socket = &self.sockets[sock];
        let Role::Connected { peer } = socket.role else {
            return None;
        };
        Some((self.sockets[peer].host?, socket.host?))
    }

    /// The other end of connected socket `sock`.
    pub(crate) fn peer_of(&self, sock: usize) -> Option<usize> {
        match self.sockets[sock].role {
            Role::Connected { peer } => Some(peer),
            _ => None,
        }
    }

    /// A host that UDP traffic came from or went to, which partitions may
    /// come between too.
    pub(crate) fn add_host(&mut self, ip: IpAddr) {
        self.hosts.insert(ip.to_canonical());
    }

    /// The listener a connect to `addr` reaches: one on that address, else
    /// one on the wildcard of its port (IPv6's also takes IPv4), which
    /// listens on every address of the world.
    fn listener_for(&self, addr: SocketAddr) -> Option<usize> {
        let wildcard = |ip: IpAddr| SocketAddr::new(ip, addr.port());
        let v6_any = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        let family_any = match addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => v6_any,
        };
        self.listeners
            .get(&addr)
            .or_else(|| self.listeners.get(&wildcard(family_any)))
            .or_else(|| {
                addr.is_ipv4()
                    .then(|| self.listeners.get(&wildcard(v6_any)))?
            })
            .copied()
    }

    pub(crate) fn is_closed(&self, sock: usize) -> bool {
        self.sockets[sock].closed
    }

    fn add(&mut self, socket: Socket) -> usize {
        self.sockets.push(socket);
        self.sockets.len() - 1
    }

    /// Whether an open socket holds `addr`'s port on its address or on
    /// the wildcard (either way round), which the kernel refuses to bind
    /// again without `SO_REUSEADDR` (a socket option the simulator does
    /// not have).
    fn taken(&self, addr: SocketAddr) -> bool {
        self.bound.iter().any(|(a, &sock)| {
            a.port() == addr.port()
                && (a.ip() == addr.ip() || a.ip().is_unspecified() || addr.ip().is_unspecified())
                && self.fds.has_fd(sock)
        })
    }

    /// The next ephemeral port no bound or listening socket holds, as the
    /// kernel's port search skips them; `None` once all 20,000 are held.
    fn ephemeral(&mut self) -> Option<SocketAddr> {
        for _ in 0..EPHEMERAL_PORTS {
            self.next_port = self.next_port.wrapping_add(1) % EPHEMERAL_PORTS;
            let addr = SocketAddr::new(EPHEMERAL_HOST, 40_000 + self.next_port);
            if !self.taken(addr) {
                return Some(addr);
            }
        }
        None
    }
}

/// How many ephemeral ports there are (from 40,000).
const EPHEMERAL_PORTS: u16 = 20_000;

/// The host of sockets that connect or listen without binding.
const EPHEMERAL_HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

/// Where the kernel sends what is addressed to the unspecified address
/// (`0.0.0.0`, `::`): this host, on loopback.
pub(crate) fn this_host_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// What an operation on a socket comes to: a result now (after the
/// usual delay), or a wait for the network.
pub(crate) enum Reply {
    Res(i32),
    Fd(OwnedFd),
    Parked,
}

impl State {
    pub(crate) fn socket(&mut self) -> io::Result<OwnedFd> {
        // The new fd may take the number of one dropped since, whose
        // socket must close first, or its record would be overwritten: at
        // every fd made, whatever the numbers, so that runs do not depend
        // on them.
        self.close_dropped();
        let sock = self.net.add(Socket::default());
        self.net.fds.make(sock)
    }

    pub(crate) fn bind(&mut self, sock: usize, addr: SocketAddr) -> Reply {
        let socket = &self.net.sockets[sock];
        // The kernel binds a socket once: one that has a port (bound, or
        // given one by listen or connect) is refused, not moved.
        if socket.local.is_some() || !matches!(socket.role, Role::Fresh) {
            return Reply::Res(-libc::EINVAL);
        }
        let addr = match addr.port() {
            0 => match self.net.ephemeral() {
                Some(addr) => addr,
                None => return Reply::Res(-libc::EADDRINUSE),
            },
            _ => addr,
        };
        if self.net.taken(addr) {
            return Reply::Res(-libc::EADDRINUSE);
        }
        self.net.bound.insert(addr, sock);
        self.net.sockets[sock].local = Some(addr);
        Reply::Res(0)
    }

    pub(crate) fn listen(&mut self, sock: usize, backlog: i32) -> Reply {
        let most = usize::try_from(backlog).unwrap_or(0).clamp(1, 4096);
        match &mut self.net.sockets[sock].role {
            Role::Fresh => {}
            // Listening again only sets the backlog's length.
            Role::Listening { most: now, .. } => {
                *now = most;
                return Reply::Res(0);
            }
            Role::Connected { .. } => return Reply::Res(-libc::EINVAL),
        }
        // An unbound socket listens on an ephemeral port, as the kernel's.
        let addr = match self.net.sockets[sock].local {
            Some(addr) => addr,
            None => {
                let Some(addr) = self.net.ephemeral() else {
                    return Reply::Res(-libc::EADDRINUSE);
                };
                self.net.bound.insert(addr, sock);
                addr
            }
        };
        self.net.listeners.insert(addr, sock);
        self.net.hosts.insert(addr.ip());
        self.net.sockets[sock].local = Some(addr);
        self.net.sockets[sock].role = Role::Listening {
            backlog: VecDeque::new(),
            most,
        };
        Reply::Res(0)
    }

    pub(crate) fn connect(&mut self, parked: Parked, sock: usize, addr: SocketAddr) -> Reply {
        if !matches!(self.net.sockets[sock].role, Role::Fresh) {
            return Reply::Res(-libc::EISCONN);
        }
        let addr = this_host_if_unspecified(addr);
        if self.hold_connect(parked, sock, addr) {
            return Reply::Parked;
        }
        // A listener whose fd was closed or dropped without the world
        // seeing it refuses, as a closed socket does.
        let Some(listener) = self.net.listener_for(addr) else {
            return Reply::Res(-libc::ECONNREFUSED);
        };
        if !self.net.fds.has_fd(listener) {
            return Reply::Res(-libc::ECONNREFUSED);
        }
        let local = match self.net.sockets[sock].local {
            Some(local) => local,
            None => match self.net.ephemeral() {
                Some(local) => local,
                None => return Reply::Res(-libc::EADDRNOTAVAIL),
            },
        };
        let server = self.net.add(Socket {
            role: Role::Connected { peer: sock },
            local: Some(local),
            host: Some(addr.ip()),
            ..Socket::default()
        });
        let Role::Listening { backlog, most } = &mut self.net.sockets[listener].role else {
            return Reply::Res(-libc::ECONNREFUSED);
        };
        if backlog.len() >= *most {
            return Reply::Res(-libc::ECONNREFUSED);
        }
        backlog.push_back(server);
        let client = &mut self.net.sockets[sock];
        client.role = Role::Connected { peer: server };
        client.local = Some(local);
        client.host = Some(local.ip());
        self.net.hosts.insert(local.ip());
        self.net.hosts.insert(addr.ip());
        self.wake_accept(listener);
        Reply::Res(0)
    }

    pub(crate) fn accept(&mut self, parked: Parked, listener: usize) -> Reply {
        if !matches!(self.net.sockets[listener].role, Role::Listening { .. }) {
            return Reply::Res(-libc::EINVAL);
        }
        self.net.sockets[listener].waiting.push_back(parked);
        self.wake_accept(listener);
        Reply::Parked
    }

    /// Hands waiting connections to waiting accepts.
    fn wake_accept(&mut self, listener: usize) {
        // Their new fds may take the numbers of fds dropped since, whose
        // sockets close first (see `socket`). No user code runs in the
        // loop, so nothing is dropped meanwhile.
        self.close_dropped();
        loop {
            let socket = &mut self.net.sockets[listener];
            let Role::Listening { backlog, .. } = &mut socket.role else {
                return;
            };
            if backlog.is_empty() || socket.waiting.is_empty() {
                return;
            }
            let (Some(conn), Some(parked)) = (backlog.pop_front(), socket.waiting.pop_front())
            else {
                return;
            };
            let peer_addr = self.net.sockets[conn].local;
            if !matches!(parked.shot, Shot::Once) {
                // A multishot accept reports no address.
                match self.net.fds.make(conn) {
                    Ok(fd) => {
                        let more = self.shot_goes_on(&parked);
                        let flags = if more { MORE } else { 0 };
                        self.complete_now(parked.node, parked.user_data, 0, flags, Some(fd));
                        if more {
                            self.net.sockets[listener].waiting.push_front(parked);
                        }
                    }
                    Err(err) => {
                        let errno = err.raw_os_error().unwrap_or(libc::EMFILE);
                        self.complete_now(parked.node, parked.user_data, -errno, 0, None);
                    }
                }
                continue;
            }
            let at = self.now().saturating_add(self.delay());
            match self.net.fds.make(conn) {
                Ok(fd) => {
                    if let Some(addr) = peer_addr {
                        // SAFETY: an accept parks its address block, which
                        // its task keeps in place until its completion.
                        let block = unsafe { &mut *parked.ptr.cast::<AddrBuf>() };
                        block.set(&addr.into());
                    }
                    self.complete_fd(parked.node, parked.user_data, 0, Some(fd), at);
                }
                Err(err) => {
                    let errno = err.raw_os_error().unwrap_or(libc::EMFILE);
                    self.complete(parked.node, parked.user_data, -errno, at);
                }
            }
        }
    }

    pub(crate) fn send(&mut self, sock: usize, data: &[u8]) -> Reply {
        let socket = &mut self.net.sockets[sock];
        // A TCP send on a socket that is not connected is `EPIPE` too.
        let Role::Connected { peer } = socket.role else {
            return Reply::Res(-libc::EPIPE);
        };
        if let Some(errno) = socket.error.take() {
            return Reply::Res(-errno);
        }
        if socket.reset || socket.write_shut {
            return Reply::Res(-libc::EPIPE);
        }
        let mut len = data.len();
        if len > 1 && self.streams.chance(Stream::NetShort, self.config.short_io) {
            len = self.streams.get(Stream::NetShort).usize(1..len);
            self.faults.add(Fault::ShortWrite);
        }
        let mut rest = &data[..len];
        while !rest.is_empty() {
            let mut cut = rest.len();
            if cut > 1
                && self
                    .streams
                    .chance(Stream::NetSegments, self.config.segmenting)
            {
                cut = self.streams.get(Stream::NetSegments).usize(1..cut);
                self.faults.add(Fault::Segment);
            }
            let at = self
                .now()
                .saturating_add(self.segment_delay(peer))
                .max(self.net.sockets[peer].arrival);
            let receiver = &mut self.net.sockets[peer];
            receiver.arrival = at;
            if !receiver.closed {
                receiver.rx.extend(&rest[..cut]);
            }
            self.schedule(
                at,
                What::Arrive {
                    sock: peer,
                    len: cut,
                },
            );
            rest = &rest[cut..];
        }
        Reply::Res(len as i32)
    }

    pub(crate) fn recv(&mut self, parked: Parked, sock: usize) -> Reply {
        if !matches!(self.net.sockets[sock].role, Role::Connected { .. }) {
            return Reply::Res(-libc::ENOTCONN);
        }
        self.net.sockets[sock].waiting.push_back(parked);
        self.wake_recv(sock);
        Reply::Parked
    }

    /// Fills the waiting receives, in order, while there is anything to
    /// give them (an end of stream or a reset ends every one).
    fn wake_recv(&mut self, sock: usize) {
        loop {
            let socket = &mut self.net.sockets[sock];
            let Some(&parked) = socket.waiting.front() else {
                return;
            };
            let mut flags = 0;
            let res = if socket.arrived > 0 {
                let Some(target) = self.recv_target(&parked) else {
                    self.net.sockets[sock].waiting.pop_front();
                    self.complete_now(parked.node, parked.user_data, -libc::ENOBUFS, 0, None);
                    continue;
                };
                flags = target.flags;
                let socket = &mut self.net.sockets[sock];
                let mut n = socket.arrived.min(target.room);
                if n > 1 && self.streams.chance(Stream::NetShort, self.config.short_io) {
                    n = self.streams.get(Stream::NetShort).usize(1..n);
                    self.faults.add(Fault::ShortRead);
                }
                let socket = &mut self.net.sockets[sock];
                let (front, back) = socket.rx.as_slices();
                let from_front = n.min(front.len());
                if n > 0 {
                    // SAFETY: the target is a receive's spare room, which its
                    // task keeps in place until its completion, or a group
                    // buffer just taken off the free list for it; either is
                    // `room` bytes, `n <= room`, and the world's queue never
                    // overlaps a task's buffer.
                    unsafe {
                        std::ptr::copy_nonoverlapping(front.as_ptr(), target.ptr, from_front);
                        let rest = n - from_front;
                        std::ptr::copy_nonoverlapping(
                            back.as_ptr(),
                            target.ptr.add(from_front),
                            rest,
                        );
                    }
                }
                socket.rx.drain(..n);
                socket.arrived -= n;
                n as i32
            } else if socket.rx_fin {
                // The end of the stream comes before a reset's error.
                0
            } else if let Some(errno) = socket.error.take() {
                -errno
            } else if socket.reset || socket.read_shut {
                0
            } else {
                return;
            };
            if res > 0 && self.shot_goes_on(&parked) {
                self.complete_now(parked.node, parked.user_data, res, flags | MORE, None);
                continue;
            }
            self.net.sockets[sock].waiting.pop_front();
            self.complete_now(parked.node, parked.user_data, res, flags, None);
        }
    }

    /// Both ends of `sock`'s connection are reset, now here and after the
    /// usual delay at the peer; the error `sock`'s operation failed with is
    /// the reset's own, reported already.
    pub(crate) fn reset_both(&mut self, sock: usize) {
        self.reset(sock);
        self.net.sockets[sock].error = None;
        if let Role::Connected { peer } = self.net.sockets[sock].role {
            let at = self.now().saturating_add(self.delay());
            self.schedule(at, What::Reset { sock: peer });
        }
    }

    pub(crate) fn shutdown(&mut self, sock: usize, how: i32) -> Reply {
        let Role::Connected { peer } = self.net.sockets[sock].role else {
            return Reply::Res(-libc::ENOTCONN);
        };
        if how != libc::SHUT_RD && !self.net.sockets[sock].write_shut {
            self.net.sockets[sock].write_shut = true;
            self.send_fin(peer);
        }
        if how != libc::SHUT_WR {
            self.net.sockets[sock].read_shut = true;
            self.wake_recv(sock);
        }
        Reply::Res(0)
    }

    fn send_fin(&mut self, peer: usize) {
        let at = self
            .now()
            .saturating_add(self.segment_delay(peer))
            .max(self.net.sockets[peer].arrival);
        self.net.sockets[peer].arrival = at;
        self.schedule(at, What::Fin { sock: peer });
    }

    /// Closes the socket behind `fd` (which the caller closes with it).
    pub(crate) fn close(&mut self, fd: &OwnedFd) {
        let raw = fd.as_raw_fd();
        if let Some(sock) = self.net.fds.lookup(raw) {
            self.close_known(raw, sock);
        }
    }

    /// Closes each socket whose fd the program closed behind the world's
    /// back, as the kernel closes a socket with its last fd: its peer sees
    /// the connection end (or reset), its address is free again.
    pub(crate) fn close_dropped(&mut self) {
        for sock in self.net.fds.take_dropped() {
            if !self.net.sockets[sock].closed {
                if self.udp.is_datagram(sock) {
                    self.udp_close(sock);
                }
                self.close_socket(sock);
            }
        }
    }

    /// Closes socket `sock`, whose fd `raw` the caller checked is its own
    /// (and closes with it).
    pub(crate) fn close_known(&mut self, raw: RawFd, sock: usize) {
        self.net.fds.forget(raw);
        self.close_socket(sock);
    }

    fn close_socket(&mut self, sock: usize) {
        if let Some(addr) = self.net.sockets[sock].local {
            if self.net.bound.get(&addr) == Some(&sock) {
                self.net.bound.remove(&addr);
            }
        }
        let socket = &mut self.net.sockets[sock];
        socket.closed = true;
        let unread = socket.arrived;
        // Nothing reads it any more; what is still on its way is dropped
        // as it arrives.
        socket.rx = VecDeque::new();
        socket.arrived = 0;
        match std::mem::take(&mut socket.role) {
            Role::Fresh => {}
            Role::Connected { peer } => {
                // Kept: data that still arrives resets the peer.
                socket.role = Role::Connected { peer };
                if unread > 0 {
                    // Closed with data unread: the kernel resets the
                    // connection instead of ending it.
                    let at = self.now().saturating_add(self.delay());
                    self.schedule(at, What::Reset { sock: peer });
                } else if !socket.write_shut {
                    self.send_fin(peer);
                }
            }
            Role::Listening { backlog, .. } => {
                if let Some(addr) = self.net.sockets[sock].local {
                    self.net.listeners.remove(&addr);
                }
                for conn in backlog {
                    self.net.sockets[conn].closed = true;
                    self.reset_both(conn);
                }
            }
        }
    }

    pub(crate) fn arrive(&mut self, sock: usize, len: usize) {
        if self.net.sockets[sock].closed {
            // Data for a closed socket: the sender's end is reset.
            if let Role::Connected { peer } = self.net.sockets[sock].role {
                self.reset(peer);
            }
            return;
        }
        self.net.sockets[sock].arrived += len;
        self.wake_recv(sock);
    }

    pub(crate) fn fin(&mut self, sock: usize) {
        self.net.sockets[sock].rx_fin = true;
        self.wake_recv(sock);
    }

    /// TCP gave up on `sock`'s connection: it fails here with `errno`
    /// (unless it had been reset already; `false` then).
    pub(crate) fn abort(&mut self, sock: usize, errno: i32) -> bool {
        let socket = &mut self.net.sockets[sock];
        if socket.reset {
            return false;
        }
        socket.reset = true;
        socket.error = (!socket.closed).then_some(errno);
        self.wake_recv(sock);
        true
    }

    pub(crate) fn reset(&mut self, sock: usize) {
        let socket = &mut self.net.sockets[sock];
        if !socket.reset {
            socket.reset = true;
            socket.error = Some(if socket.rx_fin {
                libc::EPIPE
            } else {
                libc::ECONNRESET
            });
        }
        self.wake_recv(sock);
    }
}
